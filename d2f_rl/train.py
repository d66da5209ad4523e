"""Train an SB3 agent on a dream2flow-gym env: run folders, hyperparameters, checkpoints, resume.

Entry point: ``python train.py ...`` (top level) calls :func:`main`. Flags follow
rl-baselines3-zoo where the meaning is the same (``python train.py --help``).

A run lives in ``<log-folder>/<algo>/<env_id>_<n>`` (a new ``n`` every run)::

    command.txt   every command line that trained in this folder (one per line)
    args.yml      the parsed flags of the first run (with the seed actually used)
    config.yml    the hyperparameters used (rl-zoo's format; --resume reads them back)
    tb/           TensorBoard logs (and progress.csv), one subfolder per (re)start
    checkpoints/  step_<N>/ model.zip, replay_buffer.pkl (SAC), vecnormalize.pkl
    best_model/   model.zip + vecnormalize.pkl of the best evaluation
    evaluations.csv / .npz   periodic evaluation (success rate, final/tracking error)
    final_model.zip, vecnormalize.pkl   at the end of training
    <env_id>.zip, best_model.zip, <env_id>/   rl-zoo's layout (links), so ``rl_zoo3.enjoy`` plays the run
"""
from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import ALGOS
from .utils import (
    StoreDict, atomic_file, check_log_folder, estimate_run_bytes, is_run_dir, latest_run_dir, new_run_dir, preprocess_hyperparams, read_hyperparams,
    read_yaml, write_yaml,
)

DEFAULT_ENV = "D2F-PushT-v0"
#: --vec-env auto: the batched vec env from this many training envs on. benchmarks/vector_env.py on the loaded
#: 2-core VM: its fixed per-step cost makes it use more CPU per env step than a single env at 1-4 envs (~1.9x at
#: 1, ~1.2x at 4), about the same at 8 and less from 16 on, with its physics free to use the second core; rerun
#: on a quiet machine to move this threshold
BATCH_MIN_ENVS = 8


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train SAC or PPO on a dream2flow-gym env (flags as in rl-baselines3-zoo).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--algo", type=str, default="sac", choices=ALGOS, help="RL algorithm")
    p.add_argument("--env", type=str, default=DEFAULT_ENV, help="environment id (see d2f_envs.ENV_IDS)")
    p.add_argument("-n", "--n-timesteps", type=int, default=-1,
                   help="total env steps of the run (all envs together); -1: the config's n_timesteps. "
                        "With --resume: the new total (the step count continues); -1: the run's original total")
    p.add_argument("--seed", type=int, default=-1, help="random seed; -1: draw one (it is saved in args.yml)")
    p.add_argument("-f", "--log-folder", type=str, default="logs",
                   help="root log folder (runs go to <log-folder>/<algo>/<env>_<n>); with --resume "
                        "also a run folder to resume")
    p.add_argument("--env-kwargs", type=str, nargs="+", action=StoreDict, default=None,
                   help="env keyword arguments as key:value, values are Python literals, "
                        "e.g. --env-kwargs robot:'\"panda\"' reward_sigma:0.05")
    p.add_argument("--eval-freq", type=int, default=10_000,
                   help="evaluate every this many env steps (all envs together); <= 0: no evaluation")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--save-freq", type=int, default=50_000,
                   help="save a checkpoint every this many env steps; <= 0: only at the end")
    p.add_argument("--n-envs", type=int, default=-1, help="number of training envs; -1: the config's n_envs")
    p.add_argument("--vec-env", type=str, default="auto", choices=("auto", "batch", "dummy", "subproc"),
                   help="training envs: batch = one process, all envs' physics in one mujoco.batch step and the "
                        "reward vectorised (d2f_envs.vector), dummy = SB3 DummyVecEnv, subproc = SB3 SubprocVecEnv "
                        f"(one process per env); auto = batch from {BATCH_MIN_ENVS} envs on (where it stops costing more "
                        "CPU per env step than a single env, benchmarks/vector_env.py), else dummy")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in -f (a run folder) or the latest <algo>/<env> run under -f "
                        "from its last checkpoint, with the run's own " + ", ".join(
                            "--" + k.replace("_", "-") for k in RESUME_KEEPS) + " unless given again")
    p.add_argument("-conf", "--conf-file", type=str, default=None,
                   help="hyperparameter YAML keyed by env id; None: d2f_rl/hyperparams/<algo>.yml")
    p.add_argument("-params", "--hyperparams", type=str, nargs="+", action=StoreDict, default=None,
                   help="override hyperparameters as key:value, e.g. -params learning_rate:0.0003 batch_size:128")
    p.add_argument("--device", type=str, default="cpu", help="torch device (cpu, cuda, auto)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (needs tqdm and rich)")
    p.add_argument("--gym-packages", type=str, nargs="+", default=[],
                   help="extra modules to import that register envs")
    p.add_argument("--num-threads", type=int, default=-1, help="torch threads; -1: torch's default")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="how many checkpoints to keep")
    p.add_argument("--save-replay-buffer", action=argparse.BooleanOptionalAction, default=True,
                   help="save SAC's replay buffer (its filled part) in checkpoints; without it a resumed "
                        "run starts with an empty buffer")
    p.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=True,
                   help="log to wandb in offline mode if wandb is installed (never online)")
    p.add_argument("-v", "--verbose", type=int, default=1, help="0: quiet, 1: evaluations, 2: SB3 logs too")
    return p


