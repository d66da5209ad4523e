"""A two-finger parallel gripper on a floating base (no arm), built from primitives."""
from __future__ import annotations

import mujoco
import numpy as np

from .base import RobotAdapter
from .gripper import ParallelJawGripper

_SLIDE = mujoco.mjtJoint.mjJNT_SLIDE
_HINGE = mujoco.mjtJoint.mjJNT_HINGE
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
    compensation on every gripper body, like an ideal Cartesian robot. The
    gripper itself (palm, fingers, finger servos, pad friction, finger
    armature, collision bits) is the shared
    :class:`~d2f_envs.robots.gripper.ParallelJawGripper`, the one the arms
    carry; the carriage's wrist capsule uses the same contact parameters.

    ``tcp_height`` (the task's working height) is not used: the TCP height is
    set by :meth:`reset` and the controller's ``z`` dof.
    """

    name = "floating_gripper"
    can_yaw = True
    has_gripper = True
    can_lift = True

    gripper = ParallelJawGripper()
    #: opening of each finger at grip = -1 (m), see the gripper
    finger_open = ParallelJawGripper.finger_open

    # servo gains
    kp_pos = 2000.0
    kp_yaw = 20.0
    force_pos = 150.0
    force_yaw = 10.0
    # masses / reflected inertias (armature) of the carriage joints
    carriage_mass = 1.0  # palm (the gripper's palm_mass) + wrist capsule
    armature_pos = 0.5
    armature_yaw = 0.05

    JOINTS = ("x", "y", "z", "yaw", "finger_left", "finger_right")

    # --------------------------------------------------------------- building
    def attach(self, spec, base_pos, base_yaw, tcp_height):
        p = self.prefix
        g = self.gripper
        c, s = np.cos(base_yaw / 2), np.sin(base_yaw / 2)
        mount = spec.worldbody.add_body(name=p + "mount", pos=list(base_pos), quat=[c, 0, 0, s])
        carriage = mount.add_body(name=p + "carriage", pos=[0, 0, 0], gravcomp=1.0)
        for axis, vec in zip("xyz", np.eye(3)):
            carriage.add_joint(
                name=p + axis, type=_SLIDE, axis=vec.tolist(), range=[-1.5, 1.5], limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                armature=self.armature_pos, damping=0.0,
            )
        carriage.add_joint(name=p + "yaw", type=_HINGE, axis=[0, 0, 1], armature=self.armature_yaw)

        def servo(joint, kp, mass, force, lo, hi):
            act = spec.add_actuator(name=p + joint, target=p + joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=kp, kv=2.0 * np.sqrt(kp * mass))
            act.ctrlrange = [lo, hi]
            act.ctrllimited = True
            act.forcerange = [-force, force]
            act.forcelimited = True

        m_total = self.carriage_mass + 2 * g.finger_mass + self.armature_pos
        for axis in "xyz":
            servo(axis, self.kp_pos, m_total, self.force_pos, -1.5, 1.5)
        servo("yaw", self.kp_yaw, self.armature_yaw + 0.005, self.force_yaw, -np.pi, np.pi)
        # palm, fingers and their servos (after the carriage servos: actuator order x, y, z, yaw, fingers)
        g.add(spec, carriage, prefix=p)
        palm_top = g.palm_top
        carriage.add_geom(
            name=p + "wrist", type=_CAPSULE, size=[0.018, 0, 0],
            fromto=[0, 0, palm_top + 0.018, 0, 0, palm_top - g.palm_half[2] + 0.09],
            mass=self.carriage_mass - g.palm_mass, rgba=[0.25, 0.26, 0.3, 1], **g.geom_kw(),
        )
        carriage.add_site(name=p + "tcp", pos=[0, 0, 0], size=[0.006, 0, 0], rgba=[1, 0.6, 0, 0.6])
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
        return self.gripper.finger_target(grip)

    def reset(self, model, data, tcp_pos, tcp_yaw=0.0):
        q = np.empty(6)
        q[:3] = self._R.T @ (np.asarray(tcp_pos, dtype=np.float64) - self._base)
        q[3] = float(np.clip(tcp_yaw - self._base_yaw, -np.pi, np.pi))
        q[4:] = self.gripper.finger_open
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

    def proprio_batch(self, qpos: np.ndarray, qvel: np.ndarray, site_xpos: np.ndarray) -> np.ndarray:
        """:meth:`proprio` of several grippers from their Batch rows ((n, nq), (n, nv), (n, nsite, 3))."""
        out = np.empty((len(qpos), 16))
        out[:, :6] = qpos[:, self._qadr]
        out[:, 6:12] = qvel[:, self._dadr]
        out[:, 12:15] = site_xpos[:, self.tcp_site_id]
        out[:, 15] = qpos[:, self._qadr[4]] + qpos[:, self._qadr[5]]
        return out

    @property
    def proprio_dim(self):
        return 16
