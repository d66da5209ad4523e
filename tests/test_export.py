"""eval.py --export onnx and d2f_rl.deploy against real SB3 models.

Tiny SAC and PPO runs are trained in-process (a few hundred env steps, 16-unit nets, the
run configs' VecNormalize), exported, and the exported policy is run by ``d2f_rl.deploy`` in a
subprocess where torch, SB3 and d2f_envs cannot be imported; its actions must equal
``model.predict(normalize_obs(obs), deterministic=True)`` to 1e-5 on observations recorded
from real env rollouts (plus far-out ones that hit VecNormalize's clip_obs).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnxruntime  # noqa: F401  in the test extra: a missing install fails here, it never skips

ROOT = Path(__file__).resolve().parents[1]
ENV = "D2F-PushT-v0"
COMMON = ["--env", ENV, "--n-envs", "1", "--eval-freq", "0", "--save-freq", "0", "--no-progress",
          "--num-threads", "1", "--no-wandb", "--seed", "5", "-v", "0"]
TINY = {
    "sac": ["-n", "200", "-params", "learning_starts:50", "batch_size:32", "buffer_size:1000",
            "policy_kwargs:dict(net_arch=[16, 16])"],
    # log_std_init and a larger action_net init make the PPO means non-trivial (not ~0)
    "ppo": ["-n", "128", "-params", "n_steps:64", "batch_size:32", "n_epochs:2",
            "policy_kwargs:dict(net_arch=[16], ortho_init=False)"],
}

BLOCKED_RUNNER = r"""
import sys

BLOCKED = ("torch", "stable_baselines3", "d2f_envs")

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _Block())
for name in BLOCKED:
    sys.modules[name] = None

import numpy as np
from d2f_rl.deploy import OnnxPolicy

policy = OnnxPolicy(sys.argv[1])
obs = np.load(sys.argv[2])["obs"]
single = np.stack([policy(o) for o in obs])
batch = policy(obs)
assert single.dtype == np.float32 and single.shape == batch.shape, (single.dtype, single.shape, batch.shape)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m] is not None)
assert not loaded, loaded
np.savez(sys.argv[3], single=single, batch=batch)
print("DEPLOY_OK")
"""


def run_py(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"sac": run folder, "ppo": run folder}, each exported once with eval.py --export onnx."""
    import signal

    import torch

    from d2f_rl import evaluate, train

    logs = tmp_path_factory.mktemp("logs")
    out = {}
    # train.main sets torch's thread count and a SIGTERM handler: give this worker process both back
    threads, sigterm = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    try:
        for algo in ("sac", "ppo"):
            run_dir = train.main(["--algo", algo, "-f", str(logs), *COMMON, *TINY[algo]])
            result = evaluate.main(["-f", str(run_dir), "--export", "onnx"])
            assert Path(result["export"]["onnx"]) == run_dir / "policy.onnx"
            out[algo] = run_dir
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, sigterm)
    return out


