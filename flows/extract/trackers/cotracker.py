"""CoTracker3 (offline) adapter: https://github.com/facebookresearch/co-tracker

CoTracker is not on PyPI. Install it from a checkout::

    git clone https://github.com/facebookresearch/co-tracker && pip install -e co-tracker

and download a checkpoint (e.g. ``scaled_offline.pth``). The model is built
by, in order of preference:

1. ``model=`` a ready predictor object (anything with CoTracker's call
   signature: ``model(video (1,T,3,H,W) float 0..255, queries=(1,N,3) rows
   (t, x, y)) -> (tracks (1,T,N,2), visibility (1,T,N))``);
2. the ``cotracker`` package: ``cotracker.predictor.CoTrackerPredictor(checkpoint=..., offline=True, window_len=60)``;
3. ``torch.hub.load(repo_dir, "cotracker3_offline", source="local")`` when
   ``hub_repo`` points at a local checkout (no network needed).

Queries all start at frame 0. Visibility is thresholded by CoTracker itself
(bool); a float visibility is thresholded at ``visibility_threshold``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional

import numpy as np

from ..registry import TRACKERS

INSTALL_HINT = (
    "CoTracker is not installed: it is not on PyPI. Install it from a checkout with "
    "`git clone https://github.com/facebookresearch/co-tracker && pip install -e co-tracker`, "
    "download a checkpoint (e.g. https://huggingface.co/facebook/cotracker3/resolve/main/scaled_offline.pth) "
    "and pass checkpoint=PATH (CLI: --tracker-checkpoint PATH), or pass hub_repo=LOCAL_CHECKOUT; "
    "or use the weight-free tracker 'lk'."
)


def video_to_tensor(video: np.ndarray, device: Any = "cpu"):
    """(T, H, W, 3) uint8 -> float32 tensor (1, T, 3, H, W) with values 0..255 (CoTracker's input)."""
    import torch

    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"cotracker: expected video (T, H, W, 3), got {video.shape}")
    v = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()
    return v[None].to(device)


def queries_to_tensor(queries: np.ndarray, device: Any = "cpu"):
    """(N, 2) pixel x, y at frame 0 -> float32 tensor (1, N, 3) rows (t=0, x, y)."""
    import torch

    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != 2:
        raise ValueError(f"cotracker: expected queries (N, 2) pixel x, y, got {q.shape}")
    rows = np.concatenate([np.zeros((q.shape[0], 1), np.float32), q], axis=1)
    return torch.from_numpy(rows)[None].to(device)


@TRACKERS.register("cotracker")
class CoTrackerTracker:
    name = "cotracker"
    preferred_queries = "fps"

    def __init__(self, checkpoint: Optional[str] = None, hub_repo: Optional[str] = None, model: Any = None,
                 device: Optional[str] = None, window_len: int = 60, visibility_threshold: float = 0.5,
                 backward_tracking: bool = False):
        self.checkpoint = checkpoint
        self.hub_repo = hub_repo
        self.model = model
        self.device = device
        self.window_len = int(window_len)
        self.visibility_threshold = float(visibility_threshold)
        self.backward_tracking = bool(backward_tracking)

    def _load(self):
        try:
            import torch
        except ImportError as exc:
            raise ImportError(f"the cotracker tracker needs torch ({exc}). " + INSTALL_HINT) from exc
        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.model is not None:
            return self.model
        if self.checkpoint is not None and not os.path.isfile(self.checkpoint):
            raise FileNotFoundError(f"{self.checkpoint}: no such CoTracker checkpoint file")
        if self.hub_repo is not None:
            if not os.path.isdir(self.hub_repo):
                raise FileNotFoundError(f"{self.hub_repo}: no such CoTracker checkout (hub_repo)")
            model = torch.hub.load(self.hub_repo, "cotracker3_offline", source="local",
                                   pretrained=self.checkpoint is None)
            if self.checkpoint is not None:
                state = torch.load(self.checkpoint, map_location="cpu")
                model.model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        else:
            try:
                from cotracker.predictor import CoTrackerPredictor
            except ImportError as exc:
                raise ImportError(INSTALL_HINT) from exc
            if self.checkpoint is None:
                raise ValueError("cotracker: pass checkpoint=PATH to a CoTracker3 offline checkpoint "
                                 "(e.g. scaled_offline.pth); weights are not downloaded automatically")
            try:
                model = CoTrackerPredictor(checkpoint=self.checkpoint, offline=True, window_len=self.window_len)
            except TypeError:  # CoTracker 2 predictor: no offline/window_len options
                model = CoTrackerPredictor(checkpoint=self.checkpoint)
        self.model = model.to(self.device).eval() if hasattr(model, "to") else model
        return self.model

    def track(self, video: np.ndarray, queries: np.ndarray,
              progress: Optional[Callable[[int], None]] = None) -> tuple[np.ndarray, np.ndarray]:
        model = self._load()
        import torch

        T = np.asarray(video).shape[0]
        v = video_to_tensor(video, self.device)
        q = queries_to_tensor(queries, self.device)
        with torch.no_grad():
            tracks, vis = model(v, queries=q, backward_tracking=self.backward_tracking)
        tracks = tracks.detach().float().cpu().numpy()
        vis = vis.detach().cpu().numpy()
        N = q.shape[1]
        if tracks.shape != (1, T, N, 2):
            raise ValueError(f"cotracker: expected tracks of shape (1, {T}, {N}, 2), got {tracks.shape}")
        if vis.ndim == 4 and vis.shape[-1] == 1:
            vis = vis[..., 0]
        if vis.shape != (1, T, N):
            raise ValueError(f"cotracker: expected visibility of shape (1, {T}, {N}), got {vis.shape}")
        vis = vis[0] if vis.dtype == np.bool_ else vis[0] > self.visibility_threshold
        if progress:
            progress(T)
        return tracks[0].astype(np.float32), vis.astype(bool)
