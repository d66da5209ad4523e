"""``randomize={...}``: per-episode domain randomisation (d2f_envs.sim2real.DomainRandomizer).

Checks: drawn values respect their ranges and change per episode, the model holds nominal x
factor (never accumulated), robot bodies keep their masses, action latency delays actions
exactly, camera extrinsics errors move the reported points rigidly, seeded determinism,
kwarg validation, and that defaults (and an empty ``randomize``) leave the env untouched.
"""
from __future__ import annotations

from pathlib import Path

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import gymnasium as gym
import numpy as np
import pytest

PUSH_T = "D2F-PushT-v0"
ALL_PHYSICS = {"friction": (0.5, 1.5), "mass": (0.5, 2.0), "damping": (0.5, 1.5), "kp": (0.7, 1.3), "action_latency": (0, 3)}


@pytest.fixture
def make():
    envs = []

    def _make(env_id, **kw):
        env = gym.make(env_id, **kw)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


def actions(env, n, seed):
    space = type(env.action_space)(env.action_space.low, env.action_space.high, dtype=env.action_space.dtype)
    space.seed(seed)
    return [space.sample() for _ in range(n)]


@pytest.mark.parametrize("env_id", list(d2f_envs.ENV_IDS))
def test_values_in_range_resampled_and_applied_to_nominal(make, env_id):
    env = make(env_id, randomize=ALL_PHYSICS)
    u = env.unwrapped
    nominal = make(env_id).unwrapped.model  # an untouched model of the same scene
    obj = u._randomizer.object_bodies
    robot_bodies = [b for b in range(1, u.model.nbody) if u.model.body(b).name.startswith(u.robot.prefix)]
    assert obj.size and robot_bodies and not set(obj) & set(robot_bodies)
    seen = []
    for seed in range(6):
        _, info = env.reset(seed=seed)
        v = info["randomization"]
        assert v == u.randomization and set(v) == set(ALL_PHYSICS)
        for key, (lo, hi) in ALL_PHYSICS.items():
            assert lo <= v[key] <= hi, key
        assert isinstance(v["action_latency"], int)
        m = u.model
        # nominal x this episode's factor (not x the previous episodes' factors too)
        np.testing.assert_allclose(m.geom_friction[:, 0], nominal.geom_friction[:, 0] * v["friction"])
        np.testing.assert_allclose(m.dof_frictionloss, nominal.dof_frictionloss * v["friction"])
        np.testing.assert_allclose(m.body_mass[obj], nominal.body_mass[obj] * v["mass"])
        np.testing.assert_allclose(m.body_inertia[obj], nominal.body_inertia[obj] * v["mass"])
        np.testing.assert_array_equal(m.body_mass[robot_bodies], nominal.body_mass[robot_bodies])
        np.testing.assert_allclose(m.dof_damping, nominal.dof_damping * v["damping"])
        np.testing.assert_allclose(m.actuator_gainprm[:, 0], nominal.actuator_gainprm[:, 0] * v["kp"])
        np.testing.assert_allclose(m.actuator_biasprm[:, 1], nominal.actuator_biasprm[:, 1] * v["kp"])
        np.testing.assert_array_equal(m.actuator_biasprm[:, 2], nominal.actuator_biasprm[:, 2])  # kv kept
        seen.append(v)
    for key in ("friction", "mass", "damping", "kp"):
        assert len({s[key] for s in seen}) == len(seen), key  # a new draw each episode
    assert len({s["action_latency"] for s in seen}) > 1
    # restore() puts every randomised array back bit for bit
    u._randomizer.restore(u.model)
    for name in ("geom_friction", "dof_frictionloss", "body_mass", "body_inertia", "dof_damping",
                 "actuator_gainprm", "actuator_biasprm"):
        np.testing.assert_array_equal(getattr(u.model, name), getattr(nominal, name), err_msg=name)


def test_randomized_physics_changes_the_motion(make):
    heavy = make(PUSH_T, randomize={"mass": (3.0, 3.0), "friction": (2.0, 2.0)}, reset_noise_scale=0.0).unwrapped
    plain = make(PUSH_T, reset_noise_scale=0.0).unwrapped
    heavy.reset(seed=0)
    plain.reset(seed=0)
    np.testing.assert_array_equal(heavy.data.qpos, plain.data.qpos)  # the same start
    for _ in range(15):  # push the block the same way in both
        for u in (heavy, plain):
            d = u._points.mean(axis=0)[:2] - u.robot.tcp_pos(u.data)[:2]
            u.step(np.clip(d / 0.03, -1, 1).astype(np.float32))
    assert np.abs(heavy.block_pose()[:3, 3] - plain.block_pose()[:3, 3]).max() > 1e-3


def test_action_latency_delays_actions_exactly(make):
    k = 2
    late = make(PUSH_T, randomize={"action_latency": (k, k)}, reset_noise_scale=0.0).unwrapped
    plain = make(PUSH_T, reset_noise_scale=0.0).unwrapped
    assert late.reset(seed=0)[1]["randomization"] == {"action_latency": k}
    plain.reset(seed=0)
    acts = actions(late, 12, seed=1)
    zero = np.zeros(late.action_space.shape, np.float32)
    for t, a in enumerate(acts):
        late.step(a)
        plain.step(acts[t - k] if t >= k else zero)  # what the controller of `late` received
        np.testing.assert_array_equal(late.data.qpos, plain.data.qpos, err_msg=f"step {t}")
    # and the delay is real: without it the trajectories part
    undelayed = make(PUSH_T, reset_noise_scale=0.0).unwrapped
    undelayed.reset(seed=0)
    for a in acts:
        undelayed.step(a)
    assert np.abs(undelayed.data.qpos - late.data.qpos).max() > 1e-3