def recorded_observations(run_dir: Path, steps: int = 60):
    """(obs, SB3's deterministic actions): a real closed-loop rollout of the SB3 policy, plus far-out obs."""
    from d2f_rl.evaluate import load_run
    from d2f_rl.rollout import make_env, model_policy

    model, normalizer, env_id, env_kwargs, wrapper, _ = load_run(run_dir)
    env = make_env(env_id, env_kwargs, wrapper)
    act = model_policy(model, normalizer, True)
    obs, _ = env.reset(seed=123)
    recorded = []
    for _ in range(steps):
        recorded.append(obs)
        obs, _, terminated, truncated, _ = env.step(act(obs))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    recorded = np.stack(recorded)
    far = recorded[:6] * 40.0 + 3.0  # normalised beyond +-clip_obs in many entries
    all_obs = np.concatenate([recorded, far.astype(recorded.dtype)])
    expected = np.stack([model.predict(normalizer.normalize_obs(o), deterministic=True)[0] for o in all_obs])
    clipped = np.abs((far - normalizer.obs_rms.mean) / np.sqrt(normalizer.obs_rms.var + normalizer.epsilon))
    assert (clipped > normalizer.clip_obs).any(), "the far observations must exercise clip_obs"
    return all_obs, expected, model


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_deploy_without_torch_matches_sb3(runs, algo, tmp_path):
    run_dir = runs[algo]
    obs, expected, model = recorded_observations(run_dir)
    assert np.ptp(expected, axis=0).max() > 1e-3, "degenerate policy: actions do not vary"
    np.savez(tmp_path / "obs.npz", obs=obs)
    proc = run_py("-c", BLOCKED_RUNNER, str(run_dir / "policy.onnx"), str(tmp_path / "obs.npz"), str(tmp_path / "act.npz"))
    assert "DEPLOY_OK" in proc.stdout
    got = np.load(tmp_path / "act.npz")
    np.testing.assert_allclose(got["single"], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["batch"], expected, rtol=0, atol=1e-5)
    assert (np.abs(got["single"]) <= 1.0).all()

    meta = json.loads((run_dir / "policy.json").read_text())
    import gymnasium as gym

    import d2f_envs  # noqa: F401

    env = gym.make(ENV)
    layout = {k: [s.start, s.stop] for k, s in env.unwrapped.obs_layout.items()}
    assert meta["observation"]["layout"] == layout
    assert meta["observation"]["size"] == obs.shape[1] == env.observation_space.shape[0]
    assert meta["observation"]["dtype"] == "float32"  # the run's Float32Observation wrapper
    # the pusher's proprio starts with the TCP position
    assert meta["observation"]["tcp_slice"] == [0, 3]
    base = env.unwrapped
    env.reset(seed=0)
    assert np.allclose(env.unwrapped._get_obs()[0:3], base.robot.tcp_pos(base.data))
    assert meta["control"]["rate_hz"] == pytest.approx(1.0 / base.control_dt)
    assert meta["action"]["low"] == [-1.0, -1.0] and meta["action"]["high"] == [1.0, 1.0]
    assert meta["action"]["dofs"] == ["x", "y"]
    assert meta["action"]["postprocess"] == {"sac": "unscale_action", "ppo": "clip"}[algo]
    assert meta["algo"] == algo and meta["env"]["id"] == ENV and meta["env"]["max_episode_steps"] == 80
    assert meta["observation"]["normalization"]["in_graph"] is True
    assert meta["observation"]["normalization"]["clip_obs"] == 10.0
    assert meta["versions"]["stable_baselines3"] and meta["versions"]["torch"]
    assert Path(meta["source"]["model"]).is_file() and meta["source"]["num_timesteps"] == model.num_timesteps
    assert meta["verification"]["max_abs_diff"] <= 1e-5
    env.close()


