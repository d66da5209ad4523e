"""Measured depth (RGB-D video): ``.npz``/``.npy`` arrays or a folder of 16-bit PNGs.

* ``.npz``: key ``"depth"`` of shape (T, H, W); optional key ``"unit"`` (a
  string, ``"m"`` or ``"mm"``). Without ``"unit"``, float arrays are metres
  and integer arrays millimetres.
* ``.npy``: the (T, H, W) array itself, same unit rule.
* a folder of PNGs (natural file-name order): 16-bit single-channel images in
  millimetres (the usual RealSense / Azure Kinect / Open3D convention).

Invalid depth is 0 or NaN (also inf or negative); it comes out as NaN.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..registry import DEPTH_ESTIMATORS

UNITS = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
         "mm": 1e-3, "millimeter": 1e-3, "millimeters": 1e-3, "millimetre": 1e-3, "millimetres": 1e-3}


class DepthError(ValueError):
    """Depth data is missing a field, malformed, or does not match the video."""

    def __init__(self, where: str, field_name: str, message: str):
        self.path = where
        self.field = field_name
        self.detail = message
        super().__init__(f"{where}: field '{field_name}': {message}")


def _scale_for(unit, dtype, where: str) -> float:
    if unit is None:
        return 1.0 if np.dtype(dtype).kind == "f" else 1e-3
    u = str(unit).strip().lower()
    if u not in UNITS:
        raise DepthError(where, "unit", f"unknown unit {unit!r}; use 'm' or 'mm'")
    return UNITS[u]


def _clean(depth: np.ndarray, scale: float) -> np.ndarray:
    d = depth.astype(np.float64) * scale
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d.astype(np.float32)


def load_depth(source, expected_shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Depth (T, H, W) float32 metres (NaN = invalid) from a path or an array (metres).

    ``expected_shape`` (T, H, W) checks the frame count and size against the video.
    """
    import imageio.v2 as imageio

    if isinstance(source, np.ndarray):
        where, field_name = "<depth array>", "depth"
        raw, scale = source, 1.0
    else:
        where = str(source)
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"{where}: no such depth file or folder")
        field_name = "depth"
        if p.is_dir():
            files = sorted((f for f in p.iterdir() if f.suffix.lower() == ".png"),
                           key=lambda f: [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", f.name)])
            if not files:
                raise DepthError(where, "depth", "folder has no .png depth frames")
            frames = []
            for f in files:
                try:
                    img = np.asarray(imageio.imread(f))
                except Exception as exc:
                    raise DepthError(str(f), "depth", f"unreadable depth image ({type(exc).__name__}: {exc})") from None
                if img.ndim != 2 or img.dtype != np.uint16:
                    raise DepthError(str(f), "depth", f"expected a 16-bit single-channel PNG in millimetres, "
                                                      f"got dtype {img.dtype} shape {img.shape}")
                frames.append(img)
            if len({f.shape for f in frames}) != 1:
                raise DepthError(where, "depth", "depth frames have different sizes")
            raw, scale = np.stack(frames), 1e-3
        elif p.suffix.lower() == ".npy":
            try:
                raw = np.load(p, allow_pickle=False)
            except Exception as exc:
                raise DepthError(where, "depth", f"not a readable .npy array ({type(exc).__name__}: {exc})") from None
            scale = _scale_for(None, raw.dtype, where)
        else:
            try:
                with np.load(p, allow_pickle=False) as npz:
                    if not hasattr(npz, "files"):
                        raise ValueError("not an .npz archive")
                    if "depth" not in npz.files:
                        raise DepthError(where, "depth", f"missing; the file has {sorted(npz.files)}")
                    raw = npz["depth"]
                    unit = npz["unit"] if "unit" in npz.files else None
            except DepthError:
                raise
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise DepthError(where, "depth", f"not a readable .npz file ({type(exc).__name__}: {exc})") from None
            if unit is not None:
                unit = unit.item() if isinstance(unit, np.ndarray) and unit.ndim == 0 else unit
                if not isinstance(unit, str):
                    raise DepthError(where, "unit", f"expected a string 'm' or 'mm', got {unit!r}")
            scale = _scale_for(unit, raw.dtype, where)
    raw = np.asarray(raw)
    if raw.dtype.kind not in "fiu":
        raise DepthError(where, field_name, f"expected a numeric array, got dtype {raw.dtype}")
    if raw.ndim == 2:
        raw = raw[None]
    if raw.ndim != 3:
        raise DepthError(where, field_name, f"expected shape (T, H, W), got {raw.shape}")
    if expected_shape is not None:
        T, H, W = expected_shape[:3]
        if raw.shape[0] != T:
            raise DepthError(where, field_name, f"has {raw.shape[0]} frames but the video has {T} "
                                               f"(frame count mismatch between video and depth)")
        if raw.shape[1:] != (H, W):
            raise DepthError(where, field_name, f"frame size {raw.shape[2]}x{raw.shape[1]} (WxH) does not match "
                                               f"the video's {W}x{H}")
    return _clean(raw, scale)


@DEPTH_ESTIMATORS.register("measured")
class MeasuredDepth:
    """Depth given with the video (``depth_data``: a path or a (T, H, W) array in metres)."""

    name = "measured"

    def __init__(self, path=None):
        self.path = path

    def estimate(self, video: np.ndarray, *, depth_data=None, mask=None,
                 progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        src = depth_data if depth_data is not None else self.path
        if src is None:
            raise ValueError("measured depth: no depth given (pass depth_data=PATH or --depth depth.npz)")
        depth = load_depth(src, expected_shape=np.asarray(video).shape[:3])
        if progress:
            progress(depth.shape[0])
        return depth
