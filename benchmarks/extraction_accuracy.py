"""Accuracy of the weight-free extraction (LK or blob tracks + measured depth) on rendered demonstrations.

    python benchmarks/extraction_accuracy.py                       # all six tasks, 320x240
    python benchmarks/extraction_accuracy.py --env D2F-PushT-v0 --write-data --solvability-seeds 5

Per task: render the scripted demonstration (d2f_envs/render_demo.py: no robot, a stand-in
hand, the scene's ``demo`` camera, else ``overview``) to files exactly as ``python -m flows
render-demo`` does, run the extraction that command suggests (``render_demo.extract_arguments``:
``python -m flows extract VIDEO --mask mask.png --depth depth.npz --tracker lk|blob --depth-model
measured --motion rigid|deformable|none``) on them, and compare the extracted flow with the ground truth of
the SAME query points (``ground_truth_for_points``: each extracted point is attached to the body /
cloth triangle it lies on at its first visible frame and carried with the simulator state).
Where there is a motion model, the same extraction without it (the tracker alone) is measured
too. Errors are over the samples visible in both flows ("both-visible"; the extracted flow's
invisible samples are filled in, not measured), plus the final frame's error over points the
ground truth sees there. Times are per video frame and per stage.
``--write-data`` also writes ``flows/data/<task>/extracted.npz`` and ``ground_truth.npz``;
``--solvability-seeds N`` runs the task's scripted controller (benchmarks/scripted_success.py)
with the simulated demonstration's flow (demo.npz), the extracted flow, and (a control) the flow
the same pipeline makes from the true 2D tracks, on seeds 0..N-1 (default robot).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

from flows.benchmark.metrics import THRESHOLDS_CM, flow_accuracy  # noqa: E402


class _Timed:
    """A tracker / depth stage that records the seconds spent in it (same name in the flow's metadata)."""

    def __init__(self, inner, method: str):
        from flows.extract.registry import stage_name

        self.inner, self.method, self.seconds = inner, method, 0.0
        self.name = stage_name(inner)
        if hasattr(inner, "preferred_queries"):
            self.preferred_queries = inner.preferred_queries

    def __getattr__(self, item):
        if item == self.method:
            def timed(*a, **k):
                t0 = time.perf_counter()
                try:
                    return getattr(self.inner, item)(*a, **k)
                finally:
                    self.seconds += time.perf_counter() - t0
            return timed
        return getattr(self.inner, item)


def solvability(env_id: str, flow_path: str, seeds: int, true_tracks_path: str) -> dict:
    """Success of the scripted controller (default robot) with the simulated demonstration's flow, the
    extracted flow ``flow_path``, and the control ``true_tracks_path`` (the same pipeline with the true 2D tracks)."""
    import gymnasium as gym

    from flows import FlowFormatError
    from flows.shipped import shipped_demo_path
    from scripted_success import episode, make_controller

    out = {}
    for label, path in (("demo", shipped_demo_path(env_id)), ("extracted", flow_path),
                        ("true_tracks", true_tracks_path)):
        try:
            env = gym.make(env_id, flow=str(path))
        except FlowFormatError as exc:  # e.g. the env's 64-point subsample leaves a frame with no visible point
            out[f"{label}_success"] = out[f"{label}_final_error_m"] = float("nan")
            out[f"{label}_unusable"] = str(exc)
            continue
        ctrl = make_controller(env)
        res = [episode(env, ctrl, s) for s in range(seeds)]
        env.close()
        out[f"{label}_success"] = float(np.mean([s for _, s, _ in res]))
        out[f"{label}_final_error_m"] = float(np.median([e for _, _, e in res]))
    out["solvability_seeds"] = seeds
    return out


def _extract(ddir: Path, env_id: str, object_name: str, motion: str, generator: str):
    """(flow, tracker stage, depth stage, seconds): ``python -m flows extract`` on the demo files in
    ``ddir`` as ``render_demo.extract_arguments`` spells it (same stages, same defaults), with the
    tracker and depth stages timed."""
    from flows.extract import extract_flow
    from flows.extract.registry import DEPTH_ESTIMATORS, TRACKERS

    from d2f_envs.render_demo import tracker_for

    trk = _Timed(TRACKERS.create(tracker_for(env_id)), "track")
    dep = _Timed(DEPTH_ESTIMATORS.create("measured"), "estimate")
    t0 = time.perf_counter()
    ext = extract_flow(ddir / "video.mp4", ddir / "camera.json", mask=ddir / "mask.png", tracker=trk, depth=dep,
                       depth_data=ddir / "depth.npz", object_name=object_name, progress=False, task=env_id,
                       generator=generator, motion=motion, lift_options={"smooth": 0},
                       notes="extracted from a rendered scripted demonstration (benchmarks/extraction_accuracy.py)")
    return ext, trk, dep, time.perf_counter() - t0


def run_task(env_id: str, width: int, height: int, write_data: bool, seeds: int, keep: str | None,
             motion: str = "auto") -> dict:
    """One row: render ``env_id``'s demo, extract its flow (``motion``: ``"auto"`` = the object's
    model, ``render_demo.motion_model``; or ``"none"`` / ``"rigid"`` / ``"deformable"``), measure it against the ground truth."""
    from d2f_envs.render_demo import (
        GroundTruthTracker, extract_arguments, ground_truth_for_points, motion_model, render_demo, write_demo,
    )
    from flows.extract import extract_flow
    from flows.shipped import shipped_extracted_path, shipped_ground_truth_path

    motion = motion_model(env_id) if motion == "auto" else motion
    demo = render_demo(env_id, width=width, height=height)
    object_name = demo.flow.object_name
    render_cmd = f"python -m flows render-demo {env_id} -o demo/ --width {width} --height {height}"
    extract_cmd = "python -m flows " + shlex.join(extract_arguments(env_id, "demo", object_name, "extracted.npz"))
    if motion != motion_model(env_id):
        extract_cmd = extract_cmd.replace(f"--motion {motion_model(env_id)}", f"--motion {motion}")
    generator = f"{render_cmd} (MuJoCo render of {demo.flow.source.get('generator', '').split(' ')[0]}, " \
                f"stand-in hand, camera {demo.camera_name!r})"
    with tempfile.TemporaryDirectory() as tmp:
        ddir = Path(keep) / env_id if keep else Path(tmp)
        write_demo(demo, ddir, overwrite=True)
        ext, trk, dep, t_total = _extract(ddir, env_id, object_name, motion, generator)
        alone = _extract(ddir, env_id, object_name, "none", generator)[0] if motion != "none" else None
    ext = ext.replace(source=dict(ext.source, video="demo/video.mp4"),
                      extra=dict(ext.extra, commands=[render_cmd, extract_cmd],
                                 extraction=dict(ext.extra["extraction"], camera_file="demo/camera.json")))
    gt, anchor = ground_truth_for_points(demo, ext)
    T = demo.num_frames
    # the same extraction with the true 2D tracks: the error of depth + lifting + camera alone
    oracle = extract_flow(demo.frames, demo.camera, mask=demo.object_masks[0], tracker=GroundTruthTracker(demo),
                          depth="measured", depth_data=demo.depth, progress=False, task=env_id)
    oracle_acc = flow_accuracy(oracle, ground_truth_for_points(demo, oracle)[0], demo.camera)
    row = {"env": env_id, "width": width, "height": height, "camera": demo.camera_name, "motion": motion,
           "tracker": ext.source["tracker"],
           "anchored_at_frame0": float((anchor == 0).mean()),
           "queries": int(ext.extra["extraction"]["num_queries"]), "commands": [render_cmd, extract_cmd]}
    row.update(flow_accuracy(ext, gt, demo.camera))
    if ext.source["tracker"] == "blob":  # granular: pieces alike, identity not kept; the set matters (Chamfer)
        from d2f_envs.reward import chamfer_errors

        def chamfer(flow, truth):
            return np.array([chamfer_errors(truth.points[t][truth.visible[t]].astype(np.float64),
                                            flow.points[t:t + 1], flow.visible[t:t + 1])[0] for t in range(T)])

        ch = chamfer(ext, gt)
        och = chamfer(oracle, ground_truth_for_points(demo, oracle)[0])
        row.update(chamfer_median_m=float(np.median(ch)), final_chamfer_m=float(ch[-1]),
                   oracle_tracks_chamfer_median_m=float(np.median(och)), oracle_tracks_final_chamfer_m=float(och[-1]))
    if alone is not None:
        row["tracker_alone"] = flow_accuracy(alone, ground_truth_for_points(demo, alone)[0], demo.camera)
    row.update({f"oracle_tracks_{k}": oracle_acc[k] for k in ("epe3d_median_m", "epe3d_mean_m", "final_epe3d_median_m")})
    row.update({
        "render_ms_per_frame": 1e3 * demo.timings["render_s_per_frame"],
        "track_ms_per_frame": 1e3 * trk.seconds / T,
        "depth_ms_per_frame": 1e3 * dep.seconds / T,
        "read_mask_lift_ms_per_frame": 1e3 * (t_total - trk.seconds - dep.seconds) / T,
        "extract_total_ms_per_frame": 1e3 * t_total / T,
    })
    with tempfile.TemporaryDirectory() as tmp:
        ext_path = Path(tmp) / "extracted.npz"
        if write_data:
            ext_path = shipped_extracted_path(env_id)
            gt.save(shipped_ground_truth_path(env_id), overwrite=True)
            row["extracted_file"] = str(ext_path.relative_to(ext_path.parents[3]))
        ext.save(ext_path, overwrite=True)
        if seeds:
            oracle.save(Path(tmp) / "true_tracks.npz")
            row.update(solvability(env_id, str(ext_path), seeds, str(Path(tmp) / "true_tracks.npz")))
    return row


def _cells(a: dict) -> str:
    """The accuracy columns of one table line."""
    return (f"{100 * a['extracted_visible_fraction']:.0f} % | {100 * a['epe3d_median_m']:.2f} cm | "
            f"{100 * a['epe3d_mean_m']:.2f} cm | {100 * a['epe3d_p90_m']:.2f} cm | "
            f"{100 * a['final_epe3d_median_m']:.2f} cm | {100 * a['all_samples_epe3d_median_m']:.2f} cm | "
            f"{a['epe2d_median_px']:.2f} px | "
            + " | ".join(f"{100 * a[f'within_{c}cm']:.0f} %" for c in THRESHOLDS_CM)
            + f" | {100 * a['visibility_agreement']:.0f} %")


def table(rows) -> list:
    """The markdown lines of the results."""
    lines = [
        f"Machine: {machine()}.",
        "",
        "Extraction (`lk` tracker, `blob` for the pasta's pieces, `measured` depth, mask from the render; motion model `rigid` for the rigid and "
        "articulated objects, `deformable` for the cloth, none for the pasta) of each task's rendered scripted demonstration "
        "(`python -m flows render-demo`: stand-in hand, the scene's `demo` camera (the door's, from the hinge side) "
        "else `overview`; the commands are in the JSON and in each extracted flow's `extra.commands`) against the "
        "simulator's ground truth of the same query points (`python benchmarks/extraction_accuracy.py`). "
        "Errors over samples visible in both flows (visible: the extracted flow's measured samples); final = last "
        "frame, points the ground truth sees, extracted positions as the env would use them (lost points filled in: "
        "from the fitted pose with the rigid model, from their neighbours' motion with the deformable one, else held "
        "at their last position); all-samples = every frame and "
        "point, likewise. Rows `lk` are the tracker alone (no motion model), `lk + rigid` / `lk + deformable` the "
        "shipped extraction. "
        "Times per video frame. True-tracks: the same pipeline with the simulator's 2D tracks instead of LK "
        "(`GroundTruthTracker`): the error of depth sampling, lifting and camera alone.",
        "",
        "| env | extraction | size | points | visible | 3D median | 3D mean | 3D p90 | final 3D median "
        "| all-samples 3D median | 2D median | <1 cm | <2 cm | <4 cm | <8 cm | vis. agree "
        "| true-tracks 3D median / final | render | track | depth | read+mask+lift |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        motion = r.get("motion", "none")
        size = f"{r['width']}x{r['height']}"
        tracker = r.get("tracker", "lk")
        if "tracker_alone" in r:
            a = r["tracker_alone"]
            lines.append(f"| {r['env']} | {tracker} | {size} | {a['points']} | {_cells(a)} | | | | | |")
        label = tracker if motion == "none" else f"{tracker} + {motion}"
        lines.append(
            f"| {r['env']} | {label} | {size} | {r['points']} | {_cells(r)} | "
            f"{1e3 * r['oracle_tracks_epe3d_median_m']:.2f} / {1e3 * r['oracle_tracks_final_epe3d_median_m']:.2f} mm | "
            f"{r['render_ms_per_frame']:.0f} ms | {r['track_ms_per_frame']:.1f} ms | {r['depth_ms_per_frame']:.1f} ms | "
            f"{r['read_mask_lift_ms_per_frame']:.1f} ms |"
        )
    granular = [r for r in rows if "final_chamfer_m" in r]
    if granular:
        lines += ["", "Granular objects (blob tracker): the pieces are alike and touch, so a point may come out of a "
                  "merged blob on a neighbouring piece and the per-point errors above count that as an error; "
                  "their env's reward uses the Chamfer distance between the pieces and the flow's visible points "
                  "instead. That distance between the ground truth's visible points and the extracted flow's: "
                  + "; ".join(f"{r['env']} median over frames {100 * r['chamfer_median_m']:.2f} cm, last frame "
                              f"{100 * r['final_chamfer_m']:.2f} cm (true tracks: {100 * r['oracle_tracks_chamfer_median_m']:.2f} / "
                              f"{100 * r['oracle_tracks_final_chamfer_m']:.2f} cm)" for r in granular) + "."]
    lines += [
        "",
        "Estimated depth (`--depth-model depth-anything`, Depth Anything V2 calibrated to frame 0's measured depth): "
        "not measured on this machine: its weights cannot be downloaded here (no network). Where they are, "
        "`python -m flows extract ... --depth-model depth-anything --depth demo/depth.npz` runs it on the same demos.",
    ]
    if any("extracted_success" in r for r in rows):
        lines += [
            "",
            "Scripted controller (benchmarks/scripted_success.py `make_controller`, default robot) with the "
            "simulated demonstration's flow (`demo.npz`) vs the extracted flow:",
            "",
            "| env | seeds | demo flow success | extracted success | true-tracks success | demo flow final error "
            "| extracted final error | true-tracks final error |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            if "extracted_success" in r:
                cells = [("unusable" if f"{k}_unusable" in r else f"{100 * r[f'{k}_success']:.0f} %")
                         for k in ("demo", "extracted", "true_tracks")]
                cells += [("-" if f"{k}_unusable" in r else f"{100 * r[f'{k}_final_error_m']:.2f} cm")
                          for k in ("demo", "extracted", "true_tracks")]
                lines.append(f"| {r['env']} | {r['solvability_seeds']} | " + " | ".join(cells) + " |")
        unusable = [f"{r['env']}: {r['extracted_unusable']}" for r in rows if "extracted_unusable" in r]
        if unusable:
            lines += ["", "Unusable: the env refuses the extracted flow (" + "; ".join(unusable) + ")."]
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", action="append", help="only this env id (repeatable); the other rows of --out are kept")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--write-data", action="store_true",
                    help="write flows/data/<task>/extracted.npz and ground_truth.npz")
    ap.add_argument("--solvability-seeds", type=int, default=0,
                    help="scripted-controller episodes with the extracted vs the shipped flow (0: skip)")
    ap.add_argument("--keep-demos", default=None, help="keep the rendered demo folders under this folder")
    ap.add_argument("--motion", default="auto", choices=["auto", "none", "rigid", "deformable"],
                    help="extraction motion model (auto: rigid for rigid and articulated objects, deformable for "
                         "the cloth, else none)")
    ap.add_argument("--out", default="benchmarks/results/extraction_accuracy.json")
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md table from the rows of --out")
    args = ap.parse_args(argv)
    if args.table_only:
        rows = json.loads(Path(args.out).read_text())["rows"]
        Path(args.out).with_suffix(".md").write_text("\n".join(table(rows)) + "\n")
        print("\n".join(table(rows)))
        return
    import d2f_envs

    rows = []
    for env_id in args.env or d2f_envs.ENV_IDS:
        row = run_task(env_id, args.width, args.height, args.write_data, args.solvability_seeds, args.keep_demos,
                       motion=args.motion)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    if args.env and out.is_file():  # keep the rows of the tasks this run did not redo, in ENV_IDS order
        kept = [r for r in json.loads(out.read_text())["rows"] if r["env"] not in args.env]
        order = list(d2f_envs.ENV_IDS)
        rows = sorted(kept + rows, key=lambda r: order.index(r["env"]) if r["env"] in order else len(order))
    write_results(out, rows, table(rows))


if __name__ == "__main__":
    main()