def test_camera_error_moves_the_reported_points_rigidly(make):
    exact = {"noise_std": 0.0, "dropout": 0.0, "occlusion": False, "latency": 0}
    shift = make(PUSH_T, obs_mode="real", real_obs=exact, randomize={"camera_translation": (0.02, 0.02)}).unwrapped
    obs, info = shift.reset(seed=0)
    np.testing.assert_allclose(info["randomization"]["camera_translation"], [0.02] * 3)
    pts = obs[shift.obs_layout["object_points"]].reshape(-1, 3)
    np.testing.assert_allclose(pts - shift._tracked_points(), 0.02, atol=1e-12)
    turn = make(PUSH_T, obs_mode="real", real_obs=exact, randomize={"camera_rotation": (-0.05, 0.05)}).unwrapped
    rot = []
    for seed in (0, 1):
        obs, info = turn.reset(seed=seed)
        rot.append(info["randomization"]["camera_rotation"])
        pts = obs[turn.obs_layout["object_points"]].reshape(-1, 3)
        true = turn._tracked_points()
        c = turn.data.cam_xpos[turn._tracker.camera_id]
        # a rotation about the camera: distances to it and between the points are kept
        np.testing.assert_allclose(np.linalg.norm(pts - c, axis=1), np.linalg.norm(true - c, axis=1), atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(pts[1:] - pts[0], axis=1), np.linalg.norm(true[1:] - true[0], axis=1), atol=1e-12)
        assert np.abs(pts - true).max() > 1e-3
    assert not np.allclose(rot[0], rot[1])


def test_randomization_is_seeded(make):
    cfg = {**ALL_PHYSICS, "camera_translation": (-0.01, 0.01)}
    a, b = make(PUSH_T, obs_mode="real", randomize=cfg), make(PUSH_T, obs_mode="real", randomize=cfg)
    ra, rb = a.reset(seed=3), b.reset(seed=3)
    np.testing.assert_array_equal(ra[0], rb[0])
    assert ra[1]["randomization"] == rb[1]["randomization"]
    for act in actions(a, 10, seed=0):
        np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])
    assert a.reset(seed=4)[1]["randomization"] != ra[1]["randomization"]


def test_defaults_and_empty_randomize_are_untouched(make):
    ref = make(PUSH_T)
    same = [make(PUSH_T, obs_mode="state", randomize=None), make(PUSH_T, randomize={})]
    acts = actions(ref, 30, seed=2)
    out = [ref.reset(seed=9)] + [e.reset(seed=9) for e in same]
    assert all("randomization" not in o[1] for o in out)
    for e in [ref] + same:
        assert e.unwrapped._randomizer is None and e.unwrapped._tracker is None
    for a in acts:
        steps = [e.step(a) for e in [ref] + same]
        for s in steps[1:]:
            np.testing.assert_array_equal(s[0], steps[0][0])
            assert s[1] == steps[0][1] and s[4] == steps[0][4]


@pytest.mark.parametrize("randomize,error,match", [
    ({"fricton": (0.9, 1.1)}, ValueError, "did you mean 'friction'"),
    ({"size": (0.9, 1.1)}, ValueError, "'size' is not supported"),
    ({"mass": 1.2}, TypeError, "mass.*pair"),
    ({"mass": (0.8, 1.2, 1.5)}, TypeError, "mass.*pair"),
    ({"mass": "0.8-1.2"}, TypeError, "mass.*pair"),
    ({"mass": (0.8, "1.2")}, TypeError, "finite numbers"),
    ({"mass": (1.2, 0.8)}, ValueError, "low 1.2 > high 0.8"),
    ({"friction": (0.0, 1.0)}, ValueError, "outside the allowed"),
    ({"kp": (0.5, 100.0)}, ValueError, "outside the allowed"),
    ({"action_latency": (0, 1.5)}, TypeError, "whole control steps"),
    ({"action_latency": (0, 30)}, ValueError, "outside the allowed"),
    ({"camera_rotation": (-0.01, 0.01)}, ValueError, "obs_mode='real' only"),
    ([("mass", (0.8, 1.2))], TypeError, "dict"),
])
def test_randomize_validation(randomize, error, match):
    with pytest.raises(error, match=match):
        gym.make(PUSH_T, randomize=randomize)


def test_yaml_lists_are_accepted_as_ranges(make):
    # rl-zoo's YAML env_kwargs give lists, not tuples (d2f_rl/hyperparams/ppo_real.yml)
    import yaml

    from d2f_rl.utils import read_hyperparams

    conf = Path(__file__).resolve().parents[1] / "d2f_rl" / "hyperparams" / "ppo_real.yml"
    env_kwargs = read_hyperparams("ppo", PUSH_T, conf)["env_kwargs"]
    assert yaml.safe_dump(env_kwargs)  # plain data
    env = make(PUSH_T, **env_kwargs)
    _, info = env.reset(seed=0)
    assert env.unwrapped.obs_mode == "real" and set(info["randomization"]) == set(env_kwargs["randomize"])
