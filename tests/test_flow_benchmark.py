"""The flow-extractor benchmark (``python -m flows.benchmark``): metrics, corruptions, failure isolation,
the task-judged downstream step and the command line.

One tiny Push-T demo (96x72, 5 fps: 21 frames) is rendered once for the module into a shared cache;
the planner runs with a tiny budget (horizon 2, 4 samples, 1 iteration) on one seed.
"""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import d2f_envs  # noqa: F401  (sets MUJOCO_GL=egl before mujoco renders)
from flows import ObjectFlow
from flows.benchmark import EXTRACTORS, ExtractorInput, corrupt, register_extractor, tapvid_metrics
from flows.benchmark.corruptions import CORRUPTIONS, warped_times
from flows.benchmark.demos import DemoCacheError, load_or_render
from flows.benchmark.downstream import PlannerBudget, planner_success
from flows.benchmark.metrics import accuracy_3d
from flows.benchmark.runner import BenchmarkConfig, run_benchmark
from flows.shipped import shipped_flow

ROOT = Path(__file__).resolve().parents[1]
TASK = "D2F-PushT-v0"
SIZE = dict(width=96, height=72, fps=5.0)
TINY_PLANNER = PlannerBudget(horizon=2, samples=4, iterations=1)
SIGMA = 0.02  # the toy extractor's noise (m)
MAXWELL_MEAN = math.sqrt(8 / math.pi)  # E|n| / sigma for n ~ N(0, sigma^2 I_3)


# ---------------------------------------------------------------------- toy extractors
class NoisyGroundTruth:
    """The demo's ground-truth flow plus N(0, SIGMA^2) noise on every frame after the first.

    Frame 0 is kept exact (it is where the points are queried) and only the points visible at
    frame 0 count as visible, so every point's ground truth is anchored at its true position and the
    measured 3D error of a frame t >= 1 is |noise|, Maxwell-distributed with mean SIGMA sqrt(8/pi).
    """

    name = "noisy-ground-truth"

    def __call__(self, inputs: ExtractorInput) -> ObjectFlow:
        gt = ObjectFlow.load(inputs.files.folder / "ground_truth.npz")
        noise = np.random.default_rng(0).normal(0.0, SIGMA, gt.points.shape)
        noise[0] = 0.0
        return ObjectFlow(points=gt.points + noise, visible=gt.visible & gt.visible[0], fps=inputs.fps,
                          task=inputs.task, object_name=inputs.object_name)


def farther_extractor(inputs: ExtractorInput) -> ObjectFlow:
    """The ground truth 5 cm farther from the camera along each ray (a depth offset): the pixels are
    right, so only anchoring the truth at the surface seen at each pixel can see the error."""
    gt = ObjectFlow.load(inputs.files.folder / "ground_truth.npz")
    rays = gt.points - inputs.camera.T_world_camera[:3, 3]
    points = gt.points + 0.05 * rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    return ObjectFlow(points=points, visible=gt.visible & gt.visible[0], fps=inputs.fps)


def raising_extractor(inputs: ExtractorInput) -> ObjectFlow:
    raise RuntimeError("tracker exploded")


def nan_extractor(inputs: ExtractorInput) -> ObjectFlow:
    gt = ObjectFlow.load(inputs.files.folder / "ground_truth.npz")
    points = gt.points.copy()
    points[3, 0, 1] = np.nan
    return ObjectFlow(points=points, visible=gt.visible, fps=inputs.fps)  # the format refuses it here


def short_extractor(inputs: ExtractorInput) -> ObjectFlow:
    gt = ObjectFlow.load(inputs.files.folder / "ground_truth.npz")
    return gt.replace(points=gt.points[:-1], visible=gt.visible[:-1])  # one frame short


def tuple_extractor(inputs: ExtractorInput):
    gt = ObjectFlow.load(inputs.files.folder / "ground_truth.npz")
    return gt.points, gt.visible


