"""``obs_mode="real"``: the observation a robot can measure (d2f_envs.sim2real.PointTracker).

Checks: both env checkers on every (env id, robot), the documented layout, no privileged
state (object velocity and position changes leave the observation alone until the tracker
measures them), the tracker's noise, dropout, occlusion and latency, seeded determinism,
kwarg validation, and that export records the real layout.
"""
from __future__ import annotations

import importlib
import inspect
import pickle
import re
import warnings

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import gymnasium as gym
import mujoco
import numpy as np
import pytest

from d2f_envs.base import FlowEnv
from d2f_envs.sim2real import REAL_OBS_DEFAULTS
from flows.shipped import shipped_flow_path

PUSH_T = "D2F-PushT-v0"
SWEEP = "D2F-SweepPasta-v0"


def env_class(env_id: str) -> type:
    module, name = d2f_envs.ENV_IDS[env_id][0].split(":")
    return getattr(importlib.import_module(module), name)


ENV_IDS = list(d2f_envs.ENV_IDS)
CASES = [pytest.param(i, r, id=f"{i}-{r}") for i in ENV_IDS for r in env_class(i).robots]
#: a tracker with no noise, dropout, occlusion or latency: reports the true points
EXACT = {"noise_std": 0.0, "dropout": 0.0, "occlusion": False, "latency": 0}



def actions(env, n, seed):
    space = type(env.action_space)(env.action_space.low, env.action_space.high, dtype=env.action_space.dtype)
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def push_towards_object(u) -> np.ndarray:
    """A Push-T action that drives the pusher into the block (so the block moves)."""
    d = u._tracked_points().mean(axis=0)[:2] - u.robot.tcp_pos(u.data)[:2]
    return np.clip(d / 0.03, -1, 1).astype(np.float32)


def doc_table(doc: str, title: str):
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", doc, re.S | re.M)
    assert m, f"no '## {title}' section"
    return m.group(1), re.findall(r"^(\w+)\s+(\d+K?|K|3K|robot's)\s", m.group(1), re.M)


# =========================================================================== checkers
@pytest.mark.parametrize("env_id,robot", CASES)
def test_real_obs_passes_gymnasium_check_env(make, env_id, robot):
    from gymnasium.utils.env_checker import check_env

    env = make(env_id, robot=robot, obs_mode="real")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    assert [str(w.message) for w in caught if "infinity" not in str(w.message)] == []


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_real_obs_passes_sb3_check_env(make, env_id):
    # (the default robot of each task: the observation code does not depend on the robot beyond
    # proprio, which every robot passes in the gymnasium checker above)
    from stable_baselines3.common.env_checker import check_env

    env = make(env_id, obs_mode="real")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, warn=True)
    assert [str(w.message) for w in caught] == []


# =========================================================================== layout and docs
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_real_layout_is_documented_and_extends_the_state_layout(make, env_id):
    state = make(env_id).unwrapped
    real = make(env_id, obs_mode="real").unwrapped
    names = list(real.obs_layout)
    sizes = {n: s.stop - s.start for n, s in real.obs_layout.items()}
    assert real.observation_space.shape == (sum(sizes.values()),)
    assert names[0] == "proprio" and names[-1] == "phase"
    extra = [n for n in names if n not in state.obs_layout]
    assert [n for n in names if n in state.obs_layout] == list(state.obs_layout)  # same order
    for n in state.obs_layout:
        assert sizes[n] == state.obs_layout[n].stop - state.obs_layout[n].start, n
    # the task's own "Real Observation" section names the added entry; the table is FlowEnv's
    # (granular tasks describe their summary in their own section)
    section, _ = doc_table(inspect.getdoc(env_class(env_id)), 'Real Observation (``obs_mode="real"``)')
    assert extra and all(f"``{n}``" in section for n in extra)
    if "object_points" in names:
        assert extra == ["keypoint_visible"]
        _, rows = doc_table(inspect.getdoc(FlowEnv), 'Real Observation (``obs_mode="real"``)')
        assert [n for n, _ in rows if n != "name"] == names
        k = real.obs_keypoints
        for n, size in rows:
            if n != "name" and size != "robot's":
                expect = int(size) if size.isdigit() else (3 * k if size == "3K" else k)
                assert sizes[n] == expect, n
    else:
        assert extra == ["pieces_visible"] and sizes["pieces_visible"] == 1


