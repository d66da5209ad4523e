"""Asymmetric actor-critic: a privileged critic, a real-observation actor (d2f_rl.policies, d2f_rl.wrappers).

* ``PrivilegedObservation``: obs = [the env's real observation | env.state_obs()], its layout, and the
  batched vector env giving the same wrapped observations (terminal ones included) as single envs;
* ``AsymmetricActorCriticPolicy``: the action does not move when privileged entries do, the value does;
* a tiny ``train.py`` run from ``ppo_real_asym.yml`` (batched env), its export (the graph takes the real
  observation only, policy.json has the real layout and no privileged wrapper) and the deployed policy
  on the simulated robot equal to SB3's predict on the full observation.
"""
from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import d2f_envs  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "d2f_rl" / "hyperparams" / "ppo_real_asym.yml"
DOOR = "D2F-OpenDoor-v0"
PUSHT = "D2F-PushT-v0"
REAL = {"obs_mode": "real", "real_obs": {"noise_std": 0.003, "dropout": 0.02, "latency": 2}}


def wrapped(env_id=PUSHT, **kw):
    from d2f_rl.wrappers import Float32Observation, PrivilegedObservation

    return Float32Observation(PrivilegedObservation(gym.make(env_id, **{**REAL, **kw})))


# --------------------------------------------------------------------------- the wrapper
def test_wrapper_layout_real_then_state():
    from d2f_rl.wrappers import find_privileged

    env = wrapped(PUSHT, real_obs={**REAL["real_obs"], "privileged_info": True})
    layer = find_privileged(env)
    base = env.unwrapped
    n_real = env.unwrapped.observation_space.shape[0]
    n_state = max(s.stop for s in base.state_obs_layout.values())
    assert layer.actor_dim == n_real and layer.privileged_dim == n_state
    assert env.observation_space.shape == (n_real + n_state,) and env.observation_space.dtype == np.float32
    # documented layout: the real layout as is, then "privileged/<state name>" shifted by actor_dim
    expect = {k: slice(s.start, s.stop) for k, s in base.obs_layout.items()}
    expect.update({f"privileged/{k}": slice(n_real + s.start, n_real + s.stop) for k, s in base.state_obs_layout.items()})
    assert layer.layout == expect
    assert "keypoint_visible" in layer.layout and "privileged/keypoint_visible" not in layer.layout
    obs, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for t in range(6):
        # the actor part is the env's real observation; the privileged part its state observation,
        # the same as the env's own info["privileged_obs"]
        assert np.array_equal(obs[n_real:], np.asarray(info["privileged_obs"], dtype=np.float32)), t
        assert np.array_equal(obs[n_real:], base.state_obs().astype(np.float32)), t
        assert np.array_equal(obs[layer.layout["phase"]], base._get_obs()[base.obs_layout["phase"]].astype(np.float32))
        obs, _, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
    env.close()


def test_batched_vec_env_equals_single_envs_with_the_wrapper():
    # each row's privileged part must be its own sub-env's state (one wrapper stack per sub-env), and a
    # terminal observation the episode's last state (wrapped before SB3's same-step reset)
    from stable_baselines3.common.vec_env import DummyVecEnv

    from d2f_rl.utils import get_wrapper_class
    from d2f_rl.vec_env import make_batched_vec_env

    wrap = get_wrapper_class(["d2f_rl.wrappers.PrivilegedObservation", "d2f_rl.wrappers.Float32Observation"])
    n, max_steps = 2, 4
    kw = {**REAL, "randomize": {"friction": [0.8, 1.2], "camera_translation": [-0.01, 0.01]}}
    ref = DummyVecEnv([lambda: wrap(gym.make(PUSHT, max_episode_steps=max_steps, **kw)) for _ in range(n)])
    ref.seed(4)
    bat = make_batched_vec_env(PUSHT, n, seed=4, max_episode_steps=max_steps, env_kwargs=kw, wrapper_class=wrap)
    assert bat.observation_space == ref.observation_space
    o_ref, o_bat = ref.reset(), bat.reset()
    assert np.array_equal(o_ref, o_bat)
    n_real = gym.make(PUSHT, **REAL).observation_space.shape[0]
    assert not np.array_equal(o_bat[0, n_real:], o_bat[1, n_real:])  # rows differ: each its own sub-env
    rng = np.random.default_rng(1)
    terminal = 0
    for t in range(9):
        a = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        r, b = ref.step(a), bat.step(a)
        assert np.array_equal(r[0], b[0]) and np.array_equal(r[2], b[2]), t
        for i_ref, i_bat in zip(r[3], b[3]):
            if "terminal_observation" in i_ref:
                terminal += 1
                assert np.array_equal(i_ref["terminal_observation"], i_bat["terminal_observation"]), t
    assert terminal == 2 * n
    ref.close()
    bat.close()


