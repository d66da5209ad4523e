"""Rendered demonstrations with ground truth: the test bench of the video -> flow extraction.

:func:`render_demo` replays a task's scripted demonstration (:mod:`d2f_envs.demos`: the same
object motion as the shipped demo flow, no robot in the scene) and renders it from a fixed camera:
RGB frames, metric depth, the object's segmentation, and the camera in the project's
``camera.json`` format (:class:`flows.extract.camera.Camera`, OpenCV axes). What the camera sees
besides the task's scene: a stand-in "hand" (a skin-coloured capsule drawn only into the render,
not simulated) touching the object where a hand would hold it (Push-T: on the T's stem; drawer
and door: at the handle; pick-and-place: on top of the loaf; Cover-Bowl: at the cloth's grasp
vertex, the demo's mocap hand), and in Sweep-Pasta the demo's own brush head. The hand occludes
the object like a real one, which is part of what the extraction must cope with.

Ground truth is exact: the simulator state of every frame is known, so any point on the object
at one frame can be carried to every other frame. :func:`ground_truth_for_points` does this for
the points of an extracted flow (the same query points, see its docstring for how each kind of
object is followed), with visibility from the render (a point is visible where it projects
inside the image and is not behind the rendered surface).

    python -m flows render-demo D2F-PushT-v0 -o demo/
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import mujoco
import numpy as np

from flows import ObjectFlow
from flows.extract.camera import Camera

from .demos import DEMOS, DemoStates
from .rendering import make_renderer

#: flow points closer to the camera than the rendered surface plus this (metres, plus
#: ``VISIBILITY_REL`` of the depth) count as visible. Covers the depth buffer's precision, the
#: one-pixel rounding at silhouettes and the cloth's 4 mm half-thickness, and is smaller than
#: the stand-in hand's thickness, so points under it are occluded.
VISIBILITY_ABS = 0.005
VISIBILITY_REL = 0.01

#: the stand-in hand: a capsule (m), skin-coloured
HAND_RADIUS = 0.011
HAND_LENGTH = 0.12
HAND_RGBA = np.array([0.87, 0.68, 0.56, 1.0], dtype=np.float32)


@dataclass(frozen=True)
class TaskObject:
    """The tracked object of a task and where the stand-in hand touches it."""

    bodies: Tuple[str, ...] = ()  # rigid bodies (the object is their union)
    flex: Optional[str] = None  # or a flex (cloth)
    #: the hand: (body, contact point in the body's frame, direction from the contact to the hand's
    #: wrist in the body's frame); ``"mocap"`` as body: the demo's mocap body 0 (world direction)
    hand: Optional[Tuple[str, Tuple[float, float, float], Tuple[float, float, float]]] = None


def _task_objects() -> Dict[str, TaskObject]:
    from .tasks.pick_place import LOAF_HALF_HEIGHT
    from .tasks.push_t import T_HALF_HEIGHT
    from .tasks.sweep_pasta import NUM_PIECES

    return {
        "D2F-PushT-v0": TaskObject(("tblock",), hand=("tblock", (0.0, -0.09, T_HALF_HEIGHT), (0.0, 0.0, 1.0))),
        "D2F-OpenDrawer-v0": TaskObject(("drawer",), hand=("drawer", (-0.08, 0.0, 0.0), (-1.0, 0.0, 0.35))),
        "D2F-OpenDoor-v0": TaskObject(("door",), hand=("door", (-0.07, -0.25, 0.05), (-1.0, 0.0, 0.2))),
        "D2F-PickPlace-v0": TaskObject(("loaf",), hand=("loaf", (0.0, 0.0, LOAF_HALF_HEIGHT), (0.0, 0.0, 1.0))),
        "D2F-CoverBowl-v0": TaskObject(flex="cloth", hand=("mocap", (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))),
        # the demo's brush head is the actor here: no extra hand
        "D2F-SweepPasta-v0": TaskObject(tuple(f"piece_{i:02d}" for i in range(NUM_PIECES))),
    }


def check_env_id(env_id: str) -> str:
    """``env_id`` if it has a demonstration, else a KeyError suggesting close matches."""
    if env_id in DEMOS:
        return env_id
    close = difflib.get_close_matches(env_id, list(DEMOS), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown env id {env_id!r}{hint} (known: {', '.join(sorted(DEMOS))})")


def motion_model(env_id: str) -> str:
    """The extraction's motion model (``python -m flows extract --motion``) for ``env_id``'s object:
    ``"rigid"`` for rigid objects and articulated ones (their mask covers the one moving part: the
    drawer, the door leaf), ``"deformable"`` for the cloth, ``"none"`` for the pasta pieces."""
    import importlib

    import gymnasium as gym

    module, name = gym.spec(check_env_id(env_id)).entry_point.split(":")
    object_class = getattr(importlib.import_module(module), name).object_class
    return {"rigid": "rigid", "articulated": "rigid", "deformable": "deformable"}.get(object_class, "none")


def tracker_for(env_id: str) -> str:
    """The weight-free tracker for ``env_id``'s object: ``"blob"`` (its pieces as blobs of their colour,
    ``flows/extract/trackers/blob.py``) for a granular object (the pasta), else ``"lk"``."""
    import importlib

    import gymnasium as gym

    module, name = gym.spec(check_env_id(env_id)).entry_point.split(":")
    object_class = getattr(importlib.import_module(module), name).object_class
    return "blob" if object_class == "granular" else "lk"


def extract_arguments(env_id: str, folder, object_name: str, output="flow.npz") -> List[str]:
    """``python -m flows`` arguments that extract the flow of the demo rendered into ``folder``
    (weight-free: the object's tracker (:func:`tracker_for`), the rendered depth and mask, the object's
    motion model)."""
    d = Path(folder)
    return ["extract", str(d / "video.mp4"), "--object", object_name, "--camera", str(d / "camera.json"),
            "--depth", str(d / "depth.npz"), "--mask", str(d / "mask.png"), "--tracker", tracker_for(env_id),
            "--depth-model", "measured", "--motion", motion_model(env_id), "--task", env_id, "-o", str(output)]


def mujoco_camera(model: mujoco.MjModel, data: mujoco.MjData, camera: str, width: int, height: int) -> Camera:
    """The MuJoCo camera ``camera`` as a :class:`Camera` (OpenCV axes, camera-to-world).

    MuJoCo cameras look along their -z axis with +y up in the image; OpenCV cameras look along
    +z with +y down, so the rotation's y and z columns flip sign. Intrinsics from ``fovy``
    (vertical field of view) with square pixels; the principal point is the image centre in
    OpenCV pixel coordinates (centre of the top-left pixel = (0, 0)): ((W - 1) / 2, (H - 1) / 2).
    """
    cid = model.camera(camera).id
    if np.any(model.cam_sensorsize[cid] > 0):
        raise ValueError(f"camera {camera!r} uses sensorsize/focal intrinsics; only fovy cameras are supported")
    fy = 0.5 * height / np.tan(0.5 * np.deg2rad(model.cam_fovy[cid]))
    K = np.array([[fy, 0.0, (width - 1) / 2.0], [0.0, fy, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    R_mj = data.cam_xmat[cid].reshape(3, 3)
    T = np.eye(4)
    T[:3, :3] = R_mj * np.array([1.0, -1.0, -1.0])  # columns: x, -y, -z
    T[:3, 3] = data.cam_xpos[cid]
    return Camera(K=K, T_world_camera=T, width=int(width), height=int(height), origin=f"mujoco camera {camera!r}")


def pick_camera(model: mujoco.MjModel, camera: str = "auto") -> str:
    """``camera`` checked against the model's cameras; ``"auto"``: the task's ``demo`` camera where
    it has one (a view that keeps the demonstrated surface in sight, e.g. the door's), else ``overview``."""
    names = [model.camera(i).name for i in range(model.ncam)]
    if camera == "auto":
        for name in ("demo", "overview"):
            if name in names:
                return name
        if not names:
            raise ValueError("the scene has no camera")
        return names[0]
    if camera not in names:
        raise ValueError(f"no camera {camera!r} in the scene; cameras: {', '.join(names)} (or auto)")
    return camera


@dataclass
class RenderedDemo:
    """A rendered demonstration: frames, depth, object segmentation, camera, and the simulator truth."""

    env_id: str
    fps: float
    frames: np.ndarray  # (T, H, W, 3) uint8
    depth: np.ndarray  # (T, H, W) float32, metres along the optical axis (no geometry: the far plane)
    object_masks: np.ndarray  # (T, H, W) bool: the object's pixels (not hidden by the hand)
    camera: Camera
    camera_name: str
    flow: ObjectFlow  # the demonstration's own flow (== the shipped demo.npz for default settings)
    ground_truth: ObjectFlow  # the demo's flow points with visibility from the render
    # the object's state per frame, for ground truth of other points
    body_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (B,) object bodies
    body_pos: Optional[np.ndarray] = None  # (T, B, 3)
    body_mat: Optional[np.ndarray] = None  # (T, B, 3, 3)
    flex_vert: Optional[np.ndarray] = None  # (T, V, 3)
    flex_tri: Optional[np.ndarray] = None  # (F, 3) vertex indices
    seg_body: Optional[np.ndarray] = None  # (T, H, W) int16: object body index into body_ids per pixel, -1 none
    hand_visible: bool = False
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _hand_segment(model, data, spec: TaskObject) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """World (tip centre, wrist centre) of the stand-in hand capsule at this frame, or None."""
    if spec.hand is None:
        return None
    body, local, direction = spec.hand
    if body == "mocap":
        contact, d = data.mocap_pos[0].copy(), np.asarray(direction, dtype=np.float64)
    else:
        bid = model.body(body).id
        R = data.xmat[bid].reshape(3, 3)
        contact = data.xpos[bid] + R @ np.asarray(local)
        d = R @ np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    tip = contact + HAND_RADIUS * d  # the capsule's rounded end touches the contact point
    return tip, tip + HAND_LENGTH * d


def _add_hand(scene: mujoco.MjvScene, segment) -> None:
    if segment is None or scene.ngeom >= scene.maxgeom:
        return
    g = scene.geoms[scene.ngeom]
    mujoco.mjv_initGeom(g, mujoco.mjtGeom.mjGEOM_CAPSULE, np.zeros(3), np.zeros(3), np.eye(3).ravel(), HAND_RGBA)
    mujoco.mjv_connector(g, mujoco.mjtGeom.mjGEOM_CAPSULE, HAND_RADIUS, segment[0], segment[1])
    # its own segmentation id (mjv_initGeom leaves it unset), of no model object: the hand's pixels
    # read as (objid -1, objtype mjOBJ_UNKNOWN), never as the object
    g.segid = scene.ngeom
    g.objtype = int(mujoco.mjtObj.mjOBJ_UNKNOWN)
    g.objid = -1
    scene.ngeom += 1


def point_visibility(points: np.ndarray, depth: np.ndarray, camera: Camera) -> np.ndarray:
    """(T, N) bool: ``points`` (T, N, 3) project inside the image, in front of the camera, and not
    behind the rendered surface ``depth`` (T, H, W) at their nearest pixel (by more than the tolerance)."""
    uv, z = camera.project(points)
    T, N = z.shape
    H, W = depth.shape[1:]
    with np.errstate(invalid="ignore"):
        u = np.rint(uv[..., 0])
        v = np.rint(uv[..., 1])
        inside = np.isfinite(u) & np.isfinite(v) & (z > 0) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    ui = np.where(inside, u, 0).astype(int)
    vi = np.where(inside, v, 0).astype(int)
    surf = depth[np.arange(T)[:, None], vi, ui]
    with np.errstate(invalid="ignore"):
        not_behind = ~(z > surf + VISIBILITY_ABS + VISIBILITY_REL * surf)  # NaN surface: nothing in front
    return inside & not_behind


def render_demo(
    env_id: str,
    width: int = 320,
    height: int = 240,
    camera: str = "auto",
    fps: Optional[float] = None,
    hand: bool = True,
    progress: bool = False,
) -> RenderedDemo:
    """Replay ``env_id``'s scripted demonstration and render it (RGB, depth, segmentation) from ``camera``.

    ``fps``: the demonstration's frame rate (default: the shipped demo flow's); ``hand``: draw the
    stand-in hand capsule (see the module docstring).
    """
    import time

    check_env_id(env_id)
    spec = _task_objects()[env_id]
    t0 = time.perf_counter()
    states = DemoStates()
    flow = DEMOS[env_id](states=states) if fps is None else DEMOS[env_id](fps=fps, states=states)
    t_sim = time.perf_counter() - t0
    model = states.model
    data = mujoco.MjData(model)
    cam_name = pick_camera(model, camera)
    T = len(states)
    body_ids = np.array([model.body(b).id for b in spec.bodies], dtype=int)
    geom_to_obj = np.full(model.ngeom, -1, dtype=np.int16)  # geom id -> index into body_ids
    for k, b in enumerate(body_ids):
        geom_to_obj[model.geom_bodyid == b] = k
    flex_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_FLEX, spec.flex) if spec.flex else -1
    if spec.flex and flex_id < 0:
        raise ValueError(f"{env_id}: no flex {spec.flex!r} in the demo's scene")

    renderer = make_renderer(model, width, height)
    frames = np.empty((T, height, width, 3), dtype=np.uint8)
    depth = np.empty((T, height, width), dtype=np.float32)
    seg_body = np.full((T, height, width), -1, dtype=np.int16)
    masks = np.zeros((T, height, width), dtype=bool)
    body_pos = np.empty((T, len(body_ids), 3))
    body_mat = np.empty((T, len(body_ids), 3, 3))
    flex_vert = flex_tri = None
    if flex_id >= 0:
        vadr, vnum = int(model.flex_vertadr[flex_id]), int(model.flex_vertnum[flex_id])
        if model.flex_dim[flex_id] != 2:
            raise ValueError(f"{env_id}: flex {spec.flex!r} is not a surface (dim {model.flex_dim[flex_id]})")
        enum = int(model.flex_elemnum[flex_id])
        dadr = int(model.flex_elemdataadr[flex_id])
        flex_tri = model.flex_elem[dadr:dadr + 3 * enum].reshape(enum, 3).astype(int)
        flex_vert = np.empty((T, vnum, 3))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=T, unit="frame", desc=f"render {env_id}")
    t_render = 0.0
    camera_obj = None
    try:
        for t in range(T):
            data.qpos[:] = states.qpos[t]
            if model.nmocap:
                data.mocap_pos[:] = states.mocap_pos[t]
            mujoco.mj_forward(model, data)
            if camera_obj is None:
                camera_obj = mujoco_camera(model, data, cam_name, width, height)
            body_pos[t] = data.xpos[body_ids]
            body_mat[t] = data.xmat[body_ids].reshape(-1, 3, 3)
            if flex_vert is not None:
                flex_vert[t] = data.flexvert_xpos[vadr:vadr + vnum]
            segment = _hand_segment(model, data, spec) if hand else None
            r0 = time.perf_counter()
            renderer.update_scene(data, camera=cam_name)
            _add_hand(renderer.scene, segment)
            frames[t] = renderer.render()
            renderer.enable_depth_rendering()
            renderer.update_scene(data, camera=cam_name)
            _add_hand(renderer.scene, segment)
            depth[t] = renderer.render()
            renderer.disable_depth_rendering()
            renderer.enable_segmentation_rendering()
            renderer.update_scene(data, camera=cam_name)
            _add_hand(renderer.scene, segment)
            seg = renderer.render()
            renderer.disable_segmentation_rendering()
            t_render += time.perf_counter() - r0
            objid, objtype = seg[..., 0], seg[..., 1]
            is_geom = objtype == int(mujoco.mjtObj.mjOBJ_GEOM)
            if len(body_ids):
                seg_body[t][is_geom] = geom_to_obj[objid[is_geom]]
                masks[t] = seg_body[t] >= 0
            if flex_id >= 0:
                masks[t] |= (objtype == int(mujoco.mjtObj.mjOBJ_FLEX)) & (objid == flex_id)
            if bar is not None:
                bar.update(1)
    finally:
        renderer.close()
        if bar is not None:
            bar.close()
    if not masks[0].any():
        raise RuntimeError(f"{env_id}: the object is not in view of camera {cam_name!r} at frame 0")
    demo = RenderedDemo(
        env_id=env_id, fps=flow.fps, frames=frames, depth=depth, object_masks=masks, camera=camera_obj,
        camera_name=cam_name, flow=flow, ground_truth=flow, body_ids=body_ids, body_pos=body_pos, body_mat=body_mat,
        flex_vert=flex_vert, flex_tri=flex_tri, seg_body=seg_body, hand_visible=bool(hand and spec.hand),
        timings={"simulate_s": t_sim, "render_s": t_render, "render_s_per_frame": t_render / T},
    )
    # The demo's own points carried with the rendered states (not copied from the demo's flow): for
    # the kinematic demos the two are the same, but the simulated ones (cloth, pasta) record their
    # points after mj_step, i.e. the positions computed at the start of the step's last physics
    # step, one step (10 / 2 ms) behind the state that is rendered (up to ~5 mm for the cloth).
    gt, _ = ground_truth_for_points(demo, flow)
    demo.ground_truth = gt.replace(
        extra=dict(flow.extra, camera=cam_name, image_size=[width, height], stand_in_hand=demo.hand_visible),
        source=dict(gt.source, notes=f"the demonstration's flow points, positions from the rendered simulator "
                                     f"states, visibility from the render of camera {cam_name!r} ({width}x{height})"),
    )
    return demo


