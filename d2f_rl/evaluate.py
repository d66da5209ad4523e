"""Evaluate a trained run (or a random / planner baseline) on a dream2flow-gym env.

Entry point: ``python eval.py ...`` (top level) calls :func:`main`::

    python eval.py -f logs/sac/D2F-PushT-v0_1 --episodes 50 --video --json out.json
    python eval.py --env D2F-PushT-v0 --policy random
    python eval.py --env D2F-PushT-v0 --planner mppi --horizon 10 --samples 64 --iterations 2
    python eval.py -f logs/sac/D2F-PushT-v0_1 --export onnx   # policy.onnx + policy.json (d2f_rl.export)

A run is loaded with its own configuration: env id, env kwargs, env wrapper and
observation-normalisation statistics; the model is ``best_model/`` if present,
else ``final_model.zip``, else the newest checkpoint (``--model`` chooses).
Outputs go to ``<run>/eval/`` (or ``--out``): ``tracking_error.png`` (error over
the episode vs the flow index reached), ``training_curve.png`` (success rate vs
env steps from ``evaluations.csv``), ``episode_<i>.mp4`` with ``--video``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .utils import StoreDict, is_run_dir, preprocess_hyperparams, read_yaml

PLANNERS_AVAILABLE = (Path(__file__).resolve().parent / "planners").is_dir()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py",
        description="Evaluate a trained run, a random policy or a planner on a dream2flow-gym env.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("-f", "--folder", type=str, default=None, help="run folder, e.g. logs/sac/D2F-PushT-v0_1")
    p.add_argument("--env", type=str, default=None, help="env id (without -f; with -f it must match the run's)")
    p.add_argument("--policy", type=str, default="model", choices=("model", "random"),
                   help="'model': the run's trained model (-f); 'random': uniform random actions")
    p.add_argument("--planner", type=str, default=None,
                   help="zero-shot sampling MPC on the flow cost instead of a learned policy: mppi or cem "
                        "(d2f_rl.planners; needs --env or -f for the env, ignores --policy)")
    p.add_argument("--horizon", type=int, default=10, help="--planner: control steps per rollout")
    p.add_argument("--samples", type=int, default=64, help="--planner: rollouts per iteration")
    p.add_argument("--iterations", type=int, default=2, help="--planner: optimisation rounds per control step")
    p.add_argument("--planner-kwargs", type=str, nargs="+", action=StoreDict, default=None,
                   help="--planner: more constructor arguments as key:value, e.g. noise:0.5 temperature:0.1 "
                        "weights:dict(goal=1.0) (see d2f_rl/planners)")
    p.add_argument("--model", type=str, default="auto", choices=("auto", "best", "final", "latest"),
                   help="which saved model of the run: best_model/, final_model.zip or the newest checkpoint; "
                        "auto: the first that exists in that order")
    p.add_argument("--episodes", type=int, default=20, help="number of episodes")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="deterministic (mean) actions")
    p.add_argument("--env-kwargs", type=str, nargs="+", action=StoreDict, default=None,
                   help="override env keyword arguments as key:value (Python literals)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="cut episodes at this many steps; None: the env's registered limit")
    p.add_argument("--video", action="store_true", help="write mp4s of the first --video-episodes episodes")
    p.add_argument("--video-episodes", type=int, default=3, help="how many episodes --video records")
    p.add_argument("--json", type=str, default=None, help="write the summary and per-episode results here")
    p.add_argument("--out", type=str, default=None, help="output folder; None: <run>/eval, or eval_out/<env>_<policy> without a run")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="write the PNG plots (tracking error, training curve)")
    p.add_argument("--device", type=str, default="cpu", help="torch device")
    p.add_argument("--gym-packages", type=str, nargs="+", default=[], help="extra modules that register envs")
    p.add_argument("--export", type=str, default=None, choices=("onnx",),
                   help="instead of evaluating, export the run's deterministic policy (with its observation "
                        "normalisation) to policy.onnx + policy.json for d2f_rl.deploy (see d2f_rl/export.py)")
    p.add_argument("--export-dir", type=str, default=None, help="--export: output folder; None: the run folder")
    p.add_argument("--overwrite", action="store_true", help="--export: replace an existing policy.onnx/policy.json")
    return p


# --------------------------------------------------------------------------- loading
def load_run(run_dir: Path, which: str = "auto", device: str = "cpu"):
    """``(model, obs_normalizer or None, env_id, env_kwargs, env_wrapper, model_path)`` of a run folder."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from .callbacks import MODEL_FILE, VECNORM_FILE, best_model_dir, latest_checkpoint
    from .rollout import make_env

    args = read_yaml(run_dir / "args.yml")
    config = read_yaml(run_dir / "config.yml")
    cfg = preprocess_hyperparams(config)
    env_id, algo = args["env"], args["algo"]
    env_kwargs = cfg["env_kwargs"]

    candidates = {
        "best": lambda: (lambda d: (d / MODEL_FILE, d / VECNORM_FILE) if d else None)(best_model_dir(run_dir)),
        "final": lambda: ((run_dir / "final_model.zip", run_dir / "vecnormalize.pkl")
                          if (run_dir / "final_model.zip").is_file() else None),
        "latest": lambda: (lambda d: (d / MODEL_FILE, d / VECNORM_FILE) if d else None)(latest_checkpoint(run_dir)),
    }
    order = ["best", "final", "latest"] if which == "auto" else [which]
    found = None
    for name in order:
        found = candidates[name]()
        if found:
            break
    if not found:
        raise SystemExit(f"{run_dir}: no {'/'.join(order)} model found")
    model_path, vn_path = found
    model = {"sac": SAC, "ppo": PPO}[algo].load(model_path, device=device)
    normalizer = None
    if cfg["normalize"] is not None:
        if not vn_path.exists():
            raise SystemExit(f"{run_dir}: the run normalises observations but {vn_path} is missing")
        dummy = DummyVecEnv([lambda: make_env(env_id, env_kwargs, cfg["env_wrapper"])])
        normalizer = VecNormalize.load(str(vn_path), dummy)
        normalizer.training = False
        normalizer.norm_reward = False
    return model, normalizer, env_id, env_kwargs, cfg["env_wrapper"], model_path


