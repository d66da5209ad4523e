"""Unit tests of the flow-tracking reward (d2f_envs/reward.py), independent of any env.

A tiny hand-made flow: N=3 points moving +10 cm in x per frame, T=6 frames at
10 fps. Point 2 is invisible in every frame, so it must never count.
"""
from __future__ import annotations

import math

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import mujoco
import numpy as np
import pytest

from d2f_envs.reward import FlowTrackingReward, RewardScales, RigidBinding
from flows import ObjectFlow, fit_rigid_transform

T, STEP = 6, 0.1
BASE = np.array([[0.0, 0.0, 0.0], [0.0, 0.05, 0.0], [0.0, 0.0, 0.05]])


def tiny_flow(fps: float = 10.0, T: int = T) -> ObjectFlow:
    pts = np.stack([BASE + [STEP * t, 0.0, 0.0] for t in range(T)])
    vis = np.ones((T, 3), dtype=bool)
    vis[:, 2] = False  # point 2 never observed
    return ObjectFlow(points=pts, visible=vis, fps=fps, task="unit-test")


def frame_points(k: float) -> np.ndarray:
    """Fake object points exactly at (possibly fractional) frame ``k`` of the tiny flow."""
    return BASE + [STEP * k, 0.0, 0.0]


def make(**kw) -> FlowTrackingReward:
    flow = kw.pop("flow", tiny_flow())
    r = FlowTrackingReward(flow, **kw)
    r.reset(frame_points(0))
    return r


# --------------------------------------------------------------------------- errors and visibility
def test_frame_error_is_mean_euclidean_distance_over_visible_points():
    r = make()
    pts = frame_points(2).copy()
    pts[0] += [0.03, 0.0, 0.04]  # 5 cm off
    pts[1] += [0.0, 0.01, 0.0]  # 1 cm off
    assert r.frame_error(pts, 2) == pytest.approx((0.05 + 0.01) / 2, abs=1e-7)
    assert r.frame_error(frame_points(2), 2) == pytest.approx(0.0, abs=1e-7)
    errs = r.errors_to_frames(frame_points(2))
    assert errs.shape == (T,)
    np.testing.assert_allclose(errs, np.abs(np.arange(T) - 2) * STEP, atol=1e-7)


def test_invisible_point_does_not_change_error_or_alignment():
    a, b = make(lookahead=1), make(lookahead=1)
    pts = frame_points(3)
    far = pts.copy()
    far[2] = [100.0, -50.0, 30.0]  # the never-visible point is far away
    assert a.frame_error(pts, 1) == b.frame_error(far, 1)
    ma, mb = a.measure(pts), b.measure(far)
    assert ma == mb
    assert ma["flow_index"] == 3


def test_point_invisible_in_one_frame_only_counts_where_visible():
    flow = tiny_flow()
    vis = flow.visible.copy()
    vis[4, 1] = False  # point 1 unseen in frame 4
    r = make(flow=flow.replace(visible=vis))
    pts = frame_points(4).copy()
    pts[1] += [0.0, 0.0, 1.0]  # 1 m off, but only in a frame where it is invisible
    assert r.frame_error(pts, 4) == pytest.approx(0.0, abs=1e-7)
    assert r.frame_error(pts, 3) > 0.5  # visible in frame 3: counts there


# --------------------------------------------------------------------------- nearest alignment
def test_nearest_picks_nearest_frame_and_subgoal_is_lookahead_ahead():
    r = make(lookahead=2)
    m = r.measure(frame_points(1.2))
    assert m["flow_index"] == 1
    assert m["subgoal_index"] == 3
    assert m["progress"] == 1
    assert m["tracking_error"] == pytest.approx(r.frame_error(frame_points(1.2), 3), abs=1e-7)
    assert m["final_error"] == pytest.approx(r.frame_error(frame_points(1.2), T - 1), abs=1e-7)
    m = r.measure(frame_points(2.7))
    assert (m["flow_index"], m["subgoal_index"], m["progress"]) == (3, 5, 2)


def test_nearest_subgoal_clamps_at_last_frame():
    r = make(lookahead=3)
    m = r.measure(frame_points(4))
    assert (m["flow_index"], m["subgoal_index"]) == (4, T - 1)
    m = r.measure(frame_points(7))  # beyond the end
    assert (m["flow_index"], m["subgoal_index"]) == (T - 1, T - 1)


