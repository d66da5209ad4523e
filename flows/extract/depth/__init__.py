"""Depth stages: ``estimate(video, *, depth_data=None, mask=None, progress=None) -> (T, H, W) metres``.

* ``"measured"``: :class:`~flows.extract.depth.measured.MeasuredDepth`, depth from a file (RGB-D video);
* ``"depth-anything"``: :class:`~flows.extract.depth.depth_anything.DepthAnythingDepth`, Depth Anything V2
  (transformers), calibrated to a reference depth of frame 0 over the object mask.
"""
from .calibrate import apply_calibration, fit_calibration
from .depth_anything import DepthAnythingDepth
from .measured import DepthError, MeasuredDepth, load_depth

__all__ = ["DepthAnythingDepth", "DepthError", "MeasuredDepth", "apply_calibration", "fit_calibration", "load_depth"]
