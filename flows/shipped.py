"""Flows shipped with the package, under ``flows/data/<task>/``, three per task.

* ``demo.npz``: the scripted demonstration's own flow, recorded in simulation
  (``python -m d2f_envs.demos ENV -o demo.npz``; ``source.kind`` "simulated demonstration");
* ``extracted.npz``: the flow the extraction pipeline makes from the rendered video of the same
  demonstration (``python -m flows render-demo``, then ``python -m flows extract``; written by
  ``benchmarks/extraction_accuracy.py --write-data``; ``source`` names tracker, depth, motion
  model and ``extra.command`` the commands);
* ``ground_truth.npz``: the simulator's trajectories of the extracted flow's points (same points,
  same order), to measure the extraction against.

:data:`DEFAULT` says which one a task's envs use when given no flow (``which="default"``).
"""
from __future__ import annotations

from pathlib import Path

from .format import ObjectFlow

DATA_DIR = Path(__file__).resolve().parent / "data"

#: env id -> its folder under DATA_DIR
TASK_DIRS = {
    "D2F-PushT-v0": "push_t",
    "D2F-OpenDrawer-v0": "open_drawer",
    "D2F-OpenDoor-v0": "open_door",
    "D2F-PickPlace-v0": "pick_place",
    "D2F-CoverBowl-v0": "cover_bowl",
    "D2F-SweepPasta-v0": "sweep_pasta",
}

#: the shipped flows of a task folder, by name
FILES = {"demo": "demo.npz", "extracted": "extracted.npz", "ground_truth": "ground_truth.npz"}

#: env id -> the flow its envs use by default (a name in FILES). "extracted" where the scripted
#: controllers succeed with it about as often as with the demo flow, on every robot
#: (benchmarks/scripted_success.py --flow extracted): Push-T's Panda 96 % over seeds 0..79 vs the demo
#: flow's 98 % (85 % over seeds 0..19); the cloth (extracted with --motion deformable) over seeds 0..59
#: as with the demo flow (benchmarks/results/scripted_success_cover_bowl_60_*.md). Else "demo": the
#: pasta (its blob-tracked flow: 85 % / 75 % over seeds 0..19 vs 100 %). Numbers:
#: benchmarks/results/scripted_success_*.md.
DEFAULT = {
    "D2F-PushT-v0": "extracted",
    "D2F-OpenDrawer-v0": "extracted",
    "D2F-OpenDoor-v0": "extracted",
    "D2F-PickPlace-v0": "extracted",
    "D2F-CoverBowl-v0": "extracted",
    "D2F-SweepPasta-v0": "demo",
}

#: env id -> default flow file (relative to DATA_DIR)
SHIPPED = {env_id: f"{folder}/{FILES[DEFAULT[env_id]]}" for env_id, folder in TASK_DIRS.items()}


def shipped_flow_path(env_id: str, which: str = "default") -> Path:
    """Path of ``env_id``'s shipped flow ``which``: ``"default"`` (the envs' own, see :data:`DEFAULT`),
    ``"demo"``, ``"extracted"`` or ``"ground_truth"`` (see the module docstring)."""
    try:
        folder = TASK_DIRS[env_id]
    except KeyError:
        raise KeyError(f"no shipped flow for {env_id!r}; shipped: {sorted(TASK_DIRS)}") from None
    name = DEFAULT[env_id] if which == "default" else which
    if name not in FILES:
        raise KeyError(f"no shipped flow {which!r}; use 'default' or one of {sorted(FILES)}")
    return DATA_DIR / folder / FILES[name]


def shipped_flow(env_id: str, which: str = "default") -> ObjectFlow:
    """Load ``env_id``'s shipped flow ``which`` (see :func:`shipped_flow_path`)."""
    return ObjectFlow.load(shipped_flow_path(env_id, which))


def shipped_demo_path(env_id: str) -> Path:
    """Path of the flow ``env_id``'s scripted demonstration records in simulation (``d2f_envs/demos.py``)."""
    return shipped_flow_path(env_id, "demo")


def shipped_extracted_path(env_id: str) -> Path:
    """Path of the flow extracted from ``env_id``'s rendered demonstration (see the module docstring);
    its ground truth is :func:`shipped_ground_truth_path`."""
    return shipped_flow_path(env_id, "extracted")


def shipped_ground_truth_path(env_id: str) -> Path:
    """Path of the simulator's ground truth for the points of :func:`shipped_extracted_path` (same points, order)."""
    return shipped_flow_path(env_id, "ground_truth")
