"""How a flow's points bind to simulated objects: one binding per object class.

A *binding* answers one question for the reward: where are the tracked points
of the object now? It is made once per env from the flow's frame 0 and the
task's nominal start state (correspondence), then queried every step:

* :class:`RigidBinding`: points fixed in one body's frame (rigid objects, and
  the moving link of articulated objects).
* :class:`FlexBinding`: points glued to a triangulated MuJoCo flex surface
  (``dim=2``, cloth) by barycentric coordinates (deformable objects).
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

    @abstractmethod
    def object_distance(self, model: mujoco.MjModel, data: mujoco.MjData, points: np.ndarray) -> np.ndarray:
        """(N,) distance (m) of each world point to the object as it is in ``data`` (0 inside).

        The env checks with it that a flow starts on its object (``FlowEnv.flow_on_object_tol``):
        a flow in another frame or for another scene would otherwise bind silently to empty space.
        """


def _descendants(model: mujoco.MjModel, body: int) -> np.ndarray:
    """``body`` and every body below it in the kinematic tree."""
    ids = [body]
    for b in range(body + 1, model.nbody):  # MuJoCo numbers a parent before its children
        if model.body_parentid[b] in ids:
            ids.append(b)
    return np.asarray(ids)


def geom_box_distance(model: mujoco.MjModel, data: mujoco.MjData, geoms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N,) distance of each point to the nearest of ``geoms``' bounding boxes (``geom_aabb``,
    in each geom's frame): exact for boxes, an under-estimate for rounder shapes, which is the
    safe side for a check that refuses flows far from the object."""
    p = np.asarray(points, dtype=np.float64)
    if len(geoms) == 0:
        return np.full(len(p), np.inf)
    aabb = model.geom_aabb[geoms]  # (G, 6): centre (geom frame), half sizes
    R = data.geom_xmat[geoms].reshape(-1, 3, 3)
    centre = data.geom_xpos[geoms] + np.einsum("gij,gj->gi", R, aabb[:, :3])
    local = np.einsum("gji,ngj->ngi", R, p[:, None, :] - centre[None])  # R^T (p - c), (N, G, 3)
    out = np.maximum(np.abs(local) - aabb[None, :, 3:], 0.0)
    return np.sqrt((out ** 2).sum(axis=2)).min(axis=1)


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

    def object_distance(self, model, data, points):
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, self.body)
        # the body and what hangs from it (a door's handle, say): they all move with it
        geoms = np.flatnonzero(np.isin(model.geom_bodyid, _descendants(model, bid)))
        return geom_box_distance(model, data, geoms, points)

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
class FlexBinding(PointBinding):
    """Points glued to a 2-D MuJoCo flex (a cloth): each rides on one of its triangles.

    At :meth:`bind` every point is attached to the flex triangle nearest to it
    (in 3-D, the flex as it is in ``data``): the barycentric coordinates
    ``(w0, w1, w2)`` of the closest point on that triangle, plus the rest of
    the way to the point, ``r``, in the triangle's own frame (first edge,
    in-plane perpendicular, unit normal): zero for points on the surface, e.g.
    the flex's own vertices, whose weights are one-hot; mostly along the normal
    for points just off it. Then :meth:`points` is ``w0 x0 + w1 x1 + w2 x2 +
    F r`` over the current vertex positions ``flexvert_xpos`` and the
    triangle's current frame ``F``, so a point moves, bends and turns with the
    patch of cloth it was on. Vectorised: one gather and a weighted sum per
    call (the frames only for the off-surface points).
    """

    #: offsets below this (m) count as on the surface (no frame term)
    on_surface_tol = 1e-9

    def __init__(self, flex: str):
        self.flex = flex
        self._vadr = 0
        self._vnum = 0
        self._tri = np.zeros((0, 3), dtype=np.int64)  # (N, 3) global vertex rows per point
        self._w = np.zeros((0, 3))  # (N, 3) barycentric weights
        self._r = np.zeros((0, 3))  # (N, 3) offsets from the surface, triangle frame
        self._off = np.zeros(0, dtype=np.int64)  # points with a non-zero offset

    @staticmethod
    def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Barycentric coordinates (..., 3) of the point of each triangle (a, b, c) closest to ``p``
        (all (..., 3), broadcast), after Ericson, Real-Time Collision Detection 5.1.5, region by region."""
        ab, ac, ap = b - a, c - a, p - a
        d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
        bp = p - b
        d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
        cp = p - c
        d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
        va = d3 * d6 - d5 * d4
        vb = d5 * d2 - d1 * d6
        vc = d1 * d4 - d3 * d2
        with np.errstate(divide="ignore", invalid="ignore"):
            den = va + vb + vc
            v_in, w_in = vb / den, vc / den  # face region
            t_ab = d1 / (d1 - d3)  # edge ab
            t_ac = d2 / (d2 - d6)  # edge ac
            t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))  # edge bc
        one, zero = np.ones_like(d1), np.zeros_like(d1)
        # start from the face region and overwrite by the earlier (higher-priority) regions last
        u, v, w = 1.0 - v_in - w_in, v_in, w_in
        regions = [
            ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), (zero, 1 - t_bc, t_bc)),  # edge bc
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), (1 - t_ac, zero, t_ac)),  # edge ac
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), (1 - t_ab, t_ab, zero)),  # edge ab
            ((d6 >= 0) & (d5 <= d6), (zero, zero, one)),  # vertex c
            ((d3 >= 0) & (d4 <= d3), (zero, one, zero)),  # vertex b
            ((d1 <= 0) & (d2 <= 0), (one, zero, zero)),  # vertex a
        ]
        for mask, (ru, rv, rw) in regions:
            u, v, w = np.where(mask, ru, u), np.where(mask, rv, v), np.where(mask, rw, w)
        return np.stack([u, v, w], axis=-1)

    def bind(self, model, data, points0):
        fid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_FLEX, self.flex)
        if fid < 0:
            raise ValueError(f"FlexBinding: no flex named {self.flex!r} in the model")
        if int(model.flex_dim[fid]) != 2:
            dim = int(model.flex_dim[fid])
            raise ValueError(f"FlexBinding: flex {self.flex!r} has dim {dim}, expected 2 (a surface)")
        self._vadr, self._vnum = int(model.flex_vertadr[fid]), int(model.flex_vertnum[fid])
        ea, en = int(model.flex_elemdataadr[fid]), int(model.flex_elemnum[fid])
        tris = model.flex_elem[ea:ea + 3 * en].reshape(en, 3).astype(np.int64)  # local vertex indices
        x = np.asarray(data.flexvert_xpos[self._vadr:self._vadr + self._vnum], dtype=np.float64)
        p = np.asarray(points0, dtype=np.float64)
        a, b, c = (x[tris[:, k]][None] for k in range(3))  # (1, F, 3)
        bary = self.closest_on_triangles(p[:, None], a, b, c)  # (N, F, 3)
        q = bary[..., 0:1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
        best = np.linalg.norm(p[:, None] - q, axis=2).argmin(axis=1)  # nearest triangle per point
        rows = np.arange(len(p))
        self._tri = tris[best]
        self._w = bary[rows, best]
        # the residual in the triangle's frame: F^T (p - q)
        self._r = np.einsum("nij,ni->nj", self._frames(x, self._tri), p - q[rows, best])
        self._off = np.flatnonzero(np.linalg.norm(self._r, axis=1) > self.on_surface_tol)

    def object_distance(self, model, data, points):
        fid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_FLEX, self.flex)
        vadr, vnum = int(model.flex_vertadr[fid]), int(model.flex_vertnum[fid])
        ea, en = int(model.flex_elemdataadr[fid]), int(model.flex_elemnum[fid])
        tris = model.flex_elem[ea:ea + 3 * en].reshape(en, 3).astype(np.int64)
        x = np.asarray(data.flexvert_xpos[vadr:vadr + vnum], dtype=np.float64)
        p = np.asarray(points, dtype=np.float64)
        a, b, c = (x[tris[:, k]][None] for k in range(3))
        bary = self.closest_on_triangles(p[:, None], a, b, c)
        q = bary[..., 0:1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
        return np.linalg.norm(p[:, None] - q, axis=2).min(axis=1)

    @staticmethod
    def _frames(x: np.ndarray, tri: np.ndarray) -> np.ndarray:
        """(M, 3, 3) orthonormal frames of triangles ``tri``, columns: first edge, in-plane
        perpendicular, unit normal."""
        e1 = x[tri[:, 1]] - x[tri[:, 0]]
        n = np.cross(e1, x[tri[:, 2]] - x[tri[:, 0]])
        e1 = e1 / np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-12)
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return np.stack([e1, np.cross(n, e1), n], axis=2)

    def points(self, data):
        x = data.flexvert_xpos[self._vadr:self._vadr + self._vnum]
        t, w = self._tri, self._w
        out = x[t[:, 0]] * w[:, 0:1]
        out += x[t[:, 1]] * w[:, 1:2]
        out += x[t[:, 2]] * w[:, 2:3]
        if self._off.size:
            k = self._off
            out[k] += np.einsum("nij,nj->ni", self._frames(x, t[k]), self._r[k])
        return out

    @property
    def triangles(self) -> np.ndarray:
        """(N, 3) flex-local vertex indices of each point's triangle."""
        return self._tri

    @property
    def weights(self) -> np.ndarray:
        """(N, 3) barycentric weights of each point on its triangle."""
        return self._w

    @property
    def offsets(self) -> np.ndarray:
        """(N, 3) offsets (m) of each point from its surface point, in its triangle's frame
        (first edge, in-plane perpendicular, normal)."""
        return self._r



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

    def object_distance(self, model, data, points):
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in self.bodies]
        geoms = np.flatnonzero(np.isin(model.geom_bodyid, ids))
        return geom_box_distance(model, data, geoms, points)

    def points(self, data):
        return data.xpos[self._ids]  # fancy indexing: a new (M, 3) float64 array

    @property
    def num_pieces(self) -> int:
        return len(self.bodies)