# --------------------------------------------------------------------------- the policy
def make_policy(actor_dim=5, n_priv=4, n_obs=None, **kwargs):
    from gymnasium import spaces
    from stable_baselines3.common.utils import ConstantSchedule

    from d2f_rl.policies import AsymmetricActorCriticPolicy

    obs_space = spaces.Box(-np.inf, np.inf, (n_obs or actor_dim + n_priv,), np.float32)
    act_space = spaces.Box(-1, 1, (2,), np.float32)
    return AsymmetricActorCriticPolicy(obs_space, act_space, ConstantSchedule(3e-4), actor_dim=actor_dim,
                                       net_arch=dict(pi=[16, 16], vf=[16]), **kwargs)


def test_actor_ignores_privileged_entries_critic_reads_them():
    import torch as th

    policy = make_policy()
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(16, 9)).astype(np.float32)
    moved = obs.copy()
    moved[:, 5:] += rng.normal(size=(16, 4)).astype(np.float32) * 10
    a0, _ = policy.predict(obs, deterministic=True)
    a1, _ = policy.predict(moved, deterministic=True)
    assert np.ptp(a0, axis=0).max() > 0 and np.array_equal(a0, a1)  # same action, bit for bit
    with th.no_grad():
        v0 = policy.predict_values(th.as_tensor(obs)).numpy()
        v1 = policy.predict_values(th.as_tensor(moved)).numpy()
        d0 = policy.get_distribution(th.as_tensor(obs)).distribution
        d1 = policy.get_distribution(th.as_tensor(moved)).distribution
        # an actor-only input (the exported graph's) gives the same latent as the full observation
        assert th.equal(policy.mlp_extractor.forward_actor(th.as_tensor(obs[:, :5])),
                        policy.mlp_extractor.forward_actor(th.as_tensor(obs)))
    assert np.abs(v0 - v1).min() > 0  # the critic depends on every privileged row
    assert th.equal(d0.mean, d1.mean) and th.equal(d0.stddev, d1.stddev)
    actor_moved = obs.copy()
    actor_moved[:, 0] += 1.0
    assert not np.array_equal(policy.predict(actor_moved, deterministic=True)[0], a0)
    assert policy.mlp_extractor.policy_net[0].in_features == 5
    assert policy.mlp_extractor.value_net[0].in_features == 9


def test_policy_refuses_what_would_leak_privileged_entries():
    from stable_baselines3.common.torch_layers import NatureCNN

    with pytest.raises(ValueError, match="actor_dim"):
        make_policy(actor_dim=None, n_obs=9)
    with pytest.raises(ValueError, match="actor_dim"):
        make_policy(actor_dim=10, n_obs=9)
    with pytest.raises(ValueError, match="FlattenExtractor"):
        make_policy(features_extractor_class=NatureCNN)


def test_export_refuses_a_symmetric_policy_on_privileged_observations():
    from types import SimpleNamespace

    from d2f_rl.export import ExportError, asymmetric_split

    env = wrapped(PUSHT)
    plain = SimpleNamespace(policy=object())
    with pytest.raises(ExportError, match="AsymmetricActorCriticPolicy"):
        asymmetric_split(plain, env)
    assert asymmetric_split(plain, gym.make(PUSHT, **REAL)) is None
    env.close()


