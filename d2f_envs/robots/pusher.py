"""A disk pusher on an XY stage, as in the classic Push-T (no arm, no gripper)."""
from __future__ import annotations

import mujoco
import numpy as np

from .base import RobotAdapter


class PusherRobot(RobotAdapter):
    """A vertical cylinder (radius 1.5 cm) on two position-controlled slide joints.

    The stage's carriage is massless in the model; the disk weighs 0.5 kg and
    is driven by position servos (kp 300 N/m, critically damped), so the TCP
    follows the controller's target like a real XY gantry.
    """

    name = "pusher"
    can_lift = False
    radius = 0.015
    kp = 300.0
    mass = 0.5

    def attach(self, spec, base_pos, base_yaw, tcp_height):
        p = self.prefix
        kv = 2.0 * np.sqrt(self.kp * self.mass)  # critical damping
        stage = spec.worldbody.add_body(name=p + "stage", pos=[base_pos[0], base_pos[1], tcp_height])
        stage.add_joint(name=p + "x", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[1, 0, 0], range=[-1, 1])
        stage.add_joint(name=p + "y", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 1, 0], range=[-1, 1])
        stage.add_geom(
            name=p + "disk", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[self.radius, tcp_height * 0.95, 0],
            mass=self.mass, rgba=[0.25, 0.4, 0.9, 1], contype=4, conaffinity=2, friction=[0.5, 0.005, 0.0001],
        )
        stage.add_site(name=p + "tcp", pos=[0, 0, 0], size=[0.005, 0, 0])
        for axis in ("x", "y"):
            act = spec.add_actuator(name=p + axis, target=p + axis, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=self.kp, kv=kv)
            act.ctrlrange = [-1, 1]
            act.ctrllimited = True
        self._base = np.array([base_pos[0], base_pos[1]], dtype=np.float64)

    def bind(self, model, data):
        super().bind(model, data)
        self._qadr = np.array([model.joint(self.prefix + a).qposadr[0] for a in ("x", "y")])
        self._dadr = np.array([model.joint(self.prefix + a).dofadr[0] for a in ("x", "y")])
        self._act = np.array([model.actuator(self.prefix + a).id for a in ("x", "y")])
        self._act_x, self._act_y = self._act.tolist()
        self._base_xy = tuple(self._base.tolist())

    def reset(self, model, data, tcp_pos, tcp_yaw=0.0):
        q = np.asarray(tcp_pos[:2], dtype=np.float64) - self._base
        data.qpos[self._qadr] = q
        data.qvel[self._dadr] = 0.0
        data.ctrl[self._act] = q

    def command(self, model, data, target_pos, target_yaw, grip):
        # == data.ctrl[self._act] = target_pos[:2] - self._base, in scalar arithmetic (hot path)
        x, y = target_pos[0], target_pos[1]
        bx, by = self._base_xy
        ctrl = data.ctrl
        ctrl[self._act_x] = x - bx
        ctrl[self._act_y] = y - by

    def command_batch(self, robots, targets: np.ndarray, yaws, grips, sim, rows: list, models=None, datas=None) -> None:
        """:meth:`command` for several pushers of one model: ``sim.ctrl[rows]`` from ``targets`` (n, 3)
        (the batched vector env writes its Batch's ctrl rows; same arithmetic as command; the
        signature is ArmRobot.command_batch's)."""
        bx, by = self._base_xy
        ctrl = sim.ctrl
        ctrl[rows, self._act_x] = targets[:, 0] - bx
        ctrl[rows, self._act_y] = targets[:, 1] - by

    def proprio(self, data):
        out = np.empty(5)
        out[:3] = data.site_xpos[self.tcp_site_id]
        out[3:] = data.qvel[self._dadr]
        return out

    def proprio_batch(self, qpos: np.ndarray, qvel: np.ndarray, site_xpos: np.ndarray) -> np.ndarray:
        """:meth:`proprio` of several pushers from their Batch rows ((n, nq), (n, nv), (n, nsite, 3))."""
        out = np.empty((len(qvel), 5))
        out[:, :3] = site_xpos[:, self.tcp_site_id]
        out[:, 3:] = qvel[:, self._dadr]
        return out

    @property
    def proprio_dim(self):
        return 5
