"""``python -m flows.benchmark``: benchmark flow extractors against the same rewards.

    python -m flows.benchmark --extractor my_package.module:MyExtractor -o results/
    python -m flows.benchmark --extractor lk+measured --extractor lk+depth-anything --tasks all -o results/
    python -m flows.benchmark --extractor-cmd "mine=python my_extract.py {video} {camera} {out}" -o results/
    python -m flows.benchmark --extractor oracle --tasks D2F-OpenDoor-v0 --robustness all -o robust/
    python -m flows.benchmark --list

Per task: render the scripted demonstration once (cached under ``--demo-cache``, default
``OUT/demos``), run each extractor on its video (+ camera, depth, frame-0 mask), score the flow
against the simulator's ground truth, and run the zero-shot planner rewarded by it on the same
seeds for every extractor (``--train``: also a short RL run). ``--robustness`` adds the curves of the
ground-truth flow under controlled corruptions. Writes leaderboard.md / .csv, robustness.csv,
accuracy_vs_success.png, robustness.png, results.json and config.json under ``-o``, after every
task. An existing non-empty ``-o`` is refused unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .corruptions import CORRUPTIONS
from .downstream import PlannerBudget
from .extractors import DEFAULT_DEPTH_ANYTHING, EXTRACTORS, BuiltinOptions
from .runner import DEFAULT_TASK_BUDGETS, BenchmarkConfig, run_benchmark

DEFAULT_EXTRACTORS = ("oracle", "lk+measured", "lk+depth-anything")
#: what --overwrite clears in -o before a run (the demo cache is kept: it is reused when it matches)
OUTPUT_NAMES = ("leaderboard.md", "leaderboard.csv", "robustness.csv", "results.json", "config.json",
                "accuracy_vs_success.png", "robustness.png", "flows", "train")


class UsageError(Exception):
    """A bad command line, reported in one line."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.benchmark", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    g = p.add_argument_group("what to benchmark")
    g.add_argument("--extractor", action="append", default=None, metavar="SPEC",
                   help="a registered name (see --list), TRACKER+DEPTH, or package.module:Name (a class, built with "
                        f"no arguments, or a function); repeatable (default: {', '.join(DEFAULT_EXTRACTORS)})")
    g.add_argument("--extractor-cmd", action="append", default=[], metavar="[NAME=]CMD",
                   help="a shell command that writes a flow .npz to {out}; placeholders {video} {camera} {depth} "
                        "{mask} {out} {object} {task} {fps}; repeatable")
    g.add_argument("--tasks", nargs="+", default=["all"], metavar="ENV_ID",
                   help="env ids, or 'all' (default: all)")
    g.add_argument("--list", action="store_true", help="list the registered extractors, tasks and corruptions and exit")
    g = p.add_argument_group("outputs")
    g.add_argument("-o", "--out", type=Path, default=None, help="results folder (refused if non-empty, see --overwrite)")
    g.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty -o, replacing its previous results (its demos/ cache is kept)")
    g.add_argument("--demo-cache", type=Path, default=None,
                   help="folder of rendered demos, reused across runs (default: OUT/demos)")
    g.add_argument("--width", type=int, default=320, help="demo video width (default 320)")
    g.add_argument("--height", type=int, default=240, help="demo video height (default 240)")
    g.add_argument("--demo-fps", type=float, default=None,
                   help="demo frame rate (default: each task's own, 30): fewer frames for quick runs")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("downstream success")
    g.add_argument("--seeds", type=int, default=2, help="planner episodes per task and flow, seeds 0..N-1 (default 2)")
    g.add_argument("--task-seeds", action="append", default=[], metavar="ENV_ID=N",
                   help="seeds for one task (0: no downstream there), e.g. D2F-CoverBowl-v0=1; repeatable")
    g.add_argument("--no-downstream", action="store_true", help="accuracy only")
    g.add_argument("--planner", choices=("mppi", "cem"), default=None,
                   help="planner for every task (default: mppi with each task's default budget, see --list)")
    g.add_argument("--horizon", type=int, default=None, help="planner horizon in control steps (sets it for every task)")
    g.add_argument("--samples", type=int, default=None, help="planner rollouts per iteration (every task)")
    g.add_argument("--iterations", type=int, default=None, help="planner iterations per control step (every task)")
    g.add_argument("--train", action="store_true", help="also train an SB3 policy on each flow (--train-steps)")
    g.add_argument("--train-steps", type=int, default=20_000, help="env steps of each --train run (default 20000)")
    g.add_argument("--train-algo", choices=("ppo", "sac"), default="ppo",
                   help="--train algorithm, with the task's entry of d2f_rl/hyperparams/<algo>.yml (default ppo)")
    g.add_argument("--train-params", nargs="+", default=[], metavar="KEY:VALUE",
                   help="--train: overrides of the tuned config, as train.py's -params (e.g. n_envs:4)")
    g = p.add_argument_group("robustness curves (ground-truth flow under corruptions)")
    g.add_argument("--robustness", nargs="+", default=["none"], metavar="ENV_ID",
                   help="tasks to draw them for: env ids, 'all' (the --tasks) or 'none' (default)")
    g.add_argument("--corruption", action="append", default=None, metavar="NAME[=M1,M2,...]",
                   help=f"a corruption and its magnitudes (default: all of {', '.join(CORRUPTIONS)} at their default "
                        "magnitudes, see --list); repeatable")
    g.add_argument("--robustness-seeds", type=int, default=None, help="seeds per corrupted flow (default: --seeds)")
    g = p.add_argument_group("built-in extractors")
    g.add_argument("--max-points", type=int, default=1024, help="points the built-in pipelines track (default 1024)")
    g.add_argument("--depth-anything-model", default=DEFAULT_DEPTH_ANYTHING,
                   help="Depth Anything weights: a local folder, or a hub id already in the Hugging Face cache "
                        f"(default {DEFAULT_DEPTH_ANYTHING})")
    g.add_argument("--depth-calibration", choices=("scale", "scale-shift", "none"), default="scale",
                   help="Depth Anything calibration to frame 0's measured depth (default scale)")
    g.add_argument("--cotracker-checkpoint", default=None, help="CoTracker3 checkpoint (.pth)")
    g.add_argument("--cotracker-hub-repo", default=None, help="local CoTracker checkout for torch.hub")
    g.add_argument("--seed", type=int, default=0, help="query-point sampling seed of the built-in pipelines")
    g.add_argument("--command-timeout", type=float, default=1800.0, help="seconds per --extractor-cmd run")
    return p


