"""Controlled corruptions of a flow: which flow errors the reward tolerates.

Each corruption maps ``(flow, magnitude, rng) -> flow`` with the same shape (T, N) and the same
points in the same order, so its error against the clean flow is measured point for point, and
magnitude 0 returns the flow unchanged. They model the errors of a video -> flow pipeline:

=================== ============ ===================================================================
name                magnitude    what it does
=================== ============ ===================================================================
``point_noise``     sigma, m     adds i.i.d. Gaussian noise N(0, sigma^2) to every coordinate of every
                                 sample (tracker jitter, depth noise); mean error = sigma * sqrt(8/pi)
``depth_scale``     relative     moves every point along its ray from the camera centre so its
                                 distance from the camera is (1 + magnitude) times the true one (a
                                 monocular depth model's scale error; needs the flow's extrinsics)
``time_warp``       fraction     the frame at normalised time u shows the motion of time
                                 u + m sin(pi u) (linear interpolation; visibility of the nearest
                                 frame): the same path, run ahead in the middle; first and last
                                 frames unchanged; m < 1/pi keeps time monotone (a video model's
                                 uneven pace)
``dropped_frames``  fraction     round(m (T - 2)) frames other than the first and the last, chosen
                                 at random, are replaced by the previous kept frame (points and
                                 visibility): the flow stutters (lost or repeated video frames)
``lost_visibility`` fraction     each visible sample is marked invisible with probability m
                                 (positions unchanged); a frame left with no visible point keeps one
                                 of its visible points at random (tracks lost to occlusion or blur)
=================== ============ ===================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np

from ..format import FlowFormatError, ObjectFlow


def point_noise(flow: ObjectFlow, sigma: float, rng: np.random.Generator) -> ObjectFlow:
    if sigma < 0:
        raise ValueError(f"point_noise: sigma must be >= 0 m, got {sigma}")
    noise = rng.normal(0.0, sigma, size=flow.points.shape)
    return flow.replace(points=(flow.points.astype(np.float64) + noise).astype(np.float32))


def depth_scale(flow: ObjectFlow, scale_error: float, rng: np.random.Generator) -> ObjectFlow:
    if scale_error <= -1:
        raise ValueError(f"depth_scale: the relative error must be > -1, got {scale_error}")
    if flow.extrinsics is None:
        raise FlowFormatError(flow.origin, "extrinsics", "depth_scale needs the camera pose (camera-to-world) "
                                                         "to know where the camera is; the flow has none")
    centre = np.asarray(flow.extrinsics)[:3, 3]
    pts = centre + (1.0 + scale_error) * (flow.points.astype(np.float64) - centre)
    return flow.replace(points=pts.astype(np.float32))


def warped_times(num_frames: int, strength: float) -> np.ndarray:
    """(T,) fractional source frame of each output frame for :func:`time_warp`."""
    if not 0 <= strength < 1 / np.pi:
        raise ValueError(f"time_warp: strength must be in [0, 1/pi) = [0, {1 / np.pi:.3f}) to keep time monotone, "
                         f"got {strength}")
    u = np.linspace(0.0, 1.0, num_frames)
    s = u + strength * np.sin(np.pi * u)
    s[0], s[-1] = 0.0, 1.0  # exact endpoints (sin(pi) is 1e-16, not 0)
    return s * (num_frames - 1)


def time_warp(flow: ObjectFlow, strength: float, rng: np.random.Generator) -> ObjectFlow:
    T = flow.num_frames
    src = warped_times(T, strength)
    lo = np.clip(np.floor(src).astype(int), 0, T - 1)
    hi = np.clip(lo + 1, 0, T - 1)
    a = (src - lo)[:, None, None]
    pts = (1.0 - a) * flow.points[lo].astype(np.float64) + a * flow.points[hi]
    vis = flow.visible[np.clip(np.rint(src).astype(int), 0, T - 1)]
    return flow.replace(points=pts.astype(np.float32), visible=vis)


def dropped_frames(flow: ObjectFlow, fraction: float, rng: np.random.Generator) -> ObjectFlow:
    if not 0 <= fraction <= 1:
        raise ValueError(f"dropped_frames: fraction must be in [0, 1], got {fraction}")
    T = flow.num_frames
    inner = np.arange(1, T - 1)
    dropped = np.sort(rng.choice(inner, size=int(round(fraction * len(inner))), replace=False)) if len(inner) else []
    source = np.arange(T)
    for t in dropped:  # in increasing order, so a run of drops all repeat the last kept frame
        source[t] = source[t - 1]
    return flow.replace(points=flow.points[source], visible=flow.visible[source])


def lost_visibility(flow: ObjectFlow, fraction: float, rng: np.random.Generator) -> ObjectFlow:
    if not 0 <= fraction <= 1:
        raise ValueError(f"lost_visibility: fraction must be in [0, 1], got {fraction}")
    vis = flow.visible & (rng.random(flow.visible.shape) >= fraction)
    for t in np.flatnonzero(~vis.any(axis=1)):
        vis[t, rng.choice(np.flatnonzero(flow.visible[t]))] = True
    return flow.replace(visible=vis)


@dataclass(frozen=True)
class Corruption:
    name: str
    apply: Callable[[ObjectFlow, float, np.random.Generator], ObjectFlow]
    unit: str  # how the magnitude reads in tables and plots
    magnitudes: Tuple[float, ...]  # the default curve (magnitude 0, the clean flow, is added by the runner)


CORRUPTIONS: Dict[str, Corruption] = {c.name: c for c in (
    Corruption("point_noise", point_noise, "sigma [m]", (0.005, 0.01, 0.02, 0.04)),
    Corruption("depth_scale", depth_scale, "relative depth error", (0.05, 0.1, 0.2)),
    Corruption("time_warp", time_warp, "max time shift [fraction of the clip]", (0.1, 0.2, 0.3)),
    Corruption("dropped_frames", dropped_frames, "fraction of frames dropped", (0.25, 0.5, 0.75)),
    Corruption("lost_visibility", lost_visibility, "fraction of samples hidden", (0.5, 0.8, 0.95)),
)}


def corrupt(flow: ObjectFlow, name: str, magnitude: float, seed: int = 0) -> ObjectFlow:
    """``flow`` with corruption ``name`` at ``magnitude`` (deterministic for a seed); 0: ``flow`` itself."""
    try:
        c = CORRUPTIONS[name]
    except KeyError:
        raise KeyError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}") from None
    if magnitude == 0:
        return flow
    out = c.apply(flow, float(magnitude), np.random.default_rng(seed))
    return out.replace(source=dict(flow.source, corruption={"name": name, "magnitude": float(magnitude), "seed": seed}))
