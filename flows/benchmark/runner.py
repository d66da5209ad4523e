"""The benchmark's loop: per task, render (or reuse) the demo, run every extractor on it, score its flow,
then the robustness curves; results are rewritten under the output folder after every task.

Failure isolation: anything an extractor does wrong (raises, returns the wrong type, frame count or
NaN, cannot be built) fails that extractor's row with the reason, and the run goes on; a failed
downstream step fails that row's downstream columns only. Only KeyboardInterrupt stops the run
(what finished is already written).
"""
from __future__ import annotations

import re
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .corruptions import CORRUPTIONS, corrupt
from .downstream import PlannerBudget, planner_success, trained_success
from .extractors import BuiltinOptions, resolve_command, resolve_extractor
from .metrics import accuracy_3d, flow_accuracy
from .protocol import check_output, describe_error

#: planner settings per task: the cheapest of those tried with which MPPI solves the task from its
#: shipped flow (benchmarks/planner_budget.py, benchmarks/results/planner_budget.md). The cloth and the
#: pasta are not solved by the budget tried there (6 x 16 x 1, already 2-4 min per episode on 2 cores):
#: they get the planner's defaults, untested at that cost (tens of minutes per episode on 2 cores).
DEFAULT_TASK_BUDGETS: Dict[str, PlannerBudget] = {
    "D2F-PushT-v0": PlannerBudget(horizon=10, samples=32, iterations=2),
    "D2F-OpenDrawer-v0": PlannerBudget(horizon=8, samples=32, iterations=1),
    "D2F-OpenDoor-v0": PlannerBudget(horizon=8, samples=32, iterations=1),
    "D2F-PickPlace-v0": PlannerBudget(horizon=10, samples=64, iterations=2),
}


@dataclass
class BenchmarkConfig:
    tasks: List[str]
    out: Path
    extractors: List[str] = field(default_factory=lambda: ["oracle", "lk+measured", "lk+depth-anything"])
    extractor_cmds: List[str] = field(default_factory=list)
    demo_cache: Optional[Path] = None  # default: out / "demos"
    width: int = 320
    height: int = 240
    demo_fps: Optional[float] = None  # None: each demo's own frame rate
    seeds: int = 2  # downstream episodes per (task, flow): seeds 0..seeds-1
    task_seeds: Dict[str, int] = field(default_factory=dict)  # per-task override (0: no downstream there)
    budget: Optional[PlannerBudget] = None  # None: DEFAULT_TASK_BUDGETS / PlannerBudget()
    downstream: bool = True
    train: bool = False
    train_steps: int = 20_000
    train_algo: str = "ppo"
    train_params: List[str] = field(default_factory=list)  # key:value overrides of the tuned config
    robustness_tasks: List[str] = field(default_factory=list)
    corruptions: Dict[str, Tuple[float, ...]] = field(default_factory=dict)  # name -> magnitudes
    robustness_seeds: Optional[int] = None  # default: the task's seeds
    options: BuiltinOptions = field(default_factory=BuiltinOptions)
    command_timeout: float = 1800.0
    progress: bool = True

    def seeds_for(self, task: str, robustness: bool = False) -> List[int]:
        """The downstream seeds of ``task`` (the same for every flow); none without downstream."""
        if not self.downstream:
            return []
        n = self.task_seeds.get(task, self.seeds)
        if robustness and self.robustness_seeds is not None:
            n = self.robustness_seeds
        return list(range(n))

    def budget_for(self, task: str) -> PlannerBudget:
        return self.budget or DEFAULT_TASK_BUDGETS.get(task, PlannerBudget())

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d["demo_cache"] = str(self.demo_cache) if self.demo_cache else None
        d["budgets"] = {t: asdict(self.budget_for(t)) for t in self.tasks}
        d["seeds_per_task"] = {t: len(self.seeds_for(t)) for t in self.tasks}
        return d


