"""Operations on object flows (flows/ops.py) and the geometric primitives."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import FlowFormatError, ObjectFlow, farthest_point_sampling, fit_rigid_transform
from flows.ops import resample, rigid_transform, slice_time, subsample_points


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_transform(rng) -> np.ndarray:
    X = np.eye(4)
    X[:3, :3] = random_rotation(rng)
    X[:3, 3] = rng.normal(size=3)
    return X


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def linear_flow(T=31, N=5, fps=30.0, visible=None, **kw) -> ObjectFlow:
    """Points moving at constant velocity; positions are exact small multiples (exact in float32)."""
    p0 = np.arange(N * 3, dtype=np.float64).reshape(N, 3)
    v = np.array([0.25, -0.5, 1.0])  # per frame
    pts = p0[None] + np.arange(T)[:, None, None] * v
    vis = np.ones((T, N), bool) if visible is None else visible
    return ObjectFlow(points=pts, visible=vis, fps=fps, task="t", object_name="o", **kw)


# ---------------------------------------------------------------- resample
def test_resample_down_keeps_positions_at_matching_times():
    flow = linear_flow(T=31, fps=30.0)
    out = flow.resample(10.0)
    assert out.fps == 10.0
    assert out.num_frames == 11
    assert out.duration == pytest.approx(flow.duration)
    np.testing.assert_array_equal(out.points, flow.points[::3])
    np.testing.assert_array_equal(out.visible, flow.visible[::3])
    assert out.points.dtype == np.float32


def test_resample_up_interpolates_linearly():
    flow = linear_flow(T=11, fps=10.0)
    out = resample(flow, 30.0)
    assert out.num_frames == 31
    assert out.duration == pytest.approx(flow.duration)
    # linear motion stays linear: frame k at 30 fps is source frame k / 3
    expected = flow.points[0][None].astype(np.float64) + (np.arange(31) / 3.0)[:, None, None] * np.array([0.25, -0.5, 1.0])
    np.testing.assert_allclose(out.points, expected, atol=1e-5)
    np.testing.assert_array_equal(out.points[::3], flow.points)


def test_resample_same_fps_is_identity():
    vis = np.random.default_rng(0).random((60, 5)) > 0.3
    vis[:, 0] = True
    for fps in (25.0, 30.0, 15.0):
        flow = linear_flow(T=60, fps=fps, visible=vis)
        out = flow.resample(fps)
        np.testing.assert_array_equal(out.points, flow.points)
        np.testing.assert_array_equal(out.visible, flow.visible)


def test_resample_keeps_the_goal_frame_after_a_partial_last_interval():
    flow = linear_flow(T=33, fps=30.0)  # 32/30 s: not a whole number of 0.1 s periods
    out = flow.resample(10.0)
    assert out.num_frames == 12  # times 0 .. 1.0 s, then the last source frame (1.0667 s)
    np.testing.assert_array_equal(out.points[-1], flow.points[-1])
    np.testing.assert_array_equal(out.visible[-1], flow.visible[-1])
    np.testing.assert_allclose(out.points[10], flow.points[30], atol=1e-5)


def test_resample_keeps_metadata():
    E = np.eye(4)
    E[:3, 3] = 1.0
    flow = linear_flow(intrinsics=np.eye(3), extrinsics=E, source={"kind": "video"}, extra={"a": 1})
    out = flow.resample(10.0)
    assert (out.task, out.object_name, out.source, out.extra) == ("t", "o", {"kind": "video"}, {"a": 1})
    np.testing.assert_array_equal(out.intrinsics, np.eye(3))
    np.testing.assert_array_equal(out.extrinsics, E)


def test_resample_visibility_exact_hits_use_that_frame():
    """Regression: 41 / 10 * 30 = 122.99999999999999 must count as an exact hit on frame 123."""
    T = 124
    vis = np.ones((T, 2), bool)
    vis[122, 1] = False  # hidden in the frame before the hit, visible at the hit
    vis[9, 1] = False  # hidden exactly at a hit (frame 9 = 0.3 s)
    flow = linear_flow(T=T, N=2, fps=30.0, visible=vis)
    out = flow.resample(10.0)
    np.testing.assert_array_equal(out.visible, vis[::3])
    assert out.visible[41, 1] and not out.visible[3, 1]


def test_resample_visibility_between_frames_needs_both():
    vis = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 0]], bool)
    flow = linear_flow(T=3, N=3, fps=1.0, visible=vis)
    out = flow.resample(2.0)  # times 0, .5, 1, 1.5, 2 s
    assert out.num_frames == 5
    np.testing.assert_array_equal(out.visible, [
        [1, 1, 1],
        [1, 0, 1],  # between frames 0 and 1
        [1, 0, 1],  # exact hit on frame 1
        [1, 0, 0],  # between frames 1 and 2
        [1, 1, 0],  # exact hit on frame 2
    ])


def test_resample_visibility_fallback_to_nearest_frame():
    vis = np.array([[1, 0], [0, 1]], bool)  # no point seen in both frames
    flow = linear_flow(T=2, N=2, fps=1.0, visible=vis)
    out = flow.resample(4.0)  # times 0, .25, .5, .75, 1
    assert out.num_frames == 5
    assert out.visible.any(axis=1).all()
    np.testing.assert_array_equal(out.visible[0], vis[0])
    np.testing.assert_array_equal(out.visible[1], vis[0])  # nearest to 0.25 is frame 0
    np.testing.assert_array_equal(out.visible[3], vis[1])  # nearest to 0.75 is frame 1
    np.testing.assert_array_equal(out.visible[4], vis[1])
    assert any((out.visible[2] == v).all() for v in vis)  # tie at 0.5: one of the two


def test_resample_single_frame():
    flow = linear_flow(T=1)
    out = flow.resample(7.0)
    assert out.num_frames == 1 and out.fps == 7.0
    np.testing.assert_array_equal(out.points, flow.points)


@pytest.mark.parametrize("fps", [0.0, -10.0, float("nan"), float("inf")])
def test_resample_rejects_bad_fps(fps):
    with pytest.raises(FlowFormatError) as info:
        linear_flow().resample(fps)
    assert "fps" in str(info.value) and "<ObjectFlow>" in str(info.value)


# ---------------------------------------------------------------- farthest point sampling / subsample
LINE = np.stack([np.linspace(0.0, 1.0, 21), np.zeros(21), np.zeros(21)], axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_fps_on_a_line_picks_endpoints_then_middle(seed):
    idx = farthest_point_sampling(LINE, 3, seed=seed)
    assert set(idx[:2]) == {0, 20}
    assert idx[2] == 10


@pytest.mark.parametrize("seed", range(4))
def test_fps_picks_one_per_cluster(seed):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10.0]])
    pts = np.concatenate([c + 0.1 * rng.normal(size=(25, 3)) for c in centres])
    rng.shuffle(pts)
    idx = farthest_point_sampling(pts, 4, seed=seed)
    clusters = np.argmin(np.linalg.norm(pts[idx][:, None] - centres[None], axis=2), axis=1)
    assert sorted(clusters) == [0, 1, 2, 3]


def test_fps_is_deterministic_and_distinct():
    pts = np.random.default_rng(5).normal(size=(200, 3))
    a = farthest_point_sampling(pts, 30, seed=3)
    b = farthest_point_sampling(pts, 30, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 30
    assert a.dtype.kind == "i"


def test_fps_spreads_better_than_random():
    pts = np.random.default_rng(6).random((400, 3))
    idx = farthest_point_sampling(pts, 20)

    def min_gap(sel):
        d = np.linalg.norm(pts[sel][:, None] - pts[sel][None], axis=2)
        return d[np.triu_indices(len(sel), 1)].min()

    rand = [min_gap(np.random.default_rng(s).choice(400, 20, replace=False)) for s in range(20)]
    assert min_gap(idx) > max(rand)


def test_fps_never_repeats_duplicate_points():
    pts = np.zeros((6, 3))
    pts[5] = 1.0
    for seed in range(6):
        idx = farthest_point_sampling(pts, 4, seed=seed)
        assert len(set(idx.tolist())) == 4


@pytest.mark.parametrize("k", [5, 6, 100])
def test_fps_k_at_least_m_returns_all(k):
    pts = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(farthest_point_sampling(pts, k), np.arange(5))


def test_fps_rejects_bad_k():
    with pytest.raises(ValueError):
        farthest_point_sampling(LINE, 0)


def line_flow(visible0=None, T=3) -> ObjectFlow:
    pts = np.repeat(LINE[None], T, axis=0)
    vis = np.ones((T, len(LINE)), bool)
    if visible0 is not None:
        vis[0] = visible0
    return ObjectFlow(points=pts, visible=vis, fps=10.0)


def test_subsample_spreads_points():
    flow = line_flow()
    out = flow.subsample(3, seed=1)
    assert out.num_points == 3 and out.num_frames == flow.num_frames
    np.testing.assert_allclose(sorted(out.points[0, :, 0]), [0.0, 0.5, 1.0], atol=1e-6)


def test_subsample_is_deterministic_for_a_seed():
    rng = np.random.default_rng(2)
    flow = ObjectFlow(points=rng.normal(size=(4, 100, 3)), visible=np.ones((4, 100), bool), fps=10)
    a, b = subsample_points(flow, 10, seed=7), subsample_points(flow, 10, seed=7)
    np.testing.assert_array_equal(a.points, b.points)


def test_subsample_prefers_points_visible_in_frame_0():
    vis0 = np.ones(len(LINE), bool)
    vis0[[0, 20]] = False  # the endpoints are hidden at frame 0
    out = line_flow(vis0).subsample(3)
    assert out.visible[0].all()
    xs = sorted(out.points[0, :, 0].tolist())
    assert xs == pytest.approx([0.05, 0.5, 0.95], abs=1e-6)


def test_subsample_keeps_all_visible_when_too_few():
    vis0 = np.zeros(len(LINE), bool)
    vis0[[7, 8]] = True
    out = line_flow(vis0).subsample(4)
    assert out.num_points == 4
    assert out.visible[0].sum() == 2  # both visible points kept
    xs = sorted(out.points[0, :, 0].tolist())
    assert xs[0] == pytest.approx(0.0) and xs[-1] == pytest.approx(1.0)


def test_subsample_all_points_is_a_no_op():
    flow = line_flow()
    assert flow.subsample(len(LINE)) is flow
    assert flow.subsample(1000).num_points == len(LINE)


def test_subsample_that_would_empty_a_frame_swaps_in_a_point_or_is_rejected():
    pts = np.repeat(LINE[None], 2, axis=0)
    vis = np.zeros((2, len(LINE)), bool)
    vis[0] = True
    vis[1, 10] = True  # frame 1 only sees the middle point, which FPS with k=2 skips
    flow = ObjectFlow(points=pts, visible=vis, fps=1)
    sub = flow.subsample(2)
    assert sub.visible[1].any() and any(np.allclose(p, LINE[10]) for p in sub.points[1])
    vis[0] = False
    vis[0, 0] = True  # frame 0 only sees point 0, frame 1 only point 10: one point cannot cover both
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow(points=pts, visible=vis, fps=1).subsample(1)
    assert "visible" in str(info.value)


# ---------------------------------------------------------------- rigid transform
def test_rigid_transform_known_motion():
    flow = ObjectFlow(points=np.array([[[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]]]), visible=np.ones((1, 3), bool), fps=1)
    X = np.eye(4)
    X[:3, :3] = rot_z(np.pi / 2)
    X[:3, 3] = [10.0, 20.0, 30.0]
    out = flow.transform(X)
    np.testing.assert_allclose(out.points[0], [[10, 21, 30], [8, 20, 30], [10, 20, 33]], atol=1e-5)
    np.testing.assert_array_equal(out.visible, flow.visible)


def test_rigid_transform_preserves_distances_and_updates_extrinsics():
    rng = np.random.default_rng(4)
    E = random_transform(rng)
    flow = ObjectFlow(points=rng.normal(size=(3, 20, 3)), visible=np.ones((3, 20), bool), fps=5,
                      intrinsics=np.eye(3), extrinsics=E)
    X = random_transform(rng)
    out = rigid_transform(flow, X)

    def dists(p):
        return np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)

    np.testing.assert_allclose(dists(out.points), dists(flow.points), atol=1e-5)
    # a point seen by the camera at p_cam: world position before/after must agree through the extrinsics
    p_cam = np.array([0.3, -0.1, 2.0, 1.0])
    np.testing.assert_allclose(out.extrinsics @ p_cam, X @ (E @ p_cam), atol=1e-12)
    np.testing.assert_allclose(out.extrinsics[3], [0, 0, 0, 1], atol=1e-12)
    np.testing.assert_array_equal(out.intrinsics, np.eye(3))
    # transforming back recovers the flow
    back = out.transform(np.linalg.inv(X))
    np.testing.assert_allclose(back.points, flow.points, atol=1e-5)
    np.testing.assert_allclose(back.extrinsics, E, atol=1e-12)


def test_rigid_transform_without_extrinsics_keeps_none():
    flow = linear_flow()
    assert flow.transform(np.eye(4)).extrinsics is None


def _bad_transforms():
    scale = np.eye(4)
    scale[:3, :3] *= 2
    mirror = np.diag([-1.0, 1, 1, 1])
    shear = np.eye(4)
    shear[0, 1] = 0.5
    projective = np.eye(4)
    projective[3, 0] = 0.1
    nan = np.eye(4)
    nan[0, 3] = np.nan
    return {"scale": scale, "mirror": mirror, "shear": shear, "last-row": projective,
            "nan": nan, "3x3": np.eye(3), "3x4": np.eye(4)[:3]}


@pytest.mark.parametrize("name", list(_bad_transforms()))
def test_rigid_transform_rejects_non_rigid(name):
    with pytest.raises(ValueError):
        linear_flow().transform(_bad_transforms()[name])


# ---------------------------------------------------------------- slice
def test_slice_frames_and_times():
    flow = linear_flow(T=31, fps=30.0)
    out = flow.slice(0.1, 0.5)
    assert out.num_frames == 13  # frames 3 .. 15
    np.testing.assert_array_equal(out.points, flow.points[3:16])
    assert out.fps == 30.0
    assert out.duration == pytest.approx(0.4)
    assert slice_time(flow).num_frames == 31
    assert slice_time(flow, 0.5).num_frames == 16
    assert slice_time(flow, stop=0.0).num_frames == 1
    np.testing.assert_array_equal(flow.slice(0.5, 10.0).points, flow.points[15:])


@pytest.mark.parametrize("start, stop", [(2.0, 3.0), (0.5, 0.4), (0.011, 0.02)])
def test_slice_selecting_nothing_is_rejected(start, stop):
    with pytest.raises(FlowFormatError):
        linear_flow(T=31, fps=30.0).slice(start, stop)


# ---------------------------------------------------------------- fit_rigid_transform
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 40))
def test_fit_recovers_random_transform(seed, n):
    rng = np.random.default_rng(seed)
    X = random_transform(rng)
    src = rng.normal(size=(n, 3))
    dst = src @ X[:3, :3].T + X[:3, 3]
    np.testing.assert_allclose(fit_rigid_transform(src, dst), X, atol=1e-9)


def test_fit_zero_weights_ignore_outliers():
    rng = np.random.default_rng(11)
    X = random_transform(rng)
    src = rng.normal(size=(30, 3))
    dst = src @ X[:3, :3].T + X[:3, 3]
    w = np.ones(30)
    dst[:8] += rng.normal(scale=5.0, size=(8, 3))
    w[:8] = 0.0
    np.testing.assert_allclose(fit_rigid_transform(src, dst, weights=w), X, atol=1e-9)
    assert not np.allclose(fit_rigid_transform(src, dst), X, atol=1e-3)  # the outliers do matter unweighted
    # boolean visibility works as weights too
    np.testing.assert_allclose(fit_rigid_transform(src, dst, weights=w > 0), X, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_fit_never_returns_a_reflection(seed):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(10, 3))
    dst = src * np.array([-1.0, 1.0, 1.0])  # mirror image: best orthogonal fit is a reflection
    X = fit_rigid_transform(src, dst)
    R = X[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(X[3], [0, 0, 0, 1])


@pytest.mark.parametrize("case", ["single", "collinear", "planar"])
def test_fit_degenerate_sets_give_a_rotation(case):
    rng = np.random.default_rng(0)
    src = {"single": np.ones((1, 3)), "collinear": LINE, "planar": np.c_[rng.normal(size=(10, 2)), np.zeros(10)]}[case]
    X = random_transform(rng)
    dst = src @ X[:3, :3].T + X[:3, 3]
    Y = fit_rigid_transform(src, dst)
    assert np.linalg.det(Y[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_allclose(src @ Y[:3, :3].T + Y[:3, 3], dst, atol=1e-9)


@pytest.mark.parametrize("case", ["no-weight", "negative-weight", "nan-weight", "weight-shape", "shape-mismatch",
                                  "not-3d", "nan-point"])
def test_fit_rejects_bad_input(case):
    src = np.random.default_rng(0).normal(size=(5, 3))
    dst, w = src.copy(), np.ones(5)
    if case == "no-weight":
        w[:] = 0
    elif case == "negative-weight":
        w[0] = -1.0
    elif case == "nan-weight":
        w[0] = np.nan
    elif case == "weight-shape":
        w = np.ones(4)
    elif case == "shape-mismatch":
        dst = dst[:4]
    elif case == "not-3d":
        src, dst = src[:, :2], dst[:, :2]
    elif case == "nan-point":
        dst[0, 0] = np.nan
    with pytest.raises(ValueError):
        fit_rigid_transform(src, dst, weights=w)


def test_subsample_points_keeps_a_visible_point_in_every_frame():
    # frames 0-4 see every point; frames 5-9 only points 90-99, which farthest-point sampling on
    # frame 0 has no reason to pick: the subsample swaps one of them in rather than emptying frames
    rng = np.random.default_rng(0)
    T, N = 10, 100
    pts = np.repeat(rng.uniform(-0.1, 0.1, size=(1, N, 3)), T, axis=0)
    pts[:, 90:] *= 0.01  # clustered near the centre: never far from the others
    vis = np.ones((T, N), dtype=bool)
    vis[5:, :90] = False
    flow = ObjectFlow(points=pts, visible=vis, fps=10.0)
    sub = subsample_points(flow, 8)
    assert sub.num_points == 8 and sub.visible.any(axis=1).all()
    assert len({tuple(p) for p in sub.points[0]}) == 8  # distinct points
    vis[5:, 90:] = False
    vis[5:, 0] = True  # only point 0 in the late frames
    with_one = subsample_points(ObjectFlow(points=pts, visible=vis, fps=10.0), 8)
    assert with_one.visible.any(axis=1).all()
