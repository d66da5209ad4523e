"""Fill a deformable object's lost tracks from the motion of their neighbours on the object.

A point tracker loses points on a cloth (or any bending object) wherever it is hidden: under the
hand that carries it, under a fold. The lifting then holds a lost point at its last position (or
interpolates linearly in time), which for a moving object is wrong from the moment it was lost:
on the rendered cloth demonstration the point nearest the grasp is lost at frame 37 of 113 and
ends 20 cm from where the cloth went. The object's surface moves smoothly, though: a point moves
like the part of the object around it, and parts of the object around it are usually still seen.

:func:`deformable_fill` estimates every unmeasured sample (tracker lost it, no valid depth, a depth
outlier) from its neighbours, as-rigid-as-possible: a point's neighbours are the points nearest to
it in the object's *reference geometry* (each point's position at its first measured frame: for the
query points that is frame 0, the undeformed object), so points across a fold, close in space but
far apart on the object, are not neighbours. Frame by frame (forward in time from a point's last
measured sample, backward before its first one), the ``neighbours`` nearest reference neighbours
measured in both frames give a locally weighted rigid motion (weighted Kabsch, Gaussian weights in
reference distance, width the k-th neighbour's distance), and the point's previous estimate moves
with it. With 1-2 such neighbours only their mean displacement is used; with none the point keeps
its previous estimate. Chaining frame to frame lets the local rotation follow a bend as it grows
(a frame-0-to-frame-t fit would need the whole neighbourhood to be one rigid piece).

A cloth does not stretch: a measured point whose distances to its measured reference neighbours
change by more than ``stretch`` (median over them; 5 mm) has slid off the cloth (a track caught by
the hand, or dragged along the background) and is marked lost from that frame on (and back to the
last frame it was within half of that), then filled like the others (as the rigid model rejects
points off the fitted pose). Distances see a slide along the surface at once, a slide across it
(along the normal) only to second order. Checked among the points measured at frame 0.

Visibility keeps its meaning: ``visible`` stays "measured in this frame" (the tracker saw the point,
it has valid depth, it passed the stretch check), and a filled sample is not visible, as with the
rigid motion model. The reward weighs a frame's points by their visibility, so filled positions, a model's estimate,
never count as measurements there; they are what the env uses where it needs a position for every
point (the target positions a controller or a planner follows, the keypoints of the observation).
The statistics (the flow's ``extra.extraction.motion``) say how many samples were filled from
neighbours, how many had none and how many were rejected by the stretch check.
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np

from .rigid import rotations_from_covariance


def weighted_kabsch(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Batched weighted rigid fits: rotations R (B, 3, 3) and translations t (B, 3) minimising
    ``sum_k w[b, k] |R[b] @ src[b, k] + t[b] - dst[b, k]|^2``; ``src``, ``dst`` (B, K, 3), ``w`` (B, K) >= 0."""
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    mu_s = np.einsum("bk,bki->bi", w, src)
    mu_d = np.einsum("bk,bki->bi", w, dst)
    R = rotations_from_covariance(np.einsum("bk,bki,bkj->bij", w, src - mu_s[:, None], dst - mu_d[:, None]))
    return R, mu_d - np.einsum("bij,bj->bi", R, mu_s)


