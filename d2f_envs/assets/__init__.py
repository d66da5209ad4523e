"""MJCF scenes of the tasks (robots are attached at run time)."""
from pathlib import Path

import mujoco

ASSET_DIR = Path(__file__).resolve().parent


def load_asset(name: str) -> mujoco.MjSpec:
    return mujoco.MjSpec.from_file(str(ASSET_DIR / name))
