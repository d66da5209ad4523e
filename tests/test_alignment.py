"""d2f_envs.alignment: the batched env's pruned time alignment is FlowTrackingReward.measure's, bit for bit."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import d2f_envs  # noqa: F401  (registers the envs)
from d2f_envs.alignment import frame_centroids, nearest_frames, pair_errors


def reference(target, vis, nvis, pts, t_old):
    """The reward's own errors (FlowTrackingReward._errors_from) and measure's argmin, per env."""
    rf = gym.make("D2F-PushT-v0").unwrapped.reward_fn
    assert rf._vis.shape == vis.shape
    rf._vis, rf._nvis, rf._all_visible = vis, nvis, bool(vis.all())
    rf.target = target
    out = []
    for p, t0 in zip(pts, t_old):
        errs = rf._errors_from(p, int(t0)).copy()
        out.append((int(t0) + int(errs.argmin()), errs))
    return out


@pytest.mark.parametrize("partial", [False, True])
def test_nearest_frames_and_pair_errors_match_the_full_search(partial):
    rng = np.random.default_rng(0)
    T, N, E = 41, 64, 16
    for trial in range(60):
        # a flow that moves, stands still (repeated frames: exact ties) and moves back near itself
        path = np.cumsum(rng.normal(scale=rng.choice([1e-4, 0.005, 0.03]), size=(T, 1, 3)), axis=0)
        path[10:15] = path[10]
        base = rng.normal(scale=0.05, size=(1, N, 3))
        target = base + path
        vis = (rng.random((T, N)) > 0.3).astype(np.float64) if partial else np.ones((T, N))
        vis[:, 0] = 1.0
        nvis = vis.sum(axis=1)
        allv = not partial
        t_old = rng.integers(0, T, size=E)
        frames = rng.integers(0, T, size=E)
        pts = target[frames] + rng.normal(scale=rng.choice([0.0, 1e-3, 0.02]), size=(E, N, 3))
        planes = np.broadcast_to(target.transpose(0, 2, 1), (E, T, 3, N)).copy()
        cents = np.broadcast_to(frame_centroids(target, vis, nvis, allv), (E, T, 3)).copy()
        pts_t = np.ascontiguousarray(pts.transpose(0, 2, 1))
        got = nearest_frames(planes, cents, pts, pts_t, t_old, vis, nvis, allv)
        ref = reference(target, vis, nvis, pts, t_old)
        assert got.tolist() == [t for t, _ in ref]
        last = np.full(E, T - 1)
        errs = pair_errors(planes, pts_t, np.arange(E), last, vis, nvis, allv)
        assert errs.tolist() == [e[-1] for _, e in ref]  # the same floats, not close ones