def test_nearest_never_searches_backwards():
    r = make(lookahead=1)
    assert r.measure(frame_points(4))["flow_index"] == 4
    m = r.measure(frame_points(1))  # the object went back to frame 1
    assert m["flow_index"] == 4
    assert m["progress"] == 0
    assert m["subgoal_index"] == 5
    # errors are measured against the forward frames, not the nearest frame behind
    assert m["tracking_error"] == pytest.approx(4 * STEP, abs=1e-7)
    seq = [0, 2, 1, 0, 3, 2, 5, 0]
    r = make()
    idx = [r.measure(frame_points(k))["flow_index"] for k in seq]
    assert idx == list(np.maximum.accumulate(seq))


def test_lookahead_zero_tracks_the_nearest_frame():
    r = make(lookahead=0)
    m = r.measure(frame_points(2))
    assert m["subgoal_index"] == 2 and m["tracking_error"] == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------- clock alignment
def test_clock_subgoal_follows_elapsed_steps():
    r = make(alignment="clock", lookahead=2, dt=0.1)
    subs, idx = [], []
    for _ in range(T + 3):
        m = r.measure(frame_points(0))  # the object does not move
        subs.append(m["subgoal_index"])
        idx.append(m["flow_index"])
    assert subs == [min(k, T - 1) for k in range(1, T + 4)]
    assert idx == [0] * (T + 3)  # t* still follows the object, not the clock


def test_clock_uses_flow_fps_and_dt():
    r = make(flow=tiny_flow(fps=20.0, T=10), alignment="clock", dt=0.1)
    subs = [r.measure(frame_points(0))["subgoal_index"] for _ in range(6)]
    assert subs == [2, 4, 6, 8, 9, 9]


def test_clock_tracking_error_is_against_the_clock_frame():
    r = make(alignment="clock", dt=0.1)
    r.measure(frame_points(0))
    m = r.measure(frame_points(3))  # ahead of the clock (frame 2)
    assert m["subgoal_index"] == 2 and m["flow_index"] == 3
    assert m["tracking_error"] == pytest.approx(STEP, abs=1e-7)


def test_max_lag_deadline_moves_the_subgoal_of_an_object_that_stands_still():
    paper = make(lookahead=1)
    deadline = make(lookahead=1, max_lag=2)
    still = frame_points(0)
    subs_paper = [paper.measure(still)["subgoal_index"] for _ in range(6)]
    subs_deadline = [deadline.measure(still)["subgoal_index"] for _ in range(6)]
    assert subs_paper == [1] * 6  # the paper's rule: a still object keeps the subgoal near the start
    assert subs_deadline == [1, 1, 1, 2, 3, 4]  # never more than 2 frames behind the clock (steps 1..6)
    # tracking error grows as the deadline leaves the still object behind
    d = make(lookahead=1, max_lag=2)
    errs = [d.measure(still)["tracking_error"] for _ in range(6)]
    assert errs[-1] > errs[0] and errs[-1] == pytest.approx(4 * STEP, abs=1e-7)


def test_max_lag_does_not_change_an_object_that_keeps_up():
    a, b = make(lookahead=1), make(lookahead=1, max_lag=2)
    for k in range(1, T):
        assert a.measure(frame_points(k)) == b.measure(frame_points(k))


def test_reset_restarts_alignment():
    r = make(alignment="clock")
    for k in range(4):
        r.measure(frame_points(k))
    r.reset(frame_points(0))
    m = r.measure(frame_points(0))
    assert (m["flow_index"], m["subgoal_index"]) == (0, 1)