BROKEN = {"test-raises": (raising_extractor, "RuntimeError: tracker exploded"),
          "test-nan": (nan_extractor, "contains NaN"),
          "test-short": (short_extractor, "returned 20 frames, the video has 21"),
          "test-tuple": (tuple_extractor, "returned tuple, expected flows.ObjectFlow")}


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("demos")
    load_or_render(TASK, cache, **SIZE)
    return cache


@pytest.fixture
def registered():
    names = ["test-noisy", "test-farther"] + list(BROKEN)
    register_extractor("test-noisy", lambda options: NoisyGroundTruth())
    register_extractor("test-farther", lambda options: farther_extractor)
    for name, (fn, _) in BROKEN.items():
        register_extractor(name, lambda options, fn=fn: fn)
    yield names
    for name in names:
        EXTRACTORS.unregister(name)


def _config(tmp_path, demo_cache, extractors, **kwargs):
    return BenchmarkConfig(tasks=[TASK], out=tmp_path / "out", extractors=extractors, demo_cache=demo_cache,
                           width=SIZE["width"], height=SIZE["height"], demo_fps=SIZE["fps"], seeds=1,
                           budget=TINY_PLANNER, progress=False, **kwargs)


# ---------------------------------------------------------------------- the benchmark, in process
def test_toy_extractor_error_matches_its_noise_and_broken_extractors_fail_alone(tmp_path, demo_cache, registered):
    from flows.benchmark.provenance import provenance
    from flows.benchmark.report import write_outputs

    config = _config(tmp_path, demo_cache, ["test-raises", "test-noisy", "test-nan", "test-short", "test-tuple",
                                            "not-an-extractor", "oracle", "test-farther"],
                     robustness_tasks=[TASK], corruptions={"point_noise": (0.01,)})
    results = run_benchmark(config, write=lambda r: write_outputs(config.out, r, config.to_json(), provenance()))
    rows = {r["extractor"]: r for r in results["rows"]}

    noisy = rows["noisy-ground-truth"]
    assert noisy["status"] == "ok", noisy.get("traceback")
    frames = noisy["frames"]
    expected_mean = MAXWELL_MEAN * SIGMA * (frames - 1) / frames  # frame 0 is exact
    assert noisy["epe3d_mean_m"] == pytest.approx(expected_mean, rel=0.1)
    # the fraction within 4 cm = 2 sigma: Maxwell CDF(2) = erf(sqrt 2) - sqrt(2/pi) 2 e^-2 = 0.7385
    assert noisy["within_4cm"] == pytest.approx(0.7385 * (frames - 1) / frames + 1 / frames, abs=0.05)
    assert noisy["off_object_fraction"] < 0.05
    assert noisy["ms_per_frame"] > 0
    # the downstream step ran end to end: one planner episode, judged against the task
    assert noisy["planner_episodes"] == 1 and noisy["planner_seeds"] == [0]
    assert noisy["planner_success_rate"] in (0.0, 1.0)
    assert np.isfinite(noisy["planner_median_final_error_m"])

    # a depth error counts, at every frame, query frame included
    assert rows["test-farther"]["epe3d_median_m"] == pytest.approx(0.05, abs=0.003)
    # the built-in upper bound: true 2D tracks + measured depth are within a few mm
    assert rows["oracle"]["status"] == "ok" and rows["oracle"]["epe3d_median_m"] < 0.003
    assert rows["oracle"]["planner_episodes"] == 1

    for name, (_, message) in BROKEN.items():
        row = rows[name]
        assert row["status"] == "failed" and message in row["error"], row
        assert "planner_success_rate" not in row
    assert rows["not-an-extractor"]["status"] == "failed"
    assert "unknown extractor 'not-an-extractor'" in rows["not-an-extractor"]["error"]

    # the good row is written next to the failed ones
    out = config.out
    table = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["extractor"] for r in table] == list(rows)
    good = next(r for r in table if r["extractor"] == "noisy-ground-truth")
    assert float(good["epe3d_mean_m"]) == pytest.approx(noisy["epe3d_mean_m"], rel=1e-5)
    md = (out / "leaderboard.md").read_text()
    assert "tracker exploded" in md and "| noisy-ground-truth |" in md
    assert (out / "flows" / TASK / "noisy-ground-truth.npz").is_file()
    assert (out / "accuracy_vs_success.png").stat().st_size > 1000
    assert (out / "robustness.png").stat().st_size > 1000
    rob = list(csv.DictReader((out / "robustness.csv").open()))
    assert [(r["corruption"], float(r["magnitude"])) for r in rob] == [("none", 0.0), ("point_noise", 0.01)]
    assert float(rob[0]["flow_epe_mean_m"]) == 0.0
    assert float(rob[1]["flow_epe_mean_m"]) == pytest.approx(MAXWELL_MEAN * 0.01, rel=0.1)
    config_json = json.loads((out / "config.json").read_text())
    assert config_json["config"]["budgets"][TASK]["horizon"] == 2 and "machine" in config_json


