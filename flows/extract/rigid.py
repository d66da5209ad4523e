"""Rigid-motion check of lifted tracks: drop the points that do not move with the object.

A point tracker's failures on a rigid object (a drawer, a door leaf, a T-block, a loaf) are points
that slide onto the background or onto an occluder (a hand) and are then followed there: each
frame-to-frame step looks fine, so a forward-backward check does not catch them, but the point no
longer moves with the object. When the object is known to be rigid (for articulated objects: the
mask covers one moving part), its motion is one pose per frame, and such points stand out.

:func:`rigid_filter` estimates, for every frame ``t``, the pose ``X_t`` (4x4) that carries each
point's reference position (its position at frame 0, or for a point first seen later, its
position then mapped back with that frame's pose) to its measured position at ``t``, with RANSAC
over 3-point Kabsch fits (the previous frame's pose is always a candidate) and a least-squares
refit on the inliers. A measured point farther than ``threshold`` metres from ``X_t`` applied to
its reference is marked invisible at ``t``: it is not measured there as far as the flow is
concerned. Every invisible sample (lost by the tracker, no depth, or rejected here) is then set
to ``X_t`` applied to its reference, a better guess than the lifting's linear interpolation for a
rigid object; the flow's visibility still says it was not measured.

Frames with fewer than 3 measured points that have a reference cannot be checked: their
visibility is left as it is and their pose is the previous frame's (counted in the statistics).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def rotations_from_covariance(cov: np.ndarray) -> np.ndarray:
    """Kabsch's rotations R (B, 3, 3) maximising ``trace(R @ cov)`` for cross-covariances ``cov`` (B, 3, 3)."""
    U, _, Vt = np.linalg.svd(cov)
    V = np.swapaxes(Vt, 1, 2)
    Ut = np.swapaxes(U, 1, 2)
    d = np.sign(np.linalg.det(V @ Ut))
    d[d == 0] = 1.0
    D = np.tile(np.eye(3), (len(cov), 1, 1))
    D[:, 2, 2] = d  # no reflections: a proper rotation even for collinear or mirrored samples
    return V @ D @ Ut


def kabsch_batch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rigid 4x4 transforms ``X[h]`` with ``X[h] @ src[h] ~= dst[h]``; ``src``, ``dst``: (H, K, 3)."""
    mu_s = src.mean(axis=1, keepdims=True)
    mu_d = dst.mean(axis=1, keepdims=True)
    R = rotations_from_covariance(np.einsum("hki,hkj->hij", src - mu_s, dst - mu_d))
    X = np.tile(np.eye(4), (len(src), 1, 1))
    X[:, :3, :3] = R
    X[:, :3, 3] = mu_d[:, 0] - np.einsum("hij,hj->hi", R, mu_s[:, 0])
    return X


def _apply(X: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ X[:3, :3].T + X[:3, 3]


def _fit_frame(ref: np.ndarray, cur: np.ndarray, prior: np.ndarray, threshold: float, iterations: int,
               rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """(pose, inlier mask) of one frame: RANSAC over 3-point fits plus ``prior``, then refits on the inliers."""
    n = len(ref)
    hyps = [prior[None]]
    if n >= 3 and iterations > 0:
        idx = rng.integers(0, n, size=(iterations, 3))
        # 3 distinct points per sample: one with a repeated point is dropped, not redrawn
        idx = idx[(idx[:, 0] != idx[:, 1]) & (idx[:, 0] != idx[:, 2]) & (idx[:, 1] != idx[:, 2])]
        if len(idx):
            hyps.append(kabsch_batch(ref[idx], cur[idx]))
    X = np.concatenate(hyps)
    pred = np.matmul(ref[None], np.swapaxes(X[:, :3, :3], 1, 2)) + X[:, None, :3, 3]
    count = (((pred - cur[None]) ** 2).sum(axis=-1) <= threshold ** 2).sum(axis=1)
    best = X[int(np.argmax(count))]
    inl = np.linalg.norm(_apply(best, ref) - cur, axis=1) <= threshold
    for _ in range(3):  # least-squares refit on the inliers, until the inlier set settles
        if inl.sum() < 3:
            break
        best = kabsch_batch(ref[inl][None], cur[inl][None])[0]
        new = np.linalg.norm(_apply(best, ref) - cur, axis=1) <= threshold
        if np.array_equal(new, inl):
            break
        inl = new
    return best, inl


def rigid_filter(points: np.ndarray, visible: np.ndarray, threshold: float = 0.01, iterations: int = 100,
                 seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(points, visible, poses (T, 4, 4), statistics) of lifted tracks under a rigid motion; see the module docstring.

    ``points`` (T, N, 3): positions (only the ``visible`` (T, N) samples are read as measurements);
    ``threshold``: metres from the fitted pose beyond which a measured point is rejected;
    ``iterations``: random 3-point hypotheses per frame; ``seed``: their generator's seed.
    """
    P = np.asarray(points, dtype=np.float64)
    V = np.asarray(visible, dtype=bool)
    T, N = V.shape
    if P.shape != (T, N, 3):
        raise ValueError(f"rigid filter: points {P.shape} do not match visibility {V.shape}")
    if not threshold > 0:
        raise ValueError(f"rigid filter: threshold must be > 0 metres, got {threshold}")
    rng = np.random.default_rng(seed)
    ref = np.full((N, 3), np.nan)
    known = V[0].copy()
    ref[known] = P[0, known]
    poses = np.tile(np.eye(4), (T, 1, 1))
    out_vis = V.copy()
    unchecked = 0
    for t in range(1, T):
        cand = np.flatnonzero(V[t] & known)
        if cand.size < 3:
            poses[t] = poses[t - 1]
            unchecked += 1
        else:
            poses[t], inl = _fit_frame(ref[cand], P[t, cand], poses[t - 1], threshold, iterations, rng)
            out_vis[t, cand[~inl]] = False
        new = V[t] & ~known  # first seen now: its reference is this frame's position mapped back
        if new.any():
            Xi = np.linalg.inv(poses[t])
            ref[new] = _apply(Xi, P[t, new])
            known |= new
    filled = P.copy()
    for t in range(T):
        fill = ~out_vis[t] & known
        filled[t, fill] = _apply(poses[t], ref[fill])
    stats = {
        "threshold_m": float(threshold),
        "rejected": float((V & ~out_vis).mean()),
        "unchecked_frames": int(unchecked),
        "visible": float(out_vis.mean()),
    }
    return filled, out_vis, poses, stats


#: the pipeline's motion models (``extract_flow(motion=...)``, ``python -m flows extract --motion``)
MOTION_MODELS = ("none", "rigid", "deformable")


def check_motion(motion: Optional[str]) -> str:
    """``motion`` as the pipeline's name for it: ``"none"`` (no motion model), ``"rigid"`` or ``"deformable"``
    (:mod:`flows.extract.deformable`)."""
    name = "none" if motion in (None, "", "none") else str(motion)
    if name not in MOTION_MODELS:
        raise ValueError(f"unknown motion model {motion!r}; use one of {', '.join(repr(m) for m in MOTION_MODELS)}")
    return name
