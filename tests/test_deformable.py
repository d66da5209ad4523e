"""The deformable motion model of the extraction (flows/extract/deformable.py, ``extract --motion deformable``)."""
from __future__ import annotations

import numpy as np
import pytest

from flows.extract.deformable import deformable_fill, weighted_kabsch
from flows.extract.lift import fill_invisible
from flows.extract.rigid import check_motion


def bending_sheet(T=40, n=16, size=0.24):
    """A flat n x n sheet (size x size m) rolled up from its x = 0 edge onto a cylinder whose radius shrinks
    over time (at the end the sheet is bent through 180 degrees), while the whole sheet slides in y:
    (points (T, n*n, 3), the grid's (x, y) in the sheet)."""
    g = np.linspace(0.0, size, n)
    x, y = [a.ravel() for a in np.meshgrid(g, g, indexing="ij")]
    pts = np.zeros((T, x.size, 3))
    for t in range(T):
        bend = np.pi * t / (T - 1)  # total bend angle of the sheet
        s = size - x  # arc length from the fixed x = size edge
        if bend < 1e-9:
            px, pz = x, np.zeros_like(x)
        else:
            R = size / bend
            px, pz = size - R * np.sin(s / R), R * (1 - np.cos(s / R))
        pts[t] = np.stack([px, y + 0.1 * t / (T - 1), pz], axis=1)
    return pts, np.stack([x, y], axis=1)


def test_hidden_patch_of_a_bending_sheet_follows_the_sheet():
    """The patch a hand would hide (at the lifted edge) is filled to within a few mm of the truth; holding it
    (the lifting alone) is off by decimetres."""
    true, xy = bending_sheet()

    vis = np.ones(true.shape[:2], bool)
    patch = (xy[:, 0] < 0.06) & (np.abs(xy[:, 1] - 0.12) < 0.05)  # the lifted edge's middle
    vis[5:, patch] = False
    late = (xy[:, 0] > 0.2) & (xy[:, 1] < 0.03)  # no measurement before frame 12 (e.g. no depth there)
    vis[:12, late] = False
    meas = np.where(vis[..., None], true, np.nan)
    held = fill_invisible(meas, vis)
    P, V, filled, stats = deformable_fill(meas, vis)
    np.testing.assert_array_equal(V, vis)  # visibility still means "measured"
    np.testing.assert_array_equal(filled, ~vis)
    np.testing.assert_array_equal(P[vis], true[vis])  # measured samples untouched
    err = np.linalg.norm(P - true, axis=-1)
    assert err[:, patch].max() < 0.01, err[:, patch].max()
    assert np.median(err[:, patch]) < 0.003
    assert err[:, late].max() < 0.003  # filled backwards in time, before their first measurement
    assert np.linalg.norm(held - true, axis=-1)[:, patch].max() > 0.15
    assert stats["filled"] == pytest.approx((~vis).mean()) and stats["filled_without_neighbours"] == 0.0


def test_points_that_slide_off_the_sheet_are_dropped_and_filled():
    """A track that stays behind on the background while the sheet moves (or rides on the hand) changes its
    distances to its neighbours: it is marked lost from then on and filled from them."""
    true, xy = bending_sheet()
    vis = np.ones(true.shape[:2], bool)
    slid = np.flatnonzero((xy[:, 0] > 0.23) & (np.abs(xy[:, 1] - 0.12) < 0.02))  # 3 points as the sheet slides
    meas = true.copy()
    meas[10:, slid] = true[10, slid]  # stuck where they were at frame 10
    P, V, filled, stats = deformable_fill(meas, vis)
    assert not V[25:, slid].any() and V[:10, slid].all()
    assert V[:, np.setdiff1d(np.arange(vis.shape[1]), slid)].all()  # nothing else rejected
    assert np.linalg.norm(P[-1, slid] - true[-1, slid], axis=-1).max() < 0.01
    assert np.linalg.norm(meas[-1, slid] - true[-1, slid], axis=-1).min() > 0.05
    assert stats["rejected"] > 0 and stats["stretch_m"] == 0.005
    P0, V0, _, _ = deformable_fill(meas, vis, stretch=None)  # off: kept as measured
    assert V0.all() and np.array_equal(P0, meas)


def test_rigidly_moving_neighbours_give_the_exact_position():
    rng = np.random.default_rng(0)
    ref = rng.uniform(-0.1, 0.1, size=(60, 3))
    T = 12
    true = np.zeros((T, 60, 3))
    for t in range(T):
        a = 0.1 * t
        R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        true[t] = ref @ R.T + [0.02 * t, 0, 0.01 * t]
    vis = np.ones((T, 60), bool)
    vis[3:, :5] = False
    P, V, filled, _ = deformable_fill(np.where(vis[..., None], true, 0.0), vis, neighbours=6)
    np.testing.assert_allclose(P, true, atol=1e-9)


def test_a_point_with_no_measured_neighbour_keeps_its_position_and_is_counted():
    true = np.zeros((4, 3, 3))
    true[:, :, 0] = np.arange(3) * 0.01
    true[:, :, 2] = np.arange(4)[:, None] * 0.01  # all rise 1 cm a frame
    vis = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 1, 0]], bool)
    P, V, filled, stats = deformable_fill(true, vis, neighbours=2)
    np.testing.assert_allclose(P[1, 1], true[1, 1])  # moved with points 0 and 2 (measured in frames 0 and 1)
    np.testing.assert_allclose(P[2, [0, 2]], true[1, [0, 2]])  # nobody measured in both frames 1 and 2: kept
    np.testing.assert_allclose(P[3, [0, 2]], true[1, [0, 2]] + [0, 0, 0.01])  # then moved with point 1
    assert stats["filled_without_neighbours"] == pytest.approx(2 / 12)


def test_weighted_kabsch_ignores_zero_weights_and_bad_arguments_are_refused():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(1, 6, 3))
    dst = src + [1.0, 2.0, 3.0]
    dst[0, 5] += 10.0  # an outlier with weight 0
    R, t = weighted_kabsch(src, dst, np.array([[1, 1, 1, 1, 1, 0.0]]))
    np.testing.assert_allclose(R[0], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(t[0], [1, 2, 3], atol=1e-9)
    with pytest.raises(ValueError, match="neighbours must be >= 1"):
        deformable_fill(np.zeros((2, 3, 3)), np.ones((2, 3), bool), neighbours=0)
    with pytest.raises(ValueError, match="do not match"):
        deformable_fill(np.zeros((2, 4, 3)), np.ones((2, 3), bool))
    assert check_motion("deformable") == "deformable"
    with pytest.raises(ValueError, match="unknown motion model 'cloth'"):
        check_motion("cloth")