def test_export_refuses_to_overwrite(runs, tmp_path):
    from d2f_rl import evaluate

    run_dir = runs["sac"]
    before = (run_dir / "policy.json").read_text()
    with pytest.raises(SystemExit, match="--overwrite"):
        evaluate.main(["-f", str(run_dir), "--export", "onnx"])
    assert (run_dir / "policy.json").read_text() == before
    out = tmp_path / "exported"
    evaluate.main(["-f", str(run_dir), "--export", "onnx", "--export-dir", str(out)])
    assert (out / "policy.onnx").read_bytes() == (run_dir / "policy.onnx").read_bytes()  # deterministic export
    evaluate.main(["-f", str(run_dir), "--export", "onnx", "--export-dir", str(out), "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == ["policy.json", "policy.onnx"]  # no temporary files left


def test_export_errors(runs, tmp_path):
    from d2f_rl import evaluate
    from d2f_rl.deploy import OnnxPolicy, PolicyFileError

    with pytest.raises(SystemExit, match="not a run folder"):
        evaluate.main(["-f", str(tmp_path / "nope"), "--export", "onnx"])
    # the config normalises observations but the statistics are gone
    broken = tmp_path / "broken"
    shutil.copytree(runs["ppo"], broken)
    for p in broken.rglob("vecnormalize.pkl"):
        p.unlink()
    (broken / "policy.onnx").unlink()
    (broken / "policy.json").unlink()
    with pytest.raises(SystemExit, match="vecnormalize.pkl is missing"):
        evaluate.main(["-f", str(broken), "--export", "onnx"])
    # an algorithm the exporter does not know
    args = (broken / "args.yml").read_text().replace("algo: ppo", "algo: td3")
    (broken / "args.yml").write_text(args)
    with pytest.raises(SystemExit, match="'td3' cannot be exported"):
        evaluate.main(["-f", str(broken), "--export", "onnx"])
    # deploy: a .onnx with another export's JSON, and a missing JSON
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(runs["sac"] / "policy.onnx", mixed / "policy.onnx")
    with pytest.raises(PolicyFileError, match="JSON is missing"):
        OnnxPolicy(mixed / "policy.onnx")
    shutil.copy(runs["ppo"] / "policy.json", mixed / "policy.json")
    with pytest.raises(PolicyFileError, match="sha256"):
        OnnxPolicy(mixed / "policy.onnx")


def test_deploy_cli_on_simulated_robot(runs, tmp_path):
    out = tmp_path / "deploy.json"
    proc = run_py("-m", "d2f_rl.deploy", str(runs["sac"] / "policy.onnx"), "--sim", ENV, "--steps", "80",
                  "--no-realtime", "--json", str(out))
    assert "success:" in proc.stdout and "period mean" in proc.stdout
    result = json.loads(out.read_text())
    assert result["env"] == ENV and result["steps"] == 80 and not result["safety_stop"]
    assert result["final_error"] is not None and isinstance(result["is_success"], bool)
    assert result["timing"]["steps"] == 80 and result["timing"]["compute_max_ms"] > 0


def test_simulated_robot_follows_sb3(runs):
    """The deployed policy on SimulatedRobot takes SB3's actions step for step (same seed, same env)."""
    from d2f_rl.deploy import OnnxPolicy, SafetyLimits, SimulatedRobot, run_policy
    from d2f_rl.evaluate import load_run

    policy = OnnxPolicy(runs["ppo"] / "policy.onnx")
    robot = SimulatedRobot.from_policy(policy, seed=7)
    seen = []
    result = run_policy(policy, robot, steps=20, realtime=False, limits=SafetyLimits(),
                        on_step=lambda i, obs, action: seen.append((obs, action)))
    robot.close()
    assert result.steps == 20 and result.stop_reason == "steps" and robot.stopped
    model, normalizer, *_ = load_run(runs["ppo"])
    for obs, action in seen:
        np.testing.assert_allclose(action, model.predict(normalizer.normalize_obs(obs), deterministic=True)[0],
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("env_id,robot,expected", [
    (ENV, "pusher", [0, 3]),                    # proprio = tcp(3), qvel(2)
    (ENV, "panda", [14, 17]),                   # proprio = qpos(7), qvel(7), tcp(3)
    ("D2F-OpenDrawer-v0", "floating_gripper", [12, 15]),  # qpos(6), qvel(6), tcp(3), opening(1)
])
def test_tcp_slice_found_for_each_robot(env_id, robot, expected):
    """policy.json's tcp_slice: where the measured TCP position sits in the observation."""
    import gymnasium as gym

    import d2f_envs  # noqa: F401
    from d2f_rl.export import find_tcp_slice, obs_layout, rollout_observations

    env = gym.make(env_id, robot=robot)
    rng = np.random.default_rng(0)
    obs, tcp = rollout_observations(env, lambda o: rng.uniform(-1, 1, env.action_space.shape), 10, seed=0)
    env.close()
    found = find_tcp_slice(obs_layout(env), obs, tcp)
    assert found == expected
    np.testing.assert_allclose(obs[:, found[0]:found[1]], tcp, atol=1e-9)
    assert find_tcp_slice(obs_layout(env), obs[:1], tcp[:1]) is None  # one sample cannot disambiguate
