"""The README's "Running on a real robot" walkthrough, run end to end as a user would.

Each step is the README's command (subprocesses, a fresh folder), shrunk: a 160x120 render at 10 fps,
a few hundred PPO steps. What a user relies on: the flow extracted from the camera video is
accepted by the env it was made for (in the robot's frame), training with the real-observation
YAML entry writes a run whose config says obs_mode "real" with randomisation, the export runs
torch-free on the simulated robot, and that robot sees the real observation layout.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flows import ObjectFlow

ROOT = Path(__file__).resolve().parents[1]
ENV = "D2F-OpenDoor-v0"


def run(args, cwd):
    out = subprocess.run([sys.executable] + args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(args)}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out.stdout


@pytest.mark.xdist_group("walkthrough")
def test_walkthrough_extract_train_real_export_deploy(tmp_path):
    # 1. a flow from the (here: rendered) RGB-D camera video, with the camera's pose in the robot frame
    run(["-m", "flows", "render-demo", ENV, "-o", "demo", "--width", "160", "--height", "120", "--fps", "10",
         "--no-progress"], tmp_path)
    run(["-m", "flows", "extract", "demo/video.mp4", "--object", "cabinet door", "--camera", "demo/camera.json",
         "--depth", "demo/depth.npz", "--mask", "demo/mask.png", "--motion", "rigid", "--task", ENV,
         "-o", "my_door_flow.npz", "--no-progress"], tmp_path)
    flow = ObjectFlow.load(tmp_path / "my_door_flow.npz")
    camera = json.loads((tmp_path / "demo" / "camera.json").read_text())
    assert flow.task == ENV and flow.extrinsics is not None
    np.testing.assert_allclose(flow.extrinsics, camera["T_world_camera"])

    # 2-3. train on what the robot measures, with the YAML's randomisation (the env accepts the flow:
    # a flow off the door or outside the scene would be refused with a FlowMismatchError)
    run([str(ROOT / "train.py"), "--algo", "ppo", "--env", ENV,
         "--env-kwargs", "robot:'panda_gripper'", "flow:'my_door_flow.npz'",
         "-conf", str(ROOT / "d2f_rl" / "hyperparams" / "ppo_real.yml"), "-n", "256", "-f", "logs",
         "--n-envs", "2", "--eval-freq", "0", "--save-freq", "0", "--no-progress", "--no-wandb", "--num-threads", "1",
         "-params", "n_steps:128", "batch_size:64", "n_epochs:1"], tmp_path)
    run_dir = tmp_path / "logs" / "ppo" / f"{ENV}_1"
    config = json.dumps(sorted((p.name, p.read_text()) for p in run_dir.glob("*.yml")))
    assert "real" in config and "randomize" in config and "my_door_flow.npz" in config

    # 4. export, then deploy on the MuJoCo-backed robot (numpy + onnxruntime only)
    run([str(ROOT / "eval.py"), "-f", str(run_dir), "--export", "onnx"], tmp_path)
    meta = json.loads((run_dir / "policy.json").read_text())
    assert meta["env"]["id"] == ENV and meta["env"]["kwargs"]["obs_mode"] == "real"
    assert "keypoint_visible" in meta["observation"]["layout"]
    report = run(["-m", "d2f_rl.deploy", str(run_dir / "policy.onnx"), "--sim", "--steps", "20", "--no-realtime",
                  "--json", "deploy.json"], tmp_path)
    result = json.loads((tmp_path / "deploy.json").read_text())
    assert "final error" in report and result["steps"] == 20 and result["safety_stop"] is False