# ---------------------------------------------------------------------- files
DEMO_FILES = ("video.mp4", "depth.npz", "mask.png", "masks.npz", "camera.json", "ground_truth.npz", "demo.json")


def write_demo(demo: RenderedDemo, out_dir, overwrite: bool = False) -> List[Path]:
    """Write ``demo`` into ``out_dir`` (see :data:`DEMO_FILES`); existing files are refused unless ``overwrite``."""
    import json

    import imageio.v2 as imageio

    from flows.extract.video import write_video

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    existing = [out / f for f in DEMO_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: exists ({len(existing)} demo file(s) in {out}); "
                              "pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_video(out / "video.mp4", demo.frames, fps=demo.fps)]
    np.savez_compressed(out / "depth.npz", depth=demo.depth, unit="m")
    paths.append(out / "depth.npz")
    imageio.imwrite(out / "mask.png", (demo.object_masks[0] * 255).astype(np.uint8))
    paths.append(out / "mask.png")
    np.savez_compressed(out / "masks.npz", masks=demo.object_masks)
    paths.append(out / "masks.npz")
    paths.append(demo.camera.save(out / "camera.json"))
    paths.append(demo.ground_truth.save(out / "ground_truth.npz", overwrite=True))
    info = {
        "env_id": demo.env_id, "object_name": demo.flow.object_name, "fps": demo.fps, "frames": demo.num_frames,
        "width": demo.camera.width, "height": demo.camera.height, "camera": demo.camera_name,
        "stand_in_hand": demo.hand_visible, "generator": demo.flow.source.get("generator", ""),
        "ground_truth_visible_fraction": float(demo.ground_truth.visible.mean()),
    }
    (out / "demo.json").write_text(json.dumps(info, indent=2))
    paths.append(out / "demo.json")
    return paths


# ---------------------------------------------------------------------- ground truth of other points
def _closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> Tuple[int, np.ndarray, float]:
    """(triangle index, barycentric (3,), signed offset along the triangle's normal) of the
    triangle in ``tri`` (F, 3, 3) nearest to ``p``; barycentrics clamped onto the triangle."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    off = np.einsum("fk,fk->f", p - a, n)
    q = p - off[:, None] * n  # in-plane projection
    v0, v1, v2 = b - a, c - a, q - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01 + 1e-18
    w1 = (d11 * d20 - d01 * d21) / den
    w2 = (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - w1 - w2, w1, w2], axis=1), 0.0, None)
    bary /= bary.sum(1, keepdims=True)
    closest = np.einsum("fj,fjk->fk", bary, tri)
    k = int(np.argmin(np.linalg.norm(p - closest, axis=1)))
    return k, bary[k], float(off[k])


def ground_truth_for_points(demo: RenderedDemo, flow: ObjectFlow) -> Tuple[ObjectFlow, np.ndarray]:
    """Ground-truth trajectories of the same points as ``flow`` (an extraction from ``demo``'s video).

    Each point is anchored at its first visible frame ``a`` (frame 0 for nearly all: the query
    points are sampled on frame 0's mask, where the measured depth puts the extracted point on the
    true surface). Its owner and attachment at ``a``:

    * rigid objects (Push-T, drawer, door, loaf): the object body whose geom the segmentation shows
      at the point's pixel (else the nearest object body); the point is fixed in that body's frame,
      so its trajectory follows the body's pose exactly;
    * pasta pieces: the same, per piece (each piece is a rigid body: exact, not the nearest centre);
    * cloth: the nearest flex triangle, by barycentric coordinates plus the offset along the
      triangle's normal (the rendered surface is the flex's 4 mm radius above its mid-surface).

    Returns (ground-truth flow with render visibility, anchor frame per point).
    """
    if flow.num_frames != demo.num_frames:
        raise ValueError(f"the flow has {flow.num_frames} frames, the demo {demo.num_frames}")
    P = np.asarray(flow.points, dtype=np.float64)
    N = P.shape[1]
    vis = np.asarray(flow.visible)
    anchor = np.where(vis.any(axis=0), vis.argmax(axis=0), 0)
    gt = carry_points(demo, P[anchor, np.arange(N)], anchor)
    H, W = demo.depth.shape[1:]
    visible = point_visibility(gt, demo.depth, demo.camera)
    out = ObjectFlow(
        points=gt, visible=visible, fps=flow.fps, task=demo.env_id, object_name=demo.flow.object_name,
        source={"kind": "simulated demonstration", "generator": demo.flow.source.get("generator", ""),
                "tracker": "ground truth (simulator)", "depth": "ground truth (simulator)",
                "notes": "ground truth of the query points of an extracted flow (same points, same order)"},
        intrinsics=demo.camera.K, extrinsics=demo.camera.T_world_camera,
        extra={"anchor_frame": anchor.astype(int).tolist(), "camera": demo.camera_name,
               "image_size": [W, H], "attachment": "flex triangle" if demo.flex_vert is not None else "rigid body"},
    )
    return out, anchor


def carry_points(demo: RenderedDemo, points: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """(T, N, 3) float32: world ``points`` (N, 3), each on the object at its frame ``anchor[i]``,
    carried through all frames with the simulator state (see :func:`ground_truth_for_points`)."""
    points = np.asarray(points, dtype=np.float64)
    N = len(points)
    gt = np.empty((demo.num_frames, N, 3))
    H, W = demo.depth.shape[1:]
    for i in range(N):
        a = int(anchor[i])
        p = points[i]
        if demo.flex_vert is not None:
            k, bary, off = _closest_on_triangles(p, demo.flex_vert[a][demo.flex_tri])
            tri = demo.flex_vert[:, demo.flex_tri[k]]  # (T, 3, 3)
            nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
            gt[:, i] = np.einsum("j,tjk->tk", bary, tri) + off * nrm
            continue
        uv, _ = demo.camera.project(p)
        u, v = int(np.rint(uv[0])), int(np.rint(uv[1]))
        b = demo.seg_body[a, v, u] if (0 <= u < W and 0 <= v < H) else -1
        if b < 0:  # not on the object's pixels at its anchor: the nearest object body
            b = int(np.argmin(np.linalg.norm(demo.body_pos[a] - p, axis=1)))
        local = demo.body_mat[a, b].T @ (p - demo.body_pos[a, b])
        gt[:, i] = np.einsum("tkj,j->tk", demo.body_mat[:, b], local) + demo.body_pos[:, b]
    return gt.astype(np.float32)


class GroundTruthTracker:
    """A 2D "tracker" that returns the true tracks of the query pixels (an oracle for ``extract_flow``).

    Each query pixel is lifted with the rendered depth of frame 0, carried with the simulator state
    (:func:`ground_truth_for_points`) and projected back; visible where the ground truth is. With it
    the extraction's error is that of the depth, the lifting and the camera alone, not the tracker's:
    a check of the camera convention and of the lifting, and the floor of any tracker's error.
    """

    name = "ground truth (simulator)"
    preferred_queries = "fps"

    def __init__(self, demo: RenderedDemo):
        self.demo = demo

    def track(self, video, queries, progress=None):
        demo = self.demo
        q = np.asarray(queries, dtype=np.float64)
        H, W = demo.depth.shape[1:]
        ui = np.clip(np.rint(q[:, 0]).astype(int), 0, W - 1)
        vi = np.clip(np.rint(q[:, 1]).astype(int), 0, H - 1)
        p0 = demo.camera.unproject(q, demo.depth[0, vi, ui])
        gt = carry_points(demo, p0, np.zeros(len(q), dtype=int))
        uv, _ = demo.camera.project(gt)
        if progress:
            progress(demo.num_frames)
        return uv.astype(np.float32), point_visibility(gt, demo.depth, demo.camera)