def _tasks(values: Sequence[str], known: Sequence[str], flag: str, all_means: Sequence[str]) -> List[str]:
    import difflib

    names = [v for value in values for v in value.split(",") if v]
    if names == ["all"]:
        return list(all_means)
    if names == ["none"]:
        return []
    for n in names:
        if n not in known:
            close = difflib.get_close_matches(n, list(known), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"{flag}: unknown env id {n!r}{hint} (known: {', '.join(known)}, or all)")
    return list(dict.fromkeys(names))


def _task_seeds(values: Sequence[str], known: Sequence[str]) -> Dict[str, int]:
    out = {}
    for v in values:
        task, sep, n = v.partition("=")
        if not sep or not n.strip().isdigit():
            raise UsageError(f"--task-seeds {v!r}: expected ENV_ID=N, e.g. D2F-CoverBowl-v0=1")
        _tasks([task], known, "--task-seeds", known)
        out[task] = int(n)
    return out


def _corruptions(values: Optional[Sequence[str]]) -> Dict[str, Tuple[float, ...]]:
    if values is None:
        return {name: c.magnitudes for name, c in CORRUPTIONS.items()}
    out = {}
    for v in values:
        name, sep, mags = v.partition("=")
        if name not in CORRUPTIONS:
            raise UsageError(f"--corruption {v!r}: unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
        try:
            out[name] = tuple(float(m) for m in mags.split(",") if m) if sep else CORRUPTIONS[name].magnitudes
        except ValueError:
            raise UsageError(f"--corruption {v!r}: magnitudes must be numbers, e.g. {name}=0.01,0.02") from None
    return out


def _list() -> str:
    from d2f_envs import ENV_IDS  # the task list lives with the envs; only needed here

    lines = ["extractors (--extractor): " + ", ".join(EXTRACTORS.names()) + ", TRACKER+DEPTH, package.module:Name",
             "tasks (--tasks): " + ", ".join(ENV_IDS), "default planner budget per task:"]
    for t in ENV_IDS:
        b = DEFAULT_TASK_BUDGETS.get(t, PlannerBudget())
        lines.append(f"  {t}: {b.describe()}")
    lines.append("corruptions (--corruption NAME=M1,M2): ")
    for name, c in CORRUPTIONS.items():
        lines.append(f"  {name}: {c.unit}, default {', '.join(f'{m:g}' for m in c.magnitudes)}")
    return "\n".join(lines)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"-o {out}: exists and is not empty; pass --overwrite to replace its results "
                             "(its demos/ cache is kept) or choose another folder")
        for name in OUTPUT_NAMES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    from d2f_envs import ENV_IDS  # the task list lives with the envs

    known = list(ENV_IDS)
    tasks = _tasks(args.tasks, known, "--tasks", known)
    if not tasks:
        raise UsageError("--tasks: no task given")
    for name in ("seeds", "train_steps", "max_points", "width", "height"):
        if getattr(args, name) < (0 if name == "seeds" else 1):
            raise UsageError(f"--{name.replace('_', '-')}: must be {'>= 0' if name == 'seeds' else '>= 1'}, "
                             f"got {getattr(args, name)}")
    robustness = _tasks(args.robustness, known, "--robustness", tasks)
    outside = [t for t in robustness if t not in tasks]
    if outside:
        raise UsageError(f"--robustness: {', '.join(outside)} not in --tasks (the curves use the task's rendered demo)")
    if args.demo_fps is not None and not args.demo_fps > 0:
        raise UsageError(f"--demo-fps: must be > 0, got {args.demo_fps}")
    budget = None
    if any(v is not None for v in (args.planner, args.horizon, args.samples, args.iterations)):
        d = PlannerBudget()
        budget = PlannerBudget(args.planner or d.planner, args.horizon or d.horizon, args.samples or d.samples,
                               args.iterations or d.iterations)
    return BenchmarkConfig(
        tasks=tasks, out=args.out, extractors=list(args.extractor or DEFAULT_EXTRACTORS),
        extractor_cmds=list(args.extractor_cmd), demo_cache=args.demo_cache, width=args.width, height=args.height,
        demo_fps=args.demo_fps,
        seeds=args.seeds, task_seeds=_task_seeds(args.task_seeds, known), budget=budget,
        downstream=not args.no_downstream, train=args.train, train_steps=args.train_steps, train_algo=args.train_algo,
        train_params=list(args.train_params),
        robustness_tasks=robustness, corruptions=_corruptions(args.corruption),
        robustness_seeds=args.robustness_seeds,
        options=BuiltinOptions(max_points=args.max_points, seed=args.seed, depth_anything_model=args.depth_anything_model,
                               depth_calibration=args.depth_calibration, cotracker_checkpoint=args.cotracker_checkpoint,
                               cotracker_hub_repo=args.cotracker_hub_repo),
        command_timeout=args.command_timeout, progress=not args.no_progress,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .provenance import load_average, provenance
    from .report import write_outputs

    args = build_parser().parse_args(argv)
    try:
        if args.list:
            print(_list())
            return 0
        if args.out is None:
            raise UsageError("-o/--out is required (the results folder)")
        config = config_from_args(args)
        _prepare_out(args.out, args.overwrite)
    except UsageError as exc:
        print(f"python -m flows.benchmark: error: {exc}", file=sys.stderr)
        return 2
    prov = provenance()
    t0 = time.perf_counter()

    def write(results):
        prov["wall_s"] = round(time.perf_counter() - t0, 1)
        prov["load_average_1min_last_write"] = load_average()
        write_outputs(config.out, results, config.to_json(), prov)

    try:
        results = run_benchmark(config, write=write)
    except KeyboardInterrupt:
        print(f"interrupted; the tasks that finished are written under {config.out}", file=sys.stderr)
        return 130
    failed = [r for r in results["rows"] if r.get("status") != "ok"]
    print(f"wrote {config.out}/leaderboard.md (+ .csv, config.json, results.json, plots): {len(results['rows'])} rows, "
          f"{len(failed)} failed, {prov['wall_s']:.0f} s")
    for r in failed:
        print(f"  failed: {r['task']} {r['extractor']}: {r.get('error', '')}")
    return 0
