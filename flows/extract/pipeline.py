"""Video -> 2D tracks -> depth -> 3D object flow.

:func:`extract_flow` runs the stages, each picked by name from a registry
(:data:`~flows.extract.registry.TRACKERS`, :data:`DEPTH_ESTIMATORS`,
:data:`MASKERS`) or given as a ready object with the stage's interface:

1. object mask on frame 0 (a mask image / array, or a masker such as ``"grounded-sam"``);
2. query points on the mask (farthest-point sampling, or good features to
   track for the ``"lk"`` tracker), at most ``max_points``;
3. 2D tracks of the queries through the video (``"lk"``, ``"cotracker"``);
4. per-frame metric depth (``"measured"``, ``"depth-anything"``);
5. lifting to the world frame with the camera (:mod:`flows.extract.lift`);
6. optionally a motion model: ``motion="rigid"`` (:mod:`flows.extract.rigid`) for a rigid object
   (or one moving part of an articulated one) drops the points that do not move with it and fills the
   lost ones from the fitted pose; ``motion="deformable"`` (:mod:`flows.extract.deformable`) for a
   cloth or another bending object fills the lost points from their neighbours' motion.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import numpy as np

from ..format import ObjectFlow
from .camera import CameraError, load_camera
from .lift import lift_tracks
from .masks import check_mask, load_mask, sample_query_points
from .registry import DEPTH_ESTIMATORS, MASKERS, TRACKERS, stage_name
from .deformable import deformable_fill
from .rigid import check_motion, rigid_filter
from .video import VideoError, read_video

DEFAULT_FPS = 30.0


class _Progress:
    """One tqdm bar over the frames of all stages (or nothing)."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="frame", desc="extract", leave=True)

    def stage(self, name: str):
        if self.bar is not None:
            self.bar.set_description(name)
        return self.update if self.bar is not None else None

    def update(self, n: int = 1):
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def extract_flow(
    video: Any,
    camera: Any,
    *,
    mask: Any = None,
    masker: Any = "grounded-sam",
    tracker: Any = "lk",
    depth: Any = "measured",
    depth_data: Any = None,
    object_name: str = "",
    max_points: int = 1024,
    fps: Optional[float] = None,
    progress: bool = True,
    task: str = "",
    queries: str = "auto",
    generator: str = "",
    notes: str = "",
    tracker_options: Optional[Mapping[str, Any]] = None,
    depth_options: Optional[Mapping[str, Any]] = None,
    masker_options: Optional[Mapping[str, Any]] = None,
    lift_options: Optional[Mapping[str, Any]] = None,
    motion: str = "none",
    motion_options: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
) -> ObjectFlow:
    """3D object flow of ``object_name`` in ``video``.

    ``video``: path (mp4/gif/PNG folder) or (T, H, W, 3) uint8 array.
    ``camera``: :class:`Camera`, path to ``camera.json`` or a dict.
    ``mask``: (H, W) bool array or mask image path; when ``None`` the
    ``masker`` (name or object) makes it from frame 0 and ``object_name``.
    ``tracker`` / ``depth``: names in ``TRACKERS`` / ``DEPTH_ESTIMATORS`` or
    stage objects; ``*_options`` are passed to the registered factories.
    ``depth_data``: the measured depth (``"measured"``) or the reference depth
    for calibration (``"depth-anything"``). ``fps``: defaults to the video
    file's, else 30. ``queries``: ``"auto"`` (the tracker's preference),
    ``"fps"`` or ``"features"``. ``motion``: ``"none"``, ``"rigid"`` (``motion_options``:
    :func:`~flows.extract.rigid.rigid_filter`'s ``threshold``, ``iterations``) or ``"deformable"``
    (:func:`~flows.extract.deformable.deformable_fill`'s ``neighbours``).
    """
    video_path = None
    if isinstance(video, (str, os.PathLike)):
        video_path = str(video)
        frames, file_fps = read_video(video)
    else:
        frames, file_fps = np.asarray(video), None
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise VideoError(f"<video array>: expected (T, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
    where = video_path or "<video array>"
    motion = check_motion(motion)
    T, H, W = frames.shape[:3]
    if T < 2:
        raise VideoError(f"{where}: needs at least 2 frames, got {T}")
    cam = load_camera(camera)
    if (cam.width, cam.height) != (W, H):
        field = "width" if cam.width != W else "height"
        raise CameraError(cam.origin, field, f"camera image size {cam.width}x{cam.height} does not match the video "
                                             f"{where} ({W}x{H})")
    fps = float(fps) if fps is not None else (file_fps or DEFAULT_FPS)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")

    # 1. mask
    if mask is not None:
        masker_name = "file" if isinstance(mask, (str, os.PathLike)) else "array"
        obj_mask = load_mask(mask, (H, W)) if isinstance(mask, (str, os.PathLike)) else check_mask(mask, (H, W))
    else:
        m = MASKERS.create(masker, **dict(masker_options or {}))
        masker_name = stage_name(m)
        obj_mask = check_mask(m(frames[0], object_name), (H, W), f"masker {masker_name!r}")

    # 2. queries, 3. tracks, 4. depth
    trk = TRACKERS.create(tracker, **dict(tracker_options or {}))
    dep = DEPTH_ESTIMATORS.create(depth, **dict(depth_options or {}))
    method = getattr(trk, "preferred_queries", "fps") if queries == "auto" else queries
    q = sample_query_points(obj_mask, max_points, method=method, frame=frames[0], seed=seed)
    bar = _Progress(progress, 2 * T)
    try:
        track_kw = {"mask": obj_mask} if getattr(trk, "uses_mask", False) else {}
        tracks, tvis = trk.track(frames, q, progress=bar.stage(f"tracking ({stage_name(trk)})"), **track_kw)
        tracks = np.asarray(tracks, dtype=np.float32)
        tvis = np.asarray(tvis, dtype=bool)
        if tracks.shape != (T, q.shape[0], 2) or tvis.shape != (T, q.shape[0]):
            raise ValueError(f"tracker {stage_name(trk)!r} returned tracks {tracks.shape} / visibility {tvis.shape}, "
                             f"expected {(T, q.shape[0], 2)} / {(T, q.shape[0])}")
        depth_maps = dep.estimate(frames, depth_data=depth_data, mask=obj_mask,
                                  progress=bar.stage(f"depth ({stage_name(dep)})"))
        depth_maps = np.asarray(depth_maps, dtype=np.float32)
        if depth_maps.shape != (T, H, W):
            raise ValueError(f"depth estimator {stage_name(dep)!r} returned {depth_maps.shape}, expected {(T, H, W)}")
        bar.stage("lifting")
    finally:
        bar.close()

    # 5. lift
    pts, vis, stats = lift_tracks(tracks, tvis, depth_maps, cam, **dict(lift_options or {}))
    motion_stats = None
    if motion == "rigid":
        pts, vis, _, motion_stats = rigid_filter(pts, vis, seed=seed, **dict(motion_options or {}))
    elif motion == "deformable":
        pts, vis, _, motion_stats = deformable_fill(pts, vis, **dict(motion_options or {}))
    keep = vis.any(axis=0)
    if not keep.any():
        raise ValueError(f"{where}: no track point has valid depth in any frame; check the depth data, the mask and "
                         "the camera")
    pts, vis = pts[:, keep], vis[:, keep]
    empty = np.flatnonzero(~vis.any(axis=1))
    if empty.size:
        raise ValueError(f"{where}: the object is lost (no visible point with valid depth) at frame(s) "
                         f"{empty[:10].tolist()}; try more points, another tracker or check the depth")
    source = {
        "kind": "video",
        "generator": generator,
        "tracker": stage_name(trk),
        "depth": stage_name(dep),
        "masker": masker_name,
        "video": video_path or "<array>",
        "notes": notes,
    }
    extra = {
        "extraction": {
            "image_size": [W, H],
            "query_method": method,
            "num_queries": int(q.shape[0]),
            "num_points": int(keep.sum()),
            "camera_file": cam.origin,
            "visibility": stats,
        }
    }
    if hasattr(trk, "settings"):
        extra["extraction"]["tracker_settings"] = trk.settings()
    if motion_stats is not None:
        source["motion"] = motion
        extra["extraction"]["motion"] = dict(motion_stats, model=motion)
    calib = getattr(dep, "last_calibration", None)
    if calib:
        extra["extraction"]["depth_calibration"] = calib
    return ObjectFlow(
        points=pts.astype(np.float32), visible=vis, fps=fps, task=task, object_name=object_name,
        source=source, intrinsics=cam.K, extrinsics=cam.T_world_camera, extra=extra,
    )