def test_judged_success_replays_the_episode_against_the_task_flow():
    flow = shipped_flow(TASK)
    first = planner_success(TASK, flow, [0], TINY_PLANNER)["episode_results"][0]
    again = planner_success(TASK, flow, [0], TINY_PLANNER)["episode_results"][0]
    assert first == again  # same seed, same numbers
    # judged with the flow it was given: the replay reproduces the episode exactly
    assert first["final_error_m"] == first["flow_final_error_m"]
    assert first["success"] == first["flow_success"]
    # a flow 5 % too far from the camera (~6 cm: within what the env accepts as starting on the object,
    # FlowMismatchError's 10 cm): the env of that flow measures against its own end, the judge against the task's
    cam = np.eye(4)
    cam[:3, 3] = [0.0, -0.8, 0.8]
    scaled = corrupt(flow.replace(extrinsics=cam), "depth_scale", 0.05)
    ep = planner_success(TASK, scaled, [0], TINY_PLANNER)["episode_results"][0]
    assert abs(ep["final_error_m"] - ep["flow_final_error_m"]) > 0.01


def test_demo_cache_refuses_a_different_render(demo_cache):
    with pytest.raises(DemoCacheError, match="width: cached 96, asked 64"):
        load_or_render(TASK, demo_cache, width=64, height=72, fps=SIZE["fps"])


def test_unavailable_weights_fail_at_once_with_the_flag_to_pass(tmp_path):
    from flows.benchmark.extractors import BuiltinOptions, resolve_extractor
    from flows.benchmark.protocol import ExtractorUnavailable

    with pytest.raises(ExtractorUnavailable, match="pass --depth-anything-model PATH"):
        resolve_extractor("lk+depth-anything", BuiltinOptions(depth_anything_model=str(tmp_path / "missing")))
    with pytest.raises(ExtractorUnavailable, match="pass --cotracker-checkpoint PATH"):
        resolve_extractor("cotracker+measured")


