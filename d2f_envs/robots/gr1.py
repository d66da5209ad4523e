"""Fourier GR1 humanoid (robosuite's model), fixed base, its right arm carrying the shared parallel gripper.

The pelvis is fixed where the task mounts it (the free joint is removed); the
legs, head and left arm are welded at a neutral posture (zeros; the left arm
hangs down), the waist is welded bent forward by :data:`WAIST_PITCH` (the
humanoid leans over the table, which brings its right shoulder over the
work area), and none of them has collision geoms: a standing humanoid whose
feet are not simulated. The right arm's 7 joints are driven by the IK. The
task's ``robot_mounts`` entry is the pelvis pose; the table-top scene's
plane is then a table in front of the humanoid, its legs below it.

The gripper is mounted along the forearm (as robosuite mounts its grippers on
GR1's ``right_eef``: out of the palm, down the forearm), turned about that axis
(:data:`FLANGE_TURN`) so that the tool yaws the door task needs keep the wrist
yaw inside its range rather than at its +3 rad stop.
"""
from __future__ import annotations

import numpy as np

from .arm import ArmRobot

#: forward bend of the waist (rad, ``torso_waist_pitch``; the model allows -0.52 ... 1.22)
WAIST_PITCH = 0.85
#: turn of the gripper about the forearm axis (rad): the door task's tool yaws (about -1.7 ...
#: +0.4 rad) then need the wrist yaw at ~1.2 ... 2.7 rad of its +-3 rad (with -pi/2 it already
#: sits at its +3 rad stop when the tool yaws +0.4 rad above the cabinet)
FLANGE_TURN = -0.75 * np.pi


class GR1Robot(ArmRobot):
    """GR1's right arm (7 dof) with the two-finger parallel gripper, on a fixed humanoid bent over the table.

    The gripper sits 3 cm past the wrist (``r_hand_pitch``), pointing out of
    the forearm. ``proprio``: 7 joint positions, 7 joint velocities, TCP
    position, finger opening: 18 values.
    """

    name = "gr1"
    model_file = "robots/gr1/robot.xml"
    arm_joints = (
        "r_shoulder_pitch", "r_shoulder_roll", "r_shoulder_yaw", "r_elbow_pitch",
        "r_wrist_yaw", "r_wrist_roll", "r_wrist_pitch",
    )
    frozen_q = {"torso_waist_pitch": WAIST_PITCH}
    flange_body = "r_hand_pitch"
    flange_pos = (0.0, 0.0, -0.03)
    # tool z (out of the flange) = the hand's -z (down the forearm); tool x (closing) turned
    # FLANGE_TURN about it from the hand's x: half a turn about the hand's horizontal axis at
    # -FLANGE_TURN / 2 from its x axis
    flange_quat = (0.0, float(np.cos(FLANGE_TURN / 2)), float(-np.sin(FLANGE_TURN / 2)), 0.0)
    # elbow bent and raised outwards, forearm about vertical under it: the posture in the middle of
    # the door handle's arc, so the null-space pull keeps the elbow there
    home_q = (-0.75, -0.9, 1.2, -1.3, 1.6, 0.4, 0.0)
    joint_inertia = None  # from the model at home_q
    armature = 0.05
    servo_omega = 40.0
    # robosuite's motors have no real limits (+-20000): GR1's arm actuators' peak torques
    torque_limits = (60.0, 60.0, 30.0, 30.0, 10.0, 10.0, 10.0)
    tool = "gripper"
    max_joint_step = 0.25
    # reach: the wrist (r_hand_roll) of the straight arm lies on a 0.49 m sphere about the shoulder
    # roll joint's origin (in the pelvis frame with the waist bent by WAIST_PITCH); 0.475 m keeps the
    # elbow bent by at least ~0.4 rad, away from the straight-arm singularity
    shoulder_offset = (0.248, -0.187, 0.28)
    wrist_to_flange_ahead = 0.0
    wrist_to_flange_down = 0.03
    max_shoulder_to_wrist = 0.475

    def attach(self, spec, base_pos, base_yaw, tcp_height):
        super().attach(spec, base_pos, base_yaw, tcp_height)
        # the welded humanoid is ~35 bodies without a joint (pelvis, waist, legs, head, left arm) that
        # every substep's kinematics, inertia and gravity-compensation passes would still visit: let
        # the compiler fuse them into their parents (all but 7 go; the joint-less mount bodies on the
        # hand go into the hand), ~15 % more env steps/s; the scene's other bodies are jointed or
        # mocap, which fusing leaves alone
        spec.compiler.fusestatic = True
