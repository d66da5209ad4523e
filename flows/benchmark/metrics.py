"""Accuracy of an extracted flow against the ground truth of the same points (same order).

3D (metres): end-point error ``|p_ext - p_gt|`` over the samples both flows see ("both-visible";
an extractor's invisible samples are interpolated or held, not measured): median, mean, 90th
percentile, the fraction within 1 / 2 / 4 / 8 cm; the last frame's error over the points the
ground truth sees there; the median over every sample (what the env uses, invisible ones too).

2D, TAP-Vid style (Doersch et al. 2022, "query first" evaluation): both flows' points projected
with the demo camera (for the built-in pipelines, the tracker's own 2D tracks wherever depth was
valid). Pixel coordinates are rescaled to a 256 x 256 image (``x * 256 / W``, ``y * 256 / H``),
so the thresholds 1 / 2 / 4 / 8 / 16 px mean the same at any video size. Evaluated on the frames
after each point's query frame (its first visible frame in the extracted flow):

* ``tapvid_position_accuracy`` (< delta^x_avg): over ground-truth-visible samples, the fraction
  within each threshold, averaged over the five thresholds;
* ``tapvid_occlusion_accuracy``: fraction of samples whose predicted visibility equals the truth;
* ``tapvid_average_jaccard``: per threshold, TP / (TP + FP + FN) with TP = visible in both and
  within the threshold, FN = visible in the truth but not a TP, FP = predicted visible but
  occluded in the truth or beyond the threshold; averaged over the thresholds.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..format import ObjectFlow

THRESHOLDS_CM = (1, 2, 4, 8)
TAPVID_THRESHOLDS_PX = (1, 2, 4, 8, 16)
TAPVID_SIZE = 256


def _stat(values: np.ndarray, fn) -> float:
    return float(fn(values)) if values.size else float("nan")


def accuracy_3d(ext: ObjectFlow, gt: ObjectFlow) -> Dict[str, float]:
    """3D end-point errors of ``ext`` against ``gt`` (see the module docstring)."""
    if ext.points.shape != gt.points.shape:
        raise ValueError(f"accuracy: flows of shapes {ext.points.shape} and {gt.points.shape} (expected the same "
                         "points in the same order)")
    both = ext.visible & gt.visible
    d3 = np.linalg.norm(ext.points.astype(np.float64) - gt.points, axis=-1)
    e = d3[both]
    last = gt.visible[-1]
    row = {
        "points": int(ext.num_points), "frames": int(ext.num_frames),
        "both_visible_fraction": float(both.mean()),
        "epe3d_median_m": _stat(e, np.median), "epe3d_mean_m": _stat(e, np.mean),
        "epe3d_p90_m": _stat(e, lambda x: np.percentile(x, 90)),
        "final_epe3d_median_m": _stat(d3[-1, last], np.median),
        "all_samples_epe3d_median_m": float(np.median(d3)),
        "visibility_agreement": float((ext.visible == gt.visible).mean()),
        "extracted_visible_fraction": float(ext.visible.mean()), "gt_visible_fraction": float(gt.visible.mean()),
    }
    for c in THRESHOLDS_CM:
        row[f"within_{c}cm"] = _stat(e <= c / 100, np.mean)
    return row


def tapvid_metrics(uv_pred: np.ndarray, vis_pred: np.ndarray, uv_gt: np.ndarray, vis_gt: np.ndarray,
                   query_frames: np.ndarray, image_size) -> Dict[str, float]:
    """TAP-Vid metrics of 2D tracks (T, N, 2) pixels and visibility (T, N) (see the module docstring).

    ``query_frames`` (N,): frames up to and including a point's query frame are not evaluated;
    ``image_size``: (W, H) of the video the pixels are in.
    """
    W, H = image_size
    scale = np.array([TAPVID_SIZE / W, TAPVID_SIZE / H])
    pred = np.asarray(uv_pred, dtype=np.float64) * scale
    true = np.asarray(uv_gt, dtype=np.float64) * scale
    vis_pred = np.asarray(vis_pred, dtype=bool)
    vis_gt = np.asarray(vis_gt, dtype=bool)
    T = pred.shape[0]
    evaluated = np.arange(T)[:, None] > np.asarray(query_frames)[None, :]
    with np.errstate(invalid="ignore"):
        sq = np.sum((pred - true) ** 2, axis=-1)  # NaN (behind the camera) compares False: never within
    out: Dict[str, float] = {"tapvid_occlusion_accuracy": _stat((vis_pred == vis_gt)[evaluated], np.mean)}
    gt_pos = vis_gt & evaluated
    within_avg, jaccard = [], []
    for delta in TAPVID_THRESHOLDS_PX:
        with np.errstate(invalid="ignore"):
            within = sq < delta ** 2
        within_avg.append(np.sum(within & gt_pos) / max(np.sum(gt_pos), 1))
        tp = np.sum(within & vis_pred & gt_pos)
        fp = np.sum(vis_pred & evaluated & (~vis_gt | ~within))
        jaccard.append(tp / max(np.sum(gt_pos) + fp, 1))
        out[f"tapvid_within_{delta}px"] = float(within_avg[-1])
    nothing = not gt_pos.any()
    out["tapvid_position_accuracy"] = float("nan") if nothing else float(np.mean(within_avg))
    out["tapvid_average_jaccard"] = float("nan") if nothing else float(np.mean(jaccard))
    return out


def flow_accuracy(ext: ObjectFlow, gt: ObjectFlow, camera: Any, queries: Optional[np.ndarray] = None) -> Dict[str, float]:
    """All accuracy numbers of ``ext`` against ``gt`` (same points): 3D, 2D end-point error in the
    video's pixels (``epe2d_*``, over both-visible samples) and TAP-Vid's 2D metrics.

    ``camera``: the video's camera (``project``, ``width``, ``height``); ``queries``: each point's
    query frame (default: its first visible frame in ``ext``).
    """
    from .truth import query_frames

    row = accuracy_3d(ext, gt)
    uv_e, _ = camera.project(ext.points)
    uv_g, _ = camera.project(gt.points)
    both = ext.visible & gt.visible
    d2 = np.linalg.norm(uv_e - uv_g, axis=-1)[both]
    row["epe2d_median_px"] = _stat(d2, np.median)
    row["epe2d_mean_px"] = _stat(d2, np.mean)
    q = query_frames(ext) if queries is None else np.asarray(queries)
    row.update(tapvid_metrics(uv_e, ext.visible, uv_g, gt.visible, q, (camera.width, camera.height)))
    return row
