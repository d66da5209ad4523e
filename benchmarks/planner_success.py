"""Zero-shot planners (MPPI, CEM) on the flow-tracking cost: success, errors and time per control step.

    python benchmarks/planner_success.py                                 # Push-T pusher, 10 episodes each
    python benchmarks/planner_success.py --env D2F-OpenDrawer-v0 --robot floating_gripper --episodes 3

No training, no demonstrations: each control step samples action sequences, rolls them out on copies
of the env's own MuJoCo model (mujoco.batch) and executes the first action of the best plan.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="D2F-PushT-v0")
    ap.add_argument("--robot", default=None)
    ap.add_argument("--planners", nargs="+", default=["mppi", "cem"])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/planner_success.json")
    args = ap.parse_args(argv)

    import gymnasium as gym

    import d2f_envs  # noqa: F401
    from d2f_envs.rollout import run_episode
    from d2f_rl.planners import make_planner

    kwargs = {} if args.robot is None else {"robot": args.robot}
    rows = []
    for name in args.planners:
        env = gym.make(args.env, **kwargs)
        planner = make_planner(name, env, horizon=args.horizon, samples=args.samples,
                               iterations=args.iterations, seed=0)
        eps, t0, steps = [], time.perf_counter(), 0
        for seed in range(args.episodes):
            ep = run_episode(env, planner, seed=seed)
            eps.append(ep)
            steps += ep["length"]
            print(f"{name} seed {seed}: success={ep['is_success']} final_error={100 * ep['final_error']:.2f} cm", flush=True)
        row = {
            "env": args.env, "robot": env.unwrapped.robot_name, "planner": name, "episodes": args.episodes,
            "horizon": args.horizon, "samples": args.samples, "iterations": args.iterations,
            "success_rate": float(np.mean([e["is_success"] for e in eps])),
            "median_final_error_m": float(np.median([e["final_error"] for e in eps])),
            "mean_coverage": float(np.nanmean([e["coverage"] for e in eps])),
            "seconds_per_step": (time.perf_counter() - t0) / steps,
        }
        rows.append(row)
        env.close()
    lines = [
        f"Machine: {machine()}. `python benchmarks/planner_success.py --env {args.env} --episodes {args.episodes}` "
        f"(horizon {args.horizon}, {args.samples} samples, {args.iterations} iterations; seeds 0..{args.episodes - 1}).",
        "",
        "| env | robot | planner | success | median final error | mean coverage | s / control step |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['env']} | {r['robot']} | {r['planner']} | {100 * r['success_rate']:.0f} % | "
                     f"{100 * r['median_final_error_m']:.2f} cm | {r['mean_coverage']:.3f} | {r['seconds_per_step']:.2f} |")
    write_results(Path(args.out), rows, lines)


if __name__ == "__main__":
    main()
