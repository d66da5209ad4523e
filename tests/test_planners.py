"""Zero-shot sampling MPC (d2f_rl/planners): exact rollouts, cost, determinism, eval.py --planner."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import d2f_envs  # noqa: F401  (registers the env ids)
from d2f_rl.planners import PLANNERS, make_planner

ROOT = Path(__file__).resolve().parents[1]
ENV = "D2F-PushT-v0"


def _env(seed=1, **kwargs):
    env = gym.make(ENV, **kwargs)
    obs, _ = env.reset(seed=seed)
    return env, obs


def test_planners_do_not_import_torch():
    code = "import sys, d2f_rl.planners; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("robot", ["pusher", "panda"])
def test_rollouts_reproduce_env_step_exactly(robot):
    """K rollouts from the env's state give the object points and TCP that env.step gives, bit for bit."""
    env, _ = _env(seed=3, robot=robot)
    rng = np.random.default_rng(0)
    for _ in range(2):  # a state with velocities, warm start and a moved controller target
        env.step(rng.uniform(-1, 1, 2))
    K, H = 3, 8
    planner = make_planner("mppi", env, horizon=H, samples=K, nthread=2)
    planner.load()
    actions = rng.uniform(-1, 1, (K, H, 2))
    actions[1] = [1.0, 0.3]  # drives the tool into the T: contact, and the controller's anti-windup
    r = planner.rollout.rollout(actions)
    assert not r.diverged.any()
    moved = np.abs(r.points[1, -1] - env.unwrapped._points).max()
    assert moved > 0.02, "the pushing sequence should move the block"
    for k in range(K):
        replay = copy.deepcopy(env)
        for h in range(H):
            replay.step(actions[k, h])
            u = replay.unwrapped
            np.testing.assert_array_equal(r.points[k, h], u._points)
            np.testing.assert_array_equal(r.tcp[k, h], u.robot.tcp_pos(u.data))
    # rolling out again from the same loaded state gives the same result (rows are reset)
    np.testing.assert_array_equal(planner.rollout.rollout(actions).points, r.points)


def test_cost_matches_env_tracking_error():
    """FlowCost's time alignment replays the env's: its per-step errors are info['tracking_error']."""
    env, _ = _env(seed=2)
    planner = make_planner("mppi", env, horizon=6, samples=2)
    planner.load()
    actions = np.zeros((2, 6, 2))
    actions[0] = [0.8, 0.6]
    r = planner.rollout.rollout(actions)
    errs = planner.cost.frame_errors(r.points)
    replay = copy.deepcopy(env)
    for h in range(6):
        _, _, _, _, info = replay.step(actions[0, h])
        assert errs[0, h, info["subgoal_index"]] == pytest.approx(info["tracking_error"], abs=1e-12)
        assert errs[0, h, -1] == pytest.approx(info["final_error"], abs=1e-12)
    cost, parts = planner.cost(r, actions, details=True)
    assert cost.shape == (2,) and set(parts) >= {"tracking", "final", "tool", "action", "smoothness"}
    assert parts["final"][0] == pytest.approx(info["final_error"], abs=1e-12)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_planner_beats_zero_actions(name):
    """Over a short horizon the optimised plan costs less than doing nothing, from the start and in closed loop."""
    env, obs = _env(seed=0)
    H = 8
    planner = make_planner(name, env, horizon=H, samples=24, iterations=2, seed=0)
    zero = np.zeros((planner.samples, H, 2))
    for _ in range(4):
        plan = planner.plan()
        c_plan = planner.evaluate(np.repeat(plan[None], planner.samples, axis=0))[0]
        c_zero = planner.evaluate(zero)[0]
        assert c_plan < c_zero
        action = planner(obs)
        assert action.shape == (2,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
        obs, *_ = env.step(action)
    # the tool has moved towards the block: the tool term is what is flat-free at the start
    u = env.unwrapped
    gap = np.linalg.norm(u._points - u.robot.tcp_pos(u.data), axis=1).min()
    env0, _ = _env(seed=0)
    u0 = env0.unwrapped
    gap0 = np.linalg.norm(u0._points - u0.robot.tcp_pos(u0.data), axis=1).min()
    assert gap < gap0


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_planner_is_deterministic(name):
    def run(seed):
        env, obs = _env(seed=5)
        planner = make_planner(name, env, horizon=5, samples=12, iterations=2, seed=seed)
        out = []
        for _ in range(3):
            a = planner(obs)
            out.append(a)
            obs, *_ = env.step(a)
        return np.array(out)

    a, b = run(7), run(7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(8))


def test_make_planner_rejects_unknown():
    env, _ = _env()
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("nope", env)


def test_eval_planner_end_to_end(tmp_path):
    out = tmp_path / "out.json"
    cmd = [sys.executable, "eval.py", "--env", ENV, "--planner", "mppi", "--episodes", "1", "--max-steps", "5",
           "--horizon", "4", "--samples", "8", "--iterations", "1", "--out", str(tmp_path / "eval"),
           "--json", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["policy"] == "planner" and data["planner"]["name"] == "mppi"
    assert data["planner"]["horizon"] == 4 and data["planner"]["seconds_per_step"] > 0
    assert data["summary"]["episodes"] == 1 and data["episodes"][0]["length"] == 5
    assert (tmp_path / "eval" / "tracking_error.png").is_file()
    assert "ms per control step" in res.stdout


def test_rollouts_reproduce_the_cloth_pinch():
    """The cloth task grasps by switching an equality constraint in apply(): rollouts must do the same."""
    from d2f_envs.scripted_cloth import FlowFollowingClothGripper

    env = gym.make("D2F-CoverBowl-v0")
    obs, _ = env.reset(seed=0)
    ctrl = FlowFollowingClothGripper(env)
    ctrl.reset()
    for _ in range(60):  # the scripted gripper goes down to the cloth's edge, stopping before it closes
        action = ctrl(obs)
        if ctrl.phase == "grasp":
            break
        obs, *_ = env.step(action)
    u = env.unwrapped
    assert u.pinched_vertex() < 0, "the grasp should not have happened yet"
    K, H = 2, 4
    planner = make_planner("mppi", env, horizon=H, samples=K, nthread=2)
    planner.load()
    actions = np.zeros((K, H, env.action_space.shape[0]))
    actions[0, :, -1] = 1.0  # close: pinch, then lift
    actions[0, 2:, 2] = 1.0
    actions[1, :, -1] = -1.0  # stay open and lift: the cloth stays down
    actions[1, 2:, 2] = 1.0
    r = planner.rollout.rollout(actions)
    for k in range(K):
        replay = copy.deepcopy(env)
        for h in range(H):
            replay.step(actions[k, h])
            np.testing.assert_array_equal(r.points[k, h], replay.unwrapped._points)
        assert (replay.unwrapped.pinched_vertex() >= 0) == (k == 0)
    assert r.points[0, -1, :, 2].max() > r.points[1, -1, :, 2].max() + 0.01  # the pinched cloth was lifted