def test_export_records_the_real_layout(make):
    from d2f_rl.export import obs_layout

    env = make(PUSH_T, obs_mode="real")
    layout = obs_layout(env)
    assert "keypoint_visible" in layout
    assert layout == {n: [s.start, s.stop] for n, s in env.unwrapped.obs_layout.items()}


# =========================================================================== no privileged state
@pytest.mark.parametrize("env_id", [PUSH_T, "D2F-PickPlace-v0", SWEEP])
def test_real_obs_ignores_object_velocity_and_unmeasured_motion(make, env_id):
    env = make(env_id, obs_mode="real")
    env.reset(seed=0)
    for a in actions(env, 5, seed=1):
        env.step(a)
    u = env.unwrapped
    mujoco.mj_forward(u.model, u.data)  # (mj_step leaves the kinematics one substep behind qpos)
    obs = u._get_obs()
    robot_dofs = {u.model.jnt_dofadr[j] for j in range(u.model.njnt) if u.model.joint(j).name.startswith(u.robot.prefix)}
    object_dofs = [i for i in range(u.model.nv) if i not in robot_dofs]
    assert object_dofs
    u.data.qvel[object_dofs] += 0.7  # object velocity: not measurable
    mujoco.mj_forward(u.model, u.data)
    np.testing.assert_array_equal(u._get_obs(), obs)
    # the state observation of the same data would not tell either; the true object position does
    # change what the state observation reports, but not the real one until the tracker measures it
    u._points = u.binding.points(u.data) + 0.05
    np.testing.assert_array_equal(u._get_obs(), obs)


def test_proprio_holds_only_robot_measurements(make):
    # proprio of every robot adapter reads only the robot's own joints and its TCP site
    env = make(PUSH_T, robot="panda", obs_mode="real")
    env.reset(seed=0)
    u = env.unwrapped
    d = u.data
    mujoco.mj_forward(u.model, d)
    obs = u._get_obs()
    q = u.model.jnt_qposadr[u.model.joint("tblock_x").id]
    d.qpos[q] += 0.1  # move the object in the data: the robot's proprio does not change
    mujoco.mj_forward(u.model, d)
    np.testing.assert_array_equal(u._get_obs()[u.obs_layout["proprio"]], obs[u.obs_layout["proprio"]])


# =========================================================================== the tracker
def test_latency_reports_the_true_points_k_steps_ago(make):
    k = 3
    env = make(PUSH_T, obs_mode="real", real_obs={**EXACT, "latency": k})
    u = env.unwrapped
    env.reset(seed=2)
    true = [u._tracked_points().copy()]
    reported = []
    for _ in range(12):
        obs, *_ = env.step(push_towards_object(u))
        true.append(u._tracked_points().copy())
        reported.append(obs[u.obs_layout["object_points"]].reshape(-1, 3))
    for t, rep in enumerate(reported, start=1):
        np.testing.assert_allclose(rep, true[max(t - k, 0)], atol=1e-12, err_msg=f"step {t}")
    assert np.abs(true[-1] - true[-1 - k]).max() > 1e-3, "the object did not move: the check is vacuous"


