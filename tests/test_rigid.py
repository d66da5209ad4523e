"""The rigid motion model of the extraction (flows/extract/rigid.py, ``extract --motion rigid``)."""
from __future__ import annotations

import numpy as np
import pytest

import cv2  # noqa: F401  the extract extra (installed by the test extra): a missing cv2 fails here, never skips

from flows.extract.rigid import check_motion, kabsch_batch, rigid_filter  # noqa: E402


def rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def moving_object(T=30, N=200, seed=0, noise=0.0005):
    """Points of a 20 x 10 x 5 cm box carried by a rotating, translating pose: (true points, poses)."""
    rng = np.random.default_rng(seed)
    local = rng.uniform([-0.1, -0.05, -0.025], [0.1, 0.05, 0.025], size=(N, 3))
    poses = np.tile(np.eye(4), (T, 1, 1))
    for t in range(T):
        s = t / (T - 1)
        poses[t, :3, :3] = rot([0.2, 0.1, 1.0], 1.2 * s)
        poses[t, :3, 3] = [0.3 * s, -0.1 * s, 0.05 * np.sin(3 * s)]
    pts = np.einsum("tij,nj->tni", poses[:, :3, :3], local) + poses[:, None, :3, 3]
    return pts, pts + rng.normal(0, noise, pts.shape), poses


def test_points_that_stop_following_the_object_are_dropped_and_lost_ones_filled():
    true, meas, poses = moving_object()
    T, N = true.shape[:2]
    vis = np.ones((T, N), bool)
    slid = np.arange(0, 30)  # slide onto the static background at frame 10 (a tracker's typical failure)
    meas[10:, slid] = meas[10, slid]
    occluded = np.arange(30, 45)
    vis[5:16, occluded] = False
    meas[5:16, occluded] = 99.0  # whatever the lifting left there: never read
    late = np.arange(45, 50)  # no depth at frame 0: first measured at frame 8
    vis[:8, late] = False
    P, V, X, stats = rigid_filter(meas, vis, threshold=0.01)
    assert P.shape == (T, N, 3) and V.shape == (T, N) and X.shape == (T, 4, 4)
    good = np.setdiff1d(np.arange(N), slid)
    # the slid points: visible while they still move with the object, dropped once 1 cm off it
    off = np.linalg.norm(meas[:, slid] - true[:, slid], axis=-1) > 0.012
    assert not (V[:, slid] & off).any()
    assert V[:10, slid].all()
    # the good points keep the visibility they had
    np.testing.assert_array_equal(V[:, good], vis[:, good])
    # the fitted poses (relative to frame 0) carry the object's points where they are, to ~1 mm
    for t in (5, 15, 29):
        moved = true[0] @ X[t, :3, :3].T + X[t, :3, 3]
        assert np.linalg.norm(moved - true[t], axis=-1).max() < 0.003
    # unmeasured samples are filled from the pose: occluded, late (before frame 8 too) and dropped ones
    fill = ~V
    assert fill[:, occluded].all(axis=1)[5:16].all()
    err = np.linalg.norm(P - true, axis=-1)
    assert err[fill].max() < 0.004, err[fill].max()
    assert err[:8, late].max() < 0.004
    # measured samples are left exactly as measured
    np.testing.assert_array_equal(P[V], meas[V])
    assert stats["rejected"] > 0 and stats["unchecked_frames"] == 0 and stats["threshold_m"] == 0.01


def test_frames_with_too_few_points_are_left_unchecked():
    true, meas, _ = moving_object(T=6, N=10)
    vis = np.ones((6, 10), bool)
    vis[3, 2:] = False  # 2 measured points at frame 3: no pose can be fitted
    meas[3, :2] += 0.05  # and they are off; unchecked, their visibility stays
    P, V, X, stats = rigid_filter(meas, vis)
    assert stats["unchecked_frames"] == 1
    assert V[3, :2].all()
    np.testing.assert_allclose(X[3], X[2])


def test_kabsch_batch_recovers_rotations_without_reflections():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(4, 5, 3))
    R = np.stack([rot(rng.normal(size=3), a) for a in (0.1, 1.0, 2.5, 3.0)])
    dst = np.einsum("hij,hkj->hki", R, src) + np.array([0.1, -0.2, 0.3])
    X = kabsch_batch(src, dst)
    np.testing.assert_allclose(X[:, :3, :3], R, atol=1e-9)
    np.testing.assert_allclose(X[:, :3, 3], np.tile([0.1, -0.2, 0.3], (4, 1)), atol=1e-9)
    mirrored = kabsch_batch(src[:1], src[:1] * np.array([1, 1, -1]))  # a reflection is not a rigid motion
    assert np.linalg.det(mirrored[0, :3, :3]) == pytest.approx(1.0)


def test_bad_arguments_are_named():
    pts = np.zeros((3, 4, 3))
    with pytest.raises(ValueError, match="threshold must be > 0"):
        rigid_filter(pts, np.ones((3, 4), bool), threshold=0)
    with pytest.raises(ValueError, match=r"points \(3, 4, 3\) do not match visibility \(3, 5\)"):
        rigid_filter(pts, np.ones((3, 5), bool))
    with pytest.raises(ValueError, match="unknown motion model 'affine'; use one of 'none', 'rigid', 'deformable'"):
        check_motion("affine")
    assert check_motion(None) == "none" and check_motion("rigid") == "rigid"
