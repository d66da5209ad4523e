"""The one flow-tracking reward of dream2flow-gym.

:class:`FlowTrackingReward` compares the object's current points (from the
task's binding, :mod:`d2f_envs.bindings`, one per object class) with a
time-aligned subgoal frame of the flow and returns named reward terms.

Two distances between the points and a flow frame (``metric=``):

* ``"pointwise"`` (default): point i is the flow's point i; the mean distance
  over the frame's visible points (rigid, articulated objects);
* ``"chamfer"``: the points are interchangeable pieces (granular objects, see
  :class:`~d2f_envs.bindings.PieceSetBinding`), as many as the object has; the
  symmetric Chamfer distance :func:`chamfer_errors` to the frame's visible points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from flows import ObjectFlow, fit_rigid_transform

from .bindings import PointBinding, RigidBinding  # noqa: F401  re-exported: d2f_envs.reward.RigidBinding


# --------------------------------------------------------------------------- set distance
def chamfer_errors(points: np.ndarray, target: np.ndarray, visible: Optional[np.ndarray] = None) -> np.ndarray:
    """Symmetric Chamfer distance (m) from a set of points to each flow frame.

    ``points`` (..., M, 3): M interchangeable pieces (leading axes: a batch, e.g. a
    planner's samples); ``target`` (T, N, 3): T flow frames; ``visible`` (T, N) bool
    or None (all visible). Returns (..., T)::

        d_t = ( mean_m min_{n visible} |p_m - q_tn|  +  mean_{n visible} min_m |p_m - q_tn| ) / 2

    the mean distance from each piece to the nearest visible flow point and from each
    visible flow point to the nearest piece, averaged: zero (to ~1e-9 m in floating point)
    when every piece is on a flow point and every flow point has a piece on it; the same for any order of
    the pieces; the offset when all pieces are moved by one offset smaller than half
    their spacing. A frame with no visible point is not allowed (the flow format's rule).
    """
    p = np.asarray(points, dtype=np.float64)
    q = np.asarray(target, dtype=np.float64)
    # squared distances (..., T, N, M) as |q|^2 + |p|^2 - 2 q.p: one matrix product instead of
    # three broadcast differences (~3x faster at T=61, N=M=36); the cancellation error is ~1e-17 m^2,
    # far below any distance that matters, and the clamp at 0 keeps it out of the square root
    cross = np.matmul(q, np.swapaxes(p, -1, -2)[..., None, :, :])  # (..., T, N, M)
    d2 = np.multiply(cross, -2.0, out=cross)
    d2 += np.einsum("tnc,tnc->tn", q, q)[..., None]
    d2 += np.einsum("...mc,...mc->...m", p, p)[..., None, None, :]
    np.maximum(d2, 0.0, out=d2)
    if visible is not None and not np.all(visible):
        vis = np.asarray(visible, dtype=bool)  # (T, N)
        d2 = np.where(vis[:, :, None], d2, np.inf)  # an unseen flow point is nobody's nearest
        w = vis.astype(np.float64)
        nearest_piece = np.sqrt(np.where(vis, d2.min(axis=-1), 0.0))  # (..., T, N)
        backward = (nearest_piece * w).sum(axis=-1) / w.sum(axis=-1)
    else:
        backward = np.sqrt(d2.min(axis=-1)).mean(axis=-1)  # each flow point to its nearest piece
    forward = np.sqrt(d2.min(axis=-2)).mean(axis=-1)  # each piece to its nearest visible flow point
    return 0.5 * (forward + backward)


# --------------------------------------------------------------------------- reward
@dataclass(frozen=True)
class RewardScales:
    """Weights of the reward terms (reward = sum of the weighted terms)."""

    # exp(-tracking_error / sigma) in [0, 1] each step: dense "be where the flow is now"
    tracking: float = 1.0
    # fraction of the flow advanced this step (t* moves forward only): the whole flow pays this once
    progress: float = 10.0
    # -mean(action**2): smooth, small motions transfer better to hardware
    action: float = 0.05
    # paid each step while the task's success criterion holds
    success: float = 2.0
    # exp(-d / REACH_SIGMA), d = the tool centre point's distance to the nearest of the object's
    # points. Off (0) by default: the reward is then the flow's alone. An object that moves only
    # once grasped (pick-and-place) gives the flow terms nothing to say until it is, so an agent
    # may never find the grasp; this term leads the tool to the object, embodiment-free (every
    # robot has a TCP), and needs nothing about the task but the flow's points.
    reach: float = 0.0


#: length scale (m) of the reach term
REACH_SIGMA = 0.1


ALIGNMENTS = ("nearest", "clock")
METRICS = ("pointwise", "chamfer")


class FlowTrackingReward:
    """Dense reward for making an object's points follow a 3D object flow.

    Time alignment (Dream2Flow, appendix): ``t*`` is the flow frame nearest to
    the object's current points, searched forward from the previous ``t*`` and
    never back; the subgoal is frame ``min(t* + lookahead, T - 1)``. With
    ``alignment="clock"`` the subgoal is the frame at the elapsed time instead
    (``round(steps * dt * fps)``); ``t*`` still drives the progress term.

    ``max_lag`` (frames, nearest alignment) adds a deadline: the subgoal never
    falls more than ``max_lag`` frames behind the clock frame. Without it an
    object that never moves keeps a subgoal ``lookahead`` frames from the start
    and collects almost the full tracking reward for doing nothing; with it,
    standing still is paid less and less once the flow should have moved on.
    ``None`` is the paper's rule exactly.

    Only points visible in the compared flow frame count. Distances are means
    over those points of the Euclidean distance, in metres: point by point
    (``metric="pointwise"``), or the symmetric Chamfer distance between the
    object's interchangeable pieces and the frame's points
    (``metric="chamfer"``, :func:`chamfer_errors`; the pieces need not be as
    many as the flow's points, and the flow cannot be re-anchored rigidly
    without a correspondence: ``reset(points, anchor=False)``).

    Args:
        flow: the flow, already at the env's control rate (see ``ObjectFlow.resample``).
        scales: term weights, see :class:`RewardScales`.
        sigma: length scale (m) of the tracking term ``exp(-d / sigma)``.
        lookahead: subgoal offset in flow frames (nearest alignment).
        alignment: ``"nearest"`` or ``"clock"``.
        max_lag: the subgoal's deadline, in flow frames behind the clock (nearest alignment), or None.
        success_threshold: final error (m) under which the flow counts as reached.
        dt: control period in seconds (clock alignment).
        metric: ``"pointwise"`` or ``"chamfer"``, the distance to a flow frame (see above).
    """

    def __init__(
        self,
        flow: ObjectFlow,
        *,
        scales: RewardScales = RewardScales(),
        sigma: float = 0.03,
        lookahead: int = 3,
        alignment: str = "nearest",
        success_threshold: float = 0.02,
        dt: float = 0.1,
        max_lag: Optional[int] = None,
        metric: str = "pointwise",
    ):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        if sigma <= 0 or lookahead < 0 or success_threshold <= 0 or dt <= 0:
            raise ValueError("sigma, success_threshold and dt must be > 0 and lookahead >= 0")
        if max_lag is not None and max_lag < 0:
            raise ValueError(f"max_lag must be None or >= 0 frames, got {max_lag}")
        self.flow = flow
        self.scales = scales
        self.sigma = float(sigma)
        self.lookahead = int(lookahead)
        self.alignment = alignment
        self.success_threshold = float(success_threshold)
        self.dt = float(dt)
        self.max_lag = None if max_lag is None else int(max_lag)
        self.metric = metric
        self._chamfer = metric == "chamfer"
        self._vis = flow.visible.astype(np.float64)  # (T, N)
        self._nvis = self._vis.sum(axis=1)  # (T,) >= 1 by the format's rules
        self._all_visible = bool(flow.visible.all())  # the common case: no visibility weights to apply
        self.anchor = np.eye(4)
        self.target = flow.points.astype(np.float64)
        self.t_star = 0
        self.steps = 0
        # hot-path scratch (see _errors_from): the target as coordinate planes (3, T, N), built
        # lazily whenever ``target`` is replaced, and preallocated buffers
        self._planes_of = None
        self._planes = np.empty((3,) + self._vis.shape)
        self._buf3 = np.empty((3,) + self._vis.shape)
        self._buf = np.empty(self._vis.shape)
        self._lookahead_cap = flow.num_frames - 1
        self._tmax = max(flow.num_frames - 1, 1)

    @property
    def visibility_weights(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(vis, count)``: per-point weights (T, N) in {0, 1} and visible points per frame (T,),
        the weights of every mean distance this reward computes (for planners that batch it)."""
        return self._vis, self._nvis

    @property
    def num_frames(self) -> int:
        return self.flow.num_frames

    # ------------------------------------------------------------------ episode
    def reset(self, points: np.ndarray, anchor: bool = True) -> None:
        """Start an episode with the object's points at ``points`` (N, 3).

        With ``anchor=True`` the flow is re-anchored rigidly: the best-fit rigid
        transform of frame 0 onto ``points`` is applied to every frame, so a flow
        made for one start pose means the same motion from another. It needs
        point correspondence: with ``metric="chamfer"`` pass ``anchor=False``.
        """
        if anchor and self._chamfer:
            raise ValueError(
                "reset(anchor=True) fits a rigid transform point by point, but with metric='chamfer' the "
                "points are interchangeable pieces with no correspondence to the flow's; use anchor=False"
            )
        if anchor:
            self.anchor = fit_rigid_transform(self.flow.points[0], points, weights=self._vis[0])
            R, p = self.anchor[:3, :3], self.anchor[:3, 3]
            self.target = self.flow.points.astype(np.float64) @ R.T + p
        else:
            self.anchor = np.eye(4)
            self.target = self.flow.points.astype(np.float64)
        self.t_star = 0
        self.steps = 0

    def errors_to_frames(self, points: np.ndarray, start: int = 0) -> np.ndarray:
        """Mean visible-point distance (m) from ``points`` to every frame from ``start`` on."""
        if start < 0:  # the fast path below slices; keep numpy's negative-start meaning
            start += self.num_frames
        return self._errors_from(points, max(start, 0)).copy()

    def _errors_from(self, points: np.ndarray, start: int) -> np.ndarray:
        """``errors_to_frames`` into a scratch buffer (valid until the next call).

        Same arithmetic as ``sqrt(((target[start:] - points) ** 2).sum(axis=2))`` summed over the
        visible points, term by term and in the same order (bit-identical), but on (T, N)
        coordinate planes: numpy's reduction over a length-3 last axis is slow.
        """
        if self._chamfer:
            return chamfer_errors(points, self.target[start:], None if self._all_visible else self._vis[start:])
        target = self.target
        if self._planes_of is not target:
            if target.shape != self._planes.shape[1:] + (3,):
                raise ValueError(f"target of shape {target.shape}, expected {self._planes.shape[1:] + (3,)}")
            np.copyto(self._planes, np.moveaxis(target, 2, 0))
            self._planes_of = target
        b = self._buf3[:, start:]
        pts_t = np.ascontiguousarray(np.asarray(points, dtype=np.float64).T)  # (3, N): unit-stride broadcast
        np.subtract(self._planes[:, start:], pts_t[:, None, :], out=b)
        np.multiply(b, b, out=b)
        d = self._buf[start:]
        np.add(b[0], b[1], out=d)
        np.add(d, b[2], out=d)
        np.sqrt(d, out=d)
        if not self._all_visible:
            np.multiply(d, self._vis[start:], out=d)
        return np.divide(d.sum(axis=1), self._nvis[start:])

    def frame_error(self, points: np.ndarray, frame: int) -> float:
        if self._chamfer:
            frame = int(frame) % self.num_frames if frame < 0 else int(frame)  # numpy's meaning of -1
            vis = None if self._all_visible else self._vis[frame:frame + 1]
            return float(chamfer_errors(points, self.target[frame:frame + 1], vis)[0])
        d = np.sqrt(((self.target[frame] - points) ** 2).sum(axis=1))
        return float(d @ self._vis[frame] / self._nvis[frame])

    def measure(self, points: np.ndarray) -> Dict[str, float]:
        """Advance the time alignment to ``points`` and measure errors (no reward).

        Returns ``tracking_error`` (to the subgoal), ``final_error`` (to the last
        frame), ``flow_index`` (t*), ``subgoal_index`` and ``progress`` (frames
        t* advanced this call).
        """
        last = self._lookahead_cap  # T - 1
        t_old = self.t_star
        errs = self._errors_from(points, t_old)  # frames t_old .. T-1: never search back
        t_new = t_old + int(errs.argmin())
        self.t_star = t_new
        self.steps += 1
        clock = int(round(self.steps * self.dt * self.flow.fps))
        if self.alignment == "nearest":
            sub = min(t_new + self.lookahead, last)
            if self.max_lag is not None:
                sub = max(sub, min(clock - self.max_lag, last))
        else:
            sub = min(clock, last)
        return {
            "tracking_error": float(errs[sub - t_old]) if sub >= t_old else self.frame_error(points, sub),
            "final_error": float(errs[-1]),
            "flow_index": t_new,
            "subgoal_index": sub,
            "progress": t_new - t_old,
        }

    def terms(self, measured: Dict[str, float], action: np.ndarray, success: bool) -> Dict[str, float]:
        """Weighted reward terms; the reward is their sum. ``reward_reach`` is there only when its
        scale is not 0 (it then needs ``measured["tcp_distance"]``)."""
        s = self.scales
        a = action if type(action) is np.ndarray and action.dtype == np.float64 else np.asarray(action, dtype=np.float64)
        terms = {
            "reward_tracking": s.tracking * math.exp(-measured["tracking_error"] / self.sigma),
            "reward_progress": s.progress * measured["progress"] / self._tmax,
            "reward_action": -s.action * float(a @ a) / max(a.size, 1),
            "reward_success": s.success * float(success),
        }
        if s.reach:
            terms["reward_reach"] = s.reach * math.exp(-measured["tcp_distance"] / REACH_SIGMA)
        return terms

    def reached(self, measured: Dict[str, float]) -> bool:
        """The flow's end is reached: final error under ``success_threshold``."""
        return measured["final_error"] < self.success_threshold

    def step(self, points: np.ndarray, action: np.ndarray, task_success: bool = True,
             tcp: Optional[np.ndarray] = None) -> Tuple[float, Dict[str, float]]:
        """One control step: returns ``(reward, info)``; ``info`` holds every term and measurement.

        ``is_success`` is ``final_error < success_threshold`` and ``task_success``
        (a task's own criterion, e.g. Push-T's coverage). ``tcp``: the tool centre point (3,),
        needed when the reach term is on (``info["tcp_distance"]``).
        """
        m = self.measure(points)
        if self.scales.reach:
            if tcp is None:
                raise ValueError("the reach reward term (reward_scales reach != 0) needs the TCP position: step(..., tcp=)")
            m["tcp_distance"] = float(np.sqrt(((np.asarray(points, np.float64) - tcp) ** 2).sum(axis=-1).min()))
        success = self.reached(m) and bool(task_success)
        terms = self.terms(m, action, success)
        info = dict(m)
        info.update(terms)
        info["is_success"] = success
        return float(sum(terms.values())), info
