"""A two-finger parallel gripper on a floating base (no arm), built from primitives."""
from __future__ import annotations

import mujoco
import numpy as np

from .base import RobotAdapter

_SLIDE = mujoco.mjtJoint.mjJNT_SLIDE
_HINGE = mujoco.mjtJoint.mjJNT_HINGE
_BOX = mujoco.mjtGeom.mjGEOM_BOX
_CAPSULE = mujoco.mjtGeom.mjGEOM_CAPSULE


class FloatingGripperRobot(RobotAdapter):
    """A parallel-jaw gripper pointing down, carried by x/y/z slides and a yaw hinge.

    Kinematics: a fixed mount (the task's ``robot_mounts`` entry) carries a
    carriage on three slide joints (``x``, ``y``, ``z``, mount frame) and one
    hinge (``yaw``, about the vertical through the TCP). The carriage's origin
    *is* the TCP (site ``floating_gripper/tcp``), 2.5 cm above the fingertips,
    so yawing never moves the TCP.

    Actuation: position servos on the four carriage joints (critically damped;
    x/y/z kp 2000 N/m, force limit 150 N; yaw kp 20 N m/rad) with gravity
    compensation on every gripper body, like an ideal Cartesian robot. The two
    fingers slide symmetrically along the carriage's x axis (closing
    direction); each has a position servo (kp 1000 N/m, 30 N limit) whose
    target goes from 3.5 cm opening (``grip = -1``) to 5 mm past closed
    (``grip = +1``), so a closed finger presses a 2 cm handle with ~15 N and
    a 4 cm object with ~25 N. Finger pads have friction 1.5 (torsional 0.02),
    enough to hold a handle or a 100 g object. Each finger drive has 1 kg of
    armature: MuJoCo's soft contacts are as stiff as the effective mass behind
    them, and a light finger would sink into a handle it pulls.

    Collision bits: the gripper's geoms have ``contype=5, conaffinity=3``, so
    they touch scene geoms with bit 1 (static scene), bit 2 (movable objects
    and articulated links) and Push-T style objects (``contype=2``). The two
    fingers do not collide with each other.

    ``tcp_height`` (the task's working height) is not used: the TCP height is
    set by :meth:`reset` and the controller's ``z`` dof.
    """

    name = "floating_gripper"
    can_yaw = True
    has_gripper = True
    can_lift = True

    # servo gains
    kp_pos = 2000.0
    kp_yaw = 20.0
    kp_finger = 1000.0
    force_pos = 150.0
    force_yaw = 10.0
    force_finger = 30.0
    # masses / reflected inertias (armature) of the carriage joints
    carriage_mass = 1.0
    armature_pos = 0.5
    armature_yaw = 0.05
    finger_mass = 0.1
    # reflected inertia of each finger's drive: it also sets how stiff the finger contacts are
    # (MuJoCo's soft contacts scale with the effective mass), so a squeezed handle stays put
    armature_finger = 1.0
    # geometry (m)
    finger_open = 0.035  # opening of each finger (centre to inner face) at grip = -1
    finger_closed = -0.005  # servo target at grip = +1 (past contact: squeezes)
    finger_half = (0.006, 0.011, 0.045)  # half sizes of a finger box (x thickness, y width, z length)
    finger_tip_below_tcp = 0.025
    palm_half = (0.052, 0.022, 0.01)
    finger_friction = (1.5, 0.02, 0.0001)

    JOINTS = ("x", "y", "z", "yaw", "finger_left", "finger_right")

    # --------------------------------------------------------------- building
    def attach(self, spec, base_pos, base_yaw, tcp_height):
        p = self.prefix
        c, s = np.cos(base_yaw / 2), np.sin(base_yaw / 2)
        mount = spec.worldbody.add_body(name=p + "mount", pos=list(base_pos), quat=[c, 0, 0, s])
        carriage = mount.add_body(name=p + "carriage", pos=[0, 0, 0], gravcomp=1.0)
        for axis, vec in zip("xyz", np.eye(3)):
            carriage.add_joint(
                name=p + axis, type=_SLIDE, axis=vec.tolist(), range=[-1.5, 1.5], limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                armature=self.armature_pos, damping=0.0,
            )
        carriage.add_joint(name=p + "yaw", type=_HINGE, axis=[0, 0, 1], armature=self.armature_yaw)

        fx, fy, fz = self.finger_half
        tip = -self.finger_tip_below_tcp
        finger_zc = tip + fz  # finger box centre height (carriage frame)
        palm_z = finger_zc + fz + self.palm_half[2]
        geom_kw = dict(
            contype=5, conaffinity=3, condim=4, friction=list(self.finger_friction),
            solimp=[0.95, 0.99, 0.001, 0.5, 2.0], solref=[0.02, 1.0],
        )
        grey = [0.35, 0.36, 0.4, 1]
        carriage.add_geom(
            name=p + "palm", type=_BOX, size=list(self.palm_half), pos=[0, 0, palm_z], mass=self.carriage_mass * 0.6,
            rgba=grey, **geom_kw,
        )
        carriage.add_geom(
            name=p + "wrist", type=_CAPSULE, size=[0.018, 0, 0],
            fromto=[0, 0, palm_z + self.palm_half[2] + 0.018, 0, 0, palm_z + 0.09], mass=self.carriage_mass * 0.4,
            rgba=[0.25, 0.26, 0.3, 1], **geom_kw,
        )
        carriage.add_site(name=p + "tcp", pos=[0, 0, 0], size=[0.006, 0, 0], rgba=[1, 0.6, 0, 0.6])

        pad = [0.85, 0.45, 0.15, 1]
        for side, sign in (("left", 1.0), ("right", -1.0)):
            f = carriage.add_body(name=p + "finger_" + side, pos=[0, 0, 0], gravcomp=1.0)
            f.add_joint(
                name=p + "finger_" + side, type=_SLIDE, axis=[sign, 0, 0], range=[0.0, self.finger_open + 0.005],
                limited=mujoco.mjtLimited.mjLIMITED_TRUE, armature=self.armature_finger, damping=0.0,
            )
            # the inner face sits at +-q from the centre line
            f.add_geom(
                name=p + "finger_" + side, type=_BOX, size=[fx, fy, fz], pos=[sign * fx, 0, finger_zc],
                mass=self.finger_mass, rgba=pad, **geom_kw,
            )
        spec.add_exclude(bodyname1=p + "finger_left", bodyname2=p + "finger_right")

        def servo(joint, kp, mass, force, lo, hi):
            act = spec.add_actuator(name=p + joint, target=p + joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=kp, kv=2.0 * np.sqrt(kp * mass))
            act.ctrlrange = [lo, hi]
            act.ctrllimited = True
            act.forcerange = [-force, force]
            act.forcelimited = True

        m_total = self.carriage_mass + 2 * self.finger_mass + self.armature_pos
        for axis in "xyz":
            servo(axis, self.kp_pos, m_total, self.force_pos, -1.5, 1.5)
        servo("yaw", self.kp_yaw, self.armature_yaw + 0.005, self.force_yaw, -np.pi, np.pi)
        for side in ("left", "right"):
            servo("finger_" + side, self.kp_finger, self.finger_mass + self.armature_finger, self.force_finger,
                  self.finger_closed, self.finger_open)
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

    # --------------------------------------------------------------- running
    def _finger_target(self, grip: float) -> float:
        g = float(np.clip(grip, -1.0, 1.0))
        return self.finger_open + (g + 1.0) / 2.0 * (self.finger_closed - self.finger_open)

    def reset(self, model, data, tcp_pos, tcp_yaw=0.0):
        q = np.empty(6)
        q[:3] = self._R.T @ (np.asarray(tcp_pos, dtype=np.float64) - self._base)
        q[3] = float(np.clip(tcp_yaw - self._base_yaw, -np.pi, np.pi))
        q[4:] = self.finger_open
        data.qpos[self._qadr] = q
        data.qvel[self._dadr] = 0.0
        data.ctrl[self._act] = q

    def command(self, model, data, target_pos, target_yaw, grip):
        q = self._R.T @ (np.asarray(target_pos, dtype=np.float64) - self._base)
        yaw = float(np.clip(target_yaw - self._base_yaw, -np.pi, np.pi))
        f = self._finger_target(grip)
        data.ctrl[self._act] = (q[0], q[1], q[2], yaw, f, f)

    def opening(self, data) -> float:
        """Distance between the finger pads (m)."""
        return float(data.qpos[self._qadr[4]] + data.qpos[self._qadr[5]])

    def proprio(self, data):
        """qpos (6: x, y, z, yaw, left finger, right finger), qvel (6), TCP position (3), opening (1)."""
        return np.concatenate([
            data.qpos[self._qadr], data.qvel[self._dadr], data.site_xpos[self.tcp_site_id], (self.opening(data),),
        ])

    @property
    def proprio_dim(self):
        return 16