# ---------------------------------------------------------------------- the command line
def _cli(args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "flows.benchmark", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_module_extractor_and_commands_end_to_end(tmp_path, demo_cache):
    out = tmp_path / "results"
    extract = ("lkcli=python -m flows extract {video} --object {object} --camera {camera} --depth {depth} "
               "--mask {mask} --max-points 64 --no-progress -o {out}")
    args = ["--extractor", "test_flow_benchmark:NoisyGroundTruth", "--extractor-cmd", extract,
            "--extractor-cmd", "broken=python -c 'import sys; sys.exit(\"no flow for you\")' {out}",
            "--tasks", TASK, "-o", str(out), "--demo-cache", str(demo_cache), "--width", "96", "--height", "72",
            "--demo-fps", "5", "--seeds", "1", "--horizon", "2", "--samples", "4", "--iterations", "1", "--no-progress"]
    res = _cli(args, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["extractor"]: r for r in csv.DictReader((out / "leaderboard.csv").open())}
    assert rows["noisy-ground-truth"]["status"] == "ok"
    assert rows["noisy-ground-truth"]["planner_success_rate"] in ("0", "1")
    assert rows["lkcli"]["status"] == "ok", rows["lkcli"]["error"]
    assert 0 < float(rows["lkcli"]["points"]) <= 64
    assert rows["broken"]["status"] == "failed" and "exited with status 1: no flow for you" in rows["broken"]["error"]
    config = json.loads((out / "config.json").read_text())
    assert "python -m flows.benchmark" in config["command"] and config["versions"]["mujoco"]
    assert "failed: D2F-PushT-v0 broken" in res.stdout

    # a non-empty -o is refused without --overwrite, and nothing in it changes
    before = (out / "leaderboard.csv").read_bytes()
    again = _cli(args, tmp_path)
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    assert (out / "leaderboard.csv").read_bytes() == before


def test_cli_rejects_bad_tasks_before_writing_anything(tmp_path):
    res = _cli(["--tasks", "D2F-PushT-v1", "-o", str(tmp_path / "o")], tmp_path)
    assert res.returncode == 2 and "did you mean D2F-PushT-v0" in res.stderr
    res = _cli(["--tasks", TASK, "--robustness", "D2F-OpenDoor-v0", "-o", str(tmp_path / "o")], tmp_path)
    assert res.returncode == 2 and "D2F-OpenDoor-v0 not in --tasks" in res.stderr
    assert not (tmp_path / "o").exists()


def test_benchmark_package_imports_neither_torch_nor_the_envs(tmp_path):
    code = ("import sys, flows.benchmark, flows.benchmark.cli; "
            "print(sorted(m for m in ('torch', 'd2f_envs', 'd2f_rl', 'gymnasium', 'cv2') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


# ---------------------------------------------------------------------- corruptions
def _flow(T=40, N=200, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(-0.1, 0.1, (N, 3)) + [0.0, 0.0, 0.1]
    t = np.linspace(0, 1, T)[:, None, None]
    points = base + t * np.array([0.3, 0.1, 0.0])  # a straight push
    cam = np.eye(4)
    cam[:3, 3] = [0.0, -1.0, 1.0]
    return ObjectFlow(points=points, visible=np.ones((T, N), bool), fps=10.0, extrinsics=cam)


def test_point_noise_has_the_expected_error():
    flow = _flow(T=50, N=400)
    for sigma in (0.005, 0.02):
        err = accuracy_3d(corrupt(flow, "point_noise", sigma), flow)
        assert err["epe3d_mean_m"] == pytest.approx(MAXWELL_MEAN * sigma, rel=0.03)


def test_depth_scale_scales_distances_from_the_camera():
    flow = _flow()
    centre = flow.extrinsics[:3, 3]
    out = corrupt(flow, "depth_scale", 0.1)
    d0 = np.linalg.norm(flow.points - centre, axis=-1)
    d1 = np.linalg.norm(out.points - centre, axis=-1)
    assert np.allclose(d1, 1.1 * d0, rtol=1e-5)
    # along the same rays
    u0 = (flow.points - centre) / d0[..., None]
    u1 = (out.points - centre) / d1[..., None]
    assert np.allclose(u0, u1, atol=1e-5)
    with pytest.raises(ValueError, match="extrinsics"):
        corrupt(flow.replace(extrinsics=None), "depth_scale", 0.1)


def test_time_warp_keeps_the_endpoints_and_the_path():
    flow = _flow()
    out = corrupt(flow, "time_warp", 0.2)
    assert np.array_equal(out.points[0], flow.points[0]) and np.array_equal(out.points[-1], flow.points[-1])
    assert not np.allclose(out.points[20], flow.points[20])
    s = warped_times(40, 0.3)
    assert np.all(np.diff(s) > 0) and s[0] == 0 and s[-1] == 39
    assert np.max(np.abs(s / 39 - np.linspace(0, 1, 40))) == pytest.approx(0.3, abs=0.01)
    # on a straight constant-speed path the warped points stay on the path
    direction = np.array([0.3, 0.1, 0.0]) / np.linalg.norm([0.3, 0.1, 0.0])
    offset = out.points - flow.points[0]
    assert np.allclose(np.cross(offset, direction), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="monotone"):
        corrupt(flow, "time_warp", 0.4)


def test_dropped_frames_repeat_the_previous_kept_frame():
    flow = _flow(T=41)
    out = corrupt(flow, "dropped_frames", 0.5, seed=3)
    assert out.points.shape == flow.points.shape and out.visible.shape == flow.visible.shape
    same_as_source = [np.array_equal(out.points[t], flow.points[t]) for t in range(41)]
    assert same_as_source[0] and same_as_source[-1]
    assert 41 - sum(same_as_source) == round(0.5 * 39)
    for t in range(1, 40):
        if not same_as_source[t]:
            assert np.array_equal(out.points[t], out.points[t - 1])


def test_lost_visibility_hides_samples_but_keeps_every_frame_seen():
    flow = _flow(T=30, N=50)
    out = corrupt(flow, "lost_visibility", 0.9, seed=1)
    assert np.array_equal(out.points, flow.points)
    assert out.visible.mean() == pytest.approx(0.1, abs=0.03)
    assert out.visible.any(axis=1).all()
    assert corrupt(flow, "lost_visibility", 0.0) is flow
    assert set(CORRUPTIONS) == {"point_noise", "depth_scale", "time_warp", "dropped_frames", "lost_visibility"}


# ---------------------------------------------------------------------- TAP-Vid metrics
def test_tapvid_metrics_at_the_256_pixel_scale():
    T, N = 10, 20
    gt = np.random.default_rng(0).uniform(0, 500, (T, N, 2))
    vis = np.ones((T, N), bool)
    q = np.zeros(N, int)
    perfect = tapvid_metrics(gt, vis, gt, vis, q, (512, 512))
    assert perfect["tapvid_position_accuracy"] == perfect["tapvid_average_jaccard"] == 1.0
    assert perfect["tapvid_occlusion_accuracy"] == 1.0
    # 6 px in a 512 px video is 3 px at 256: within 4, 8, 16 but not 1, 2 -> 3/5
    shifted = tapvid_metrics(gt + [6.0, 0.0], vis, gt, vis, q, (512, 512))
    assert shifted["tapvid_position_accuracy"] == pytest.approx(0.6)
    assert shifted["tapvid_average_jaccard"] == pytest.approx(0.6)
    # predicting every point occluded: positions still count, Jaccard is 0, occlusion accuracy 0
    hidden = tapvid_metrics(gt, np.zeros_like(vis), gt, vis, q, (512, 512))
    assert hidden["tapvid_position_accuracy"] == 1.0
    assert hidden["tapvid_average_jaccard"] == 0.0 and hidden["tapvid_occlusion_accuracy"] == 0.0
    # the query frame itself is not evaluated
    late = tapvid_metrics(gt + [100.0, 0.0] * (np.arange(T) == 0)[:, None, None], vis, gt, vis, q, (512, 512))
    assert late["tapvid_position_accuracy"] == 1.0


def test_train_downstream_runs_end_to_end(tmp_path):
    from flows.benchmark.downstream import trained_success

    res = trained_success(TASK, shipped_flow(TASK), [0], 32, "ppo", tmp_path, hyperparams=[
        "n_envs:1", "n_steps:32", "batch_size:32", "n_epochs:1"])
    assert res["episodes"] == 1 and res["success_rate"] in (0.0, 1.0)
    ep = res["episode_results"][0]
    assert ep["steps"] == 80 and np.isfinite(ep["final_error_m"])
    # the flow given is the task's own, so the replay in the task's env measures the same episode
    assert ep["final_error_m"] == ep["flow_final_error_m"]
    assert (Path(res["run_dir"]) / "final_model.zip").is_file()
