"""Train with the tuned YAML configs and evaluate: the README's learning-results table.

    python benchmarks/train_results.py                                   # the default rows below
    python benchmarks/train_results.py --rows ppo:D2F-PushT-v0:pusher:1000000 --episodes 50

Each row runs ``train.py`` (flow reward only) then ``eval.py`` on the run's best model over
``--episodes`` episodes (seeds 1000..), and records env steps, wall time on this machine, success
rate and final tracking error, with the exact commands.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = ["ppo:D2F-PushT-v0:pusher:1000000"]


def run(cmd, cwd):
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def save_curve(run_dir: Path, algo: str, env_id: str, robot: str) -> str:
    """The run's training curve (success and final error vs env steps) as docs/curves/<algo>_<env>_<robot>.png."""
    from d2f_rl.evaluate import plot_training_curve

    path = REPO / "docs" / "curves" / f"{algo}_{env_id}_{robot}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path.relative_to(REPO)) if plot_training_curve(run_dir, path) else ""


def default_robot(env_id: str) -> str:
    import gymnasium as gym

    import d2f_envs  # noqa: F401  (registers the ids)

    module, name = gym.spec(env_id).entry_point.split(":")
    return getattr(__import__(module, fromlist=[name]), name).robots[0]


def evaluate_existing(run_dir: Path, episodes: int) -> dict:
    """A row from a finished run folder: eval.py as for trained rows, wall time from its progress.csv files."""
    import csv

    import yaml

    saved = yaml.safe_load((run_dir / "args.yml").read_text())
    wall = 0.0
    for segment in sorted((run_dir / "tb").glob("*/progress.csv")):  # one per (re)start
        with open(segment) as f:
            times = [float(r["time/time_elapsed"]) for r in csv.DictReader(f) if r.get("time/time_elapsed")]
        wall += max(times, default=0.0)
    out_json = run_dir / "benchmark_eval.json"
    run([sys.executable, "eval.py", "-f", str(run_dir), "--episodes", str(episodes), "--seed", "1000",
         "--json", str(out_json), "--no-plots"], REPO)
    summary = json.loads(out_json.read_text())["summary"]
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    command = (run_dir / "command.txt").read_text().splitlines()[0]
    return {
        "algo": saved["algo"], "env": saved["env"], "robot": (config.get("env_kwargs") or {}).get("robot") or default_robot(saved["env"]),
        "env_steps": int(saved["n_timesteps"]), "wall_time_s": wall, "episodes": episodes,
        "success_rate": summary["success_rate"], "mean_final_error_m": summary["mean_final_error"],
        "load_avg_start_end": None,  # not recorded by train.py: the run may have shared the machine
        "from_run": True,
        "train_command": "python " + command[command.index("train.py"):] if "train.py" in command else command,
        "hyperparameters": config,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, help="algo:env:robot:steps")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--logs", default=None, help="log folder (default: a temporary one)")
    ap.add_argument("--out", default="benchmarks/results/train_results.json")
    ap.add_argument("--from-run", nargs="+", default=[], metavar="RUN_DIR",
                    help="instead of training: evaluate finished train.py run folders the same way; the row keeps "
                         "the run's own command (command.txt) and its training wall time (TensorBoard csv)")
    args = ap.parse_args(argv)
    logs = Path(args.logs or tempfile.mkdtemp(prefix="d2f_train_results_"))
    rows = [evaluate_existing(Path(d), args.episodes) for d in args.from_run]
    for spec in ([] if args.from_run else args.rows):
        algo, env_id, robot, steps = spec.split(":")
        train_cmd = [sys.executable, "train.py", "--algo", algo, "--env", env_id, "--env-kwargs", f'robot:"{robot}"',
                     "-n", steps, "--seed", str(args.seed), "-f", str(logs), "--eval-freq", "50000",
                     "--eval-episodes", "20", "--no-progress"]
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        run(train_cmd, REPO)
        wall, load1 = time.perf_counter() - t0, os.getloadavg()[0]
        run_dir = sorted((logs / algo).glob(f"{env_id}_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))[-1]
        out_json = run_dir / "benchmark_eval.json"
        eval_cmd = [sys.executable, "eval.py", "-f", str(run_dir), "--episodes", str(args.episodes), "--seed", "1000",
                    "--json", str(out_json), "--no-plots"]
        run(eval_cmd, REPO)
        summary = json.loads(out_json.read_text())["summary"]
        rows.append({
            "algo": algo, "env": env_id, "robot": robot, "env_steps": int(steps), "wall_time_s": wall,
            "episodes": args.episodes, "success_rate": summary["success_rate"],
            "mean_final_error_m": summary["mean_final_error"],
            # other work on the machine stretches the wall time: the 1-min load average at start and end
            "load_avg_start_end": [round(load0, 1), round(load1, 1)],
            "train_command": "python " + " ".join(shlex.quote(c) for c in train_cmd[1:]).replace(str(logs), "logs"),
        })
        rows[-1]["curve"] = save_curve(run_dir, algo, env_id, robot)
        print(json.dumps(rows[-1]), flush=True)
    out = REPO / args.out
    if out.is_file():  # keep the rows of earlier runs that this one did not redo
        redone = {(r["algo"], r["env"], r["robot"]) for r in rows}
        kept = [r for r in json.loads(out.read_text())["rows"] if (r["algo"], r["env"], r["robot"]) not in redone]
        rows = kept + rows
    lines = [
        f"Machine: {machine()}. Each row: `python benchmarks/train_results.py --rows ALGO:ENV:ROBOT:STEPS --episodes {args.episodes}`",
        "",
        "| algo | env | robot | env steps | wall time (load avg) | success (eval episodes) | mean final error |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        load = r.get("load_avg_start_end")
        load = f" ({max(load):.1f})" if load else (" †" if r.get("from_run") else "")
        lines.append(f"| {r['algo']} | {r['env']} | {r['robot']} | {r['env_steps']:,} | {r['wall_time_s'] / 60:.1f} min{load} | "
                     f"{100 * r['success_rate']:.0f} % ({r['episodes']}) | {100 * r['mean_final_error_m']:.2f} cm |")
    if any(r.get("from_run") for r in rows):
        lines += ["", "† evaluated from a finished run folder (`--from-run`); the command is the run's own "
                      "(`train_command` in the JSON) and its wall time includes whatever else the machine was running."]
    write_results(out, rows, lines)


if __name__ == "__main__":
    main()
