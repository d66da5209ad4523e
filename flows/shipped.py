"""Flows shipped with the package, one per task, under ``flows/data/<task>/``."""
from __future__ import annotations

from pathlib import Path

from .format import ObjectFlow

DATA_DIR = Path(__file__).resolve().parent / "data"

# env id -> shipped flow file (relative to DATA_DIR)
SHIPPED = {
    "D2F-PushT-v0": "push_t/flow.npz",
    "D2F-OpenDrawer-v0": "open_drawer/flow.npz",
    "D2F-OpenDoor-v0": "open_door/flow.npz",
    "D2F-PickPlace-v0": "pick_place/flow.npz",
    "D2F-CoverBowl-v0": "cover_bowl/flow.npz",
    "D2F-SweepPasta-v0": "sweep_pasta/flow.npz",
}


def shipped_flow_path(env_id: str) -> Path:
    """Path of the flow shipped for ``env_id``."""
    try:
        rel = SHIPPED[env_id]
    except KeyError:
        raise KeyError(f"no shipped flow for {env_id!r}; shipped: {sorted(SHIPPED)}") from None
    return DATA_DIR / rel


def shipped_flow(env_id: str) -> ObjectFlow:
    """Load the flow shipped for ``env_id``."""
    return ObjectFlow.load(shipped_flow_path(env_id))


def _beside_shipped(env_id: str, name: str) -> Path:
    return shipped_flow_path(env_id).with_name(name)


def shipped_extracted_path(env_id: str) -> Path:
    """Path of the flow extracted (LK tracks + measured depth) from ``env_id``'s rendered demonstration.

    Made by ``benchmarks/extraction_accuracy.py --write-data`` (``python -m flows render-demo`` then
    ``python -m flows extract``); its ground truth is :func:`shipped_ground_truth_path`.
    """
    return _beside_shipped(env_id, "extracted.npz")


def shipped_ground_truth_path(env_id: str) -> Path:
    """Path of the simulator's ground truth for the points of :func:`shipped_extracted_path` (same points, order)."""
    return _beside_shipped(env_id, "ground_truth.npz")
