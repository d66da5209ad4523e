"""Pinhole camera of a video: intrinsics ``K`` and camera-to-world extrinsics.

``camera.json`` layout (all lengths in pixels, the pose in metres)::

    {
      "width": 640, "height": 480,
      "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],       # or "fx", "fy", "cx", "cy"
      "T_world_camera": [[r00, r01, r02, tx],          # camera-to-world, 4x4
                         [r10, r11, r12, ty],
                         [r20, r21, r22, tz],
                         [0,   0,   0,   1]]
    }

Camera axes follow OpenCV: x right, y down, z forward (into the scene).
Pixel coordinates follow OpenCV too: the centre of the top-left pixel is
``(0, 0)``. A point ``p_cam`` in the camera frame is ``T_world_camera @
p_cam`` in the world (robot base) frame. Missing or malformed fields raise
:class:`CameraError` naming the file and the field.
"""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np


class CameraError(ValueError):
    """A camera description is missing a field or has a malformed one."""

    def __init__(self, where: str, field_name: str, message: str):
        self.path = where
        self.field = field_name
        self.detail = message
        super().__init__(f"{where}: field '{field_name}': {message}")


@dataclass(frozen=True, eq=False)
class Camera:
    """Pinhole camera: ``K`` (3, 3), ``T_world_camera`` (4, 4, camera-to-world), image size."""

    K: np.ndarray
    T_world_camera: np.ndarray
    width: int
    height: int
    origin: str = "<Camera>"

    def __post_init__(self) -> None:
        where = self.origin
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
                raise CameraError(where, name, f"expected a positive integer, got {v!r}")
        K = _matrix(self.K, "K", (3, 3), where)
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CameraError(where, "K", f"focal lengths fx, fy must be > 0, got {K[0, 0]}, {K[1, 1]}")
        if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
            raise CameraError(where, "K", f"expected an upper-triangular pinhole matrix with last row [0, 0, 1], got {K.tolist()}")
        T = _matrix(self.T_world_camera, "T_world_camera", (4, 4), where)
        R = T[:3, :3]
        if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
            raise CameraError(where, "T_world_camera", f"last row must be [0, 0, 0, 1], got {T[3].tolist()}")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) <= 0:
            raise CameraError(where, "T_world_camera", "the 3x3 block is not a rotation matrix (orthonormal, det +1)")
        K.flags.writeable = False
        T.flags.writeable = False
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "T_world_camera", T)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "<camera dict>") -> "Camera":
        if not isinstance(data, Mapping):
            raise CameraError(where, "<root>", f"expected a JSON object, got {type(data).__name__}")
        for name in ("width", "height"):
            if name not in data:
                raise CameraError(where, name, "missing (image size in pixels)")
        if "K" in data:
            K = data["K"]
        else:
            missing = [k for k in ("fx", "fy", "cx", "cy") if k not in data]
            if missing:
                raise CameraError(
                    where, "K",
                    f"missing: give either \"K\" (3x3) or all of \"fx\", \"fy\", \"cx\", \"cy\" (missing {missing})",
                )
            vals = {}
            for k in ("fx", "fy", "cx", "cy"):
                v = data[k]
                if not isinstance(v, numbers.Real) or isinstance(v, bool):
                    raise CameraError(where, k, f"expected a number, got {v!r}")
                vals[k] = float(v)
            K = [[vals["fx"], 0.0, vals["cx"]], [0.0, vals["fy"], vals["cy"]], [0.0, 0.0, 1.0]]
        if "T_world_camera" not in data:
            raise CameraError(where, "T_world_camera", "missing (4x4 camera-to-world transform, OpenCV camera axes)")
        return cls(K=K, T_world_camera=data["T_world_camera"], width=data["width"], height=data["height"], origin=where)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Camera":
        """Read a ``camera.json`` (see the module docstring)."""
        where = str(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: no such camera file")
        try:
            with open(path, "r", encoding="utf-8") as fh:
                data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise CameraError(where, "<root>", f"not valid JSON ({exc})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CameraError(where, "<root>", f"cannot read the file ({exc})") from None
        return cls.from_dict(data, where)

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "K": self.K.tolist(),
            "T_world_camera": self.T_world_camera.tolist(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    # ------------------------------------------------------------------ geometry
    def unproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels ``uv`` (..., 2) with depth ``z`` (...) -> world points (..., 3)."""
        uv = np.asarray(uv, dtype=np.float64)
        z = np.asarray(depth, dtype=np.float64)
        Kinv = np.linalg.inv(self.K)
        rays = uv @ Kinv[:2, :2].T + Kinv[:2, 2]  # K is upper triangular: x = (u - cx - s*y)/fx ...
        p_cam = np.concatenate([rays * z[..., None], z[..., None]], axis=-1)
        R, t = self.T_world_camera[:3, :3], self.T_world_camera[:3, 3]
        return p_cam @ R.T + t

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (..., 3) -> pixels (..., 2) and camera depth z (...)."""
        p = np.asarray(points_world, dtype=np.float64)
        T_cw = np.linalg.inv(self.T_world_camera)
        p_cam = p @ T_cw[:3, :3].T + T_cw[:3, 3]
        z = p_cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uvw = p_cam @ self.K.T
            uv = uvw[..., :2] / uvw[..., 2:3]
        return uv, z


def _matrix(value: Any, name: str, shape: tuple, where: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CameraError(where, name, f"expected a numeric {shape[0]}x{shape[1]} matrix ({exc})") from None
    if arr.shape != shape:
        raise CameraError(where, name, f"expected a {shape[0]}x{shape[1]} matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CameraError(where, name, "contains NaN or inf")
    return arr


def load_camera(camera: "Camera | str | os.PathLike | Mapping") -> Camera:
    """A :class:`Camera` from a Camera, a path to ``camera.json`` or a dict."""
    if isinstance(camera, Camera):
        return camera
    if isinstance(camera, Mapping):
        return Camera.from_dict(camera)
    return Camera.load(camera)
