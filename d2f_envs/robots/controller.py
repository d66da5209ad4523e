"""The shared end-effector controller: one action meaning for every robot.

An action is a vector in [-1, 1] whose entries are the task's degrees of
freedom, a subset of ``("x", "y", "z", "yaw", "grip")``. Position entries move
the TCP target by up to ``max_delta_pos`` metres per control step, ``yaw`` by up to
``max_delta_yaw`` radians, ``grip`` commands the gripper (-1 open, +1 closed).
The target stays inside the task's workspace box and may lead the measured
TCP by at most ``max_lead`` (anti-windup when the tool is blocked by contact).
Dofs a task does not use hold their reset values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import mujoco
import numpy as np

from .base import RobotAdapter

DOFS = ("x", "y", "z", "yaw", "grip")


@dataclass(frozen=True)
class ControllerConfig:
    # metres of TCP target motion per control step at |action| = 1 (0.3 m/s at 10 Hz)
    max_delta_pos: float = 0.03
    # radians of TCP yaw per control step at |action| = 1
    max_delta_yaw: float = 0.25
    # how far (m) the target may run ahead of the measured TCP
    max_lead: float = 0.05


class EndEffectorController:
    def __init__(
        self,
        robot: RobotAdapter,
        dofs: Sequence[str],
        workspace: Tuple[Sequence[float], Sequence[float]],
        config: ControllerConfig = ControllerConfig(),
    ):
        unknown = [d for d in dofs if d not in DOFS]
        if unknown:
            raise ValueError(f"unknown controller dofs {unknown}; choose from {DOFS}")
        if "yaw" in dofs and not robot.can_yaw:
            raise ValueError(f"robot {robot.name!r} cannot yaw its tool; the task needs dofs {tuple(dofs)}")
        if "grip" in dofs and not robot.has_gripper:
            raise ValueError(f"robot {robot.name!r} has no gripper; the task needs dofs {tuple(dofs)}")
        if "z" in dofs and not robot.can_lift:
            raise ValueError(f"robot {robot.name!r} cannot move its tool in z; the task needs dofs {tuple(dofs)}")
        self.robot = robot
        self.dofs = tuple(dofs)
        self.config = config
        self.lo = np.asarray(workspace[0], dtype=np.float64)
        self.hi = np.asarray(workspace[1], dtype=np.float64)
        # index of each dof in the action vector (-1: unused)
        self._ix = {d: (self.dofs.index(d) if d in self.dofs else -1) for d in DOFS}
        self._pos_idx = np.array([self._ix[d] for d in "xyz"])
        self._pos_used = self._pos_idx >= 0
        self._pos_any = bool(self._pos_used.any())
        self._pos_idx_list = self._pos_idx.tolist()
        self.target_pos = np.zeros(3)
        self.target_yaw = 0.0
        self.grip = -1.0

    @property
    def action_dim(self) -> int:
        return len(self.dofs)

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Hold the TCP where it is (call after the robot's reset and mj_forward)."""
        self.target_pos = self.robot.tcp_pos(data).copy()
        self.target_yaw = self.robot.tcp_yaw(data)
        self.grip = -1.0

    def apply(self, model: mujoco.MjModel, data: mujoco.MjData, action: np.ndarray) -> None:
        """Map a normalised action to the robot's ``data.ctrl``."""
        # scalar Python arithmetic on a handful of numbers: the same IEEE operations, in the same
        # order, as the vectorised form (clip = min(max(x, lo), hi)), at a fraction of numpy's
        # per-call cost on tiny arrays
        a = [min(max(v, -1.0), 1.0) for v in np.asarray(action, dtype=np.float64).ravel().tolist()]
        cfg = self.config
        ix = self._ix
        if self._pos_any:
            tcp = self.robot.tcp_pos(data).tolist()
            lo, hi = self.lo.tolist(), self.hi.tolist()
            lead, step = cfg.max_lead, cfg.max_delta_pos
            target = self.target_pos.tolist()
            for k, i in enumerate(self._pos_idx_list):
                t = target[k] + (a[i] * step if i >= 0 else 0.0)
                t = min(max(t, lo[k]), hi[k])
                if i >= 0:  # anti-windup: keep the target within max_lead of where the tool really is
                    t = min(max(t, tcp[k] - lead), tcp[k] + lead)
                target[k] = t
            self.target_pos = np.array(target)
        if ix["yaw"] >= 0:
            self.target_yaw = float(self.target_yaw + a[ix["yaw"]] * cfg.max_delta_yaw)
        if ix["grip"] >= 0:
            self.grip = float(a[ix["grip"]])
        self.robot.command(model, data, self.target_pos, self.target_yaw, self.grip)

    @staticmethod
    def step_targets(ctrls: Sequence["EndEffectorController"], actions: np.ndarray, tcp: np.ndarray) -> np.ndarray:
        """:meth:`apply`'s position-target update for several controllers of one configuration at once
        (the batched vector env): ``actions`` (n, A) float64, ``tcp`` (n, 3) the measured TCPs; returns
        the new ``target_pos`` (n, 3). Only for controllers without yaw and grip dofs. The same IEEE
        operations, element by element, as apply()'s scalar code: numpy's maximum/minimum are Python's
        max/min on the finite numbers these are (apply's callers replace a NaN action first)."""
        c = ctrls[0]
        cfg = c.config
        a = np.minimum(np.maximum(actions, -1.0), 1.0)
        target = np.array([k.target_pos for k in ctrls])
        for k, i in enumerate(c._pos_idx_list):
            t = target[:, k] + (a[:, i] * cfg.max_delta_pos if i >= 0 else 0.0)
            t = np.minimum(np.maximum(t, c.lo[k]), c.hi[k])
            if i >= 0:
                t = np.minimum(np.maximum(t, tcp[:, k] - cfg.max_lead), tcp[:, k] + cfg.max_lead)
            target[:, k] = t
        return target

    @staticmethod
    def step_yaw_grip(ctrls: Sequence["EndEffectorController"], actions: np.ndarray):
        """:meth:`apply`'s yaw and grip updates for several controllers of one configuration at once:
        returns the new ``target_yaw`` and ``grip`` (n,) float64 arrays (the old values where the task
        has no such dof), the same IEEE operations as apply()'s (finite actions, as for step_targets)."""
        c = ctrls[0]
        a = np.minimum(np.maximum(actions, -1.0), 1.0)
        yaw = np.array([k.target_yaw for k in ctrls], dtype=np.float64)
        if c._ix["yaw"] >= 0:
            yaw = yaw + a[:, c._ix["yaw"]] * c.config.max_delta_yaw
        grip = a[:, c._ix["grip"]].copy() if c._ix["grip"] >= 0 else np.array([k.grip for k in ctrls], dtype=np.float64)
        return yaw, grip