def test_noise_matches_the_documented_std(make):
    std = 0.01
    env = make(PUSH_T, obs_mode="real", real_obs={**EXACT, "noise_std": std})
    u = env.unwrapped
    env.reset(seed=0)
    err = []
    for a in actions(env, 150, seed=0):
        obs, *_ = env.step(a)
        err.append(obs[u.obs_layout["object_points"]] - u._tracked_points().ravel())
    err = np.concatenate(err)  # 150 steps x 24 coordinates
    assert abs(err.std() - std) < 0.05 * std
    assert abs(err.mean()) < 4 * std / np.sqrt(err.size)
    assert REAL_OBS_DEFAULTS["noise_std"] == 0.003  # the value the docstrings state


def test_dropout_rate_and_hold_last_seen(make):
    p = 0.3
    env = make(PUSH_T, obs_mode="real", real_obs={**EXACT, "dropout": p})
    u = env.unwrapped
    env.reset(seed=0)
    prev = env.unwrapped._get_obs()[u.obs_layout["object_points"]].reshape(-1, 3)
    flags, held_checked = [], 0
    for a in actions(env, 120, seed=4):
        obs, *_ = env.step(a)
        pts = obs[u.obs_layout["object_points"]].reshape(-1, 3)
        vis = obs[u.obs_layout["keypoint_visible"]]
        assert set(np.unique(vis)) <= {0.0, 1.0}
        np.testing.assert_array_equal(pts[vis == 0], prev[vis == 0])  # lost: last reported value
        np.testing.assert_allclose(pts[vis == 1], u._tracked_points()[vis == 1], atol=1e-12)
        held_checked += int((vis == 0).sum())
        flags.append(vis)
        prev = pts
    rate = 1 - np.mean(flags)  # 960 draws: standard error 0.015
    assert abs(rate - p) < 0.05 and held_checked > 100


def test_occlusion_ray_cast(make):
    env = make(PUSH_T, obs_mode="real")
    env.reset(seed=0)
    u = env.unwrapped
    tr = u._tracker
    cam = u.data.cam_xpos[tr.camera_id].copy()
    disk = u.robot.tcp_pos(u.data).copy()
    away = (disk - cam) / np.linalg.norm(disk - cam)
    behind_disk = disk + 0.05 * away  # on the camera's ray through the pusher, 5 cm past it
    in_view = np.array([0.3, 0.3, 0.2])  # high above the table corner: nothing in between
    block_point = u._tracked_points()[0]  # on the tracked body itself (excluded from occluders)
    vis = tr.visible(u.model, u.data, np.array([behind_disk, in_view, block_point]))
    assert vis.tolist() == [False, True, True]
    # occlusion drives the flags: the same point, with occlusion off, is reported visible
    off = make(PUSH_T, obs_mode="real", real_obs={"occlusion": False, "dropout": 0.0}).unwrapped
    off.reset(seed=0)
    assert off._tracker._measure(off.model, off.data, np.array([behind_disk]), off.np_random, False)[1][0] == 1.0


