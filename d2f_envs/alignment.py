"""The flow reward's time alignment for many envs at once, skipping frames that cannot be nearest.

:class:`~d2f_envs.reward.FlowTrackingReward.measure` finds ``t*``, the frame (from the previous ``t*`` on)
whose visible points are nearest to the object's points on average. The batched vector env
(d2f_envs/vector.py) computes this for all sub-envs; computing every frame's error for every env is
most of its reward time. A lower bound prunes it: the mean distance over a frame's visible points is
at least the distance between the two point sets' centroids (under the frame's visibility weights),

    sum_i w_i |p_i - q_i| / n  >=  | sum_i w_i (p_i - q_i) | / n  (triangle inequality),

so a frame whose centroid distance exceeds the exact error of some frame cannot be the argmin. The
exact errors of the remaining frames are computed with :meth:`FlowTrackingReward._errors_from`'s
operations, element by element, so ``t*`` and every reported error are the reward's bit for bit: a
pruned frame's error is larger than the minimum by at least ``MARGIN`` (far above rounding), so it can
be neither the minimum nor tie with it.
"""
from __future__ import annotations

import numpy as np

#: metres: a frame is pruned only when its lower bound exceeds the best exact error by more than this
#: (floating-point rounding of either is ~1e-15 m for points within metres of the origin)
MARGIN = 1e-9


def frame_centroids(target: np.ndarray, vis: np.ndarray, nvis: np.ndarray, all_visible: bool) -> np.ndarray:
    """(T, 3): each frame's centroid of its visible points (``target`` (T, N, 3); ``vis`` (T, N) weights)."""
    if all_visible:
        return target.sum(axis=1) / target.shape[1]
    return (vis[:, :, None] * target).sum(axis=1) / nvis[:, None]


def pair_errors(planes, pts_t, e, t, vis, nvis, all_visible) -> np.ndarray:
    """Mean visible-point distance of env ``e[i]``'s points to its frame ``t[i]``, (P,).

    ``planes`` (E, T, 3, N): each env's target frames as coordinate planes; ``pts_t`` (E, 3, N) the points.
    FlowTrackingReward._errors_from's operations in its order: (q - p)^2 per coordinate, x + y, + z,
    sqrt, times the visibility weights, summed over the points (numpy's pairwise sum of a row of N),
    divided by the visible count.
    """
    b = planes[e, t]  # (P, 3, N), a copy
    np.subtract(b, pts_t[e], out=b)
    np.multiply(b, b, out=b)
    d = np.add(b[:, 0], b[:, 1])
    np.add(d, b[:, 2], out=d)
    np.sqrt(d, out=d)
    if not all_visible:
        np.multiply(d, vis[t], out=d)
    return np.divide(d.sum(axis=1), nvis[t])


def nearest_frames(planes, cents, pts, pts_t, t_old, vis, nvis, all_visible) -> np.ndarray:
    """Each env's ``t*``: the first frame >= ``t_old`` with the least error (FlowTrackingReward.measure's
    argmin). ``cents`` (E, T, 3): frame_centroids of each env's target; ``pts`` (E, N, 3)."""
    nh, T = len(pts), planes.shape[1]
    f0 = int(t_old.min())
    if all_visible:
        cp = (pts.sum(axis=1) / pts.shape[1])[:, None, :]  # the same centroid for every frame
    else:
        cp = np.matmul(vis[f0:], pts) / nvis[f0:, None]  # (E, T', 3): per frame's weights
    diff = cents[:, f0:] - cp
    lb = np.sqrt((diff * diff).sum(axis=2))  # (E, T')
    lb[np.arange(f0, T)[None, :] < t_old[:, None]] = np.inf  # never search back
    rows = np.arange(nh)
    j0 = lb.argmin(axis=1)  # the likeliest frame: its exact error bounds the minimum from above
    best = pair_errors(planes, pts_t, rows, j0 + f0, vis, nvis, all_visible)
    cand = lb <= (best + MARGIN)[:, None]
    cand[rows, j0] = False
    e, j = np.nonzero(cand)
    errs = np.full(lb.shape, np.inf)
    errs[rows, j0] = best
    errs[e, j] = pair_errors(planes, pts_t, e, j + f0, vis, nvis, all_visible)
    return errs.argmin(axis=1) + f0
