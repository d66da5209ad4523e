"""Depth Anything V2 through transformers' ``DepthAnythingForDepthEstimation``, calibrated to metres.

Model: a hub id (e.g. ``depth-anything/Depth-Anything-V2-Small-hf``, relative;
``depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf``, metric) or a
local folder written by ``save_pretrained``. ``config.depth_estimation_type``
tells whether the model predicts relative (affine-invariant disparity) or
metric depth.

Pre-processing is done here (no torchvision or processor class needed):
RGB / 255, ImageNet mean/std, resized (bicubic) so the short side is
``input_size`` pixels keeping the aspect ratio, both sides rounded to
multiples of 14 (the ViT patch); the prediction is resized back (bilinear)
to the video's size.

Calibration (see :mod:`flows.extract.depth.calibrate`) against
``depth_data``, a reference depth of frame 0 (path or array; for a (T,H,W)
reference only frame 0 is used), over the object mask:

* relative model: fit in disparity space (``1/reference ~= s*e (+ b)``) and invert;
* metric model: fit in depth space (``reference ~= s*e (+ b)``);
* ``calibration="scale"`` (default) or ``"scale-shift"``; the same
  parameters are applied to every frame (assumes a temporally consistent
  estimate). ``calibration="none"`` keeps a metric model's output as is;
  a relative model always needs a reference.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..registry import DEPTH_ESTIMATORS
from .calibrate import apply_calibration, fit_calibration
from .measured import load_depth

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"


def _multiple_of(x: float, m: int = 14) -> int:
    return max(m, int(round(x / m)) * m)


def preprocess(frames: np.ndarray, input_size: int = 518) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 3, h, w) float32 normalised, h and w multiples of 14."""
    import cv2

    frames = np.asarray(frames)
    H, W = frames.shape[1:3]
    s = input_size / min(H, W)
    h, w = _multiple_of(H * s), _multiple_of(W * s)
    out = np.empty((frames.shape[0], 3, h, w), dtype=np.float32)
    for i, f in enumerate(frames):
        r = cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
        out[i] = ((r - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return out


@DEPTH_ESTIMATORS.register("depth-anything")
class DepthAnythingDepth:
    name = "depth-anything"

    def __init__(self, model: str = DEFAULT_MODEL, calibration: str = "scale", kind: str = "auto",
                 input_size: int = 518, batch_size: int = 4, device: Optional[str] = None, robust: bool = True):
        if calibration not in ("scale", "scale-shift", "none"):
            raise ValueError(f"unknown calibration {calibration!r}; use 'scale', 'scale-shift' or 'none'")
        if kind not in ("auto", "relative", "metric"):
            raise ValueError(f"unknown Depth Anything kind {kind!r}; use 'auto', 'relative' or 'metric'")
        self.model_id = str(model)
        self.calibration = calibration
        self.kind = kind
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self.device = device
        self.robust = robust
        self._model = None
        self.last_calibration: Optional[dict] = None

    def _load(self):
        if self._model is not None:
            return self._model
        try:
            import torch
            from transformers import DepthAnythingForDepthEstimation
        except ImportError as exc:
            raise ImportError(f"the depth-anything estimator needs torch and transformers ({exc}); "
                              "pip install torch transformers, or use measured depth") from exc
        self._torch = torch
        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            model = DepthAnythingForDepthEstimation.from_pretrained(self.model_id)
        except (OSError, ValueError) as exc:  # ValueError: HFValidationError for a bad id / missing folder
            raise OSError(f"{self.model_id}: cannot load the Depth Anything model ({exc})") from exc
        self._model = model.to(self.device).eval()
        if self.kind == "auto":
            self.kind = "metric" if getattr(model.config, "depth_estimation_type", "relative") == "metric" else "relative"
        return self._model

    def predict(self, video: np.ndarray, progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        """Raw model output (T, H, W) float32 at the video's size: disparity (relative) or metres (metric)."""
        model = self._load()
        torch = self._torch
        video = np.asarray(video)
        if video.ndim == 3:
            video = video[None]
        T, H, W = video.shape[:3]
        out = np.empty((T, H, W), dtype=np.float32)
        for start in range(0, T, self.batch_size):
            batch = video[start:start + self.batch_size]
            x = torch.from_numpy(preprocess(batch, self.input_size)).to(self.device)
            with torch.no_grad():
                pred = model(pixel_values=x).predicted_depth  # (B, h, w)
            pred = torch.nn.functional.interpolate(pred[:, None].float(), (H, W), mode="bilinear", align_corners=False)
            out[start:start + len(batch)] = pred[:, 0].cpu().numpy()
            if progress:
                progress(len(batch))
        return out

    def estimate(self, video: np.ndarray, *, depth_data=None, mask=None,
                 progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        raw = self.predict(video, progress=progress)
        H, W = raw.shape[1:]
        if depth_data is None or self.calibration == "none":
            if self.kind == "relative":
                raise ValueError("depth-anything: a relative model predicts disparity up to scale and shift; pass a "
                                 "reference depth of frame 0 (depth_data / --depth) to calibrate it, or use a metric model")
            self.last_calibration = None
            d = raw.astype(np.float32)
            d[~np.isfinite(d) | (d <= 0)] = np.nan
            return d
        ref = load_depth(depth_data)
        if ref.shape[1:] != (H, W):
            raise ValueError(f"depth-anything: the reference depth is {ref.shape[2]}x{ref.shape[1]} (WxH), "
                             f"the video {W}x{H}")
        params = fit_calibration(raw[0], ref[0], mask=mask, mode=self.calibration,
                                 space="disparity" if self.kind == "relative" else "depth", robust=self.robust)
        self.last_calibration = params
        return apply_calibration(raw, params)
