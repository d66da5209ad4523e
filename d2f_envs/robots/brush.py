"""Sweeping brushes: a brush head on a floating x/y/z/yaw stage, and on the Panda arm.

Both carry the same head, :data:`BRUSH_HEAD_HALF`: a 16 cm wide, 2.4 cm thick,
2 cm tall block standing for a hand brush's bristles. Its TCP (site
``<name>/tcp``) is the head's centre; the head's long side is the TCP frame's
``y`` axis, so the tool's yaw is the sweep direction (the head's ``x`` axis).
The head touches the pieces only (collision bits 4/2, as every robot tool),
never the table: a task keeps it just above the table with its workspace box.

Two registered robots:

* ``"brush"``: :class:`BrushRobot`, the head on a Cartesian stage (x, y, z
  slides and a yaw hinge, position servos, gravity compensated), no arm;
* ``"panda_brush"``: :class:`PandaBrushRobot`, a Franka Panda holding the head
  on a 15 cm handle (the Panda's push tool, thinner), driven by the shared
  differential-IK arm machinery.
"""
from __future__ import annotations

import mujoco
import numpy as np

from .base import RobotAdapter
from .panda import PandaRobot

#: half extents (m) of the brush head in the TCP frame: along the sweep direction, across it, up
BRUSH_HEAD_HALF = (0.012, 0.08, 0.01)
#: brush head mass (kg) and bristle-on-pasta friction (sliding, torsional, rolling)
BRUSH_HEAD_MASS = 0.15
BRUSH_FRICTION = (0.3, 0.005, 0.0001)
#: collision bits of every robot tool: touches objects (contype 2), not the static scene (1)
_TOOL_BITS = {"contype": 4, "conaffinity": 2}
_SLIDE = mujoco.mjtJoint.mjJNT_SLIDE
_HINGE = mujoco.mjtJoint.mjJNT_HINGE
_BOX = mujoco.mjtGeom.mjGEOM_BOX
_CYLINDER = mujoco.mjtGeom.mjGEOM_CYLINDER


def add_brush_head(body: mujoco.MjsBody, name: str, pos=(0.0, 0.0, 0.0)) -> mujoco.MjsGeom:
    """Add the brush head box, centred at ``pos`` in ``body``'s frame (its axes: sweep, across, up)."""
    return body.add_geom(
        name=name, type=_BOX, size=list(BRUSH_HEAD_HALF), pos=list(pos), mass=BRUSH_HEAD_MASS,
        rgba=[0.85, 0.55, 0.2, 1], friction=list(BRUSH_FRICTION), **_TOOL_BITS,
    )


