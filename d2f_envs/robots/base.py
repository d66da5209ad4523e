"""The one robot interface: what a task may ask of any robot.

A task never builds its robot (dm_control composer / robosuite style). It asks
a :class:`RobotAdapter` for abstract parts: a tool centre point (TCP) it can
move, an optional gripper, proprioception. Every robot is driven by the same
:class:`~d2f_envs.robots.controller.EndEffectorController`, so an action means
the same TCP motion on every robot and hyperparameters transfer.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import mujoco
import numpy as np


class RobotAdapter(ABC):
    """A robot that can be attached to any task scene.

    Subclasses implement :meth:`attach` (add bodies/actuators to the scene's
    ``MjSpec`` under ``self.prefix``), :meth:`bind` (resolve ids in the
    compiled model), :meth:`reset` (a home configuration with the TCP at a
    requested point), :meth:`command` (write ``data.ctrl`` to move the TCP
    towards a target) and :meth:`proprio` (what the robot measures of itself).
    """

    #: registry name, used as ``robot=`` in ``gym.make``
    name: ClassVar[str] = ""
    #: the TCP can yaw about the world z axis
    can_yaw: ClassVar[bool] = False
    #: the robot has a gripper driven by the action's ``grip`` entry
    has_gripper: ClassVar[bool] = False
    #: the TCP can move in z (a planar stage cannot)
    can_lift: ClassVar[bool] = True

    def __init__(self) -> None:
        self.prefix = f"{self.name}/"
        self.tcp_site_id = -1

    # --------------------------------------------------------------- building
    @abstractmethod
    def attach(self, spec: mujoco.MjSpec, base_pos: Sequence[float], base_yaw: float, tcp_height: float) -> None:
        """Add the robot to ``spec``. ``base_pos``/``base_yaw``: where the task mounts it;
        ``tcp_height``: the task's working height for the TCP (tools are sized to it)."""

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Resolve ids in the compiled model (call once after compile)."""
        self.tcp_site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, self.prefix + "tcp")
        if self.tcp_site_id < 0:
            raise RuntimeError(f"{type(self).__name__}: the model has no site {self.prefix}tcp")

    # --------------------------------------------------------------- running
    @abstractmethod
    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, tcp_pos: np.ndarray, tcp_yaw: float = 0.0) -> None:
        """Put the robot at rest in a home configuration with its TCP at ``tcp_pos``
        (world), holding there (ctrl set); does not call ``mj_forward``."""

    @abstractmethod
    def command(self, model: mujoco.MjModel, data: mujoco.MjData, target_pos: np.ndarray, target_yaw: float, grip: float) -> None:
        """Write ``data.ctrl`` so the TCP moves towards ``target_pos``/``target_yaw``;
        ``grip`` in [-1, 1] (-1 open, +1 closed)."""

    @abstractmethod
    def proprio(self, data: mujoco.MjData) -> np.ndarray:
        """Joint positions and velocities, TCP position and gripper state (1-D float64)."""

    @property
    @abstractmethod
    def proprio_dim(self) -> int:
        """Length of :meth:`proprio`."""

    # --------------------------------------------------------------- shared helpers
    def tcp_pos(self, data: mujoco.MjData) -> np.ndarray:
        return data.site_xpos[self.tcp_site_id]

    def tcp_yaw(self, data: mujoco.MjData) -> float:
        R = data.site_xmat[self.tcp_site_id].reshape(3, 3)
        return float(np.arctan2(R[1, 0], R[0, 0]))
