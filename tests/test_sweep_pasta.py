"""D2F-SweepPasta-v0 (granular): the Chamfer set metric, the piece binding, the in-bin criterion, the
order-independent observation, the scripted sweeper and the planners' handling of the metric.

The generic checks (check_env, determinism, pickling, divergence, documented spaces, rendering)
are tests/test_envs.py's, parametrised over every registered env id and robot.
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import d2f_envs  # noqa: F401  (registers the env ids; sets MUJOCO_GL before mujoco is imported)
from d2f_envs.reward import FlowTrackingReward, chamfer_errors
from d2f_envs.tasks.sweep_pasta import NUM_PIECES, PIECE_RADIUS, SweepPastaEnv, in_bin
from flows import ObjectFlow, shipped_flow

ID = "D2F-SweepPasta-v0"


@pytest.fixture(scope="module")
def env():
    e = gym.make(ID)
    yield e
    e.close()


def place_pieces(u: SweepPastaEnv, centres: np.ndarray, park_tcp: bool = True) -> None:
    """Put piece i's centre at ``centres[i]`` (lying flat, at rest) and forward the model; the brush
    is parked far from the pieces so a following step cannot touch them."""
    d = u.data
    for i, c in enumerate(centres):
        a = u._piece_qadr[i]
        d.qpos[a:a + 3] = c
        d.qpos[a + 3:a + 7] = (np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0)
    d.qvel[:] = 0.0
    if park_tcp:
        u.robot.reset(u.model, d, np.array([-0.28, 0.2, u.tcp_height + 0.15]))
    mujoco.mj_forward(u.model, d)
    if park_tcp:
        u.controller.reset(u.model, d)


# --------------------------------------------------------------------------- the set metric
def test_chamfer_zero_on_frame_one_cm_off_and_order_free(env):
    u = env.unwrapped
    env.reset(seed=0)
    rf = u.reward_fn
    T = u.flow.num_frames
    rng = np.random.default_rng(0)
    for k in (0, T // 2, T - 1):
        frame = rf.target[k]
        place_pieces(u, frame)
        pts = u.binding.points(u.data)
        np.testing.assert_allclose(pts, frame, atol=1e-12)  # the binding reads the piece centres
        assert rf.frame_error(pts, k) < 1e-6, k
        # all pieces 1 cm up: each piece's nearest flow point is its own (the others are no closer
        # than 1 cm away in the plane, the frame's points lying at about one height per layer)
        place_pieces(u, frame + [0.0, 0.0, 0.01])
        assert rf.frame_error(u.binding.points(u.data), k) == pytest.approx(0.01, abs=2e-4), k
        # the same centres in another order: the same error, and the same per-frame errors
        perm = rng.permutation(NUM_PIECES)
        shifted = frame + [0.004, -0.003, 0.0]
        place_pieces(u, shifted)
        a = rf.errors_to_frames(u.binding.points(u.data))
        place_pieces(u, shifted[perm])
        b = rf.errors_to_frames(u.binding.points(u.data))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        assert a[k] > 1e-3  # the comparison is not between two zeros


def test_chamfer_definition_counts_and_visibility():
    rng = np.random.default_rng(1)
    q = rng.uniform(-0.2, 0.2, (5, 12, 3))
    p = rng.uniform(-0.2, 0.2, (9, 3))  # fewer pieces than flow points: still a distance
    vis = rng.random((5, 12)) > 0.3
    vis[:, 0] = True
    got = chamfer_errors(p, q, vis)
    for t in range(5):
        D = np.linalg.norm(p[:, None] - q[t][vis[t]][None], axis=-1)  # brute force
        assert got[t] == pytest.approx(0.5 * (D.min(axis=1).mean() + D.min(axis=0).mean()), abs=1e-12)
    # a batch of piece sets (a planner's samples) gives each set's errors
    P = np.stack([p, p + 0.01, p[::-1]])
    np.testing.assert_allclose(chamfer_errors(P, q, vis)[2], got, atol=1e-12)
    assert not np.allclose(chamfer_errors(P, q, vis)[1], got)
    # an unseen flow point counts in neither direction, however far away it is
    far = q.copy()
    far[:, 5] += 100.0
    only = vis.copy()
    only[:, 5] = False
    np.testing.assert_allclose(chamfer_errors(p, far, only), chamfer_errors(p, q, only), atol=1e-12)


def test_chamfer_reward_refuses_rigid_reanchoring_and_unknown_metric():
    flow = ObjectFlow(points=np.zeros((3, 4, 3)) + np.arange(4)[None, :, None] * 0.05, visible=np.ones((3, 4), bool),
                      fps=10.0, task="unit-test")
    r = FlowTrackingReward(flow, metric="chamfer")
    with pytest.raises(ValueError, match="anchor=False"):
        r.reset(flow.points[0])
    r.reset(flow.points[0][::-1], anchor=False)  # another order of the same points
    m = r.measure(flow.points[0][::-1])
    assert m["tracking_error"] == pytest.approx(0.0, abs=1e-7) and m["flow_index"] == 0
    with pytest.raises(ValueError, match="metric"):
        FlowTrackingReward(flow, metric="hausdorff")


# --------------------------------------------------------------------------- the task
def test_at_least_thirty_pieces_in_model_flow_and_binding(env):
    u = env.unwrapped
    assert NUM_PIECES >= 30
    free = [j for j in range(u.model.njnt) if u.model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
    assert len(free) == NUM_PIECES
    assert u.binding.points(u.data).shape == (NUM_PIECES, 3)
    flow = shipped_flow(ID)
    assert flow.num_points == NUM_PIECES and flow.source["kind"] == "simulated demonstration"
    assert 4.0 <= flow.duration <= 6.5 and flow.fps == 30
    # the demonstration really sweeps: the pieces start in the patch and end in the bin
    c, h = u._bin_centre, u._bin_half
    assert in_bin(flow.points[0], c, h).sum() == 0 and in_bin(flow.points[-1], c, h).mean() >= 0.9


def test_in_bin_criterion_cases(env):
    u = env.unwrapped
    c, h = u._bin_centre, u._bin_half
    top = c[2] + h[2]  # the table top
    floor = c[2] - h[2] + PIECE_RADIUS  # a piece lying on the bin's floor
    pts = np.array([
        [c[0], c[1], floor],  # in
        [c[0] + h[0] - 0.001, c[1] - h[1] + 0.001, floor],  # in, at the opening's corner
        [c[0], c[1], top + PIECE_RADIUS],  # over the opening at table height (not dropped): out
        [c[0] - h[0] - 0.01, c[1], top + PIECE_RADIUS],  # on the table before the bin: out
        [c[0], c[1] + h[1] + 0.01, floor],  # below the table top beside the opening: out
        [c[0], c[1], top - PIECE_RADIUS - 0.001],  # dropping in, a radius below the top: in
    ])
    np.testing.assert_array_equal(in_bin(pts, c, h), [True, True, False, False, False, True])


def test_success_needs_pieces_in_bin_and_the_flow_end():
    strict = gym.make(ID, in_bin_threshold=0.8, success_threshold=1.0)  # success_threshold 1 m: in-bin decides
    env = gym.make(ID)
    try:
        for e in (strict, env):
            e.reset(seed=1)
        u, s = env.unwrapped, strict.unwrapped
        T = u.flow.num_frames
        zero = np.zeros(env.action_space.shape, np.float32)
        # at the start: nothing in the bin
        assert env.step(zero)[4]["in_bin_fraction"] == 0.0
        # every piece where the flow ends (in the bin): success, with the success bonus
        place_pieces(u, u.reward_fn.target[-1])
        info = env.step(zero)[4]
        assert info["in_bin_fraction"] == 1.0 and info["final_error"] < 0.01
        assert info["is_success"] is True and info["reward_success"] > 0
        # 27 of 36 in the bin (0.75 < 0.8): the in-bin threshold fails it, a lower one passes it
        mixed = u.reward_fn.target[-1].copy()
        mixed[27:] = u.reward_fn.target[0][27:]
        place_pieces(s, mixed)
        info = strict.step(zero)[4]
        assert info["in_bin_fraction"] == pytest.approx(0.75) and info["is_success"] is False
        s.in_bin_threshold = 0.7
        place_pieces(s, mixed)
        assert strict.step(zero)[4]["is_success"] is True
        # every piece in the bin, but heaped in one corner, not spread as where the flow ends: the
        # final (Chamfer) error fails it
        c, h = u._bin_centre, u._bin_half
        corner = c + [h[0] - 0.03, h[1] - 0.03, -h[2] + PIECE_RADIUS]
        grid = np.stack(np.meshgrid(np.arange(6) * 0.009, np.arange(6) * 0.009, [0.0]), -1).reshape(-1, 3)
        heap = corner + grid - [0.02, 0.02, 0.0]  # 36 centres 9 mm apart in a 4.5 cm square
        place_pieces(u, heap)
        info = env.step(zero)[4]
        assert info["in_bin_fraction"] == 1.0
        assert info["final_error"] > u.reward_fn.success_threshold and info["is_success"] is False
        assert info["flow_index"] <= T - 1
    finally:
        strict.close()
        env.close()


@pytest.mark.parametrize("kw", [{"in_bin_threshold": 0.0}, {"in_bin_threshold": 1.5}, {"success_threshold": 0.0}])
def test_task_kwargs_are_validated(kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        SweepPastaEnv(**kw)


def test_reset_moves_pieces_apart_and_noise_zero_is_nominal():
    env = gym.make(ID)
    still = gym.make(ID, reset_noise_scale=0.0)
    try:
        u, s = env.unwrapped, still.unwrapped
        still.reset(seed=3)
        np.testing.assert_allclose(s.binding.points(s.data), shipped_flow(ID).points[0], atol=1e-6)
        for seed in (0, 1):
            env.reset(seed=seed)
            pts = u.binding.points(u.data)
            assert np.abs(pts - shipped_flow(ID).points[0]).max() > 0.005  # the noise moved them
            gaps = np.linalg.norm(pts[:, None, :2] - pts[None, :, :2], axis=-1) + np.eye(NUM_PIECES)
            assert gaps.min() >= 2 * PIECE_RADIUS  # no two pieces start interpenetrating
            # the pieces stay put at rest: a step with the brush held does not scatter them
            pts0 = pts.copy()
            env.step(np.zeros(env.action_space.shape, np.float32))
            assert np.abs(u.binding.points(u.data) - pts0).max() < 1e-3
    finally:
        env.close()
        still.close()


# --------------------------------------------------------------------------- observation
def test_observation_is_order_free_and_matches_its_layout(env):
    u = env.unwrapped
    obs, _ = env.reset(seed=2)
    L = u.obs_layout
    pts = u.binding.points(u.data)
    np.testing.assert_allclose(obs[L["pieces_centroid"]], pts.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(obs[L["pieces_spread"]], pts.std(axis=0), atol=1e-12)
    assert obs[L["occupancy"]].sum() == pytest.approx(1.0) and (obs[L["occupancy"]] >= 0).all()
    rf = u.reward_fn
    sub = min(rf.lookahead, u.flow.num_frames - 1)
    np.testing.assert_allclose(obs[L["set_errors"]], [rf.frame_error(pts, sub), rf.frame_error(pts, -1)], atol=1e-12)
    np.testing.assert_allclose(obs[L["goal_delta"]], rf.target[-1].mean(axis=0) - pts.mean(axis=0), atol=1e-12)
    # swapping pieces (their whole free-joint state) leaves the observation as it is, to rounding
    d = u.data
    q = d.qpos.copy()
    a, b = u._piece_qadr[0], u._piece_qadr[NUM_PIECES - 1]
    d.qpos[a:a + 7], d.qpos[b:b + 7] = q[b:b + 7], q[a:a + 7]
    mujoco.mj_forward(u.model, d)
    u._points = u.binding.points(d)
    assert not np.array_equal(u._points, pts)
    np.testing.assert_allclose(u._get_obs(), obs, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- scripted controller
@pytest.mark.parametrize("robot", ["brush", "panda_brush"])
def test_scripted_sweeper_succeeds_where_random_does_not(robot):
    from d2f_envs.rollout import random_policy, run_episode
    from d2f_envs.scripted_sweep import FlowFollowingSweeper

    env = gym.make(ID, robot=robot)
    ctrl = FlowFollowingSweeper(env)
    try:
        for seed in (0, 1):
            res = run_episode(env, ctrl, seed=seed)
            assert res["is_success"], (robot, seed, res["info"])
            assert res["info"]["in_bin_fraction"] >= 0.8 and res["final_error"] < 0.03
            assert res["final_flow_index"] >= env.unwrapped.flow.num_frames // 2  # it went along the flow
            rand = run_episode(env, random_policy(env.action_space, seed), seed=seed)
            assert not rand["is_success"] and rand["info"]["in_bin_fraction"] < 0.2
            assert res["return"] > rand["return"] + 100.0
        with pytest.raises(TypeError, match="SweepPasta"):
            FlowFollowingSweeper(gym.make("D2F-PushT-v0"))
    finally:
        env.close()


# --------------------------------------------------------------------------- planners
def test_planner_cost_uses_the_chamfer_metric():
    from d2f_rl.planners.rollout_cost import BatchRollout, FlowCost

    env = gym.make(ID)
    try:
        u = env.unwrapped
        env.reset(seed=4)
        roll = BatchRollout(env, samples=2, nthread=1)
        roll.load_state()
        actions = np.zeros((2, 3, 4))
        actions[1, :, 0] = 1.0  # sample 1 sweeps in +x
        out = roll.rollout(actions)
        assert out.points.shape == (2, 3, NUM_PIECES, 3) and not out.diverged.any()
        errs = FlowCost(env).frame_errors(out.points)
        # the env's own reward, on sample 1's points at each step, agrees with the batched cost
        for h in range(3):
            np.testing.assert_allclose(errs[1, h], u.reward_fn.errors_to_frames(out.points[1, h]), atol=1e-12)
        # and the rollout is the env's step: sample 1's points after 3 steps are the env's
        for a in actions[1]:
            env.step(a.astype(np.float32))
        np.testing.assert_array_equal(u.binding.points(u.data), out.points[1, -1])
    finally:
        env.close()


# --------------------------------------------------------------------------- brush robots
@pytest.mark.parametrize("robot", ["brush", "panda_brush"])
def test_brush_robots_reach_position_and_yaw_with_the_head_along_the_yaw(robot):
    from d2f_envs.robots.brush import BRUSH_HEAD_HALF

    env = gym.make(ID, robot=robot)
    try:
        u = env.unwrapped
        env.reset(seed=0)
        ctrl, cfg = u.controller, u.controller.config
        for target, yaw in (((0.05, 0.12, u.tcp_height + 0.05), 0.6), ((-0.1, -0.1, u.tcp_height), -0.5)):
            target = np.asarray(target)
            for _ in range(25):  # proportional actions towards the target, as a policy would send
                a = np.zeros(4)
                a[:3] = (target - ctrl.target_pos) / cfg.max_delta_pos
                a[3] = (yaw - ctrl.target_yaw) / cfg.max_delta_yaw
                env.step(np.clip(a, -1, 1).astype(np.float32))
            assert np.linalg.norm(u.robot.tcp_pos(u.data) - target) < 0.005, robot
            assert abs(u.robot.tcp_yaw(u.data) - yaw) < 0.03, robot
            head = u.model.geom(f"{robot}/head").id
            R = u.data.geom_xmat[head].reshape(3, 3)
            # the head's thin side (its x axis) faces the yaw, its long side is horizontal
            assert abs(R[:, 0] @ [np.cos(yaw), np.sin(yaw), 0.0]) > 0.999
            assert abs(R[2, 1]) < 0.01
            bottom = u.data.geom_xpos[head][2] - BRUSH_HEAD_HALF[2]
            assert bottom == pytest.approx(target[2] - BRUSH_HEAD_HALF[2], abs=0.004)
        assert bottom > 0.002  # at the working height the head glides above the table
    finally:
        env.close()
