"""The flow format and the envs work without torch (torch is only for training)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USE_ENV = """
import sys
import numpy as np
import gymnasium as gym
import flows
import d2f_envs
flow = flows.shipped_flow("D2F-PushT-v0")
env = gym.make("D2F-PushT-v0")
obs, info = env.reset(seed=0)
for _ in range(3):
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
assert np.isfinite(reward), reward
env.close()
# sys.modules["torch"] is None where the test blocks torch
print("TORCH_LOADED" if sys.modules.get("torch") is not None else "TORCH_ABSENT")
"""

BLOCK_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, _NoTorch())
sys.modules["torch"] = None
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the torch block does not work")
"""


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("MUJOCO_GL", "egl")
    # run outside the repo, so the checkout is imported through PYTHONPATH and nothing lands in it
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_flows_and_envs_do_not_import_torch(tmp_path):
    res = run_python(USE_ENV, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "TORCH_ABSENT", res.stdout


def test_flows_and_envs_work_with_torch_unimportable(tmp_path):
    res = run_python(BLOCK_TORCH + USE_ENV, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "TORCH_ABSENT", res.stdout

