"""Ground truth for the points an extractor chose, from the rendered demonstration's simulator state.

An extractor picks its own points, so the benchmark cannot compare against a fixed set: each
extracted point is given the ground-truth trajectory of *the surface point seen at its pixel* at
its first visible frame (its query, as in TAP-Vid), carried through every frame with the simulator
state (:func:`d2f_envs.render_demo.carry_points`: fixed in the body the segmentation shows at that
pixel, or tied to the cloth's nearest triangle).

Anchoring at the pixel's rendered surface rather than at the extracted 3D point makes a depth
error at the query frame count as error: anchoring at the extracted point itself (what
``benchmarks/extraction_accuracy.py`` does, fine for measured depth) would carry a point placed 5 cm
behind the object along with the object and report no error at all, hiding exactly what a depth
model gets wrong. A point whose pixel is not on the object at its query frame ("off object") keeps
the 3D anchoring (attached to the nearest object body) and is counted in ``off_object_fraction`` (of
the points visible in some frame; a point never visible is never scored).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from ..format import ObjectFlow


def query_frames(flow: ObjectFlow) -> np.ndarray:
    """(N,) int: each point's first visible frame (0 for a point never visible)."""
    vis = np.asarray(flow.visible)
    return np.where(vis.any(axis=0), vis.argmax(axis=0), 0).astype(int)


def ground_truth_for_flow(demo: Any, flow: ObjectFlow) -> Tuple[ObjectFlow, Dict[str, float]]:
    """``(ground truth of flow's points, {"off_object_fraction": ...})`` against ``demo`` (a RenderedDemo).

    Same points, same order as ``flow``; visibility from the render (``point_visibility``).
    """
    # the simulator truth lives in the envs package; imported here, not at flows' import time
    from d2f_envs.render_demo import carry_points, point_visibility

    from ..extract.lift import sample_depth

    if flow.num_frames != demo.num_frames:
        raise ValueError(f"the flow has {flow.num_frames} frames, the demo {demo.num_frames}")
    cam = demo.camera
    N = flow.num_points
    q = query_frames(flow)
    P = np.asarray(flow.points, dtype=np.float64)[q, np.arange(N)]  # (N, 3) each point at its query frame
    uv, z = cam.project(P)
    H, W = demo.depth.shape[1:]
    with np.errstate(invalid="ignore"):
        ui, vi = np.rint(uv[:, 0]), np.rint(uv[:, 1])
        inside = np.isfinite(ui) & np.isfinite(vi) & (z > 0) & (ui >= 0) & (ui <= W - 1) & (vi >= 0) & (vi <= H - 1)
    ui = np.where(inside, ui, 0).astype(int)
    vi = np.where(inside, vi, 0).astype(int)
    seen = np.asarray(flow.visible).any(axis=0)  # a point never visible has no query: 3D anchoring
    on_object = seen & inside & demo.object_masks[q, vi, ui]
    # the rendered surface at the query pixel: bilinear where the depth is smooth there, else the
    # nearest pixel's depth (object edges, where bilinear would mix in the background)
    surf_z = np.full(N, np.nan)
    for t in np.unique(q[on_object]):
        sel = on_object & (q == t)
        zb = sample_depth(demo.depth[t], uv[sel])
        zn = demo.depth[t, vi[sel], ui[sel]].astype(np.float64)
        surf_z[sel] = np.where(np.isfinite(zb), zb, zn)
    on_surface = on_object & np.isfinite(surf_z) & (surf_z > 0)
    anchor_pts = P.copy()
    anchor_pts[on_surface] = cam.unproject(uv[on_surface], surf_z[on_surface])
    gt = carry_points(demo, anchor_pts, q)
    visible = point_visibility(gt, demo.depth, cam)
    # every frame of a flow needs a visible point; the ground truth of a flow whose points the
    # render never sees in some frame keeps those frames' extracted visibility (it cannot count)
    empty = ~visible.any(axis=1)
    if empty.any():
        visible[empty] = flow.visible[empty]
    out = ObjectFlow(
        points=gt, visible=visible, fps=flow.fps, task=demo.env_id, object_name=demo.flow.object_name,
        source={"kind": "simulated demonstration", "tracker": "ground truth (simulator)",
                "depth": "ground truth (render)",
                "notes": "ground truth of an extracted flow's points, anchored at the surface seen at each point's "
                         "query pixel (flows.benchmark.truth)"},
        intrinsics=cam.K, extrinsics=cam.T_world_camera,
    )
    off = seen & ~on_surface
    return out, {"off_object_fraction": float(off.sum() / max(seen.sum(), 1))}
