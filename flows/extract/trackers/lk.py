"""Weight-free point tracker: OpenCV pyramidal Lucas-Kanade, chained frame to frame.

Each frame pair is tracked forward (t-1 -> t) and back (t -> t-1); a point
whose round trip misses its start by more than ``fb_threshold`` pixels, whose
LK status fails, or that leaves the image is marked lost: invisible from that
frame on (it is never re-acquired). A lost point's track keeps its last
position.

Chaining frame to frame accumulates a sub-pixel error per step: on the rendered
drawer demonstration (a textured front moving towards the camera, 120 frames)
the points drifted 1.5 cm by the end. With ``keyframe_interval`` K > 1 each
chained position is refined by tracking again from the last keyframe (every K
frames; the chained position is the initial guess), so the error accumulates
once per keyframe instead of once per frame; the refinement is kept only when
its own forward-backward check passes and it moves the point by at most
``keyframe_max_shift`` pixels (else the chained position stands). Drawer drift:
1.5 cm -> 0.2 cm (``benchmarks/extraction_accuracy.py``).

``win_size`` (pixels) is the LK window. The default, 9, suits objects a few
tens of pixels across (the 320x240 demo renders): a window much wider than the
object's parts straddles its edge and drags points along the background (21
pixels, OpenCV's usual window, was 3x worse on the rendered Push-T).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..registry import TRACKERS


@TRACKERS.register("lk")
class LucasKanadeTracker:
    name = "lk"
    preferred_queries = "features"

    def __init__(self, win_size: int = 9, max_level: int = 3, fb_threshold: float = 1.0,
                 max_iterations: int = 30, epsilon: float = 0.01, border: float = 0.0,
                 keyframe_interval: int = 10, keyframe_max_shift: float = 1.0):
        self.win_size = int(win_size)
        self.max_level = int(max_level)
        self.fb_threshold = float(fb_threshold)
        self.max_iterations = int(max_iterations)
        self.epsilon = float(epsilon)
        self.border = float(border)
        self.keyframe_interval = int(keyframe_interval)
        self.keyframe_max_shift = float(keyframe_max_shift)
        if self.win_size < 3 or self.keyframe_interval < 1:
            raise ValueError(f"lk tracker: win_size must be >= 3 and keyframe_interval >= 1, got {self.win_size} "
                             f"and {self.keyframe_interval}")

    def settings(self) -> dict:
        """The tracker's parameters (recorded in the extracted flow's metadata)."""
        return {k: getattr(self, k) for k in ("win_size", "max_level", "fb_threshold", "max_iterations", "epsilon",
                                              "border", "keyframe_interval", "keyframe_max_shift")}

    def track(self, video: np.ndarray, queries: np.ndarray,
              progress: Optional[Callable[[int], None]] = None) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        video = np.asarray(video)
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"lk tracker: expected video (T, H, W, 3), got {video.shape}")
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != 2:
            raise ValueError(f"lk tracker: expected queries (N, 2) pixel x, y, got {q.shape}")
        T, H, W = video.shape[:3]
        N = q.shape[0]
        tracks = np.zeros((T, N, 2), dtype=np.float32)
        visible = np.zeros((T, N), dtype=bool)
        tracks[0] = q
        visible[0] = self._inside(q, W, H)
        lk = dict(winSize=(self.win_size, self.win_size), maxLevel=self.max_level,
                  criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, self.max_iterations, self.epsilon))
        prev = cv2.cvtColor(np.ascontiguousarray(video[0], dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        key_img, key_t = prev, 0
        if progress:
            progress(1)
        for t in range(1, T):
            cur = cv2.cvtColor(np.ascontiguousarray(video[t], dtype=np.uint8), cv2.COLOR_RGB2GRAY)
            tracks[t] = tracks[t - 1]
            alive = np.flatnonzero(visible[t - 1])
            if alive.size:
                p0 = tracks[t - 1, alive]
                p1, ok = self._forward_backward(cv2, prev, cur, p0, None, lk)
                ok &= self._inside(p1, W, H)
                if t - key_t > 1:  # the keyframe is not the previous frame: refine from it
                    pk, kok = self._forward_backward(cv2, key_img, cur, tracks[key_t, alive], p1, lk)
                    kok &= ok & (np.linalg.norm(pk - p1, axis=1) <= self.keyframe_max_shift)
                    p1[kok] = pk[kok]
                tracks[t, alive[ok]] = p1[ok]
                visible[t, alive[ok]] = True
            if t - key_t >= self.keyframe_interval:
                key_img, key_t = cur, t
            prev = cur
            if progress:
                progress(1)
        return tracks, visible

    def _forward_backward(self, cv2, img0, img1, p0: np.ndarray, guess: Optional[np.ndarray], lk: dict):
        """Positions (M, 2) of ``p0`` tracked from ``img0`` to ``img1`` (from ``guess`` if given) and
        whether each passed LK's status both ways and the round trip came back within ``fb_threshold``."""
        p0 = np.ascontiguousarray(p0, dtype=np.float32).reshape(-1, 1, 2)
        if guess is None:
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(img0, img1, p0, None, **lk)
        else:
            init = np.ascontiguousarray(guess, dtype=np.float32).reshape(-1, 1, 2).copy()
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(img0, img1, p0, init, flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
        # backwards from p1 with no guess: an independent round trip (starting it at p0 would pass trivially)
        p0b, st2, _ = cv2.calcOpticalFlowPyrLK(img1, img0, p1, None, **lk)
        p1 = p1.reshape(-1, 2)
        fb = np.linalg.norm(p0b.reshape(-1, 2) - p0.reshape(-1, 2), axis=1)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= self.fb_threshold) & np.all(np.isfinite(p1), axis=1)
        return p1, ok

    def _inside(self, p: np.ndarray, W: int, H: int) -> np.ndarray:
        b = self.border
        return (p[:, 0] >= b) & (p[:, 0] <= W - 1 - b) & (p[:, 1] >= b) & (p[:, 1] <= H - 1 - b)