def _step(est_prev: np.ndarray, P_prev: np.ndarray, P_cur: np.ndarray, both: np.ndarray, targets: np.ndarray,
          order: np.ndarray, dist: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Positions at the current frame of the points ``targets`` (indices) from their previous estimates
    ``est_prev[targets]``, moved like their ``k`` nearest reference neighbours measured in both frames
    (``both`` (N,) bool); and how many neighbours each had (0: left where it was)."""
    nb_ok = both[order[targets]]  # (U, N): is the r-th nearest reference neighbour measured in both frames
    rank = np.cumsum(nb_ok, axis=1)
    count = np.minimum(rank[:, -1], k)
    sel = nb_ok & (rank <= k)
    out = est_prev[targets].copy()
    has = count > 0
    if not has.any():
        return out, count
    # gather the first k measured neighbours of each target (padded with weight 0)
    cols = np.argsort(~sel, axis=1, kind="stable")[:, :k]  # their positions in the sorted lists
    idx = np.take_along_axis(order[targets], cols, axis=1)  # (U, k) point indices
    valid = np.take_along_axis(sel, cols, axis=1)
    d = np.take_along_axis(dist[targets], cols, axis=1)
    sigma = np.maximum(np.where(valid, d, 0.0).max(axis=1, keepdims=True), 1e-6)
    w = np.where(valid, np.exp(-0.5 * (d / sigma) ** 2), 0.0)
    src, dst = P_prev[idx], P_cur[idx]
    rot = count >= 3
    if rot.any():
        R, t = weighted_kabsch(src[rot], dst[rot], w[rot])
        out[rot] = np.einsum("bij,bj->bi", R, est_prev[targets[rot]]) + t
    tr = has & ~rot  # 1-2 neighbours: their weighted mean displacement
    if tr.any():
        wn = w[tr] / w[tr].sum(axis=1, keepdims=True)
        out[tr] = est_prev[targets[tr]] + np.einsum("bk,bki->bi", wn, dst[tr] - src[tr])
    return out, count


def deformable_fill(points: np.ndarray, visible: np.ndarray, neighbours: int = 8, stretch: Optional[float] = 0.005
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(points, visible, filled (T, N) bool, statistics) of lifted tracks on a deformable object; see the
    module docstring.

    ``points`` (T, N, 3): positions (only the ``visible`` (T, N) samples are read as measurements);
    ``neighbours``: how many measured reference neighbours move a lost point; ``stretch`` (metres, or
    ``None``/0: off): a measured point whose distances to its (up to ``neighbours``, at least 3) measured
    reference neighbours changed by more than this (median) is taken to have slid off the object (onto
    the hand, the background) and is not visible from then on, and since the last frame its change was
    within half of ``stretch`` (checked among the points measured at
    frame 0, whose reference distances are frame 0's). ``visible`` is returned with those
    samples cleared, else unchanged; ``filled`` marks the samples whose positions come from their
    neighbours. Points never measured keep their (NaN) positions.
    """
    P = np.asarray(points, dtype=np.float64)
    V = np.asarray(visible, dtype=bool)
    T, N = V.shape
    if P.shape != (T, N, 3):
        raise ValueError(f"deformable fill: points {P.shape} do not match visibility {V.shape}")
    k = int(neighbours)
    if k < 1:
        raise ValueError(f"deformable fill: neighbours must be >= 1, got {neighbours}")
    seen = V.any(axis=0)
    first = np.where(seen, V.argmax(axis=0), T)
    ref = np.full((N, 3), np.inf)
    ref[seen] = P[first[seen], np.flatnonzero(seen)]
    # every point's other points sorted by reference distance (never-measured ones last, never used)
    diff = ref[:, None] - ref[None]
    with np.errstate(invalid="ignore"):
        dist = np.sqrt((diff ** 2).sum(axis=-1))
    dist[~np.isfinite(dist)] = np.inf
    np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1, kind="stable")
    dist = np.take_along_axis(dist, order, axis=1)

    V = V.copy()
    if stretch:  # a measured point whose distances to its neighbours changed: slid off the object
        gone = np.zeros(N, dtype=bool)
        last_ok = np.zeros(N, dtype=int)
        base = V[0].copy()  # checked among the points measured at frame 0 (their reference distances are frame 0's)
        for t in range(1, T):
            V[t] &= ~gone
            meas = V[t] & base
            pts = np.flatnonzero(meas)
            if pts.size < 2:
                continue
            nb_ok = meas[order[pts]]
            rank = np.cumsum(nb_ok, axis=1)
            sel = nb_ok & (rank <= k)
            cols = np.argsort(~sel, axis=1, kind="stable")[:, :k]
            idx = np.take_along_axis(order[pts], cols, axis=1)
            valid = np.take_along_axis(sel, cols, axis=1)
            d_ref = np.take_along_axis(dist[pts], cols, axis=1)
            d_now = np.linalg.norm(P[t, idx] - P[t, pts][:, None], axis=-1)
            change = np.where(valid, np.abs(d_now - d_ref), np.nan)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(change, axis=1)
            checked = valid.sum(axis=1) >= 3
            last_ok[pts[checked & (med <= 0.5 * stretch)]] = t
            bad = pts[checked & (med > stretch)]
            gone[bad] = True
            for i in bad:  # lost since it last fitted well (within half the threshold): it was sliding by then
                V[last_ok[i] + 1:t + 1, i] = False
        rejected_frac = float((np.asarray(visible, dtype=bool) & ~V).mean())
    out = P.copy()
    filled = np.zeros((T, N), dtype=bool)
    alone = np.zeros((T, N), dtype=bool)  # filled samples with no neighbour measured in both frames
    for t in range(1, T):  # after a point's first measurement: forwards from its last estimate
        targets = np.flatnonzero(~V[t] & (t > first))
        if targets.size:
            out[t, targets], count = _step(out[t - 1], P[t - 1], P[t], V[t - 1] & V[t], targets, order, dist, k)
            filled[t, targets] = True
            alone[t, targets] = count == 0
    for t in range(T - 2, -1, -1):  # before a point's first measurement: backwards from it
        targets = np.flatnonzero(seen & (t < first))
        if targets.size:
            out[t, targets], count = _step(out[t + 1], P[t + 1], P[t], V[t + 1] & V[t], targets, order, dist, k)
            filled[t, targets] = True
            alone[t, targets] = count == 0
    stats = {
        "neighbours": k,
        "filled": float(filled.mean()),
        "filled_without_neighbours": float(alone.mean()),
        "visible": float(V.mean()),
    }
    if stretch:
        stats.update(stretch_m=float(stretch), rejected=rejected_frac)
    return out, V, filled, stats
