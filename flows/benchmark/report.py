"""The benchmark's outputs under ``-o``: leaderboard (markdown, CSV), robustness (CSV), plots (PNG),
``results.json`` (every number, per-episode results, tracebacks of failures) and ``config.json``
(the exact configuration, command, versions and machine)."""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .metrics import THRESHOLDS_CM

#: leaderboard CSV columns, in order (a missing value is left empty)
CSV_COLUMNS = (
    "task", "extractor", "status", "error", "points", "frames", "ms_per_frame",
    "epe3d_median_m", "epe3d_mean_m", "epe3d_p90_m", *[f"within_{c}cm" for c in THRESHOLDS_CM],
    "final_epe3d_median_m", "all_samples_epe3d_median_m", "both_visible_fraction", "extracted_visible_fraction",
    "off_object_fraction", "epe2d_median_px", "tapvid_position_accuracy", "tapvid_occlusion_accuracy",
    "tapvid_average_jaccard", "downstream_seeds", "planner_policy", "planner_episodes", "planner_success_rate",
    "planner_flow_success_rate", "planner_median_final_error_m", "planner_mean_tracking_error_m", "planner_error",
    "train_policy", "train_success_rate", "train_median_final_error_m", "train_error",
)
ROBUSTNESS_COLUMNS = (
    "task", "corruption", "magnitude", "unit", "flow_epe_mean_m", "flow_epe_median_m", "visible_fraction",
    "planner_policy", "planner_episodes", "planner_success_rate", "planner_flow_success_rate",
    "planner_median_final_error_m", "planner_mean_tracking_error_m", "planner_error", "train_success_rate", "error",
)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _cell(x: Any) -> str:
    if isinstance(x, float):
        return "" if not math.isfinite(x) else f"{x:.6g}"
    return "" if x is None else str(x)


def write_csv(path: Path, rows: List[Dict[str, Any]], columns) -> None:
    from io import StringIO

    buf = StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    _atomic_write(path, buf.getvalue())


def _cm(x: Any) -> str:
    return f"{100 * x:.2f}" if _finite(x) else "-"


def _cm_unit(x: Any) -> str:
    return f"{100 * x:.2f} cm" if _finite(x) else "-"


def _pct(x: Any) -> str:
    return f"{100 * x:.0f} %" if _finite(x) else "-"


def _short(text: str, n: int = 160) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _downstream_cell(r: Dict[str, Any], kind: str = "planner") -> str:
    if r.get(f"{kind}_error"):
        return f"error: {_short(r[f'{kind}_error'], 80)}"
    if _finite(r.get(f"{kind}_success_rate")):
        n = r.get(f"{kind}_episodes", "?")
        return f"{_pct(r[f'{kind}_success_rate'])} ({n})"
    return "-"


