"""Camera-to-robot calibration from point correspondences, and the check of a ``camera.json``.

A flow lands in the robot's base frame only if ``camera.json``'s ``T_world_camera`` is the camera's
pose in that frame. The simplest calibration a lab can do without a checkerboard rig: put a small
marker at 6 or more places spread over the workspace (different heights too), read each place's
base-frame position from the robot (touch it with the TCP: forward kinematics), and note the pixel
where the camera sees it. Those pairs go in a CSV file, one row each::

    x,y,z,u,v            # x, y, z: metres in the robot base frame; u, v: pixels (OpenCV: the
    0.42,-0.10,0.02,211.5,300.0   # centre of the top-left pixel is 0, 0)

:func:`solve_extrinsics` finds ``T_world_camera`` from them (perspective-n-point with the camera's
intrinsics, refined by Levenberg-Marquardt); :func:`check_extrinsics` measures how well a camera
explains them: reprojection error in pixels and, with a depth frame of an RGB-D camera, the depth
error in metres. ``python -m flows calibrate`` runs both. A hand-eye calibration from another tool
(e.g. OpenCV's ``calibrateHandEye`` with a board on the gripper) gives the same matrix; check it the
same way. What to expect: a good calibration reprojects within 1-2 px and a few mm of depth; a
centimetre of pose error moves a marker by about f x 1 cm / distance (5 px for f = 500 px at 1 m).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .camera import Camera, CameraError

#: the CSV header (order free, names fixed)
COLUMNS = ("x", "y", "z", "u", "v")
#: fewest correspondences accepted: PnP needs 4, the check of a fit needs spare ones
MIN_PAIRS = 6


class CalibrationError(CameraError):
    """A correspondence file or a calibration problem that cannot give a camera pose (a
    :class:`CameraError`: same ``path``/``field``/``detail`` and message form)."""


def load_correspondences(path: str | os.PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """``(points (N, 3) metres, base frame; pixels (N, 2))`` from a CSV file with columns x, y, z, u, v."""
    where = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: no such correspondence file")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(line for line in fh if line.strip() and not line.lstrip().startswith("#"))]
    if not rows:
        raise CalibrationError(where, "header", f"empty file; expected a header {','.join(COLUMNS)} and one row per pair")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise CalibrationError(where, "header", f"missing column(s) {missing}; expected {','.join(COLUMNS)}, got {header}")
    cols = [header.index(c) for c in COLUMNS]
    values = np.empty((len(rows) - 1, 5))
    for i, row in enumerate(rows[1:]):
        line = i + 2  # 1-based, after the header
        for j, (name, c) in enumerate(zip(COLUMNS, cols)):
            try:
                values[i, j] = float(row[c])
            except (IndexError, ValueError):
                got = row[c] if c < len(row) else "nothing"
                raise CalibrationError(where, f"{name} (line {line})", f"expected a number, got {got!r}") from None
            if not np.isfinite(values[i, j]):
                raise CalibrationError(where, f"{name} (line {line})", f"expected a finite number, got {row[c]!r}")
    if len(values) < MIN_PAIRS:
        raise CalibrationError(where, "rows", f"{len(values)} correspondence(s); at least {MIN_PAIRS} are needed, "
                                              "spread over the workspace and not all at one height")
    return values[:, :3], values[:, 3:]


@dataclass(frozen=True)
class CalibrationCheck:
    """How well a camera explains correspondences (per pair, and summaries)."""

    reprojection_px: np.ndarray  # (N,) pixel distance between the projected point and its pixel
    depth_error_m: Optional[np.ndarray]  # (N,) measured depth at the pixel minus the point's camera z
    behind_camera: int  # points the camera puts behind itself (a flipped or wrong pose)

    @property
    def median_px(self) -> float:
        return float(np.median(self.reprojection_px))

    @property
    def max_px(self) -> float:
        return float(np.max(self.reprojection_px))

    @property
    def median_depth_error_m(self) -> Optional[float]:
        if self.depth_error_m is None or not np.isfinite(self.depth_error_m).any():
            return None
        return float(np.nanmedian(np.abs(self.depth_error_m)))

    def ok(self, max_median_px: float = 2.0, max_median_depth_m: float = 0.01) -> bool:
        depth = self.median_depth_error_m
        return (self.behind_camera == 0 and self.median_px <= max_median_px
                and (depth is None or depth <= max_median_depth_m))


def check_extrinsics(camera: Camera, points: np.ndarray, pixels: np.ndarray,
                     depth: Optional[np.ndarray] = None) -> CalibrationCheck:
    """Reprojection (and, given a depth frame (H, W) in metres, depth) errors of ``camera`` on the pairs."""
    points, pixels = _pairs(points, pixels, "<check>")
    uv, z = camera.project(points)
    err = np.linalg.norm(uv - pixels, axis=1)
    depth_err = None
    if depth is not None:
        depth = np.asarray(depth, dtype=np.float64)
        if depth.shape != (camera.height, camera.width):
            raise CalibrationError("<depth>", "depth", f"expected one frame of shape {(camera.height, camera.width)} "
                                                       f"(the camera's image), got {depth.shape}")
        px = np.rint(pixels).astype(int)
        inside = (px[:, 0] >= 0) & (px[:, 0] < camera.width) & (px[:, 1] >= 0) & (px[:, 1] < camera.height)
        depth_err = np.full(len(points), np.nan)
        measured = depth[px[inside, 1], px[inside, 0]]
        depth_err[inside] = np.where(measured > 0, measured - z[inside], np.nan)  # 0 / NaN: no reading
    return CalibrationCheck(err, depth_err, int((z <= 0).sum()))


def solve_extrinsics(camera: Camera, points: np.ndarray, pixels: np.ndarray) -> Tuple[Camera, CalibrationCheck]:
    """``camera`` with ``T_world_camera`` fitted to the pairs (its intrinsics kept), and the fit's check."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - opencv is in the extract and test extras
        raise ImportError("flows calibrate needs OpenCV: pip install -e '.[extract]'") from exc
    points, pixels = _pairs(points, pixels, "<solve>")
    if len(points) < MIN_PAIRS:
        raise CalibrationError("<solve>", "rows", f"{len(points)} pair(s); at least {MIN_PAIRS} are needed")
    centred = points - points.mean(axis=0)
    if np.linalg.svd(centred, compute_uv=False)[1] < 1e-3:  # second singular value: spread off a line (m)
        raise CalibrationError("<solve>", "x,y,z", "the points lie (nearly) on a line: spread them over the workspace")
    ok, rvec, tvec = cv2.solvePnP(points, pixels, camera.K, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise CalibrationError("<solve>", "rows", "OpenCV's PnP found no pose for these pairs")
    rvec, tvec = cv2.solvePnPRefineLM(points, pixels, camera.K, None, rvec, tvec)
    R_cw = cv2.Rodrigues(rvec)[0]  # world -> camera
    T = np.eye(4)
    T[:3, :3] = R_cw.T
    T[:3, 3] = -R_cw.T @ tvec.ravel()
    fitted = Camera(K=camera.K, T_world_camera=T, width=camera.width, height=camera.height, origin=camera.origin)
    return fitted, check_extrinsics(fitted, points, pixels)


def _pairs(points, pixels, where: str) -> Tuple[np.ndarray, np.ndarray]:
    points = np.ascontiguousarray(points, dtype=np.float64)
    pixels = np.ascontiguousarray(pixels, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or pixels.shape != (len(points), 2):
        raise CalibrationError(where, "points", f"expected points (N, 3) and pixels (N, 2), got {points.shape} and {pixels.shape}")
    return points, pixels