def safe_name(label: str) -> str:
    """A file name for an extractor label."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", label).strip("_") or "extractor"


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", desc="flow benchmark", dynamic_ncols=True)

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _resolve_all(config: BenchmarkConfig) -> List[Tuple[str, Any, str]]:
    """``(label, extractor or None, error)`` per requested extractor, in order; labels made unique."""
    out: List[Tuple[str, Any, str]] = []
    specs = [(s, False) for s in config.extractors] + [(c, True) for c in config.extractor_cmds]
    for spec, is_cmd in specs:
        try:
            label, ext = resolve_command(spec, config.command_timeout) if is_cmd else resolve_extractor(spec, config.options)
            err = ""
        except Exception as exc:  # noqa: BLE001 - any failure to build is that extractor's failed row
            label, ext, err = spec, None, describe_error(exc)
        taken = {lab for lab, _, _ in out}
        base, k = label, 2
        while label in taken:
            label, k = f"{base}#{k}", k + 1
        out.append((label, ext, err))
    return out


def _extract_row(task: str, label: str, ext: Any, demo: Any, inputs: Any, flows_dir: Path) -> Tuple[Dict[str, Any], Any]:
    """Run one extractor on one task: ``(row, flow or None)``."""
    from .truth import ground_truth_for_flow

    row: Dict[str, Any] = {"task": task, "extractor": label, "status": "ok", "error": ""}
    t0 = time.perf_counter()
    try:
        flow = check_output(ext(inputs), inputs, label)
        seconds = time.perf_counter() - t0
        gt, extra = ground_truth_for_flow(demo, flow)
        row.update(flow_accuracy(flow, gt, demo.camera))
        row.update(extra)
        row["ms_per_frame"] = 1e3 * seconds / inputs.num_frames
        row["flow_file"] = str(flow.save(flows_dir / f"{safe_name(label)}.npz", overwrite=True))
        return row, flow
    except KeyboardInterrupt:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - an extractor's failure is its row's result
        row.update(status="failed", error=describe_error(exc), traceback=traceback.format_exc(limit=8))
        return row, None


def _downstream(config: BenchmarkConfig, task: str, flow: Any, seeds: List[int], label: str, bar: _Progress,
                prefix: str = "") -> Dict[str, Any]:
    """Planner (and with --train, RL) columns for one flow; failures go to ``*_error``."""
    out: Dict[str, Any] = {}
    if not seeds:
        return out
    budget = config.budget_for(task)
    try:
        res = planner_success(task, flow, seeds, budget, on_episode=bar.step)
        out.update({f"{prefix}planner_{k}": v for k, v in res.items() if k != "episode_results"})
        out[f"{prefix}planner_episode_results"] = res["episode_results"]
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001
        out[f"{prefix}planner_error"] = describe_error(exc)
    if config.train:
        try:
            res = trained_success(task, flow, seeds, config.train_steps, config.train_algo,
                                  config.out / "train" / task / safe_name(label), hyperparams=config.train_params)
            out.update({f"{prefix}train_{k}": v for k, v in res.items() if k != "episode_results"})
            out[f"{prefix}train_episode_results"] = res["episode_results"]
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001
            out[f"{prefix}train_error"] = describe_error(exc)
        bar.step()
    return out


def _robustness_rows(config: BenchmarkConfig, task: str, demo: Any, bar: _Progress) -> List[Dict[str, Any]]:
    clean = demo.ground_truth
    seeds = config.seeds_for(task, robustness=True)
    points: List[Tuple[str, float]] = [("none", 0.0)]
    points += [(name, m) for name, mags in config.corruptions.items() for m in mags if m != 0]
    rows = []
    for name, magnitude in points:
        bar.describe(f"{task}: robustness {name} {magnitude:g}")
        row: Dict[str, Any] = {"task": task, "corruption": name, "magnitude": magnitude,
                               "unit": CORRUPTIONS[name].unit if name in CORRUPTIONS else ""}
        try:
            flow = clean if name == "none" else corrupt(clean, name, magnitude, seed=0)
            acc = accuracy_3d(flow, clean)
            row.update(flow_epe_mean_m=acc["epe3d_mean_m"], flow_epe_median_m=acc["epe3d_median_m"],
                       visible_fraction=acc["extracted_visible_fraction"])
            row.update(_downstream(config, task, flow, seeds, f"{name}_{magnitude:g}", bar))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001
            row["error"] = describe_error(exc)
        rows.append(row)
    return rows


def _downstream_steps(config: BenchmarkConfig, seeds: List[int]) -> int:
    """Progress steps of one flow's downstream: one per planner episode, one for a --train run."""
    return len(seeds) + (1 if config.train and seeds else 0)


def count_steps(config: BenchmarkConfig, n_extractors: int) -> int:
    """Progress steps of the whole run: a demo, each extraction, each downstream episode / run."""
    total = 0
    for task in config.tasks:
        total += 1 + n_extractors * (1 + _downstream_steps(config, config.seeds_for(task)))
        if task in config.robustness_tasks:
            n_points = 1 + sum(1 for mags in config.corruptions.values() for m in mags if m != 0)
            total += n_points * _downstream_steps(config, config.seeds_for(task, robustness=True))
    return total


def run_benchmark(config: BenchmarkConfig, write: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Run the benchmark; ``write(results)`` is called after every task (and at the end)."""
    from .demos import load_or_render

    config.out = Path(config.out)
    cache = Path(config.demo_cache) if config.demo_cache else config.out / "demos"
    extractors = _resolve_all(config)
    results: Dict[str, Any] = {"rows": [], "robustness": [], "demos": {}, "started": time.time()}
    bar = _Progress(config.progress, count_steps(config, len(extractors)))
    try:
        for task in config.tasks:
            bar.describe(f"{task}: demo")
            try:
                demo, inputs, rendered = load_or_render(task, cache, config.width, config.height, config.demo_fps)
                results["demos"][task] = {"folder": str(inputs.files.folder), "rendered_now": rendered,
                                          "frames": demo.num_frames, "fps": demo.fps}
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - a task whose demo fails fails all its rows
                err = f"demo: {describe_error(exc)}"
                results["rows"] += [{"task": task, "extractor": label, "status": "failed", "error": err}
                                    for label, _, _ in extractors]
                bar.step(1 + len(extractors) * (1 + _downstream_steps(config, config.seeds_for(task))))
                continue
            bar.step()
            flows_dir = config.out / "flows" / task
            seeds = config.seeds_for(task)
            for label, ext, err in extractors:
                bar.describe(f"{task}: {label}")
                if ext is None:
                    row, flow = {"task": task, "extractor": label, "status": "failed", "error": err}, None
                else:
                    row, flow = _extract_row(task, label, ext, demo, inputs, flows_dir)
                bar.step()
                if flow is not None:
                    row.update(_downstream(config, task, flow, seeds, label, bar))
                else:
                    bar.step(_downstream_steps(config, seeds))
                row["downstream_seeds"] = len(seeds)
                results["rows"].append(row)
            if task in config.robustness_tasks:
                results["robustness"] += _robustness_rows(config, task, demo, bar)
            if write:
                write(results)
    finally:
        bar.close()
    results["finished"] = time.time()
    if write:
        write(results)
    return results