@pytest.mark.parametrize("camera", ["overview", "top"])
def test_folded_cloth_hides_its_lower_layer(make, camera):
    # mj_ray passes through flexes: the tracker ray casts the cloth's triangles itself (mj_rayFlex), so a
    # cloth hides its own points. Fold the flat 9 x 9 cloth in half: columns x >= 5 turned over onto
    # columns x <= 3, 8 mm above them (two layers touching at the flex's collision radius, 4 mm)
    from d2f_envs.tasks.cover_bowl import CLOTH_COUNT

    u = make("D2F-CoverBowl-v0", obs_mode="real", real_obs={"camera": camera, "dropout": 0.0},
             reset_noise_scale=0.0).unwrapped
    u.reset(seed=0)
    m, d, tr = u.model, u.data, u._tracker
    flat = u.cloth_vertices().copy()
    assert tr.visible(m, d, flat).all()  # a flat cloth hides nothing of itself
    ix, iy = np.divmod(np.arange(CLOTH_COUNT ** 2), CLOTH_COUNT)  # vertex k: grid cell (x index, y index)
    folded = flat.copy()
    top = ix >= 5
    folded[top, 0] = 2 * flat[ix == 4, 0].mean() - flat[top, 0]
    folded[top, 2] += 0.008
    u.set_cloth_vertices(folded)
    mujoco.mj_forward(m, d)
    pts = u.cloth_vertices().copy()
    vis = tr.visible(m, d, pts)
    assert vis[top].all()  # the top layer and the fold line stay visible
    assert vis[ix == 4].all()
    # the lower layer is hidden where the top layer covers it; the oblique overview camera (from -y)
    # still sees under the near edge (y index 0), the top camera does not
    under = (ix <= 3) & (iy >= (1 if camera == "overview" else 0))
    assert not vis[under].any()
    if camera == "overview":
        assert vis[(ix <= 3) & (iy == 0)].all()
    # what the observation reports: the same flags (no dropout), and nothing hidden with occlusion off
    flags = tr._measure(m, d, pts, u.np_random, first=True)[1]
    np.testing.assert_array_equal(flags, vis.astype(float))
    off = make("D2F-CoverBowl-v0", obs_mode="real", real_obs={"camera": camera, "occlusion": False, "dropout": 0.0},
               reset_noise_scale=0.0).unwrapped
    off.reset(seed=0)
    off.set_cloth_vertices(folded)
    mujoco.mj_forward(off.model, off.data)
    assert off._tracker._measure(off.model, off.data, pts, off.np_random, first=True)[1].all()


def test_default_tracker_rates_and_cost(make):
    # defaults: ~2% random dropout plus occlusion; the ray cast is one batched call
    env = make(PUSH_T, obs_mode="real")
    env.reset(seed=0)
    u = env.unwrapped
    vis = [env.step(a)[0][u.obs_layout["keypoint_visible"]] for a in actions(env, 60, seed=0)]
    assert 0.85 < np.mean(vis) < 1.0


# =========================================================================== determinism
@pytest.mark.parametrize("env_id", [PUSH_T, SWEEP])
def test_real_obs_seeded_determinism_and_pickle(make, env_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = make(env_id, obs_mode="real"), make(env_id, obs_mode="real")
    acts = actions(a, 20, seed=7)
    oa, ob = a.reset(seed=11)[0], b.reset(seed=11)[0]
    np.testing.assert_array_equal(oa, ob)
    for t, act in enumerate(acts[:10]):
        np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0], err_msg=f"step {t}")
    twin = pickle.loads(pickle.dumps(a.unwrapped))
    for act in acts[10:]:
        np.testing.assert_array_equal(a.step(act)[0], twin.step(act)[0])
    # the tracker's noise follows the seed
    assert not np.array_equal(make(env_id, obs_mode="real").reset(seed=12)[0], oa)


# =========================================================================== validation
def test_real_obs_kwarg_validation():
    with pytest.raises(ValueError, match="obs_mode"):
        gym.make(PUSH_T, obs_mode="camera")
    with pytest.raises(ValueError, match="obs_mode='real'"):
        gym.make(PUSH_T, real_obs={"latency": 1})
    with pytest.raises(ValueError, match="did you mean 'noise_std'"):
        gym.make(PUSH_T, obs_mode="real", real_obs={"noise_sd": 0.01})
    with pytest.raises(TypeError, match="noise_std"):
        gym.make(PUSH_T, obs_mode="real", real_obs={"noise_std": "3mm"})
    with pytest.raises(ValueError, match="noise_std"):
        gym.make(PUSH_T, obs_mode="real", real_obs={"noise_std": -0.1})
    with pytest.raises(ValueError, match="dropout"):
        gym.make(PUSH_T, obs_mode="real", real_obs={"dropout": 1.0})
    with pytest.raises(ValueError, match="latency"):
        gym.make(PUSH_T, obs_mode="real", real_obs={"latency": 1.5})
    with pytest.raises(ValueError, match="no camera 'nope'"):
        gym.make(PUSH_T, obs_mode="real", real_obs={"camera": "nope"})


