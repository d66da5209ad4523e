"""Boston Dynamics Spot with its arm (robosuite's models), carrying the shared parallel gripper.

The arm (robosuite's ``robots/spot_arm``, 6 dof) is the robot; Spot's body and
legs (``robots/spot``) are attached around it as static scenery: the body's
free joint is removed and every leg joint is welded in a standing posture
(hip pitch 0.8 rad, knee -1.5 rad: the feet ~0.70 m below the arm's base), with no
collision geoms. The base's pose (the task's ``robot_mounts`` entry) is the
arm's base, on Spot's back (0.292 m ahead of and 0.188 m above the body's centre).
A legged base that walks is out of scope: tasks place Spot where the arm reaches.
"""
from __future__ import annotations

import mujoco
import numpy as np

from .arm import ArmRobot, adopt_options, robosuite_asset, weld_joint

#: the standing posture of each leg's hip roll, hip pitch and knee (rad)
LEG_POSTURE = {"hx": 0.0, "hy": 1.0, "kn": -2.0}
#: the arm base ("support") in Spot's body frame
ARM_ON_BODY = (0.292, 0.0, 0.188)


class SpotArmRobot(ArmRobot):
    """Spot's 6-dof arm on a static Spot body, with the two-finger parallel gripper.

    The gripper is mounted on the last wrist link (``arm_link_wr1``) along its
    x axis (the forearm's direction). ``proprio``: 6 joint positions, 6 joint
    velocities, TCP position, finger opening: 16 values.
    """

    name = "spot_arm"
    model_file = "robots/spot_arm/robot.xml"
    arm_joints = ("arm_sh0", "arm_sh1", "arm_el0", "arm_el1", "arm_wr0", "arm_wr1")
    flange_body = "arm_link_wr1"
    flange_pos = (0.04, 0.0, 0.0)
    # tool z (out of the flange) = the wrist link's x axis, tool x (closing) = its z axis:
    # half a turn about (x + z) / sqrt(2), so the home posture has the fingers closing along the base's x
    flange_quat = (0.0, float(np.sqrt(0.5)), 0.0, float(np.sqrt(0.5)))
    # forearm raised, wrist pitched so the gripper points down, TCP ~0.55 m ahead, 0.45 m below the base
    home_q = (0.0, -0.5, 1.7, 0.0, 0.37, 0.0)
    joint_inertia = None  # from the model at home_q
    armature = 0.05
    servo_omega = 40.0
    torque_limits = None  # robosuite's motors: 33.5 N m
    tool = "gripper"
    max_joint_step = 0.25
    # the shoulder (sh0/sh1 axes) is the arm's base; upper arm 0.339 m, forearm 0.410 m to the wrist,
    # which is the flange's origin
    shoulder_offset = (0.0, 0.0, 0.0)
    wrist_to_flange_ahead = 0.0
    wrist_to_flange_down = 0.04
    max_shoulder_to_wrist = 0.72

    def _edit_model(self, arm):
        super()._edit_model(arm)
        body = mujoco.MjSpec.from_file(str(robosuite_asset("robots/spot/robot.xml", self.name)))
        for joint in list(body.joints):
            if joint.type == mujoco.mjtJoint.mjJNT_FREE:
                weld_joint(body, joint)
            else:
                weld_joint(body, joint, LEG_POSTURE[joint.name.split("_")[1]])
        for actuator in list(body.actuators):
            body.delete(actuator)
        for exclude in list(body.excludes):
            body.delete(exclude)
        root = body.body("body")
        root.pos = [0.0, 0.0, 0.0]
        frame = arm.body("base").add_frame(pos=[-v for v in ARM_ON_BODY])
        adopt_options(body, arm)
        arm.attach(body, prefix="body/", frame=frame)