# --------------------------------------------------------------------------- re-anchoring
def test_reset_reanchors_flow_rigidly():
    r = FlowTrackingReward(tiny_flow())
    c, s = math.cos(0.7), math.sin(0.7)
    X = np.eye(4)
    X[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    X[:3, 3] = [0.3, -0.2, 0.05]
    start = frame_points(0) @ X[:3, :3].T + X[:3, 3]
    start[2] += [5.0, 5.0, 5.0]  # the invisible point does not affect the fit
    r.reset(start)
    expect = tiny_flow().points.astype(np.float64) @ X[:3, :3].T + X[:3, 3]
    np.testing.assert_allclose(r.target[:, :2], expect[:, :2], atol=1e-6)
    np.testing.assert_allclose(r.anchor, X, atol=1e-6)
    r.reset(start, anchor=False)
    np.testing.assert_allclose(r.target, tiny_flow().points, atol=0)


# --------------------------------------------------------------------------- terms
def test_terms_weighted_by_reward_scales_and_reward_is_their_sum():
    scales = RewardScales(tracking=2.0, progress=5.0, action=0.5, success=3.0)
    sigma = 0.04
    r = make(scales=scales, sigma=sigma, lookahead=1, success_threshold=0.02)
    a = np.array([0.6, -0.8, 0.0])
    reward, info = r.step(frame_points(2.1), a)
    err = r.frame_error(frame_points(2.1), 3)
    assert info["tracking_error"] == pytest.approx(err, abs=1e-7)
    assert info["reward_tracking"] == pytest.approx(2.0 * math.exp(-err / sigma))
    assert info["reward_progress"] == pytest.approx(5.0 * 2 / (T - 1))
    assert info["reward_action"] == pytest.approx(-0.5 * (0.36 + 0.64) / 3)
    assert info["reward_success"] == 0.0
    assert info["is_success"] is False
    terms = [v for k, v in info.items() if k.startswith("reward_")]
    assert len(terms) == 4
    assert reward == pytest.approx(sum(terms), abs=1e-12)

    reward, info = r.step(frame_points(T - 1), np.zeros(3))
    assert info["is_success"] is True
    assert info["reward_success"] == pytest.approx(3.0)
    assert info["reward_progress"] == pytest.approx(5.0 * 3 / (T - 1))
    assert reward == pytest.approx(sum(v for k, v in info.items() if k.startswith("reward_")), abs=1e-12)

    # the task's own criterion gates success
    _, info = r.step(frame_points(T - 1), np.zeros(3), task_success=False)
    assert info["is_success"] is False and info["reward_success"] == 0.0


def test_default_scales_and_zero_scales():
    s = RewardScales()
    assert (s.tracking, s.progress, s.action, s.success) == (1.0, 10.0, 0.05, 2.0)
    r = make(scales=RewardScales(tracking=0, progress=0, action=0, success=0))
    reward, info = r.step(frame_points(T - 1), np.ones(3))
    assert reward == 0.0 and info["is_success"] is True


def test_reach_term_is_off_by_default_and_leads_the_tcp_to_the_nearest_object_point():
    from d2f_envs.reward import REACH_SIGMA

    assert RewardScales().reach == 0.0
    _, info = make().step(frame_points(0), np.zeros(3))
    assert "reward_reach" not in info  # default: the flow's terms alone

    r = make(scales=RewardScales(reach=0.5))
    with pytest.raises(ValueError, match="TCP"):
        r.step(frame_points(0), np.zeros(3))
    pts = frame_points(0)
    far = pts[1] + [0.0, 0.3, 0.0]  # 30 cm beyond point 1 (the nearest), 35 cm from point 0
    reward, info = make(scales=RewardScales(reach=0.5)).step(pts, np.zeros(3), tcp=far)
    assert info["tcp_distance"] == pytest.approx(0.3)
    assert info["reward_reach"] == pytest.approx(0.5 * math.exp(-0.3 / REACH_SIGMA))
    assert reward == pytest.approx(sum(v for k, v in info.items() if k.startswith("reward_")), abs=1e-12)
    _, near = make(scales=RewardScales(reach=0.5)).step(pts, np.zeros(3), tcp=pts[0] + [0.0, 0.0, 0.01])
    assert near["tcp_distance"] == pytest.approx(0.01) and near["reward_reach"] > info["reward_reach"]


def test_progress_over_a_whole_flow_pays_the_progress_scale_once():
    r = make()
    total = sum(r.step(frame_points(k), np.zeros(3))[1]["reward_progress"] for k in [1, 0, 3, 2, 5, 5, 4])
    assert total == pytest.approx(RewardScales().progress)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="alignment"):
        FlowTrackingReward(tiny_flow(), alignment="nearst")
    with pytest.raises(ValueError):
        FlowTrackingReward(tiny_flow(), sigma=0.0)
    with pytest.raises(ValueError):
        FlowTrackingReward(tiny_flow(), lookahead=-1)


# --------------------------------------------------------------------------- binding
def test_rigid_binding_follows_its_body():
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body name="box" pos="0.1 0.2 0.3"><freejoint/>'
        '<geom type="box" size=".05 .05 .05"/></body></worldbody></mujoco>'
    )
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    pts0 = np.array([[0.1, 0.2, 0.35], [0.15, 0.2, 0.3], [0.1, 0.25, 0.32]])
    b = RigidBinding("box")
    b.bind(model, data, pts0)
    np.testing.assert_allclose(b.points(data), pts0, atol=1e-12)
    # rotate 90 deg about z and translate
    data.qpos[:3] = [1.0, 2.0, 3.0]
    data.qpos[3:7] = [math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]
    mujoco.mj_forward(model, data)
    local = pts0 - [0.1, 0.2, 0.3]
    expect = local @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]).T + [1.0, 2.0, 3.0]
    np.testing.assert_allclose(b.points(data), expect, atol=1e-7)
    X = fit_rigid_transform(b.local_points, b.points(data))
    np.testing.assert_allclose(X, b.pose(data), atol=1e-7)
    with pytest.raises(ValueError, match="nobody"):
        RigidBinding("nobody").bind(model, data, pts0)