@pytest.mark.parametrize("env_id", [PUSH_T, SWEEP])
def test_privileged_info_is_the_state_observation(make, env_id):
    # the tracker draws its noise after the physics: the same seed gives the same physical
    # trajectory in both modes, so the privileged observation is the state env's observation
    real = make(env_id, obs_mode="real", real_obs={"privileged_info": True})
    state = make(env_id)
    (ro, ri), (so, _) = real.reset(seed=4), state.reset(seed=4)
    np.testing.assert_array_equal(ri["privileged_obs"], so)
    assert ro.shape != so.shape and real.unwrapped.state_obs_layout == state.unwrapped.obs_layout
    for a in actions(real, 8, seed=5):
        ro, _, _, _, ri = real.step(a)
        so = state.step(a)[0]
        np.testing.assert_array_equal(ri["privileged_obs"], so)
    plain = make(env_id, obs_mode="real")
    plain.reset(seed=4)
    assert "privileged_obs" not in plain.step(a)[4]


def test_exact_tracker_reproduces_the_state_entries(make):
    # a perfect tracker (no noise, dropout, occlusion or latency) reports the true points: every
    # entry computed from them matches the state observation's
    real = make(PUSH_T, obs_mode="real", real_obs=EXACT)
    state = make(PUSH_T)
    real.reset(seed=6)
    state.reset(seed=6)
    lr, ls = real.unwrapped.obs_layout, state.unwrapped.obs_layout
    phases = []
    for _ in range(25):
        a = push_towards_object(state.unwrapped)
        ro, so = real.step(a)[0], state.step(a)[0]
        for name in ("proprio", "object_points", "goal_delta", "tcp_to_object"):
            np.testing.assert_allclose(ro[lr[name]], so[ls[name]], atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(ro[lr["keypoint_visible"]], 1.0)
        phases.append((ro[lr["phase"]][0], so[ls["phase"]][0]))
    # the phase of 8 reported points follows the phase of the reward's 64 points
    phases = np.array(phases)
    assert phases[-1, 1] > 0.1 and np.abs(phases[:, 0] - phases[:, 1]).max() < 0.15


def test_tracker_noise_does_not_advance_the_phase_of_a_still_object(make):
    # t* moves forward only: without a noise margin a static object's phase ratcheted to 0.1-0.15
    # in 120 steps of 3 mm tracker jitter, so the observed subgoal ran ahead of the reward's
    env = make(PUSH_T, obs_mode="real")
    layout = env.unwrapped.obs_layout
    obs, _ = env.reset(seed=3)
    for _ in range(120):
        obs = env.step(np.zeros(env.action_space.shape, np.float32))[0]
    assert obs[layout["phase"]][0] == 0.0


def test_noisy_tracker_phase_follows_the_true_phase_when_the_object_moves(make):
    # the demo flow: its phase reaches 1 well before step 40, so the lagged real phase catches up
    demo = shipped_flow_path(PUSH_T, "demo")
    real = make(PUSH_T, obs_mode="real", flow=demo)  # default tracker: noise, dropout, occlusion, latency
    state = make(PUSH_T, flow=demo)
    real.reset(seed=6)
    state.reset(seed=6)
    lr, ls = real.unwrapped.obs_layout, state.unwrapped.obs_layout
    phases = []
    for _ in range(40):
        a = push_towards_object(state.unwrapped)
        phases.append((real.step(a)[0][lr["phase"]][0], state.step(a)[0][ls["phase"]][0]))
    phases = np.array(phases)
    assert phases[-1, 1] > 0.5, "the scripted push should move the block along the flow"
    lag = real.unwrapped._tracker.latency  # the reported points are `lag` steps old
    assert np.abs(phases[lag:, 0] - phases[:-lag, 1]).max() < 0.2
    assert phases[-1, 0] == phases[-1, 1]
