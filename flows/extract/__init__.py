"""Extraction of 3D object flow from video: video -> 2D tracks -> depth -> 3D flow.

Needs OpenCV (``pip install dream2flow-gym[extract]``); the model-backed
stages (``grounded-sam`` masker, ``depth-anything`` depth, ``cotracker``
tracker) also need torch / transformers / CoTracker, imported only when used.

Quick use::

    from flows.extract import extract_flow
    flow = extract_flow("video.mp4", "camera.json", mask="mask.png", depth_data="depth.npz",
                        object_name="drawer")

Stages are chosen by name from :data:`TRACKERS`, :data:`DEPTH_ESTIMATORS`
and :data:`MASKERS`; register your own with ``TRACKERS.register("name", cls)``.

The optional stage before extraction, start image + instruction -> video with
an image-to-video model (``python -m flows dream``), is
:mod:`flows.extract.video_model` (registry ``VIDEO_GENERATORS``; needs
``dream2flow-gym[dream]``, not imported here).
"""
from .camera import Camera, CameraError, load_camera
from .depth import DepthAnythingDepth, DepthError, MeasuredDepth, apply_calibration, fit_calibration, load_depth
from .lift import lift_tracks, sample_depth
from .masks import FullFrameMasker, GroundedSamMasker, MaskError, MaskFileMasker, load_mask, sample_query_points
from .pipeline import extract_flow
from .registry import DEPTH_ESTIMATORS, MASKERS, TRACKERS, Registry
from .trackers import CoTrackerTracker, LucasKanadeTracker
from .video import VideoError, read_video, write_video

__all__ = [
    "Camera", "CameraError", "CoTrackerTracker", "DEPTH_ESTIMATORS", "DepthAnythingDepth", "DepthError",
    "FullFrameMasker", "GroundedSamMasker", "LucasKanadeTracker", "MASKERS", "MaskError", "MaskFileMasker",
    "MeasuredDepth", "Registry", "TRACKERS", "VideoError", "apply_calibration", "extract_flow", "fit_calibration",
    "lift_tracks", "load_camera", "load_depth", "load_mask", "read_video", "sample_depth", "sample_query_points",
    "write_video",
]