def leaderboard_lines(results: Dict[str, Any], config: Dict[str, Any], machine: str) -> List[str]:
    rows = results["rows"]
    train = bool(config.get("train"))
    lines = [
        f"Machine: {machine}.",
        "",
        f"Command: `{config.get('command', '')}`",
        "",
        "Per task and extractor: flow accuracy against the simulator's ground truth of the extractor's own points "
        "(3D end-point error over samples both flows see, cm; share of them within 1 / 2 / 4 / 8 cm; TAP-Vid "
        "< delta^x_avg position accuracy, occlusion accuracy and average Jaccard at 256 x 256 px scale), extraction "
        "time per video frame (wall clock, this machine, whatever else it ran), and downstream success: the "
        "zero-shot planner rewarded by the flow, judged against the task (episodes replayed in the env of the "
        "task's reference flow), over the seeds given in brackets (the same seeds for every extractor).",
        "",
    ]
    head = ("| task | extractor | 3D median [cm] | 3D mean [cm] | <1 cm | <2 cm | <4 cm | <8 cm | TAP <δavg | OA | AJ "
            "| ms / frame | planner success | final error |")
    sep = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if train:
        head += " RL success |"
        sep += "---:|"
    lines += [head, sep]
    for r in rows:
        if r.get("status") != "ok":
            n_cols = 12 + (1 if train else 0)
            lines.append(f"| {r['task']} | {r['extractor']} | **failed**: {_short(r.get('error', ''))} |"
                         + " |" * (n_cols - 1))
            continue
        cells = [r["task"], r["extractor"], _cm(r.get("epe3d_median_m")), _cm(r.get("epe3d_mean_m"))]
        cells += [_pct(r.get(f"within_{c}cm")) for c in THRESHOLDS_CM]
        cells += [_pct(r.get("tapvid_position_accuracy")), _pct(r.get("tapvid_occlusion_accuracy")),
                  _pct(r.get("tapvid_average_jaccard")), f"{r['ms_per_frame']:.1f}" if _finite(r.get("ms_per_frame")) else "-",
                  _downstream_cell(r), _cm_unit(r.get("planner_median_final_error_m"))]
        if train:
            cells.append(_downstream_cell(r, "train"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Summary over the tasks each extractor ran on (means of the per-task numbers):", "",
              "| extractor | tasks ok / run | 3D median (mean) | <2 cm (mean) | AJ (mean) | planner success (all episodes) |",
              "|---|---:|---:|---:|---:|---:|"]
    for label in dict.fromkeys(r["extractor"] for r in rows):
        mine = [r for r in rows if r["extractor"] == label]
        ok = [r for r in mine if r.get("status") == "ok"]

        def mean(key):
            v = [r[key] for r in ok if _finite(r.get(key))]
            return float(np.mean(v)) if v else float("nan")

        succ = [e["success"] for r in ok for e in r.get("planner_episode_results", [])]
        s = f"{_pct(float(np.mean(succ)))} ({len(succ)})" if succ else "-"
        lines.append(f"| {label} | {len(ok)} / {len(mine)} | {_cm_unit(mean('epe3d_median_m'))} | "
                     f"{_pct(mean('within_2cm'))} | {_pct(mean('tapvid_average_jaccard'))} | {s} |")
    lines += ["", "Planner settings and seeds per task: "
              + "; ".join(f"{t}: {b['planner']} horizon {b['horizon']}, {b['samples']} samples, "
                          f"{b['iterations']} iteration(s), seeds 0..{config['seeds_per_task'][t] - 1}"
                          if config["seeds_per_task"].get(t) else f"{t}: no downstream episodes"
                          for t, b in config.get("budgets", {}).items()) + "."]
    rob = results.get("robustness") or []
    if rob:
        lines += ["", "Robustness: the ground-truth flow of each task's demo with one corruption at a time "
                  "(flows/benchmark/corruptions.py); flow error = mean 3D distance to the clean flow over its visible "
                  "samples; planner success judged against the task as above.", "",
                  "| task | corruption | magnitude | flow error | visible | planner success | final error |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in rob:
            if r.get("error"):
                lines.append(f"| {r['task']} | {r['corruption']} | {r['magnitude']:g} | **failed**: "
                             f"{_short(r['error'])} | | | |")
                continue
            lines.append(f"| {r['task']} | {r['corruption']} | {r['magnitude']:g} | {_cm_unit(r.get('flow_epe_mean_m'))} | "
                         f"{_pct(r.get('visible_fraction'))} | {_downstream_cell(r)} | "
                         f"{_cm_unit(r.get('planner_median_final_error_m'))} |")
    return lines


def _plot_accuracy_vs_success(results: Dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r.get("status") == "ok" and _finite(r.get("planner_success_rate"))
            and _finite(r.get("epe3d_mean_m"))]
    rob = [r for r in results.get("robustness", []) if _finite(r.get("planner_success_rate"))
           and _finite(r.get("flow_epe_mean_m"))]
    if not rows and not rob:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tasks = list(dict.fromkeys(r["task"] for r in rows + rob))
    markers = dict(zip(tasks, "osD^vP*X"))
    labels = list(dict.fromkeys(r["extractor"] for r in rows))
    colors = dict(zip(labels, plt.get_cmap("tab10").colors))
    for r in rob:
        ax.scatter(max(100 * r["flow_epe_mean_m"], 0.01), 100 * r["planner_success_rate"], s=18, color="0.75",
                   marker=markers[r["task"]], zorder=1)
    for r in rows:
        ax.scatter(max(100 * r["epe3d_mean_m"], 0.01), 100 * r["planner_success_rate"], s=60,
                   color=colors[r["extractor"]], marker=markers[r["task"]], edgecolor="k", zorder=2)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[l], label=l) for l in labels]
    handles += [plt.Line2D([], [], marker=markers[t], ls="", color="0.4", label=t.replace("D2F-", "").replace("-v0", ""))
                for t in tasks]
    if rob:
        handles.append(plt.Line2D([], [], marker="o", ls="", color="0.75", label="corrupted ground truth"))
    ax.set_xscale("log")
    ax.set_xlabel("mean 3D end-point error of the flow [cm], log scale (0 drawn at 0.01)")
    ax.set_ylabel("planner success [%]")
    ax.set_ylim(-5, 105)
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("Flow accuracy vs downstream success")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _plot_robustness(results: Dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rob = [r for r in results.get("robustness", []) if not r.get("error")]
    names = [n for n in dict.fromkeys(r["corruption"] for r in rob) if n != "none"]
    if not names:
        return False
    tasks = list(dict.fromkeys(r["task"] for r in rob))
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.5), squeeze=False, sharey="row")
    for j, name in enumerate(names):
        for task in tasks:
            pts = sorted([r for r in rob if r["task"] == task and r["corruption"] in (name, "none")],
                         key=lambda r: r["magnitude"])
            x = [r["magnitude"] for r in pts]
            succ = [100 * r["planner_success_rate"] if _finite(r.get("planner_success_rate")) else np.nan for r in pts]
            err = [100 * r["planner_median_final_error_m"] if _finite(r.get("planner_median_final_error_m")) else np.nan
                   for r in pts]
            short = task.replace("D2F-", "").replace("-v0", "")
            line, = axes[0, j].plot(x, succ, marker="o", label=short)
            axes[1, j].plot(x, err, marker="o", label=short)
            refused = [r["magnitude"] for r in pts if r.get("planner_error")]
            if refused:  # the env could not use the flow at all: drawn as x below 0 %
                axes[0, j].scatter(refused, [-3] * len(refused), marker="x", color=line.get_color(), zorder=3)
        unit = next((r["unit"] for r in rob if r["corruption"] == name), "")
        axes[0, j].set_title(name, fontsize=10)
        axes[1, j].set_xlabel(unit, fontsize=8)
        axes[1, j].set_yscale("log")
    axes[0, 0].set_ylabel("planner success [%]")
    axes[1, 0].set_ylabel("median final error [cm]")
    axes[0, 0].set_ylim(-8, 105)
    axes[0, -1].legend(fontsize=7)
    if any(r.get("planner_error") for r in rob):
        fig.text(0.01, 0.01, "x: the env refused the flow (planner_error in robustness.csv)", fontsize=8)
    fig.suptitle("Robustness of the flow reward: corrupted ground-truth flows", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_outputs(out: Path, results: Dict[str, Any], config: Dict[str, Any], provenance: Dict[str, Any]) -> List[Path]:
    """Write every output file under ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    cfg = dict(config, command=provenance["command"])
    lines = leaderboard_lines(results, cfg, provenance["machine"])
    for name, text in (("leaderboard.md", "\n".join(lines) + "\n"),
                       ("config.json", json.dumps({"config": cfg, **provenance,
                                                   "demos": results.get("demos", {})}, indent=2, default=str) + "\n"),
                       ("results.json", json.dumps(results, indent=1, default=_json_default) + "\n")):
        _atomic_write(out / name, text)
        written.append(out / name)
    write_csv(out / "leaderboard.csv", results["rows"], CSV_COLUMNS)
    written.append(out / "leaderboard.csv")
    if results.get("robustness"):
        write_csv(out / "robustness.csv", results["robustness"], ROBUSTNESS_COLUMNS)
        written.append(out / "robustness.csv")
    for name, plot in (("accuracy_vs_success.png", _plot_accuracy_vs_success), ("robustness.png", _plot_robustness)):
        if plot(results, out / name):
            written.append(out / name)
    return written


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
