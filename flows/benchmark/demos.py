"""Rendered demonstrations for the benchmark, rendered once per task and cached on disk.

A cached demo is the folder ``python -m flows render-demo`` writes (video.mp4, depth.npz, mask.png,
masks.npz, camera.json, ground_truth.npz, demo.json) plus what the ground truth of *other* points
needs (``simulator_state.npz``: the object's body poses / cloth vertices and the per-pixel body
segmentation of every frame, and ``demo_flow.npz``) and ``benchmark_demo.json``, written last,
which says how it was rendered. A folder is reused only when that record matches the request and
the renderer's source files (their SHA-256) are unchanged: a demo rendered by another version of
the renderer is refused with a message, never silently mixed in.

Everything here that renders imports ``d2f_envs`` inside the function: the renderer and the
simulator truth live there, and ``import flows`` must not pull in the envs (layering: video ->
flows -> d2f_envs).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..format import ObjectFlow
from .protocol import DemoFiles, ExtractorInput

CACHE_VERSION = 1
RECORD = "benchmark_demo.json"
STATE_FILE = "simulator_state.npz"
DEMO_FLOW_FILE = "demo_flow.npz"


class DemoCacheError(RuntimeError):
    """A cached demo folder cannot be used for this request (the message says why and what to do)."""


def renderer_digest() -> str:
    """SHA-256 (first 16 hex digits) of the source files that decide what a demo looks like."""
    import d2f_envs  # the renderer lives in the envs package (see the module docstring)

    root = Path(d2f_envs.__file__).resolve().parent
    files = [root / "render_demo.py", root / "rendering.py", root / "demos.py"]
    files += sorted((root / "assets").glob("*.xml"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _request(env_id: str, width: int, height: int, fps: Optional[float]) -> Dict[str, Any]:
    return {"cache_version": CACHE_VERSION, "env_id": env_id, "width": int(width), "height": int(height),
            "camera": "auto", "demo_fps": None if fps is None else float(fps), "renderer_sha256": renderer_digest()}


def _write_cache(demo: Any, folder: Path, request: Dict[str, Any]) -> None:
    """Write ``demo`` (a RenderedDemo) to ``folder`` through a temporary sibling renamed at the end,
    so an interrupted run never leaves a half-written demo under the final name."""
    from d2f_envs.render_demo import write_demo

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_demo(demo, tmp, overwrite=True)
        state = {"body_ids": demo.body_ids, "body_pos": demo.body_pos, "body_mat": demo.body_mat,
                 "seg_body": demo.seg_body}
        if demo.flex_vert is not None:
            state.update(flex_vert=demo.flex_vert, flex_tri=demo.flex_tri)
        np.savez_compressed(tmp / STATE_FILE, **state)
        demo.flow.save(tmp / DEMO_FLOW_FILE, overwrite=True)
        record = dict(request, camera_name=demo.camera_name, fps=demo.fps, frames=demo.num_frames,
                      stand_in_hand=demo.hand_visible, render_s_per_frame=demo.timings.get("render_s_per_frame"))
        (tmp / RECORD).write_text(json.dumps(record, indent=2))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_record(folder: Path, request: Dict[str, Any]) -> None:
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DemoCacheError(f"{folder / RECORD}: unreadable ({exc}); delete {folder} to render it again") from None
    diff = {k: (record.get(k), v) for k, v in request.items() if record.get(k) != v}
    if diff:
        what = ", ".join(f"{k}: cached {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise DemoCacheError(f"{folder}: cached demo does not match this run ({what}); delete it or pass "
                             "another --demo-cache")


def load_or_render(env_id: str, cache: Path, width: int = 320, height: int = 240,
                   fps: Optional[float] = None) -> Tuple[Any, ExtractorInput, bool]:
    """``(demo, inputs, rendered_now)`` for ``env_id``: the RenderedDemo rebuilt from the cache folder
    ``cache/<env_id>`` (rendering it first when missing) and the :class:`ExtractorInput` of its files.
    ``fps``: the demo's frame rate (default: its own, that of the shipped flow); fewer frames render
    and extract faster.

    Both always come from the files, so a fresh and a cached run give the same numbers.
    """
    from d2f_envs.render_demo import render_demo

    folder = Path(cache) / env_id
    request = _request(env_id, width, height, fps)
    rendered = False
    if not folder.exists():
        _write_cache(render_demo(env_id, width=width, height=height, fps=fps), folder, request)
        rendered = True
    elif not (folder / RECORD).is_file():
        raise DemoCacheError(f"{folder}: exists but is not a benchmark demo cache (no {RECORD}); "
                             "move it away or pass another --demo-cache")
    _check_record(folder, request)
    demo, inputs = read_cached(folder)
    return demo, inputs, rendered


def read_cached(folder: Path) -> Tuple[Any, ExtractorInput]:
    """The RenderedDemo and ExtractorInput of a cache folder written by :func:`load_or_render`."""
    from d2f_envs.render_demo import GroundTruthTracker, RenderedDemo

    from ..extract.camera import Camera
    from ..extract.depth import load_depth
    from ..extract.masks import load_mask
    from ..extract.video import read_video

    folder = Path(folder)
    record = json.loads((folder / RECORD).read_text())
    files = DemoFiles(folder=folder, video=folder / "video.mp4", camera=folder / "camera.json",
                      depth=folder / "depth.npz", mask=folder / "mask.png")
    frames, _ = read_video(files.video)
    camera = Camera.load(files.camera)
    T, H, W = frames.shape[:3]
    depth = load_depth(files.depth, expected_shape=(T, H, W))
    with np.load(folder / "masks.npz") as z:
        masks = z["masks"].astype(bool)
    with np.load(folder / STATE_FILE) as z:
        state = {k: z[k] for k in z.files}
    demo_flow = ObjectFlow.load(folder / DEMO_FLOW_FILE)
    demo = RenderedDemo(
        env_id=record["env_id"], fps=float(record["fps"]), frames=frames, depth=depth, object_masks=masks,
        camera=camera, camera_name=record["camera_name"], flow=demo_flow,
        ground_truth=ObjectFlow.load(folder / "ground_truth.npz"), body_ids=state["body_ids"],
        body_pos=state["body_pos"], body_mat=state["body_mat"], flex_vert=state.get("flex_vert"),
        flex_tri=state.get("flex_tri"), seg_body=state["seg_body"], hand_visible=bool(record["stand_in_hand"]),
        timings={"render_s_per_frame": record.get("render_s_per_frame")},
    )
    mask = load_mask(files.mask, (H, W))
    # every extractor gets the same arrays: read-only, so one that writes into them fails at once
    # instead of changing what the next extractor sees
    for arr in (frames, depth, mask, masks):
        arr.flags.writeable = False
    inputs = ExtractorInput(
        task=demo.env_id, object_name=demo_flow.object_name, frames=frames, fps=demo.fps, camera=camera,
        depth=depth, mask=mask, files=files, ground_truth_tracker=GroundTruthTracker(demo),
    )
    return demo, inputs
