"""A Franka Panda arm (robosuite's model) with a push tool or the shared parallel gripper.

All the machinery (model adaptation, servos, gravity compensation, DLS
differential IK with null space, reach limiting) is :class:`~d2f_envs.robots.arm.ArmRobot`'s;
this file holds the Panda's numbers.

Two registered robots:

* ``"panda"``: a vertical push tool (cylinder, 1.5 cm radius, 15 cm long) on
  the flange, no gripper (Push-T);
* ``"panda_gripper"``: the shared two-finger
  :class:`~d2f_envs.robots.gripper.ParallelJawGripper` on the flange
  (articulated tasks: ``grip`` dof).
"""
from __future__ import annotations

import numpy as np

from .arm import ArmRobot

# Elbow-up posture with the flange pointing straight down, the TCP 0.5 m in
# front of the base and 12 cm up (q6 = q2 - q4 keeps the flange vertical;
# q7 = pi/4 aligns robosuite's hand frame with the base's x axis). IK starts here at reset and
# the null-space term pulls towards it while pushing.
HOME_Q = (0.0, 0.15, 0.0, -2.35, 0.0, 2.5, np.pi / 4)

# Diagonal of the joint-space inertia matrix (kg m^2, robosuite's inflated link
# inertias plus the armature) in a typical pushing posture. Servo gains are scaled
# by it so that every joint has the same closed-loop bandwidth.
JOINT_INERTIA = (2.25, 2.25, 1.55, 1.3, 0.45, 0.27, 0.15)


class PandaRobot(ArmRobot):
    """Franka Panda (7 dof) with a 1.5 cm radius push tool; no gripper.

    ``proprio``: 7 joint positions (rad), 7 joint velocities (rad/s), TCP
    position (world, m): 17 values.
    """

    name = "panda"
    model_file = "robots/panda/robot.xml"
    arm_joints = tuple(f"joint{i}" for i in range(1, 8))
    # robosuite's "right_hand" body, z out of the flange
    flange_body = "right_hand"
    home_q = HOME_Q
    joint_inertia = JOINT_INERTIA
    # rotor inertia added to each joint: realistic for the Panda's geared motors and
    # it keeps the light wrist joints from being the stiffest mode of the system
    armature = 0.05
    #: closed-loop natural frequency of the joint servos (rad/s): settles a
    #: 3 cm step to a few mm within one 0.1 s control period
    servo_omega = 40.0
    tool = "push"
    tool_radius = 0.015
    #: flange-to-tip length (m): keeps the flange 15 cm above the TCP, so the
    #: wrist clears the table (the reach, ~0.79 m from the base at table
    #: height, hardly depends on it between 10 and 30 cm)
    tool_length = 0.15
    tool_mass = 0.1
    #: IK: where the target is out of reach the tool keeps its height and stays
    #: vertical and only lags in x/y
    ik_task_weight = (1.0, 1.0, 10.0, 2.0, 2.0, 2.0)
    #: 2 rad/s at 10 Hz, about the Panda's joint speed limits
    max_joint_step = 0.2
    # reach geometry: shoulder (joint 2) height above the base, the flange's offset ahead
    # of the wrist centre (joint 6 axis) and below it; the arm's full stretch is ~0.71 m
    # (joint 4 stops at -0.07 rad): near it the arm is singular and chasing an
    # out-of-reach target makes it oscillate
    shoulder_offset = (0.0, 0.0, 0.333)
    wrist_to_flange_ahead = 0.088
    wrist_to_flange_down = 0.107
    max_shoulder_to_wrist = 0.70


class PandaGripperRobot(PandaRobot):
    """Franka Panda (7 dof) with the shared two-finger parallel gripper.

    The TCP sits 13 cm below the flange (2 cm connector, 8.5 cm palm and
    fingers, 2.5 cm above the fingertips); the fingers close along the TCP's
    x axis. ``proprio``: 7 joint positions, 7 joint velocities, TCP position,
    finger opening: 18 values.
    """

    name = "panda_gripper"
    tool = "gripper"
