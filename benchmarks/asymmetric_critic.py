"""Asymmetric (privileged critic) vs plain PPO from real observations, a few seeds each.

    python benchmarks/asymmetric_critic.py                         # trains 2 x 3 runs (~1 h on 2 cores), then the table
    python benchmarks/asymmetric_critic.py --seeds 1 2 --steps 300000
    python benchmarks/asymmetric_critic.py --from-runs logs/cmp    # tabulate runs already trained by this script

For each seed, ``train.py`` trains D2F-OpenDoor-v0 (``--robot``) with ``ppo_real.yml`` (plain: actor
and critic both see the real observation) and with ``ppo_real_asym.yml`` (the critic also sees the
simulator state), one run at a time, into ``<runs>/plain`` and ``<runs>/asym``; then ``eval.py``
evaluates each final model on 50 seeded episodes. The table gives the first periodic evaluation
(the run's ``evaluations.csv``) at >= 90 % success, the last periodic evaluation, and the final model's
50-episode success and mean final error. Writes ``benchmarks/results/asymmetric_OpenDoor_<robot>.{json,md}``.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENV = "D2F-OpenDoor-v0"
CONFS = {"plain": "ppo_real.yml", "asym": "ppo_real_asym.yml"}


def train_and_evaluate(runs: Path, entry: str, seed: int, robot: str, steps: int, episodes: int) -> Path:
    folder = runs / entry
    before = set((folder / "ppo").glob(f"{ENV}_*")) if (folder / "ppo").is_dir() else set()
    subprocess.run([sys.executable, "train.py", "--algo", "ppo", "--env", ENV, "--env-kwargs", f"robot:'{robot}'",
                    "-n", str(steps), "-conf", f"d2f_rl/hyperparams/{CONFS[entry]}", "--seed", str(seed),
                    "-f", str(folder.resolve()), "--no-progress", "--no-wandb", "--num-threads", "1"],
                   check=True, cwd=REPO)
    (run,) = set((folder / "ppo").glob(f"{ENV}_*")) - before
    subprocess.run([sys.executable, "eval.py", "-f", str(run.resolve()), "--model", "final", "--episodes",
                    str(episodes), "--seed", "1000", "--no-plots", "--json", str((run / "eval_final.json").resolve())],
                   check=True, cwd=REPO)
    return run


def row(entry: str, run: Path) -> dict:
    command = (run / "command.txt").read_text() if (run / "command.txt").exists() else ""
    evals = list(csv.DictReader(open(run / "evaluations.csv")))
    first = next((int(e["timesteps"]) for e in evals if float(e["success_rate"]) >= 0.9), None)
    final_json = next(p for p in (run / "eval_final.json", run / "eval50_final.json") if p.exists())
    summary = json.loads(final_json.read_text())["summary"]
    return {"entry": entry, "run": str(run), "command": command.strip(), "seed": run_seed(run),
            "first_eval_90_steps": first, "last_eval_steps": int(evals[-1]["timesteps"]),
            "last_eval_success": float(evals[-1]["success_rate"]), "wall_s": float(evals[-1]["wall_time_s"]),
            "final_episodes": summary["episodes"], "final_success": summary["success_rate"],
            "final_error_m": summary["mean_final_error"]}


def run_seed(run: Path) -> str:
    args = run / "args.yml"
    for line in args.read_text().splitlines() if args.exists() else []:
        if line.startswith("seed:"):  # train.py's args.yml: one "name: value" line per flag
            return line.split(":", 1)[1].strip()
    return "?"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robot", default="panda_gripper")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=300_000)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--runs", default="logs/cmp", help="where the runs go (<runs>/plain, <runs>/asym)")
    ap.add_argument("--from-runs", default=None, help="tabulate the runs under this folder instead of training")
    args = ap.parse_args(argv)

    runs = Path(args.from_runs or args.runs)
    if not args.from_runs:
        for seed in args.seeds:
            for entry in CONFS:
                train_and_evaluate(runs, entry, seed, args.robot, args.steps, args.episodes)
    rows = []
    for entry in CONFS:
        for run in sorted((runs / entry / "ppo").glob(f"{ENV}_*"), key=lambda p: int(p.name.rsplit("_", 1)[1])):
            if (run / "evaluations.csv").exists():
                rows.append(row(entry, run))
    md = [f"Machine: {machine()}.", "",
          f"{ENV} ({args.robot}), PPO from real observations: `ppo_real.yml` (plain) vs `ppo_real_asym.yml` "
          f"(asymmetric: the critic also sees the simulator state). Each run: `train.py ... -conf <entry> --seed S`, "
          f"then `eval.py -f RUN --model final --episodes {args.episodes} --seed 1000`. "
          f"`python benchmarks/asymmetric_critic.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
          "| entry | seed | first periodic eval >= 90 % | last periodic eval | final model (mean final error) | wall |",
          "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        first = "never" if r["first_eval_90_steps"] is None else f"{r['first_eval_90_steps'] // 1000}k"
        md.append(f"| {r['entry']} | {r['seed']} | {first} | {100 * r['last_eval_success']:.0f} % at "
                  f"{r['last_eval_steps'] // 1000}k | {100 * r['final_success']:.0f} % of {r['final_episodes']} "
                  f"({100 * r['final_error_m']:.1f} cm) | {r['wall_s'] / 60:.1f} min |")
    md += ["", "Each run's own command line (its `command.txt`) is in the .json. Wall time includes the periodic "
               "evaluations and whatever else the machine ran. Three seeds cannot tell a difference in reliability "
               "or speed from noise."]
    write_results(REPO / "benchmarks" / "results" / f"asymmetric_OpenDoor_{args.robot}.json", rows, md)


if __name__ == "__main__":
    main()
