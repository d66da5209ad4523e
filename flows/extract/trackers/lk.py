"""Weight-free point tracker: OpenCV pyramidal Lucas-Kanade, chained frame to frame.

Each frame pair is tracked forward (t-1 -> t) and back (t -> t-1); a point
whose round trip misses its start by more than ``fb_threshold`` pixels, whose
LK status fails, or that leaves the image is marked lost: invisible from that
frame on (it is never re-acquired). A lost point's track keeps its last
position.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..registry import TRACKERS


@TRACKERS.register("lk")
class LucasKanadeTracker:
    name = "lk"
    preferred_queries = "features"

    def __init__(self, win_size: int = 21, max_level: int = 3, fb_threshold: float = 1.0,
                 max_iterations: int = 30, epsilon: float = 0.01, border: float = 0.0):
        self.win_size = int(win_size)
        self.max_level = int(max_level)
        self.fb_threshold = float(fb_threshold)
        self.max_iterations = int(max_iterations)
        self.epsilon = float(epsilon)
        self.border = float(border)

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
        if progress:
            progress(1)
        for t in range(1, T):
            cur = cv2.cvtColor(np.ascontiguousarray(video[t], dtype=np.uint8), cv2.COLOR_RGB2GRAY)
            tracks[t] = tracks[t - 1]
            alive = np.flatnonzero(visible[t - 1])
            if alive.size:
                p0 = tracks[t - 1, alive].reshape(-1, 1, 2)
                p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **lk)
                p0b, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **lk)
                p1 = p1.reshape(-1, 2)
                fb = np.linalg.norm(p0b.reshape(-1, 2) - p0.reshape(-1, 2), axis=1)
                ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= self.fb_threshold) \
                    & np.all(np.isfinite(p1), axis=1) & self._inside(p1, W, H)
                tracks[t, alive[ok]] = p1[ok]
                visible[t, alive[ok]] = True
            prev = cur
            if progress:
                progress(1)
        return tracks, visible

    def _inside(self, p: np.ndarray, W: int, H: int) -> np.ndarray:
        b = self.border
        return (p[:, 0] >= b) & (p[:, 0] <= W - 1 - b) & (p[:, 1] >= b) & (p[:, 1] <= H - 1 - b)
