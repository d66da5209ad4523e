"""Calibrate an estimated depth map to metres with a reference depth (least squares over a mask).

Two models, chosen by ``mode``:

* ``"scale"`` (default): ``target ~= s * estimate``;
* ``"scale-shift"``: ``target ~= s * estimate + b``.

and two spaces, chosen by ``space``:

* ``"depth"`` (metric models): ``target = reference depth``; calibrated depth = ``s * e (+ b)``;
* ``"disparity"`` (relative models, whose output is an affine-invariant
  disparity, larger = nearer): ``target = 1 / reference depth``; the fit is
  done on disparities and inverted: calibrated depth = ``1 / (s * e (+ b))``
  (NaN where that disparity is <= 0).

Pixels used: inside ``mask`` (if given) where both maps are finite and > 0
(for the disparity space the estimate may be any finite value). With
``robust=True`` the fit is repeated once without pixels whose residual is
over 3 robust standard deviations (MAD).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

MODES = ("scale", "scale-shift")
SPACES = ("depth", "disparity")


def fit_calibration(estimate: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None,
                    mode: str = "scale", space: str = "depth", robust: bool = True) -> dict:
    """Least-squares ``scale`` (and ``shift``) mapping ``estimate`` to ``reference`` (see the module doc)."""
    if mode not in MODES:
        raise ValueError(f"unknown calibration mode {mode!r}; use one of {MODES}")
    if space not in SPACES:
        raise ValueError(f"unknown calibration space {space!r}; use one of {SPACES}")
    e = np.asarray(estimate, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if e.shape != r.shape:
        raise ValueError(f"calibration: estimate {e.shape} and reference {r.shape} differ in shape")
    ok = np.isfinite(e) & np.isfinite(r) & (r > 0)
    if space == "depth":
        ok &= e > 0
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != e.shape:
            raise ValueError(f"calibration: mask {m.shape} and depth {e.shape} differ in shape")
        ok &= m
    need = 1 if mode == "scale" else 2
    if ok.sum() < max(need, 3):
        raise ValueError(f"calibration: only {int(ok.sum())} pixels with valid reference and estimated depth "
                         "inside the mask; need at least 3")
    x = e[ok]
    y = r[ok] if space == "depth" else 1.0 / r[ok]

    def solve(x, y):
        if mode == "scale":
            den = float(x @ x)
            if den <= 0:
                raise ValueError("calibration: the estimate is zero over the mask")
            return float(x @ y) / den, 0.0
        A = np.stack([x, np.ones_like(x)], axis=1)
        (s, b), *_ = np.linalg.lstsq(A, y, rcond=None)
        return float(s), float(b)

    s, b = solve(x, y)
    used = x.size
    if robust and x.size >= 10:
        res = y - (s * x + b)
        mad = 1.4826 * np.median(np.abs(res - np.median(res)))
        if mad > 0:
            keep = np.abs(res) <= 3.0 * mad + 1e-12
            if keep.sum() >= max(need, 3) and keep.sum() < x.size:
                s, b = solve(x[keep], y[keep])
                used = int(keep.sum())
    if not (np.isfinite(s) and np.isfinite(b)) or s <= 0:
        raise ValueError(f"calibration: degenerate fit (scale {s}, shift {b}); the estimate does not correlate "
                         "with the reference depth over the mask")
    pred = s * x + b
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    return {"mode": mode, "space": space, "scale": s, "shift": b, "pixels": int(used), "rmse": rmse}


def apply_calibration(estimate: np.ndarray, params: dict) -> np.ndarray:
    """Metric depth (float32, NaN where invalid) from ``estimate`` and :func:`fit_calibration`'s result."""
    e = np.asarray(estimate, dtype=np.float64)
    v = params["scale"] * e + params["shift"]
    if params["space"] == "disparity":
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(v > 0, 1.0 / v, np.nan)
    else:
        d = np.where(v > 0, v, np.nan)
    return d.astype(np.float32)
