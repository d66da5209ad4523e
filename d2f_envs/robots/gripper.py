"""The one two-finger parallel gripper, built from primitives, shared by every robot that grips.

The floating gripper carries it on slides; the arms (:mod:`.arm`) carry it on
their flange. Its frame: origin at the TCP (between the fingertips, 2.5 cm
above them), ``z`` pointing from the fingers towards the palm (up when the
gripper points down), fingers closing along ``x``.
"""
from __future__ import annotations

from typing import Tuple

import mujoco
import numpy as np

_SLIDE = mujoco.mjtJoint.mjJNT_SLIDE
_BOX = mujoco.mjtGeom.mjGEOM_BOX


class ParallelJawGripper:
    """Palm + two box fingers sliding symmetrically along ``x``, each on a position servo.

    Each finger has a position servo (kp 1000 N/m, 30 N limit, critically
    damped) whose target goes from 3.5 cm opening (``grip = -1``) to 5 mm past
    closed (``grip = +1``), so a closed finger presses a 2 cm handle with
    ~15 N and a 4 cm object with ~25 N. Finger pads have friction 1.5
    (torsional 0.02), enough to hold a handle or a 100 g object. Each finger
    drive has 1 kg of armature: MuJoCo's soft contacts are as stiff as the
    effective mass behind them, and a light finger would sink into a handle
    it pulls.

    Collision bits ``contype=5, conaffinity=3``: the palm and fingers touch
    scene geoms with bit 1 (static scene), bit 2 (movable objects and
    articulated links) and Push-T style objects (``contype=2``). The two
    fingers do not collide with each other.
    """

    kp_finger = 1000.0
    force_finger = 30.0
    finger_mass = 0.1
    palm_mass = 0.6
    # reflected inertia of each finger's drive: it also sets how stiff the finger contacts are
    # (MuJoCo's soft contacts scale with the effective mass), so a squeezed handle stays put
    armature_finger = 1.0
    # geometry (m)
    finger_open = 0.035  # opening of each finger (centre to inner face) at grip = -1
    finger_closed = -0.005  # servo target at grip = +1 (past contact: squeezes)
    finger_half: Tuple[float, float, float] = (0.006, 0.011, 0.045)  # x thickness, y width, z length
    finger_tip_below_tcp = 0.025
    palm_half: Tuple[float, float, float] = (0.052, 0.022, 0.01)
    finger_friction = (1.5, 0.02, 0.0001)
    contype = 5
    conaffinity = 3

    FINGERS = ("finger_left", "finger_right")

    def geom_kw(self) -> dict:
        """Contact parameters of every gripper geom (also used for a carrier's own geoms)."""
        return dict(
            contype=self.contype, conaffinity=self.conaffinity, condim=4, friction=list(self.finger_friction),
            solimp=[0.95, 0.99, 0.001, 0.5, 2.0], solref=[0.02, 1.0],
        )

    @property
    def palm_top(self) -> float:
        """Height of the palm's top face above the TCP (m): where a carrier meets the gripper."""
        return -self.finger_tip_below_tcp + 2 * self.finger_half[2] + 2 * self.palm_half[2]

    def add(self, spec: mujoco.MjSpec, body: mujoco.MjsBody, prefix: str = "") -> None:
        """Add palm, fingers, finger joints and finger servos to ``body`` (whose frame is the
        gripper frame, see the module doc) in ``spec``; names are ``prefix + "palm"``,
        ``prefix + "finger_left"``/``"finger_right"`` (body, joint, geom and actuator)."""
        p = prefix
        fx, fy, fz = self.finger_half
        finger_zc = -self.finger_tip_below_tcp + fz  # finger box centre height
        palm_z = finger_zc + fz + self.palm_half[2]
        kw = self.geom_kw()
        body.add_geom(
            name=p + "palm", type=_BOX, size=list(self.palm_half), pos=[0, 0, palm_z], mass=self.palm_mass,
            rgba=[0.35, 0.36, 0.4, 1], **kw,
        )
        pad = [0.85, 0.45, 0.15, 1]
        for side, sign in (("left", 1.0), ("right", -1.0)):
            f = body.add_body(name=p + "finger_" + side, pos=[0, 0, 0], gravcomp=1.0)
            f.add_joint(
                name=p + "finger_" + side, type=_SLIDE, axis=[sign, 0, 0], range=[0.0, self.finger_open + 0.005],
                limited=mujoco.mjtLimited.mjLIMITED_TRUE, armature=self.armature_finger, damping=0.0,
            )
            # the inner face sits at +-q from the centre line
            f.add_geom(
                name=p + "finger_" + side, type=_BOX, size=[fx, fy, fz], pos=[sign * fx, 0, finger_zc],
                mass=self.finger_mass, rgba=pad, **kw,
            )
        spec.add_exclude(bodyname1=p + "finger_left", bodyname2=p + "finger_right")
        kp = self.kp_finger
        for name in self.FINGERS:
            act = spec.add_actuator(name=p + name, target=p + name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=kp, kv=2.0 * np.sqrt(kp * (self.finger_mass + self.armature_finger)))
            act.ctrlrange = [self.finger_closed, self.finger_open]
            act.ctrllimited = True
            act.forcerange = [-self.force_finger, self.force_finger]
            act.forcelimited = True

    def finger_target(self, grip: float) -> float:
        """Servo target of each finger for ``grip`` in [-1, 1] (-1 open, +1 closed)."""
        g = min(max(float(grip), -1.0), 1.0)
        if g != g:  # NaN: hold open
            g = -1.0
        return self.finger_open + (g + 1.0) / 2.0 * (self.finger_closed - self.finger_open)
