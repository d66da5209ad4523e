"""train.py / eval.py end to end, as subprocesses with tiny budgets (a few hundred env steps).

Each subprocess pays the torch + SB3 import (a few seconds); the trained run is
shared across tests (module fixture).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = "D2F-PushT-v0"
# tiny nets and batches: these tests check plumbing, not learning
TINY_SAC = ["-params", "learning_starts:50", "batch_size:32", "policy_kwargs:dict(net_arch=[16, 16])", "buffer_size:5000"]
COMMON = ["--no-progress", "--num-threads", "1", "--seed", "3"]


# --------------------------------------------------------------------------- in-process units
def test_store_dict_and_hyperparams():
    import argparse

    from d2f_rl.utils import StoreDict, preprocess_hyperparams, read_hyperparams

    p = argparse.ArgumentParser()
    p.add_argument("--env-kwargs", nargs="+", action=StoreDict)
    ns = p.parse_args(["--env-kwargs", 'robot:"panda"', "reward_sigma:0.05", "reward_scales:dict(success=1.0)", "x:plain"])
    assert ns.env_kwargs == {"robot": "panda", "reward_sigma": 0.05, "reward_scales": {"success": 1.0}, "x": "plain"}
    for algo in ("sac", "ppo"):
        cfg = preprocess_hyperparams(read_hyperparams(algo, ENV))
        assert cfg["n_envs"] >= 1 and cfg["n_timesteps"] > 0 and "policy" in cfg["model_kwargs"]
        assert isinstance(cfg["model_kwargs"]["policy_kwargs"], dict)
        assert cfg["env_wrapper"] is not None and cfg["normalize"] is not None
        cfg = preprocess_hyperparams(read_hyperparams(algo, "Some-Other-v0"))  # the "default" entry
        assert cfg["n_timesteps"] > 0


def test_run_dirs_and_atomic_dir(tmp_path):
    from d2f_rl.utils import atomic_dir, latest_run_dir, new_run_dir, resolve_dir

    assert new_run_dir(tmp_path, "sac", ENV).name == f"{ENV}_1"
    (tmp_path / "sac" / f"{ENV}_7").mkdir()
    (tmp_path / "sac" / f"{ENV}_x").mkdir()
    assert new_run_dir(tmp_path, "sac", ENV).name == f"{ENV}_8"
    assert latest_run_dir(tmp_path, "sac", ENV).name == f"{ENV}_8"
    target = tmp_path / "best_model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("2")
            raise RuntimeError("killed mid-save")
    assert (resolve_dir(target) / "a.txt").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("3")
    assert (target / "a.txt").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --------------------------------------------------------------------------- subprocesses
def run(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def checkpoint_steps(run_dir: Path) -> list:
    root = run_dir / "checkpoints"
    return sorted(int(p.name.split("_")[1]) for p in root.glob("step_*")) if root.exists() else []


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def sac_run(logs) -> Path:
    run("train.py", "--algo", "sac", "--env", ENV, "-n", "300", "--n-envs", "2", "-f", str(logs),
        "--eval-freq", "150", "--eval-episodes", "1", "--save-freq", "150", *COMMON, *TINY_SAC,
        "--env-kwargs", "reward_sigma:0.04")
    return logs / "sac" / f"{ENV}_1"


def test_train_writes_run_folder(sac_run):
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
    import yaml

    for name in ("config.yml", "args.yml", "command.txt", "final_model.zip", "vecnormalize.pkl",
                 "evaluations.csv", "evaluations.npz", "best_model/model.zip", "best_model/vecnormalize.pkl"):
        assert (sac_run / name).is_file(), name
    args = yaml.safe_load((sac_run / "args.yml").read_text())
    assert args["seed"] == 3 and args["algo"] == "sac" and args["env"] == ENV
    assert args["env_kwargs"] == {"reward_sigma": 0.04}
    config = yaml.safe_load((sac_run / "config.yml").read_text())
    assert config["policy_kwargs"] == {"net_arch": [16, 16]} and config["n_envs"] == 2
    assert config["env_kwargs"]["reward_sigma"] == 0.04  # merged into the config's env_kwargs
    assert "train.py" in (sac_run / "command.txt").read_text()
    assert list((sac_run / "tb").rglob("events.out.tfevents.*")), "no TensorBoard events"
    assert checkpoint_steps(sac_run)[-1] == 300
    rows = (sac_run / "evaluations.csv").read_text().splitlines()
    assert rows[0].startswith("timesteps,") and len(rows) == 3  # header + evals at 150 and 300

    model = SAC.load(sac_run / "final_model.zip", device="cpu")
    assert model.num_timesteps == 300
    import d2f_envs  # noqa: F401
    import gymnasium as gym

    venv = DummyVecEnv([lambda: gym.make(ENV)])
    VecNormalize.load(str(sac_run / "vecnormalize.pkl"), venv)


def test_second_run_gets_new_folder(logs, sac_run):
    run("train.py", "--algo", "sac", "-n", "60", "--n-envs", "1", "-f", str(logs), "--eval-freq", "0", *COMMON, *TINY_SAC)
    second = logs / "sac" / f"{ENV}_2"
    assert (second / "final_model.zip").is_file()
    assert (sac_run / "final_model.zip").is_file()  # the first run is untouched


def test_resume_continues_step_count(sac_run):
    from stable_baselines3 import SAC

    run("train.py", "--algo", "sac", "--resume", "-f", str(sac_run), "-n", "450", "--eval-freq", "1000",
        "--eval-episodes", "1", "--no-progress", "--num-threads", "1")
    model = SAC.load(sac_run / "final_model.zip", device="cpu")
    assert model.num_timesteps == 450
    assert checkpoint_steps(sac_run)[-1] == 450
    assert len((sac_run / "command.txt").read_text().strip().splitlines()) == 2
    # the resumed segment evaluates at its end (450) and logs to its own TensorBoard folder
    rows = (sac_run / "evaluations.csv").read_text().splitlines()
    assert [float(r.split(",")[0]) for r in rows[1:]] == [150, 300, 450]
    assert list((sac_run / "tb" / "SAC_2").glob("events.out.tfevents.*"))


def test_eval_json(sac_run, tmp_path):
    out = tmp_path / "eval.json"
    proc = run("eval.py", "-f", str(sac_run), "--episodes", "2", "--json", str(out), "--deterministic")
    assert "success rate" in proc.stdout
    result = json.loads(out.read_text())
    assert result["env"] == ENV and result["env_kwargs"]["reward_sigma"] == 0.04
    assert {"success_rate", "mean_final_error", "mean_tracking_error", "mean_return"} <= set(result["summary"])
    assert len(result["episodes"]) == 2
    ep = result["episodes"][0]
    assert {"is_success", "final_error", "mean_tracking_error", "return", "length", "tracking_error",
            "flow_index"} <= set(ep)
    assert ep["length"] == 80 and len(ep["tracking_error"]) == 80
    assert (sac_run / "eval" / "tracking_error.png").is_file()
    assert (sac_run / "eval" / "training_curve.png").is_file()


@pytest.mark.render
def test_eval_video(sac_run, tmp_path):
    out = tmp_path / "video_eval"
    run("eval.py", "-f", str(sac_run), "--episodes", "1", "--video", "--out", str(out), "--no-plots",
        "--max-steps", "12", "--env-kwargs", "width:128", "height:96")
    video = out / "episode_000.mp4"
    assert video.is_file() and video.stat().st_size > 1000
    import imageio.v2 as imageio

    with imageio.get_reader(str(video)) as reader:
        frames = [f for f in reader]
    assert len(frames) == 13 and frames[0].shape == (96, 128, 3)  # the reset frame + 12 steps


def test_random_baseline_and_planner_slot(tmp_path):
    out = tmp_path / "random.json"
    run("eval.py", "--env", ENV, "--policy", "random", "--episodes", "1", "--json", str(out), "--out", str(tmp_path))
    result = json.loads(out.read_text())
    assert result["policy"] == "random" and result["summary"]["episodes"] == 1
    # the --planner slot: a tiny budget (tests/test_planners.py covers the planners themselves)
    proc = run("eval.py", "--env", ENV, "--planner", "mppi", "--episodes", "1", "--max-steps", "2", "--horizon", "2",
               "--samples", "4", "--iterations", "1", "--out", str(tmp_path / "planner"), check=False)
    if not (ROOT / "d2f_rl" / "planners").is_dir():
        assert proc.returncode != 0 and "not available yet" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]


def test_killed_run_always_resumes(tmp_path):
    """kill -9 at three seeded random moments of a real train.py run (benchmarks/kill_resume.py, whose
    20-kill run is the README's figure): each time the newest checkpoint loads (model, replay buffer,
    VecNormalize), no visible checkpoint is half-written, and --resume continues the step count."""
    out = tmp_path / "kill.json"
    run("benchmarks/kill_resume.py", "--kills", "3", "--seed", "1", "--workdir", str(tmp_path / "work"),
        "--out", str(out), timeout=400)
    summary, *rows = json.loads(out.read_text())["rows"]
    assert summary["kills"] == summary["survived"] == 3 and summary["final"]["ok"], summary
    assert summary["final"]["steps"] == summary["final"]["target"]
    assert all(r["ok"] for r in rows) and [r["kill"] for r in rows] == [0, 1, 2]
    # the second kill lands in training after a resume: the resumed run checkpointed past where it
    # started (with the run's own --save-freq 40, not the flag's default)
    assert rows[1]["resumed_from"] == rows[0]["steps"] and rows[1]["steps"] > rows[1]["resumed_from"]
    assert [r["steps"] for r in rows] == sorted(r["steps"] for r in rows)


def test_checkpoint_listing_ignores_half_written_folders(tmp_path):
    from d2f_rl.callbacks import latest_checkpoint, list_checkpoints, remove_stale_checkpoint_files, save_checkpoint

    root = tmp_path / "checkpoints"

    def folder(name, files=("model.zip", "meta.json")):
        (root / name).mkdir(parents=True)
        for f in files:
            (root / name / f).write_text("x")

    folder("step_000000040")
    folder("step_000000200", files=("model.zip",))  # no meta.json (written last): not complete
    folder(".step_000000120.abc.tmp")  # atomic_dir's folder being written
    folder(".step_000000160.77.deleting")  # a pruned checkpoint being deleted
    assert latest_checkpoint(tmp_path).name == "step_000000040"
    # killed between atomic_dir's two renames: the complete .old copy is the only one of step 80
    folder(".step_000000080.old")
    assert latest_checkpoint(tmp_path).name == ".step_000000080.old"
    folder("step_000000080")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000040", "step_000000080"]
    assert sorted(remove_stale_checkpoint_files(tmp_path)) == [".step_000000120.abc.tmp", ".step_000000160.77.deleting"]
    assert (root / ".step_000000080.old").is_dir()  # complete copies are left alone

    class FakeModel:  # what save_checkpoint needs of a model, to test its pruning
        num_timesteps = 240

        def save(self, f):
            f.write(b"model")

        def get_vec_normalize_env(self):
            return None

    save_checkpoint(FakeModel(), tmp_path, keep=1, replay_buffer=False)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000240"]
    assert not [p for p in root.iterdir() if p.name.endswith(".deleting")]


def test_resume_keeps_the_runs_checkpoint_flags():
    from d2f_rl.train import RESUME_KEEPS, _given_flags, build_parser

    p = build_parser()
    assert _given_flags(p, ["--resume", "-f", "x", "--save-freq=10", "--no-save-replay-buffer"]) >= \
        {"resume", "log_folder", "save_freq", "save_replay_buffer"}
    assert not _given_flags(p, ["--resume", "-f", "x"]) & set(RESUME_KEEPS)


def test_rl_zoo3_reads_our_hyperparams(tmp_path):
    run("-m", "rl_zoo3.train", "--algo", "sac", "--env", ENV, "--gym-packages", "d2f_envs",
        "-conf", "d2f_rl/hyperparams/sac.yml", "-n", "100", "-f", str(tmp_path), "--eval-freq", "-1",
        "--seed", "0", "-params", "learning_starts:50", "batch_size:32", "n_envs:1", "buffer_size:5000",
        "policy_kwargs:dict(net_arch=[16, 16])", "--num-threads", "1")
    assert (tmp_path / "sac" / f"{ENV}_1" / f"{ENV}.zip").is_file()


def test_rl_zoo3_enjoy_plays_our_run(sac_run):
    # rl-zoo's layout is written next to ours (links to the same files)
    assert (sac_run / f"{ENV}.zip").samefile(sac_run / "final_model.zip") or \
        (sac_run / f"{ENV}.zip").read_bytes() == (sac_run / "final_model.zip").read_bytes()
    for name in ("config.yml", "args.yml", "vecnormalize.pkl"):
        assert (sac_run / ENV / name).is_file(), name
    proc = run("-m", "rl_zoo3.enjoy", "--algo", "sac", "--env", ENV, "-f", str(sac_run.parents[1]), "--exp-id", "1",
               "--gym-packages", "d2f_envs", "-n", "80", "--no-render", "--deterministic", "--load-best")
    assert "Loading running average" in proc.stdout  # our VecNormalize statistics were found
    assert "Episode Length 80" in proc.stdout  # one full episode of the registered TimeLimit


@pytest.mark.parametrize("flags,expected", [
    (["--env", "D2F-PushT-v1"], "did you mean 'D2F-PushT-v0'"),
    (["--env-kwargs", "robt:'panda'"], "did you mean 'robot'"),
    (["--env-kwargs", "flow:'/no/such/flow.npz'"], "/no/such/flow.npz"),
])
def test_train_cli_errors_are_one_line_and_make_no_run_folder(tmp_path, flags, expected):
    proc = run("train.py", "-n", "10", "-f", str(tmp_path / "logs"), *COMMON, *flags, check=False)
    assert proc.returncode != 0 and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "logs").exists()


def test_unwritable_or_full_log_folder_fails_before_training(tmp_path):
    from d2f_rl.utils import check_log_folder, estimate_run_bytes

    (tmp_path / "a_file").write_text("")
    for folder, expected in [(tmp_path / "a_file", "is a file"), (Path("/proc/d2f_logs"), "cannot write run folders")]:
        with pytest.raises(SystemExit, match=expected):
            check_log_folder(folder, 1)
    need = estimate_run_bytes({"buffer_size": 10**12}, obs_dim=60, act_dim=2)
    with pytest.raises(SystemExit, match="MiB free, this run needs about"):
        check_log_folder(tmp_path / "logs", need)
    check_log_folder(tmp_path / "logs", estimate_run_bytes({"buffer_size": 1000}, 60, 2))  # fits: no error
    assert [p.name for p in (tmp_path / "logs").iterdir()] == []  # the write probe is gone


def test_training_survives_diverging_episodes():
    """A simulation that blows up mid-run truncates that episode (with a reason); SB3 trains on."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    import d2f_envs  # noqa: F401

    reasons = []

    class BlowUpEvery(gym.Wrapper):
        """Corrupts the physics state every ``k`` steps, as a diverging solver would."""

        def __init__(self, env, k):
            super().__init__(env)
            self.k, self.n = k, 0

        def step(self, action):
            self.n += 1
            if self.n % self.k == 0:
                self.env.unwrapped.data.qvel[:] = np.nan
            obs, r, term, trunc, info = self.env.step(action)
            if "truncation_reason" in info:
                reasons.append(info["truncation_reason"])
                assert trunc and np.isfinite(obs).all() and np.isfinite(r)
            return obs, r, term, trunc, info

    venv = DummyVecEnv([lambda k=k: BlowUpEvery(gym.make(ENV), k) for k in (23, 31)])
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
                policy_kwargs=dict(net_arch=[16]))
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    assert len(reasons) >= 8 and all("diverged" in r for r in reasons)


def test_train_main_in_process_restores_the_sigterm_handler(tmp_path):
    import signal

    from d2f_rl.train import main

    before = signal.getsignal(signal.SIGTERM)
    main(["--algo", "ppo", "-n", "32", "--n-envs", "1", "-f", str(tmp_path), "--eval-freq", "0", "--no-progress",
          "--no-wandb", "-params", "n_steps:32", "batch_size:32", "policy_kwargs:dict(net_arch=[8])"])
    assert signal.getsignal(signal.SIGTERM) is before


def test_batched_and_dummy_vec_envs_train_identical_models(tmp_path):
    """--vec-env batch (mujoco.batch) is a faster path to the same training, not a different one."""
    import torch
    from stable_baselines3 import SAC

    models = {}
    for vec in ("batch", "dummy"):
        run("train.py", "--algo", "sac", "-n", "240", "--n-envs", "8", "-f", str(tmp_path / vec), "--vec-env", vec,
            "--eval-freq", "0", *COMMON, *TINY_SAC)
        models[vec] = SAC.load(tmp_path / vec / "sac" / f"{ENV}_1" / "final_model.zip", device="cpu").policy.state_dict()
    assert all(torch.equal(models["batch"][k], models["dummy"][k]) for k in models["dummy"])