# --------------------------------------------------------------------------- outputs
def print_table(summary: Dict[str, Any], title: str) -> None:
    rows = [
        ("episodes", f"{summary['episodes']}"),
        ("success rate", f"{summary['success_rate']:.2f}"),
        ("final error (cm)", f"{summary['mean_final_error'] * 100:.2f}"),
        ("tracking error (cm)", f"{summary['mean_tracking_error'] * 100:.2f}"),
        ("episode return", f"{summary['mean_return']:.2f} +- {summary['std_return']:.2f}"),
        ("coverage", f"{summary['mean_coverage']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(title)
    print("-" * (width + 20))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * (width + 20))


def plot_tracking(episodes: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.8))
    for ep in episodes:
        steps = np.arange(1, ep["length"] + 1)
        c = "tab:green" if ep["is_success"] else "tab:red"
        err = np.array(ep["tracking_error"]) * 100
        ax1.plot(steps, err, color=c, alpha=0.4, lw=1)
        ax2.plot(steps, ep["flow_index"], color=c, alpha=0.4, lw=1)
        ax3.plot(ep["flow_index"], err, color=c, alpha=0.4, lw=1)
    ax1.set_xlabel("env step")
    ax1.set_ylabel("tracking error (cm)")
    ax1.set_title("tracking error over the episode")
    ax2.set_xlabel("env step")
    ax2.set_ylabel("flow index t*")
    ax2.set_title("flow index reached (green: success)")
    ax3.set_xlabel("flow index t*")
    ax3.set_ylabel("tracking error (cm)")
    ax3.set_title("tracking error vs flow index")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training_curve(run_dir: Path, path: Path) -> bool:
    from .callbacks import read_evaluations

    rows = read_evaluations(run_dir)
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["timesteps"] for r in rows]
    fig, ax1 = plt.subplots(figsize=(6, 3.8))
    ax1.plot(steps, [r["success_rate"] for r in rows], "o-", color="tab:blue")
    ax1.set_ylim(-0.05, 1.05)
    ax1.set_xlabel("env steps")
    ax1.set_ylabel("success rate", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(steps, [r["mean_final_error"] * 100 for r in rows], "s--", color="tab:orange", ms=3)
    ax2.set_ylabel("final error (cm)", color="tab:orange")
    ax1.set_title(run_dir.name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_video(frames: List[np.ndarray], path: Path, fps: int) -> None:
    import imageio.v2 as imageio

    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=8, quality=7) as w:
        for frame in frames:
            w.append_data(frame)


def _json_safe(ep: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in ep.items() if k != "frames"}


def _planner_policy(args, env):
    """``(policy, info)``: the --planner as a policy timed per call; ``info["_timer"]()`` gives the timing."""
    import time

    from .planners import make_planner

    kwargs = dict(args.planner_kwargs or {})
    planner = make_planner(args.planner, env, horizon=args.horizon, samples=args.samples,
                           iterations=args.iterations, seed=args.seed, **kwargs)
    clock = {"seconds": 0.0, "steps": 0}

    def act(obs):
        t = time.perf_counter()
        action = planner(obs)
        clock["seconds"] += time.perf_counter() - t
        clock["steps"] += 1
        return action

    def timer():
        n = max(clock["steps"], 1)
        return {"steps": clock["steps"], "seconds_per_step": clock["seconds"] / n}

    info = {"name": args.planner, "horizon": args.horizon, "samples": args.samples, "iterations": args.iterations,
            "kwargs": kwargs, "threads": planner.rollout.batch.nthread, "_timer": timer}
    return act, info


# --------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    from .rollout import import_env_packages, make_env, model_policy, random_policy, run_episode, summarize

    if args.planner is not None:
        if not PLANNERS_AVAILABLE:
            raise SystemExit(f"--planner {args.planner}: not available yet (d2f_rl/planners does not exist)")
        from .planners import PLANNERS

        if args.planner not in PLANNERS:
            raise SystemExit(f"--planner {args.planner!r}: choose from {sorted(PLANNERS)}")
        args.policy = "planner"  # the planner replaces the policy; the env comes from --env or the run

    run_dir = Path(args.folder) if args.folder else None
    if args.policy == "model":
        if run_dir is None:
            raise SystemExit("--policy model needs -f <run folder> (or use --policy random --env <id>)")
        if not is_run_dir(run_dir):
            raise SystemExit(f"{run_dir} is not a run folder (no args.yml)")

    import_env_packages(args.gym_packages)
    wrapper, normalizer, model_path = None, None, None
    if run_dir is not None:
        saved = read_yaml(run_dir / "args.yml")
        import_env_packages(saved.get("gym_packages", []))
    if args.export is not None:
        if args.policy != "model":
            raise SystemExit("--export exports a trained run: use it with -f <run folder> (not --policy random/--planner)")
        from .export import ExportError, export_run, print_export

        try:
            exported = export_run(run_dir, args.export, args.export_dir, args.overwrite, args.model, seed=args.seed)
        except ExportError as e:
            raise SystemExit(f"--export: {e}") from None
        print_export(exported)
        return {"export": {"onnx": str(exported["onnx"]), "json": str(exported["json"])}, "meta": exported["meta"]}
    if args.policy == "model":
        model, normalizer, env_id, env_kwargs, wrapper, model_path = load_run(run_dir, args.model, args.device)
        if args.env and args.env != env_id:
            raise SystemExit(f"--env {args.env} does not match the run's env {env_id}")
    else:
        env_id = args.env or (read_yaml(run_dir / "args.yml")["env"] if run_dir else None)
        if env_id is None:
            raise SystemExit(f"--{'planner' if args.planner else 'policy random'} needs --env <id> (or -f <run folder>)")
        env_kwargs = dict(read_yaml(run_dir / "config.yml").get("env_kwargs") or {}) if run_dir else {}
    env_kwargs = {**env_kwargs, **(args.env_kwargs or {})}

    env = make_env(env_id, env_kwargs, wrapper, render_mode="rgb_array" if args.video else None,
                   max_episode_steps=args.max_steps)
    planner_info = None
    if args.policy == "model":
        policy = model_policy(model, normalizer, args.deterministic)
        label = f"{run_dir} ({model_path.relative_to(run_dir)})"
    elif args.planner is not None:
        policy, planner_info = _planner_policy(args, env)
        label = (f"{args.planner} planner on {env_id} (horizon {args.horizon}, samples {args.samples}, "
                 f"iterations {args.iterations})")
    else:
        policy = random_policy(env.action_space, args.seed)
        label = f"random policy on {env_id}"

    out_dir = Path(args.out) if args.out else (run_dir / "eval" if run_dir else Path("eval_out") / f"{env_id}_{args.planner or args.policy}")
    out_dir.mkdir(parents=True, exist_ok=True)
    episodes = []
    for i in range(args.episodes):
        ep = run_episode(env, policy, seed=args.seed + i, render=args.video and i < args.video_episodes)
        if "frames" in ep:
            video = out_dir / f"episode_{i:03d}.mp4"
            write_video(ep.pop("frames"), video, fps=int(env.metadata.get("render_fps", 10)))
            ep["video"] = str(video)
        episodes.append(ep)
    env.close()

    summary = summarize(episodes)
    mode = {"model": "deterministic" if args.deterministic else "stochastic", "random": "uniform",
            "planner": "sampling MPC"}[args.policy]
    print_table(summary, f"{env_id}: {label}, {mode}, {args.episodes} episodes from seed {args.seed}")
    if planner_info is not None:
        planner_info.update(planner_info.pop("_timer")())
        summary["seconds_per_step"] = planner_info["seconds_per_step"]
        print(f"planner: {planner_info['seconds_per_step'] * 1e3:.0f} ms per control step "
              f"({planner_info['steps']} steps)")
    result = {
        "env": env_id, "env_kwargs": env_kwargs, "policy": args.policy,
        "run": str(run_dir) if run_dir else None, "model": str(model_path) if model_path else None,
        "deterministic": args.deterministic, "seed": args.seed, "summary": summary,
        **({"planner": planner_info} if planner_info is not None else {}),
        "episodes": [_json_safe(e) for e in episodes],
    }
    if args.plots:
        plot_tracking(episodes, out_dir / "tracking_error.png")
        if run_dir is not None and plot_training_curve(run_dir, out_dir / "training_curve.png"):
            print(f"plots: {out_dir / 'tracking_error.png'}, {out_dir / 'training_curve.png'}")
        else:
            print(f"plot: {out_dir / 'tracking_error.png'}")
    if args.video:
        print(f"videos: {out_dir}/episode_*.mp4")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
        print(f"json: {args.json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
