"""Fourier GR1 humanoid (robosuite's model), fixed base, its right arm carrying the shared parallel gripper.

The pelvis is fixed where the task mounts it (the free joint is removed); the
legs, waist, head and left arm are welded at a neutral posture (zeros; the
left arm hangs down) and have no collision geoms: a standing humanoid whose
feet are not simulated. The right arm's 7 joints are driven by the IK. The
task's ``robot_mounts`` entry is the pelvis pose; the table-top scene's
plane is then a table in front of the humanoid, its legs below it.

Status: the adapter builds, resets and tracks TCP targets, but no task lists
it yet: GR1's wrist pitch and roll (+-1.5 rad) and its shoulder roll (the
right arm cannot cross the body's midline) leave no fixed pelvis pose found
so far from which a top-down grasp can follow the door handle's whole 90
degree arc (the scripted controller reaches ~50 degrees).
"""
from __future__ import annotations

import numpy as np

from .arm import ArmRobot


class GR1Robot(ArmRobot):
    """GR1's right arm (7 dof) with the two-finger parallel gripper, on a fixed humanoid.

    The gripper is mounted on the wrist (``r_hand_pitch``) pointing out of the
    forearm. ``proprio``: 7 joint positions, 7 joint velocities, TCP
    position, finger opening: 18 values.
    """

    name = "gr1"
    model_file = "robots/gr1/robot.xml"
    arm_joints = (
        "r_shoulder_pitch", "r_shoulder_roll", "r_shoulder_yaw", "r_elbow_pitch",
        "r_wrist_yaw", "r_wrist_roll", "r_wrist_pitch",
    )
    flange_body = "r_hand_pitch"
    flange_pos = (0.0, 0.0, -0.03)
    # tool z (out of the flange) = the hand's -z (down the forearm): Rx(180 deg)
    flange_quat = (0.0, 1.0, 0.0, 0.0)
    home_q = (-0.3, -0.2, 0.0, -0.6, 0.0, 0.0, 0.9)
    joint_inertia = None  # from the model at home_q
    armature = 0.05
    servo_omega = 40.0
    # robosuite's motors have no real limits (+-20000): GR1's arm actuators' peak torques
    torque_limits = (60.0, 60.0, 30.0, 30.0, 10.0, 10.0, 10.0)
    tool = "gripper"
    max_joint_step = 0.25
    # shoulder: the right arm mount on the torso (pelvis frame); upper arm ~0.25 m, forearm
    # ~0.24 m to the wrist, which is the flange
    shoulder_offset = (0.0, -0.19, 0.36)
    wrist_to_flange_ahead = 0.0
    wrist_to_flange_down = 0.03
    max_shoulder_to_wrist = 0.47