def command_line(argv: Optional[List[str]]) -> str:
    if argv is None:
        return " ".join(shlex.quote(a) for a in getattr(sys, "orig_argv", [sys.executable] + sys.argv))
    return " ".join(shlex.quote(a) for a in ["python", "train.py", *argv])


def _progress_available() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_resume_dir(args) -> Path:
    folder = Path(args.log_folder)
    if is_run_dir(folder):
        return folder
    run = latest_run_dir(folder, args.algo, args.env)
    if run is None:
        raise SystemExit(f"--resume: no run folder {folder} and no {args.algo}/{args.env}_<n> run under it")
    return run


#: flags a resumed run takes from the run's args.yml unless given again: without this a run
#: checkpointing every 40 steps would resume checkpointing every 50k (the flag's default)
RESUME_KEEPS = ("save_freq", "keep_checkpoints", "eval_freq", "eval_episodes", "save_replay_buffer", "vec_env")


def _given_flags(parser: argparse.ArgumentParser, argv: List[str]) -> set:
    """The ``dest`` of every option that appears on the command line ``argv``."""
    given = set()
    for action in parser._actions:
        for opt in action.option_strings:
            if any(a == opt or a.startswith(opt + "=") for a in argv):
                given.add(action.dest)
    return given


def main(argv: Optional[List[str]] = None) -> Path:
    """Train; returns the run folder."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = _given_flags(parser, sys.argv[1:] if argv is None else argv)
    cmd = command_line(argv)
    from .rollout import check_env_args, import_env_packages, make_env

    if not args.resume:  # a typo in --env / --env-kwargs fails at once, before torch loads or a run folder exists
        import_env_packages(args.gym_packages)
        hp = {**read_hyperparams(args.algo, args.env, args.conf_file, quiet=True), **(args.hyperparams or {})}
        obs_space, act_space = check_env_args(args.env, {**(hp.get("env_kwargs") or {}), **(args.env_kwargs or {})})
        need = estimate_run_bytes(hp, obs_space.shape[0], act_space.shape[0], args.keep_checkpoints) \
            if args.algo == "sac" and args.save_replay_buffer else estimate_run_bytes({}, 0, 0)
        check_log_folder(args.log_folder, need)  # read-only or full disk: say so now, not at the first checkpoint

    import torch
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor, VecNormalize

    from .callbacks import (
        REPLAY_FILE, VECNORM_FILE, AtomicCheckpointCallback, FlowEvalCallback, latest_checkpoint, load_replay_buffer,
        remove_stale_checkpoint_files, save_checkpoint,
    )
    from .zoo_layout import write_zoo_layout

    algo_cls = {"sac": SAC, "ppo": PPO}[args.algo]
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)

    # ---- 1. the run folder and the hyperparameters (read back from the run when resuming)
    checkpoint = None
    if args.resume:
        run_dir = _resolve_resume_dir(args)
        saved_args = read_yaml(run_dir / "args.yml")
        if saved_args.get("algo") != args.algo:
            # the run folder decides: --algo's default must not contradict -f logs/ppo/...
            args.algo = saved_args["algo"]
            algo_cls = {"sac": SAC, "ppo": PPO}[args.algo]
        args.env = saved_args["env"]
        for key in RESUME_KEEPS:
            if key not in given and key in saved_args:
                setattr(args, key, saved_args[key])
        hyperparams = read_yaml(run_dir / "config.yml")
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise SystemExit(f"--resume: {run_dir} has no checkpoint yet (checkpoints/step_<N>)")
        stale = remove_stale_checkpoint_files(run_dir)
        if stale:
            print(f"removed {len(stale)} half-written checkpoint folder(s) of a killed run: {', '.join(stale)}")
        seed = int(saved_args["seed"])
        total = args.n_timesteps if args.n_timesteps > 0 else int(saved_args["n_timesteps"])
        gym_packages = saved_args.get("gym_packages", []) + args.gym_packages
    else:
        hyperparams = read_hyperparams(args.algo, args.env, args.conf_file)
        if args.hyperparams:
            hyperparams.update(args.hyperparams)
        if args.env_kwargs:
            hyperparams["env_kwargs"] = {**(hyperparams.get("env_kwargs") or {}), **args.env_kwargs}
        if args.n_envs > 0:
            hyperparams["n_envs"] = args.n_envs
        seed = args.seed if args.seed >= 0 else random.randrange(2**31 - 1)
        total = args.n_timesteps if args.n_timesteps > 0 else int(float(hyperparams["n_timesteps"]))
        gym_packages = args.gym_packages
        run_dir = new_run_dir(args.log_folder, args.algo, args.env)
        write_yaml(run_dir / "config.yml", hyperparams)
        write_yaml(run_dir / "args.yml", {**vars(args), "seed": seed, "n_timesteps": total,
                                          "conf_file": str(args.conf_file) if args.conf_file else None})
    with open(run_dir / "command.txt", "a") as f:
        f.write(cmd + "\n")
    print(f"run folder: {run_dir}" + (f" (resuming from {checkpoint.name})" if checkpoint else ""))

    cfg = preprocess_hyperparams(hyperparams)
    import_env_packages(gym_packages)
    set_random_seed(seed)

    # ---- 2. training envs (+ VecNormalize, restored on resume)
    start_steps = 0
    if checkpoint is not None:
        import json
        start_steps = int(json.loads((checkpoint / "meta.json").read_text())["num_timesteps"])
    vec_env = args.vec_env
    if vec_env == "auto":
        vec_env = "batch" if cfg["n_envs"] >= BATCH_MIN_ENVS else "dummy"
    if vec_env == "batch":  # episode stats: VecMonitor over the batch instead of a Monitor per env
        from .vec_env import make_batched_vec_env

        env = VecMonitor(make_batched_vec_env(
            args.env, cfg["n_envs"], seed=seed + start_steps, env_kwargs=cfg["env_kwargs"],
            wrapper_class=cfg["env_wrapper"],
        ))
    else:
        env = make_vec_env(
            args.env, n_envs=cfg["n_envs"], seed=seed + start_steps, env_kwargs=cfg["env_kwargs"],
            wrapper_class=cfg["env_wrapper"],
            vec_env_cls={"dummy": DummyVecEnv, "subproc": SubprocVecEnv}[vec_env],
        )
    if cfg["normalize"] is not None:
        if checkpoint is not None and (checkpoint / VECNORM_FILE).exists():
            env = VecNormalize.load(str(checkpoint / VECNORM_FILE), env)
            env.training = True
        else:
            env = VecNormalize(env, **cfg["normalize"])

    # ---- 3. the model (new, or loaded with its replay buffer)
    if checkpoint is None:
        _fill_actor_dim(cfg, args.env, hyperparams.get("env_wrapper"))
        model = algo_cls(env=env, seed=seed, device=args.device, verbose=0, **cfg["model_kwargs"])
    else:
        model = algo_cls.load(checkpoint / "model.zip", env=env, device=args.device)
        if args.algo == "sac" and (checkpoint / REPLAY_FILE).exists():
            load_replay_buffer(model, checkpoint / REPLAY_FILE)
            print(f"loaded the replay buffer ({model.replay_buffer.size()} transitions per env)")
        print(f"loaded {checkpoint} at {model.num_timesteps} steps")

    # ---- 4. logging: TensorBoard + csv (+ stdout at -v 2), one subfolder per (re)start
    if args.wandb:
        _maybe_wandb(run_dir, args, hyperparams)  # before the TensorBoard writer, so wandb can mirror it
    tb_root = run_dir / "tb"
    segment = 1 + (len([p for p in tb_root.iterdir() if p.is_dir()]) if tb_root.exists() else 0)
    formats = ["csv", "tensorboard"] + (["stdout"] if args.verbose >= 2 else [])
    try:
        model.set_logger(configure(str(tb_root / f"{args.algo.upper()}_{segment}"), formats))
    except ImportError:  # no tensorboard installed
        model.set_logger(configure(str(tb_root / f"{args.algo.upper()}_{segment}"), ["csv"]))

    # ---- 5. callbacks: atomic checkpoints, evaluation on a separate env
    callbacks = [AtomicCheckpointCallback(run_dir, args.save_freq, keep=args.keep_checkpoints,
                                          replay_buffer=args.save_replay_buffer, verbose=args.verbose)]
    if args.eval_freq > 0:
        eval_env = make_env(args.env, cfg["env_kwargs"], cfg["env_wrapper"])
        callbacks.append(FlowEvalCallback(eval_env, run_dir, args.eval_freq, args.eval_episodes,
                                          eval_seed=seed + 10_000, verbose=args.verbose))

    # ---- 6. learn; the step count continues on resume
    remaining = total - model.num_timesteps
    progress = args.progress and _progress_available()
    t0 = time.time()
    previous_sigterm = _sigterm_as_interrupt()  # a scheduler's SIGTERM saves a checkpoint like Ctrl-C does
    try:
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=callbacks, progress_bar=progress,
                        reset_num_timesteps=checkpoint is None, log_interval=10 if args.algo == "sac" else 1)
        else:
            print(f"already at {model.num_timesteps} >= {total} steps; nothing to train (raise -n)")
    except KeyboardInterrupt:
        print("interrupted: saving a checkpoint")
    finally:
        elapsed = time.time() - t0
        save_checkpoint(model, run_dir, keep=args.keep_checkpoints, replay_buffer=args.save_replay_buffer)
        with atomic_file(run_dir / "final_model.zip") as tmp, open(tmp, "wb") as f:
            model.save(f)
        if model.get_vec_normalize_env() is not None:
            with atomic_file(run_dir / "vecnormalize.pkl") as tmp:
                model.get_vec_normalize_env().save(str(tmp))
        write_zoo_layout(run_dir, args.env, hyperparams, read_yaml(run_dir / "args.yml"))  # rl_zoo3.enjoy reads it
        env.close()
        _restore_sigterm(previous_sigterm)  # main() called in-process must not leave its handler behind
    print(f"trained to {model.num_timesteps} steps in {elapsed:.0f}s; saved {run_dir / 'final_model.zip'}")
    return run_dir


def _fill_actor_dim(cfg: Dict[str, Any], env_id: str, wrapper_spec: Any = None) -> None:
    """An asymmetric policy (``d2f_rl.policies``) without ``policy_kwargs.actor_dim``: take it from the
    env's ``PrivilegedObservation`` wrapper (the real observation's size); saved with the model."""
    from .policies import AsymmetricActorCriticPolicy
    from .wrappers import deployable_wrapper_spec

    mk = cfg["model_kwargs"]
    policy = mk.get("policy")
    if not (isinstance(policy, type) and issubclass(policy, AsymmetricActorCriticPolicy)):
        if wrapper_spec and deployable_wrapper_spec(wrapper_spec) != wrapper_spec:
            print("warning: env_wrapper PrivilegedObservation with a symmetric policy: the actor reads the privileged "
                  "state (an oracle; not exportable for a robot); use policy d2f_rl.policies.AsymmetricActorCriticPolicy",
                  file=sys.stderr)
        return
    pk = dict(mk.get("policy_kwargs") or {})
    if pk.get("actor_dim") is None:
        from .rollout import make_env
        from .wrappers import find_privileged

        env = make_env(env_id, cfg["env_kwargs"], cfg["env_wrapper"])
        try:
            layer = find_privileged(env)
        finally:
            env.close()
        if layer is None:
            raise SystemExit(f"policy {policy.__name__} needs policy_kwargs actor_dim, or env_wrapper "
                             "d2f_rl.wrappers.PrivilegedObservation to take it from")
        pk["actor_dim"] = layer.actor_dim
        print(f"asymmetric actor-critic: actor on the first {layer.actor_dim} observation entries, "
              f"critic on all {layer.actor_dim + layer.privileged_dim}")
    mk["policy_kwargs"] = pk


def _sigterm_as_interrupt():
    """Make SIGTERM raise KeyboardInterrupt (main thread only); returns the previous handler."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        return signal.signal(signal.SIGTERM, handler)
    return None


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _maybe_wandb(run_dir: Path, args: argparse.Namespace, hyperparams: Dict[str, Any]) -> None:
    """wandb, offline only, if installed: ``wandb sync`` later if you want it online."""
    try:
        import wandb
    except ImportError:
        return
    os.environ["WANDB_MODE"] = "offline"
    wandb.init(mode="offline", dir=str(run_dir), project="dream2flow-gym", name=run_dir.name,
               config={"args": vars(args), "hyperparams": hyperparams}, sync_tensorboard=True)