def test_dotted_policy_names_resolve():
    from d2f_rl.policies import AsymmetricActorCriticPolicy
    from d2f_rl.utils import preprocess_hyperparams, read_hyperparams

    cfg = preprocess_hyperparams(read_hyperparams("ppo", DOOR, CONF))
    assert cfg["model_kwargs"]["policy"] is AsymmetricActorCriticPolicy
    assert preprocess_hyperparams({"n_timesteps": 1, "policy": "MlpPolicy"})["model_kwargs"]["policy"] == "MlpPolicy"
    with pytest.raises(ValueError, match="cannot import"):
        preprocess_hyperparams({"n_timesteps": 1, "policy": "d2f_rl.policies.Nope"})


# --------------------------------------------------------------------------- train -> export -> deploy
@pytest.mark.xdist_group("asymmetric_train")
def test_train_export_deploy_real_observation_only(tmp_path):
    import signal

    import torch

    from d2f_rl import evaluate, train
    from d2f_rl.deploy import OnnxPolicy
    from d2f_rl.deploy.__main__ import main as deploy_main
    from d2f_rl.deploy.robot import SimulatedRobot
    from d2f_rl.rollout import make_env, model_policy

    threads, sigterm = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    try:
        run_dir = train.main([
            "--algo", "ppo", "--env", DOOR, "--env-kwargs", "robot:'panda_gripper'", "-conf", str(CONF),
            "-n", "256", "-f", str(tmp_path / "logs"), "--n-envs", "2", "--vec-env", "batch", "--eval-freq", "0",
            "--save-freq", "0", "--no-progress", "--no-wandb", "--num-threads", "1", "--seed", "2", "-v", "0",
            "-params", "n_steps:128", "batch_size:64", "n_epochs:1",
            "policy_kwargs:dict(net_arch=dict(pi=[16], vf=[16]), log_std_init=-0.5)"])
        result = evaluate.main(["-f", str(run_dir), "--export", "onnx"])
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, sigterm)
    meta = result["meta"]

    real_env = gym.make(DOOR, robot="panda_gripper", **REAL)
    n_real = real_env.observation_space.shape[0]
    layout = {k: [s.start, s.stop] for k, s in real_env.unwrapped.obs_layout.items()}
    real_env.close()
    # the graph and policy.json: the real observation only, nothing privileged for the robot to provide
    assert meta["observation"]["size"] == n_real and meta["inputs"]["obs"]["shape"] == ["batch", n_real]
    assert meta["observation"]["layout"] == layout
    assert meta["env"]["wrapper"] == ["d2f_rl.wrappers.Float32Observation"]
    asym = meta["asymmetric"]
    assert asym["actor_dim"] == n_real and asym["training_obs_size"] == n_real + asym["privileged_dim"]
    assert "d2f_rl.wrappers.PrivilegedObservation" in asym["training_wrapper"]
    assert asym["privileged_layout"]["privileged/phase"][1] == asym["training_obs_size"]
    assert meta["verification"]["max_abs_diff"] <= 1e-5 and meta["observation"]["tcp_slice"] is not None

    # deployed (onnxruntime) on the actor's part == SB3's predict on the whole training observation
    from d2f_rl.evaluate import load_run

    model, normalizer, env_id, env_kwargs, wrapper, _ = load_run(run_dir)
    env = make_env(env_id, env_kwargs, wrapper)
    act = model_policy(model, normalizer, True)
    policy = OnnxPolicy(run_dir / "policy.onnx")
    obs, _ = env.reset(seed=11)
    full = []
    for _ in range(30):
        full.append(obs)
        obs, *_ = env.step(act(obs))
    env.close()
    full = np.stack(full)
    expected = np.stack([act(o) for o in full])
    assert np.ptp(expected, axis=0).max() > 1e-3
    np.testing.assert_allclose(policy(full[:, :n_real]), expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        policy(full)  # the privileged entries are not an input of the deployed policy

    # --sim builds the env without the privileged wrapper: the robot's observation is the real one
    robot = SimulatedRobot.from_policy(policy, seed=0)
    assert robot.observe().shape == (n_real,) and robot.observe().dtype == np.float32
    robot.close()
    out = deploy_main([str(run_dir / "policy.onnx"), "--sim", "--steps", "5", "--no-realtime"])
    assert out["steps"] == 5 and out["safety_stop"] is False
