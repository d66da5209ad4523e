"""Lift 2D tracks to 3D world points with per-frame depth and the camera.

For each track point ``(x, y)`` at frame ``t``:

1. depth ``z`` = bilinear sample of ``depth[t]`` at ``(x, y)`` (OpenCV pixel
   centres); invalid when any of the 4 neighbouring pixels is invalid (NaN/0),
   when the point is outside the image, or when the 4 neighbours straddle a
   depth edge (spread > ``edge_rel`` * depth);
2. ``p_cam = z * K^-1 [x, y, 1]``, ``p_world = T_world_camera @ p_cam``;
3. visible = tracker visible AND valid depth AND not an outlier. Two checks:
   a depth that differs from the median of the point's valid depths in a
   window of ``outlier_window`` frames around ``t`` by more than
   ``outlier_abs + outlier_rel * median`` (a spike) is invisible at ``t``;
   and a point whose (spike-free) depth jumps between consecutive valid
   samples by more than ``jump_abs + jump_rel * depth`` (a track that slid
   onto another surface, e.g. the background) is lost from that frame on,
   like a lost 2D track (``jump_rel=None`` turns this off).

Invisible samples get positions interpolated linearly in time between the
point's visible frames (held constant before the first and after the last),
so the flow has finite points everywhere. Optional ``smooth``: a centred
moving average over that many frames (odd, >= 3) of the filled trajectories.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from .camera import Camera


def sample_depth(depth: np.ndarray, xy: np.ndarray, edge_rel: float = 0.05) -> np.ndarray:
    """Bilinear depth at pixels ``xy`` (N, 2) of one (H, W) depth map; NaN where invalid."""
    depth = np.asarray(depth, dtype=np.float64)
    H, W = depth.shape
    x = np.asarray(xy[:, 0], dtype=np.float64)
    y = np.asarray(xy[:, 1], dtype=np.float64)
    inside = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    xs = np.where(inside, x, 0.0)
    ys = np.where(inside, y, 0.0)
    x0 = np.clip(np.floor(xs).astype(int), 0, W - 1)
    y0 = np.clip(np.floor(ys).astype(int), 0, H - 1)
    x1 = np.clip(x0 + 1, 0, W - 1)
    y1 = np.clip(y0 + 1, 0, H - 1)
    ax = xs - x0
    ay = ys - y0
    d00, d01, d10, d11 = depth[y0, x0], depth[y0, x1], depth[y1, x0], depth[y1, x1]
    nb = np.stack([d00, d01, d10, d11])
    with np.errstate(invalid="ignore"):
        ok = inside & np.all(np.isfinite(nb) & (nb > 0), axis=0)
        z = (1 - ay) * ((1 - ax) * d00 + ax * d01) + ay * ((1 - ax) * d10 + ax * d11)
        if edge_rel is not None and edge_rel > 0:
            ok &= (nb.max(axis=0) - nb.min(axis=0)) <= edge_rel * nb.min(axis=0)
    return np.where(ok, z, np.nan)


def temporal_outliers(z: np.ndarray, window: int = 5, rel: float = 0.1, abs_: float = 0.02) -> np.ndarray:
    """(T, N) bool: depths that jump from the median of the point's valid depths within ``window`` frames."""
    z = np.asarray(z, dtype=np.float64)
    T, N = z.shape
    if window < 3 or T < 3:
        return np.zeros((T, N), dtype=bool)
    k = window // 2
    pad = np.concatenate([np.full((k, N), np.nan), z, np.full((k, N), np.nan)])
    stack = np.stack([pad[i:i + T] for i in range(2 * k + 1)], axis=1)  # (T, window, N)
    count = np.isfinite(stack).sum(axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(stack, axis=1)
    out = np.isfinite(z) & (count >= 3) & (np.abs(z - med) > abs_ + rel * np.abs(med))
    return out


def depth_jumps(z: np.ndarray, rel: float = 0.1, abs_: float = 0.03) -> np.ndarray:
    """(T, N) bool: True from the first jump of a point's depth between consecutive valid samples on."""
    z = np.asarray(z, dtype=np.float64)
    T, N = z.shape
    lost = np.zeros((T, N), dtype=bool)
    last = np.full(N, np.nan)
    gone = np.zeros(N, dtype=bool)
    for t in range(T):
        ok = np.isfinite(z[t])
        with np.errstate(invalid="ignore"):
            jump = ok & np.isfinite(last) & (np.abs(z[t] - last) > abs_ + rel * np.abs(last))
        gone |= jump
        lost[t] = gone
        last = np.where(ok & ~gone, z[t], last)
    return lost


def fill_invisible(points: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Linear-in-time interpolation of invisible samples (held at the ends); points never visible stay NaN."""
    P = np.array(points, dtype=np.float64)
    T, N = visible.shape
    t = np.arange(T)
    for i in range(N):
        v = visible[:, i]
        if v.all() or not v.any():
            if not v.any():
                P[:, i] = np.nan
            continue
        for c in range(3):
            P[:, i, c] = np.interp(t, t[v], P[v, i, c])
    return P


def smooth_trajectories(points: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` frames (edges padded with the end values)."""
    if window is None or window < 2:
        return points
    window = int(window) | 1  # odd
    k = window // 2
    T = points.shape[0]
    pad = np.concatenate([np.repeat(points[:1], k, axis=0), points, np.repeat(points[-1:], k, axis=0)])
    c = np.cumsum(np.concatenate([np.zeros_like(pad[:1]), pad]), axis=0)
    return (c[window:window + T] - c[:T]) / window


def lift_tracks(tracks: np.ndarray, visible: np.ndarray, depth: np.ndarray, camera: Camera, *,
                edge_rel: float = 0.05, outlier_window: int = 5, outlier_rel: float = 0.1,
                outlier_abs: float = 0.02, jump_rel: Optional[float] = 0.1, jump_abs: float = 0.03,
                smooth: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """3D world points (T, N, 3), visibility (T, N) and statistics; see the module docstring.

    Points that are never visible keep NaN positions (the caller drops them).
    """
    tracks = np.asarray(tracks, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    depth = np.asarray(depth)
    T, N = visible.shape
    if tracks.shape != (T, N, 2):
        raise ValueError(f"lift: tracks {tracks.shape} do not match visibility {visible.shape}")
    if depth.shape[0] != T:
        raise ValueError(f"lift: depth has {depth.shape[0]} frames, tracks {T}")
    z = np.stack([sample_depth(depth[t], tracks[t], edge_rel) for t in range(T)])
    z[~visible] = np.nan
    valid_depth = np.isfinite(z)
    outlier = temporal_outliers(z, outlier_window, outlier_rel, outlier_abs)
    vis = visible & valid_depth & ~outlier
    jumped = depth_jumps(np.where(vis, z, np.nan), jump_rel, jump_abs) if jump_rel is not None \
        else np.zeros_like(vis)
    vis_before_jumps = vis
    vis = vis & ~jumped
    pts = camera.unproject(tracks, np.where(vis, z, 1.0))
    pts[~vis] = np.nan
    pts = fill_invisible(pts, vis)
    if smooth and smooth >= 2:
        ok = np.all(np.isfinite(pts), axis=(0, 2))
        pts[:, ok] = smooth_trajectories(pts[:, ok], smooth)
    stats = {
        "tracker_visible": float(visible.mean()),
        "invalid_depth": float((visible & ~valid_depth).mean()),
        "depth_outliers": float(outlier.mean()),
        "depth_jumps": float((jumped & vis_before_jumps).mean()),
        "visible": float(vis.mean()),
    }
    return pts, vis, stats
