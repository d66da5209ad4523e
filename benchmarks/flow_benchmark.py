"""The README's flow-extractor leaderboard: runs ``python -m flows.benchmark`` on the built-in extractors
and copies its tables and plots into the repository.

    python benchmarks/flow_benchmark.py                      # results in benchmarks/results/flow_benchmark*, docs/
    python benchmarks/flow_benchmark.py --work /tmp/fb       # keep the run folder (demos, flows) there
    python benchmarks/flow_benchmark.py --replot             # tables and plots again from the committed results

Budgets (chosen so the run fits about an hour of the shared 2-core VM; planner costs per episode in
benchmarks/results/planner_budget.md): 3 planner seeds per task, 1 for pick-and-place (~3 min per
episode), none for the cloth and the pasta (no planner budget tried solves them, and one episode at
the smallest tried already takes 2-4 min); robustness curves on Push-T and Open Door with 2 seeds.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [
    "python", "-m", "flows.benchmark",
    "--extractor", "oracle", "--extractor", "lk+measured", "--extractor", "lk+depth-anything",
    "--extractor", "cotracker+measured", "--tasks", "all", "--seeds", "3",
    "--task-seeds", "D2F-PickPlace-v0=1", "--task-seeds", "D2F-CoverBowl-v0=0", "--task-seeds", "D2F-SweepPasta-v0=0",
    "--robustness", "D2F-PushT-v0", "D2F-OpenDoor-v0", "--robustness-seeds", "2",
]
#: run folder file -> repository file
COPIES = {
    "leaderboard.md": "benchmarks/results/flow_benchmark.md",
    "leaderboard.csv": "benchmarks/results/flow_benchmark.csv",
    "robustness.csv": "benchmarks/results/flow_benchmark_robustness.csv",
    "config.json": "benchmarks/results/flow_benchmark_config.json",
    "results.json": "benchmarks/results/flow_benchmark.json",
    "accuracy_vs_success.png": "docs/flow_benchmark_accuracy_vs_success.png",
    "robustness.png": "docs/flow_benchmark_robustness.png",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="run folder (default: a temporary one, removed)")
    ap.add_argument("--demo-cache", type=Path, default=None, help="reuse rendered demos from here")
    ap.add_argument("--replot", action="store_true",
                    help="rewrite the tables and plots from results/flow_benchmark.json and _config.json (no run)")
    args = ap.parse_args(argv)
    if args.replot:
        return replot()
    work = args.work or Path(tempfile.mkdtemp(prefix="flow-benchmark-"))
    cmd = COMMAND + ["-o", str(work / "run")] + (["--demo-cache", str(args.demo_cache)] if args.demo_cache else [])
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    rc = subprocess.call([sys.executable] + cmd[1:], cwd=ROOT)
    for src, dst in COPIES.items():  # what finished is copied even when the run stopped early
        if (work / "run" / src).is_file():
            shutil.copyfile(work / "run" / src, ROOT / dst)
            print(f"copied {dst}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return rc


def replot() -> int:
    """The markdown, CSV and plots again from the committed JSON (after a change of the report code)."""
    import json

    from flows.benchmark.report import write_outputs

    results = json.loads((ROOT / COPIES["results.json"]).read_text())
    saved = json.loads((ROOT / COPIES["config.json"]).read_text())
    provenance = {k: v for k, v in saved.items() if k not in ("config", "demos")}
    with tempfile.TemporaryDirectory() as tmp:
        write_outputs(Path(tmp), results, saved["config"], provenance)
        for src, dst in COPIES.items():
            if (Path(tmp) / src).is_file():
                shutil.copyfile(Path(tmp) / src, ROOT / dst)
                print(f"rewrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
