"""Cost and success of one MPPI episode per (task, planner budget) with the task's own flow.

    python benchmarks/planner_budget.py                          # the budgets behind flows.benchmark's defaults
    python benchmarks/planner_budget.py --rows D2F-PushT-v0:10:32:2 --seeds 3

Chooses ``flows.benchmark.runner.DEFAULT_TASK_BUDGETS``: per task, the cheapest budget tried with
which the planner solves the task from its shipped flow, and what an episode costs on this machine
(wall and process CPU time: the batch rollouts use both cores, and the machine may be shared).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

DEFAULT_ROWS = (
    "D2F-PushT-v0:8:32:1", "D2F-PushT-v0:10:32:2", "D2F-OpenDrawer-v0:8:32:1", "D2F-OpenDoor-v0:8:32:1",
    "D2F-PickPlace-v0:8:32:1", "D2F-PickPlace-v0:10:64:2", "D2F-CoverBowl-v0:6:16:1", "D2F-SweepPasta-v0:6:16:1",
)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), metavar="ENV:HORIZON:SAMPLES:ITERATIONS")
    ap.add_argument("--seeds", type=int, default=1, help="episodes per row, seeds 0..N-1 (default 1)")
    ap.add_argument("--out", default="benchmarks/results/planner_budget.json")
    args = ap.parse_args(argv)

    import os

    from flows.benchmark.downstream import PlannerBudget, planner_success
    from flows.shipped import shipped_flow

    rows = []
    for spec in args.rows:
        env_id, h, s, it = spec.split(":")
        budget = PlannerBudget(horizon=int(h), samples=int(s), iterations=int(it))
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        res = planner_success(env_id, shipped_flow(env_id), list(range(args.seeds)), budget)
        row = {"env": env_id, **budget.__dict__, "seeds": args.seeds, "success_rate": res["success_rate"],
               "median_final_error_m": res["median_final_error_m"],
               "wall_s_per_episode": (time.perf_counter() - t0) / args.seeds,
               "cpu_s_per_episode": (time.process_time() - c0) / args.seeds,
               "load_average": round((load0 + os.getloadavg()[0]) / 2, 1)}
        rows.append(row)
        print(row, flush=True)
    lines = [
        f"Machine: {machine()}. `python benchmarks/planner_budget.py --seeds {args.seeds}` (MPPI, the shipped flow, "
        f"default robot, seeds 0..{args.seeds - 1}; success judged as in `flows.benchmark`).",
        "",
        "| env | horizon | samples | iterations | success | median final error | wall s / episode | CPU s / episode "
        "| load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['env']} | {r['horizon']} | {r['samples']} | {r['iterations']} | "
                     f"{100 * r['success_rate']:.0f} % | {100 * r['median_final_error_m']:.2f} cm | "
                     f"{r['wall_s_per_episode']:.0f} | {r['cpu_s_per_episode']:.0f} | {r['load_average']} |")
    write_results(Path(args.out), rows, lines)


if __name__ == "__main__":
    main()
