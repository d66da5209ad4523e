"""D2F-PickPlace-v0: the loaf's binding, the in-bowl success criterion, the bowl placed with the
re-anchored flow, the documented spaces per robot, and the scripted flow-following picker."""
from __future__ import annotations

import inspect
import re

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import gymnasium as gym
import mujoco
import numpy as np
import pytest

from d2f_envs.rollout import random_policy, run_episode
from d2f_envs.scripted_pick_place import FlowFollowingPicker
from d2f_envs.tasks.pick_place import BOWL_INNER_RADIUS, BOWL_RIM_HEIGHT, PickPlaceEnv
from flows import fit_rigid_transform, shipped_flow_path

ENV_ID = "D2F-PickPlace-v0"
ROBOTS = PickPlaceEnv.robots
#: the simulated demonstration's flow, for the checks that need the flow exact (the default is the
#: flow extracted from the demo's rendered video: its poses are ~mm off)
DEMO_FLOW = str(shipped_flow_path(ENV_ID, "demo"))


@pytest.fixture
def make():
    envs = []

    def _make(**kw):
        env = gym.make(ENV_ID, **kw)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


def flow_pose(u, k: int) -> np.ndarray:
    """The loaf's 4x4 world pose at (re-anchored, control-rate) flow frame k."""
    rf = u.reward_fn
    return fit_rigid_transform(u.binding.local_points, rf.target[k], weights=u.flow.visible[k])


def set_loaf_pose(u, X: np.ndarray) -> None:
    """Put the loaf's free joint at world pose X, at rest, and forward the model."""
    q, v = u._loaf_q, u._loaf_v
    u.data.qpos[q:q + 3] = X[:3, 3]
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, X[:3, :3].ravel())
    u.data.qpos[q + 3:q + 7] = quat
    u.data.qvel[v:v + 6] = 0.0
    mujoco.mj_forward(u.model, u.data)


def park_robot(u, tcp=(-0.2, -0.25, 0.3)) -> None:
    """The robot at rest far from the loaf and the bowl, holding there, fingers open."""
    u.robot.reset(u.model, u.data, np.array(tcp))
    mujoco.mj_forward(u.model, u.data)
    u.controller.reset(u.model, u.data)


def still(env):
    return np.array([0, 0, 0, 0, -1], dtype=np.float32)  # hold the TCP, fingers open


