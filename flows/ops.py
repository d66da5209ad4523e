"""Operations on object flows: resampling, point subsampling, rigid transforms, slicing.

Also the two geometric primitives the rest of the project shares:
:func:`farthest_point_sampling` and :func:`fit_rigid_transform` (Kabsch).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .format import FlowFormatError, ObjectFlow


def farthest_point_sampling(points: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` distinct points of ``points`` (M, D) spread out by farthest-point sampling.

    The ``seed`` picks a random point; sampling starts at the point farthest
    from it (an extreme point of the set, so e.g. both ends of a line are
    always among the first two picks), then repeatedly adds the point farthest
    from those already chosen. Deterministic for a given ``seed``. Returns all
    indices (in order) when ``k >= M``. Never returns an index twice, even for
    duplicated points.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"farthest_point_sampling: expected points of shape (M, D), got {points.shape}")
    m = points.shape[0]
    if k <= 0:
        raise ValueError(f"farthest_point_sampling: k must be >= 1, got {k}")
    if k >= m:
        return np.arange(m)
    return _fps_continue(points, np.empty(0, dtype=np.int64), int(k), seed)


def _fps_continue(points: np.ndarray, chosen: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Extend the index set ``chosen`` (possibly empty) by farthest-point sampling to ``k`` indices."""
    m = points.shape[0]
    out = np.empty(k, dtype=np.int64)
    out[: len(chosen)] = chosen
    j = len(chosen)
    if j == 0:
        rng = np.random.default_rng(seed)
        start = points[rng.integers(m)]
        out[0] = int(np.argmax(np.linalg.norm(points - start, axis=1)))
        j = 1
    dist = np.full(m, np.inf)
    for i in out[:j]:
        dist = np.minimum(dist, np.linalg.norm(points - points[i], axis=1))
    dist[out[:j]] = -1.0  # never pick a chosen index again (duplicate points have distance 0)
    for j in range(j, k):
        out[j] = int(np.argmax(dist))
        dist = np.minimum(dist, np.linalg.norm(points - points[out[j]], axis=1))
        dist[out[: j + 1]] = -1.0
    return out


