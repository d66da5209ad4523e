"""Offscreen rendering works however the user orders their imports."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import mujoco  # imported BEFORE d2f_envs: MuJoCo has already chosen its GL backend
import gymnasium as gym
import d2f_envs
env = gym.make("D2F-PushT-v0", render_mode="rgb_array")
env.reset(seed=0)
img = env.render()
assert img.shape == (240, 320, 3) and img.std() > 5, (img.shape, img.std())
print("ok")
"""


def test_render_without_display_when_mujoco_was_imported_first(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
