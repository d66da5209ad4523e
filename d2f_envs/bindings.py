"""How a flow's points bind to simulated objects: one binding per object class.

A *binding* answers one question for the reward: where are the tracked points
of the object now? It is made once per env from the flow's frame 0 and the
task's nominal start state (correspondence), then queried every step:

* :class:`RigidBinding`: points fixed in one body's frame (rigid objects, and
  the moving link of articulated objects).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import mujoco
import numpy as np


# --------------------------------------------------------------------------- bindings
class PointBinding(ABC):
    """Maps simulator state to the current world positions of the flow's N points."""

    @abstractmethod
    def bind(self, model: mujoco.MjModel, data: mujoco.MjData, points0: np.ndarray) -> None:
        """Attach ``points0`` (N, 3), the flow's frame 0, to the object as it is in ``data``."""

    @abstractmethod
    def points(self, data: mujoco.MjData) -> np.ndarray:
        """Current (N, 3) positions of the bound points, float64, world frame."""


class RigidBinding(PointBinding):
    """Points fixed in the frame of body ``body`` (a rigid object or an articulated link)."""

    def __init__(self, body: str):
        self.body = body
        self._id = -1
        self._local = np.zeros((0, 3))

    def bind(self, model, data, points0):
        self._id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, self.body)
        if self._id < 0:
            raise ValueError(f"RigidBinding: no body named {self.body!r} in the model")
        R = data.xmat[self._id].reshape(3, 3)
        # world = R @ local + p  ->  local = R^T (world - p), written row-wise
        self._local = (np.asarray(points0, dtype=np.float64) - data.xpos[self._id]) @ R

    def points(self, data):
        i = self._id
        out = self._local @ data.xmat[i].reshape(3, 3).T
        out += data.xpos[i]
        return out

    def pose(self, data) -> np.ndarray:
        """The bound body's 4x4 world pose."""
        X = np.eye(4)
        X[:3, :3] = data.xmat[self._id].reshape(3, 3)
        X[:3, 3] = data.xpos[self._id]
        return X

    @property
    def local_points(self) -> np.ndarray:
        return self._local


# --------------------------------------------------------------------------- deformable


# --------------------------------------------------------------------------- granular
class PieceSetBinding(PointBinding):
    """The centres of interchangeable pieces (bodies ``bodies``): a granular object's points.

    Compared with a flow frame as a set (``FlowTrackingReward(metric="chamfer")``;
    no rigid re-anchoring: ``FlowEnv.reanchor_flow = False``). There is no
    correspondence to bind: any piece may end where any flow point does, and the
    pieces may even be more or fewer than the flow's points, so :meth:`bind` only
    resolves the bodies. :meth:`points` returns one row per
    piece, in the order of ``bodies`` (an arbitrary order for the reward, which
    compares the rows with a flow frame as a set).
    """

    def __init__(self, bodies):
        self.bodies = tuple(bodies)
        if not self.bodies:
            raise ValueError("PieceSetBinding: no piece bodies given")
        self._ids = np.zeros(0, dtype=np.intp)

    def bind(self, model, data, points0):
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in self.bodies]
        missing = [b for b, i in zip(self.bodies, ids) if i < 0]
        if missing:
            raise ValueError(f"PieceSetBinding: no bodies named {missing} in the model")
        points0 = np.asarray(points0)
        if points0.ndim != 2 or points0.shape[1] != 3:
            raise ValueError(f"PieceSetBinding: flow frame 0 of shape {points0.shape}, expected (N, 3)")
        self._ids = np.asarray(ids, dtype=np.intp)

    def points(self, data):
        return data.xpos[self._ids]  # fancy indexing: a new (M, 3) float64 array

    @property
    def num_pieces(self) -> int:
        return len(self.bodies)