class BrushRobot(RobotAdapter):
    """The brush head on a Cartesian x/y/z stage with a yaw hinge (no arm).

    Kinematics: the task's mount carries a carriage on three slide joints
    (``x``, ``y``, ``z``, mount frame) and a hinge (``yaw``, about the vertical
    through the TCP); the carriage's origin is the TCP, the head's centre.

    Actuation: critically damped position servos (x/y/z kp 400 N/m, force
    limit 60 N; yaw kp 5 N m/rad) and gravity compensation, like an ideal
    gantry. A 0.5 kg carriage: a 0.3 m/s sweep settles within a control period
    and a pile of pasta (grams) hardly slows it.

    ``proprio``: TCP position (3), yaw (1, rad), joint velocities of x, y, z,
    yaw (4): 8 values.
    """

    name = "brush"
    can_yaw = True
    can_lift = True
    has_gripper = False

    kp_pos = 400.0
    kp_yaw = 5.0
    force_pos = 60.0
    force_yaw = 5.0
    carriage_mass = 0.5
    armature_yaw = 0.01
    JOINTS = ("x", "y", "z", "yaw")

    def attach(self, spec, base_pos, base_yaw, tcp_height):
        p = self.prefix
        c, s = np.cos(base_yaw / 2), np.sin(base_yaw / 2)
        mount = spec.worldbody.add_body(name=p + "mount", pos=[float(v) for v in base_pos], quat=[c, 0, 0, s])
        carriage = mount.add_body(name=p + "carriage", pos=[0, 0, 0], gravcomp=1.0)
        for axis, vec in zip("xyz", np.eye(3)):
            carriage.add_joint(name=p + axis, type=_SLIDE, axis=vec.tolist(), range=[-1.5, 1.5],
                               limited=mujoco.mjtLimited.mjLIMITED_TRUE)
        carriage.add_joint(name=p + "yaw", type=_HINGE, axis=[0, 0, 1], armature=self.armature_yaw)
        add_brush_head(carriage, p + "head")
        # the handle and the stage's mass (visual only: it never touches anything)
        carriage.add_geom(
            name=p + "handle", type=_CYLINDER, size=[0.01, 0.06, 0], pos=[0, 0, BRUSH_HEAD_HALF[2] + 0.06],
            mass=self.carriage_mass - BRUSH_HEAD_MASS, rgba=[0.3, 0.3, 0.35, 1], contype=0, conaffinity=0,
        )
        carriage.add_site(name=p + "tcp", pos=[0, 0, 0], size=[0.005, 0, 0])

        def servo(joint, kp, inertia, force, lo, hi):
            act = spec.add_actuator(name=p + joint, target=p + joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=kp, kv=2.0 * np.sqrt(kp * inertia))  # critical damping
            act.ctrlrange = [lo, hi]
            act.ctrllimited = True
            act.forcerange = [-force, force]
            act.forcelimited = True

        for axis in "xyz":
            servo(axis, self.kp_pos, self.carriage_mass, self.force_pos, -1.5, 1.5)
        # yaw inertia: the head (a 16 cm bar) about its centre plus the armature
        yaw_inertia = BRUSH_HEAD_MASS * (2 * BRUSH_HEAD_HALF[1]) ** 2 / 12 + self.armature_yaw
        servo("yaw", self.kp_yaw, yaw_inertia, self.force_yaw, -np.pi, np.pi)
        self._base = np.asarray(base_pos, dtype=np.float64)
        self._base_yaw = float(base_yaw)
        cy, sy = np.cos(base_yaw), np.sin(base_yaw)
        self._R = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])

    def bind(self, model, data):
        super().bind(model, data)
        j = [model.joint(self.prefix + n) for n in self.JOINTS]
        self._qadr = np.array([x.qposadr[0] for x in j])
        self._dadr = np.array([x.dofadr[0] for x in j])
        self._act = np.array([model.actuator(self.prefix + n).id for n in self.JOINTS])

    def _joint_targets(self, tcp_pos, tcp_yaw) -> np.ndarray:
        q = np.empty(4)
        q[:3] = self._R.T @ (np.asarray(tcp_pos, dtype=np.float64) - self._base)
        # the hinge's range is one turn: wrap the yaw relative to the mount into it
        q[3] = (float(tcp_yaw) - self._base_yaw + np.pi) % (2 * np.pi) - np.pi
        return q

    def reset(self, model, data, tcp_pos, tcp_yaw=0.0):
        q = self._joint_targets(tcp_pos, tcp_yaw)
        data.qpos[self._qadr] = q
        data.qvel[self._dadr] = 0.0
        data.ctrl[self._act] = q

    def command(self, model, data, target_pos, target_yaw, grip):
        data.ctrl[self._act] = self._joint_targets(target_pos, target_yaw)

    def proprio(self, data):
        out = np.empty(8)
        out[:3] = data.site_xpos[self.tcp_site_id]
        out[3] = data.qpos[self._qadr[3]] + self._base_yaw
        out[4:] = data.qvel[self._dadr]
        return out

    @property
    def proprio_dim(self):
        return 8


class PandaBrushRobot(PandaRobot):
    """Franka Panda (7 dof) holding the brush head on a 15 cm, 1 cm radius handle.

    The handle is the Panda's push tool (:class:`~d2f_envs.robots.panda.PandaRobot`,
    ``tool = "push"``), its tip the TCP; the head is centred on the tip. Everything
    else (servos, IK, reach limiting, ``proprio``: 17 values) is the Panda's.
    """

    name = "panda_brush"
    tool = "push"
    tool_radius = 0.01

    def attach(self, spec, base_pos, base_yaw, tcp_height):
        super().attach(spec, base_pos, base_yaw, tcp_height)
        # the arm is attached by copy: add the head to the attached flange body, in the tool frame
        # (flange_pos/quat), at the handle's tip
        hand = spec.body(self.prefix + self.flange_body)
        frame = hand.add_frame(pos=list(self.flange_pos), quat=list(self.flange_quat))
        add_brush_head(frame, self.prefix + "head", pos=(0.0, 0.0, self.tool_length))


__all__ = ["BRUSH_HEAD_HALF", "BrushRobot", "PandaBrushRobot", "add_brush_head"]