# --------------------------------------------------------------------------- binding
def test_loaf_on_a_flow_frame_is_exact_and_1cm_off_is_1cm(make):
    env = make(reset_noise_scale=0.0, flow=DEMO_FLOW)
    env.reset(seed=0)
    u = env.unwrapped
    rf = u.reward_fn
    T = u.flow.num_frames
    for k in (0, T // 4, T // 2, T - 1):
        X = flow_pose(u, k)
        set_loaf_pose(u, X)
        assert rf.frame_error(u.binding.points(u.data), k) < 1e-6, k
        for axis in range(3):  # 1 cm along each world axis: every point moves 1 cm
            Y = X.copy()
            Y[axis, 3] += 0.01
            set_loaf_pose(u, Y)
            assert rf.frame_error(u.binding.points(u.data), k) == pytest.approx(0.01, abs=1e-6), (k, axis)
    # the flow's frames are different poses: the loaf at the first frame is far from the last
    set_loaf_pose(u, flow_pose(u, 0))
    assert rf.frame_error(u.binding.points(u.data), T - 1) > 0.2


@pytest.mark.parametrize("which", ["demo", "extracted"])
def test_shipped_flow_lifts_carries_turns_and_lowers_into_the_bowl(make, which):
    env = make(reset_noise_scale=0.0, flow=str(shipped_flow_path(ENV_ID, which)))
    tol = 1e-6 if which == "demo" else 0.005  # the extraction's error at the goal: a few mm
    env.reset(seed=0)
    u = env.unwrapped
    poses = [flow_pose(u, k) for k in range(u.flow.num_frames)]
    z = np.array([X[2, 3] for X in poses])
    start, end, bowl = poses[0][:3, 3], poses[-1][:3, 3], u.bowl_pos()
    assert z.max() - z[0] > 0.10  # lifted over the 7 cm rim
    assert np.hypot(*(end[:2] - bowl[:2])) < tol  # ends on the bowl's axis ...
    assert end[2] == pytest.approx(start[2] + 0.01, abs=tol)  # ... resting on its 1 cm floor
    turn = np.arctan2(poses[-1][1, 0], poses[-1][0, 0]) - np.arctan2(poses[0][1, 0], poses[0][0, 0])
    assert turn == pytest.approx(0.5, abs=1e-6 if which == "demo" else 0.08)  # extracted: 0.43 rad
    # the loaf stays upright (the gripper can only yaw it)
    assert min(X[2, 2] for X in poses) > 1 - (1e-9 if which == "demo" else 0.01)  # extracted: within 6 degrees


# --------------------------------------------------------------------------- the bowl follows the flow
@pytest.mark.parametrize("which", ["demo", "extracted"])
def test_noisy_reset_keeps_the_flow_ending_in_the_bowl(make, which):
    env = make(flow=str(shipped_flow_path(ENV_ID, which)))
    u = env.unwrapped
    bowls, loafs = [], []
    for seed in range(6):
        _, info = env.reset(seed=seed)
        end = flow_pose(u, u.flow.num_frames - 1)[:3, 3]
        bowl = u.bowl_pos()
        # the bowl moved with the loaf's rigid motion, then at most 1 cm (each axis) on its own
        # (plus, for the extracted flow, its few-mm error at the goal)
        assert np.abs(end[:2] - bowl[:2]).max() <= 0.01 + (1e-9 if which == "demo" else 0.005)
        assert info["in_bowl"] is False and info["final_error"] > 0.2
        bowls.append(bowl)
        loafs.append(u.data.xpos[u._loaf].copy())
    assert np.ptp(np.array(bowls)[:, :2], axis=0).min() > 0.005, "the bowl is not randomised"
    assert np.ptp(np.array(loafs)[:, :2], axis=0).min() > 0.005, "the loaf is not randomised"


# --------------------------------------------------------------------------- success criterion
@pytest.mark.parametrize("robot", ["floating_gripper", "panda_gripper"])
def test_loaf_resting_in_the_bowl_succeeds_next_to_it_does_not(make, robot):
    env = make(robot=robot)
    env.reset(seed=3)
    u = env.unwrapped
    T = u.flow.num_frames
    park_robot(u)
    set_loaf_pose(u, flow_pose(u, T - 1))
    for _ in range(3):  # let it settle on the bowl's floor
        info = env.step(still(env))[4]
    assert info["in_bowl"] is True and info["released"] is True
    assert info["loaf_speed"] < 0.01
    assert info["final_error"] < 0.005 and info["flow_index"] == T - 1
    assert info["is_success"] is True and info["reward_success"] > 0

    # the same pose 25 cm further from the robot: on the table next to the bowl
    X = flow_pose(u, T - 1)
    X[0, 3] += 0.25
    X[2, 3] -= 0.01  # the bowl's floor is 1 cm above the table
    set_loaf_pose(u, X)
    info = env.step(still(env))[4]
    assert info["in_bowl"] is False and info["released"] is True and info["is_success"] is False

    # the loaf lies in the bowl but 2.5 cm off the flow's end: in the bowl, not where the flow ends
    X = flow_pose(u, T - 1)
    X[0, 3] += 0.025
    set_loaf_pose(u, X)
    for _ in range(3):
        info = env.step(still(env))[4]
    assert info["in_bowl"] is True and info["loaf_speed"] < 0.01
    assert info["final_error"] > 0.02 and info["is_success"] is False


def test_loaf_dropped_from_above_the_bowl_counts_only_once_at_rest(make):
    env = make()
    env.reset(seed=1)
    u = env.unwrapped
    T = u.flow.num_frames
    park_robot(u)
    X = flow_pose(u, T - 1)
    X[2, 3] += BOWL_RIM_HEIGHT + 0.06  # lifted from the floor (1 cm) to 7 cm above the rim
    set_loaf_pose(u, X)
    info = env.step(still(env))[4]  # 0.1 s of free fall: 5 cm, still above the rim
    assert info["in_bowl"] is False and info["loaf_speed"] > 0.5 and info["is_success"] is False
    for _ in range(10):
        info = env.step(still(env))[4]
    assert info["in_bowl"] is True and info["loaf_speed"] < 0.05
    assert info["is_success"] is (info["final_error"] < u.reward_fn.success_threshold)
    # the criterion itself, at one instant: at the flow's end in the bowl, let go, but moving
    set_loaf_pose(u, flow_pose(u, T - 1))
    ok, extra = u._task_success(u.binding.points(u.data))
    assert ok is True and extra["in_bowl"] and extra["released"]
    u.data.qvel[u._loaf_v:u._loaf_v + 3] = (0.0, 0.048, -0.036)  # 6 cm/s, over rest_speed
    mujoco.mj_forward(u.model, u.data)
    ok, extra = u._task_success(u.binding.points(u.data))
    assert ok is False and extra["loaf_speed"] == pytest.approx(0.06) and extra["in_bowl"]


def test_loaf_held_in_or_above_the_bowl_is_not_a_success(make):
    """Run the scripted picker and look at the steps where the loaf is over the bowl in the
    fingers: above the rim (not in the bowl), lowered onto the floor (in the bowl but held),
    and after the release (success)."""
    env = make()
    ctrl = FlowFollowingPicker(env)
    obs, _ = env.reset(seed=2)
    ctrl.reset()
    u = env.unwrapped
    seen = {"above": False, "held_in": False, "released": False}
    for _ in range(env.spec.max_episode_steps):
        obs, _, _, _, info = env.step(ctrl(obs))
        c, bowl = u.data.xpos[u._loaf], u.bowl_pos()
        over_bowl = np.hypot(c[0] - bowl[0], c[1] - bowl[1]) < BOWL_INNER_RADIUS
        if ctrl.phase == "follow" and over_bowl and u.loaf_bottom() > bowl[2] + BOWL_RIM_HEIGHT:
            assert not info["in_bowl"] and not info["released"] and not info["is_success"]
            seen["above"] = True
        if ctrl.phase in ("follow", "release") and info["in_bowl"] and not info["released"]:
            assert not info["is_success"]
            seen["held_in"] = True
        if ctrl.phase == "retreat" and info["released"]:
            seen["released"] = True
    assert all(seen.values()), seen
    assert info["is_success"] is True


# --------------------------------------------------------------------------- documented spaces per robot
def test_docstring_proprio_sizes_and_limits_match_each_robot(make):
    doc = " ".join(inspect.getdoc(PickPlaceEnv).split())  # one line: the patterns ignore wrapping
    sizes = re.search(r"``proprio`` follows the robot \(``robot.proprio_dim``: (\d+), (\d+) and (\d+) values\)", doc)
    assert sizes, "no 'robot.proprio_dim: a, b and c' in the Robots section"
    for robot, size in zip(ROBOTS, map(int, sizes.groups())):
        env = make(robot=robot)
        assert env.unwrapped.robot.proprio_dim == size, robot
        assert env.observation_space.shape == (size + 76,), robot
    cls = PickPlaceEnv
    assert f"truncation after {d2f_envs.ENV_IDS[ENV_ID][1]} steps" in doc
    noise = (100 * cls.loaf_xy_noise, cls.loaf_yaw_noise, 100 * cls.bowl_xy_noise, 100 * cls.tcp_noise)
    assert "x (+-{:g} cm, +-{:g} rad loaf; +-{:g} cm bowl; +-{:g} cm TCP)".format(*noise) in doc
    assert f"within the bowl's {100 * BOWL_INNER_RADIUS:g} cm inner radius" in doc
    assert f"``info[\"loaf_speed\"]`` (m/s, its centre's linear speed) < {cls.rest_speed:g}" in doc


# --------------------------------------------------------------------------- scripted vs random
@pytest.mark.parametrize("robot", ROBOTS)
def test_scripted_picker_succeeds_and_beats_random(make, robot):
    env = make(robot=robot)
    ctrl = FlowFollowingPicker(env)
    for seed in (0, 1, 2):
        out = run_episode(env, ctrl, seed=seed)
        assert out["is_success"], (seed, out["info"])
        assert out["length"] == env.spec.max_episode_steps and "truncation_reason" not in out
        rand = run_episode(env, random_policy(env.action_space, seed), seed=seed)
        assert not rand["is_success"] and not rand["info"]["in_bowl"], seed
        assert out["return"] > rand["return"] + 50.0, (seed, out["return"], rand["return"])


def test_picker_refuses_other_tasks():
    with pytest.raises(TypeError, match="PickPlace"):
        FlowFollowingPicker(gym.make("D2F-OpenDrawer-v0"))


def test_reach_term_measures_the_tcp_to_the_nearest_loaf_point_and_sums_into_the_reward():
    env = gym.make("D2F-PickPlace-v0", reward_scales={"reach": 0.5})
    env.reset(seed=3)
    _, reward, _, _, info = env.step(np.zeros(5, dtype=np.float32))
    u = env.unwrapped
    tcp = u.robot.tcp_pos(u.data)
    assert info["tcp_distance"] == pytest.approx(np.linalg.norm(u._points - tcp, axis=1).min())
    assert 0.0 < info["reward_reach"] < 0.5
    assert reward == pytest.approx(sum(v for k, v in info.items() if k.startswith("reward_")), abs=1e-12)
    # the batched vector env takes each env's own reward path for it: same rewards as single envs
    vec = gym.make_vec("D2F-PickPlace-v0", num_envs=2, reward_scales={"reach": 0.5})
    vec.reset(seed=[3, 4])
    _, rewards, _, _, _ = vec.step(np.zeros((2, 5), dtype=np.float32))
    assert rewards[0] == reward