def fit_rigid_transform(src: np.ndarray, dst: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Best-fit rigid 4x4 transform ``X`` with ``X @ src ~= dst`` (Kabsch, no scaling).

    ``src``, ``dst``: (N, 3) corresponding points; ``weights`` (N,) optional
    (e.g. visibility). Degenerate sets (a single point, collinear points)
    still give a proper rotation.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape or len(src) == 0:
        raise ValueError(f"fit_rigid_transform: expected src and dst of the same shape (N, 3), got {src.shape} and {dst.shape}")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("fit_rigid_transform: points contain NaN or inf")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(src),):
        raise ValueError(f"fit_rigid_transform: expected weights of shape ({len(src)},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("fit_rigid_transform: weights must be finite and >= 0")
    if w.sum() <= 0:
        raise ValueError("fit_rigid_transform: no point has positive weight")
    w = w / w.sum()
    mu_s = w @ src
    mu_d = w @ dst
    H = (src - mu_s).T @ ((dst - mu_d) * w[:, None])
    U, _, Vt = np.linalg.svd(H)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
    R = Vt.T @ D @ U.T
    X = np.eye(4)
    X[:3, :3] = R
    X[:3, 3] = mu_d - R @ mu_s
    return X


def resample(flow: ObjectFlow, fps: float) -> ObjectFlow:
    """Resample ``flow`` to ``fps`` by linear interpolation in time.

    A resampled point is visible when both frames it is interpolated from see
    it (or the nearest frame, for an exact hit); frames that would end up with
    no visible point keep the nearest source frame's visibility. The last
    source frame (the flow's goal) is always kept: when the duration is not a
    whole number of new periods, the final interval is shorter.
    """
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise FlowFormatError(flow.origin, "fps", f"resample: expected a target fps > 0, got {fps!r}")
    T = flow.num_frames
    n_new = int(np.ceil(flow.duration * fps - 1e-6)) + 1
    t_new = np.minimum(np.arange(n_new) * (flow.fps / fps), T - 1)  # in source frame units
    # snap times that hit a source frame up to rounding error, so they count as exact hits
    snapped = np.rint(t_new)
    t_new = np.where(np.abs(t_new - snapped) < 1e-6, snapped, t_new)
    lo = np.clip(np.floor(t_new).astype(int), 0, T - 1)
    hi = np.clip(lo + 1, 0, T - 1)
    a = (t_new - lo)[:, None, None]
    pts = (1.0 - a) * flow.points[lo] + a * flow.points[hi]
    exact = a[:, 0, 0] == 0.0
    vis = np.where(exact[:, None], flow.visible[lo], flow.visible[lo] & flow.visible[hi])
    nearest = np.clip(np.rint(t_new).astype(int), 0, T - 1)
    empty = ~vis.any(axis=1)
    vis[empty] = flow.visible[nearest[empty]]
    return flow.replace(points=pts.astype(np.float32), visible=vis, fps=fps)


def subsample_points(flow: ObjectFlow, num_points: int, seed: int = 0) -> ObjectFlow:
    """Keep ``num_points`` points, spread by farthest-point sampling on frame 0.

    Points visible in frame 0 are preferred: when at least ``num_points`` are
    visible, only those are sampled; otherwise all of them are kept and the
    rest is filled by farthest-point sampling among the others. The order
    follows the sampling.
    """
    if num_points <= 0:
        raise ValueError(f"subsample_points: num_points must be >= 1, got {num_points}")
    if num_points >= flow.num_points:
        return flow
    p0 = flow.points[0].astype(np.float64)
    vis0 = np.flatnonzero(flow.visible[0])
    if vis0.size >= num_points:
        idx = vis0[farthest_point_sampling(p0[vis0], num_points, seed=seed)]
    else:
        idx = _fps_continue(p0, vis0, num_points, seed)
    idx = _cover_every_frame(flow.visible, np.asarray(idx))
    vis = flow.visible[:, idx]
    if not vis.any(axis=1).all():
        raise FlowFormatError(
            flow.origin, "visible",
            f"subsample to {num_points} points leaves frames with no visible point; keep more points",
        )
    return flow.replace(points=flow.points[:, idx], visible=vis)


def _cover_every_frame(visible: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``idx`` with points swapped so that every frame keeps a visible point, where the flow allows.

    Farthest-point sampling on frame 0 ignores later frames; a tracker that loses most points
    (small pieces, occlusion) can leave frames where none of the chosen points is seen, and a
    flow frame with no visible point is invalid. Greedy repair: while a frame is uncovered, bring
    in the unchosen point seen in most uncovered frames, in place of the latest-sampled chosen
    point whose removal uncovers no frame.
    """
    idx = idx.copy()
    for _ in range(idx.size):
        counts = visible[:, idx].sum(axis=1)
        uncovered = counts == 0
        if not uncovered.any():
            break
        rest = np.setdiff1d(np.arange(visible.shape[1]), idx)
        if rest.size == 0:
            break
        gain = visible[uncovered][:, rest].sum(axis=0)
        if gain.max() == 0:
            break  # no point is ever seen in those frames: the flow itself is invalid there
        new = rest[int(np.argmax(gain))]
        # a chosen point is removable when every frame it is seen in has another chosen point seen
        removable = [j for j in range(idx.size - 1, -1, -1) if np.all(counts[visible[:, idx[j]]] >= 2)]
        if not removable:
            break
        idx[removable[0]] = new
    return idx


def rigid_transform(flow: ObjectFlow, transform: np.ndarray) -> ObjectFlow:
    """Apply the rigid 4x4 ``transform`` to every point of ``flow``.

    Camera extrinsics stored in the flow (camera-to-world) are updated to
    stay consistent with the new world frame.
    """
    X = np.asarray(transform, dtype=np.float64)
    if X.shape != (4, 4):
        raise ValueError(f"rigid_transform: expected a 4x4 matrix, got shape {X.shape}")
    R = X[:3, :3]
    if not np.all(np.isfinite(X)):
        raise ValueError("rigid_transform: the matrix contains NaN or inf")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError("rigid_transform: the 3x3 block is not a rotation matrix")
    if not np.allclose(X[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise ValueError(f"rigid_transform: the last row must be [0, 0, 0, 1], got {X[3].tolist()}")
    pts = flow.points.astype(np.float64) @ R.T + X[:3, 3]
    ext = None if flow.extrinsics is None else X @ flow.extrinsics
    return flow.replace(points=pts.astype(np.float32), extrinsics=ext)


def slice_time(flow: ObjectFlow, start: float = 0.0, stop: Optional[float] = None) -> ObjectFlow:
    """Frames whose time (seconds from frame 0) lies in ``[start, stop]``."""
    t = np.arange(flow.num_frames) / flow.fps
    stop = t[-1] if stop is None else stop
    keep = (t >= start - 1e-9) & (t <= stop + 1e-9)
    if not keep.any():
        raise FlowFormatError(flow.origin, "points", f"slice [{start}, {stop}] s selects no frame of a {t[-1]:.3f} s flow")
    return flow.replace(points=flow.points[keep], visible=flow.visible[keep])
