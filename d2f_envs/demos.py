"""Scripted demonstrations in simulation: the source of the shipped flows.

A demonstration moves the task's object along a scripted path with no robot in
the scene (the object is driven kinematically, as if by an unseen hand) and
records the world positions of points on its visible surface (Sweep-Pasta's
granular demonstration is simulated instead: a scripted brush head pushes the
pieces, and the pieces' centres are recorded, see :func:`sweep_pasta_demo`). The result is
labelled ``source.kind = "simulated demonstration"``; flows extracted from
rendered videos of the same demonstrations come with the extraction pipeline.

    python -m d2f_envs.demos D2F-PushT-v0 -o flows/data/push_t/flow.npz --overwrite
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict

import mujoco
import numpy as np

from flows import ObjectFlow


def min_jerk(tau: np.ndarray) -> np.ndarray:
    """Minimum-jerk time scaling s(tau) for tau in [0, 1]."""
    tau = np.clip(tau, 0.0, 1.0)
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5


def min_jerk_path(goal: np.ndarray, fps: float, duration: float) -> np.ndarray:
    """(T, k) joint positions from 0 to ``goal`` over ``duration`` seconds on a min-jerk profile."""
    n = int(round(duration * fps)) + 1
    return min_jerk(np.linspace(0.0, 1.0, n))[:, None] * np.asarray(goal, dtype=np.float64)


def record_kinematic(model, data, body: int, local: np.ndarray, qadr, path: np.ndarray) -> np.ndarray:
    """World positions (T, N, 3) of ``local`` points fixed on ``body`` while ``qpos[qadr]`` follows ``path``.

    The object is driven kinematically (as if by an unseen hand): no robot, no dynamics.
    """
    pts = np.empty((len(path), len(local), 3), dtype=np.float32)
    for t, q in enumerate(path):
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        R = data.xmat[body].reshape(3, 3)
        pts[t] = local @ R.T + data.xpos[body]
    return pts


#: the demonstration's sweeper path: (x, y, z, yaw, seconds to get there) waypoints of the brush
#: head's centre, joined by min-jerk segments. One stroke through the middle of the patch into the
#: bin, then one stroke from each side, angled towards the bin's middle, for the pieces that
#: slipped past the head's ends; the head is lifted 5 cm between strokes.
SWEEP_PASTA_PATH = (
    (-0.21, 0.0, 0.054, 0.0, 0.0),
    (-0.21, 0.0, 0.014, 0.0, 0.3),
    (0.11, 0.0, 0.014, 0.0, 1.4),
    (0.11, 0.0, 0.064, 0.0, 0.3),
    (-0.07, 0.13, 0.064, -0.46, 0.6),
    (-0.07, 0.13, 0.014, -0.46, 0.3),
    (0.10, 0.045, 0.014, -0.46, 0.8),
    (0.10, 0.045, 0.064, -0.46, 0.3),
    (-0.07, -0.13, 0.064, 0.46, 0.6),
    (-0.07, -0.13, 0.014, 0.46, 0.3),
    (0.10, -0.045, 0.014, 0.46, 0.8),
    (0.10, -0.045, 0.064, 0.46, 0.3),
)


def sweep_pasta_demo(fps: float = 30.0) -> ObjectFlow:
    """36 pasta pieces swept from their nominal layout into the bin by a scripted brush (6 s).

    A physically simulated demonstration (unlike the kinematic ones above: the pieces are
    pushed, they tumble and drop): the task's scene (the env's timestep) with no robot,
    and a bare brush head (the robots' head, :func:`~d2f_envs.robots.brush.add_brush_head`)
    on x/y/z slides and a yaw hinge whose stiff position servos follow
    :data:`SWEEP_PASTA_PATH`. Only the pieces are recorded: one flow point per piece
    centre, every ``1 / fps`` s, all visible (a camera above sees into the open bin).
    """
    from .robots.brush import add_brush_head
    from .tasks.sweep_pasta import NUM_PIECES, SweepPastaEnv, build_scene, in_bin

    spec = build_scene()
    spec.option.timestep = SweepPastaEnv.timestep
    sweeper = spec.worldbody.add_body(name="sweeper", gravcomp=1.0)
    for axis, vec in zip("xyz", np.eye(3)):
        sweeper.add_joint(name="sweeper_" + axis, type=mujoco.mjtJoint.mjJNT_SLIDE, axis=vec.tolist())
    sweeper.add_joint(name="sweeper_yaw", type=mujoco.mjtJoint.mjJNT_HINGE, axis=[0, 0, 1], armature=0.01)
    add_brush_head(sweeper, "sweeper_head")
    for name, kp in (("x", 2000.0), ("y", 2000.0), ("z", 2000.0), ("yaw", 50.0)):
        act = spec.add_actuator(name="sweeper_" + name, target="sweeper_" + name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=kp, kv=2.0 * np.sqrt(kp * 0.16))  # about critically damped on the 0.15 kg head
    model = spec.compile()
    data = mujoco.MjData(model)
    qadr = model.jnt_qposadr[model.joint("sweeper_x").id]
    path = np.asarray(SWEEP_PASTA_PATH, dtype=np.float64)
    data.qpos[qadr:qadr + 4] = path[0, :4]
    data.ctrl[:4] = path[0, :4]
    mujoco.mj_forward(model, data)
    ids = np.array([model.body(f"piece_{i:02d}").id for i in range(NUM_PIECES)])
    per_frame = int(round(1.0 / (fps * model.opt.timestep)))
    if abs(per_frame * fps * model.opt.timestep - 1.0) > 1e-9:
        raise ValueError(f"sweep_pasta_demo: fps {fps} is not a whole number of {model.opt.timestep} s steps")
    # the servo targets at every physics step: min-jerk from each waypoint to the next
    targets = []
    for a, b in zip(path[:-1], path[1:]):
        n = int(round(b[4] / model.opt.timestep))
        targets.append(a[None, :4] + min_jerk(np.arange(1, n + 1) / n)[:, None] * (b[:4] - a[:4])[None])
    targets = np.concatenate(targets)
    frames = [data.xpos[ids].astype(np.float32)]
    for k, target in enumerate(targets, start=1):
        data.ctrl[:4] = target
        mujoco.mj_step(model, data)
        if k % per_frame == 0:
            frames.append(data.xpos[ids].astype(np.float32))
    pts = np.stack(frames)
    site = model.site("bin")
    n_in = int(in_bin(pts[-1], site.pos, site.size).sum())
    return ObjectFlow(
        points=pts,
        visible=np.ones(pts.shape[:2], dtype=bool),
        fps=fps,
        task="D2F-SweepPasta-v0",
        object_name="pasta pieces",
        source={
            "kind": "simulated demonstration",
            "generator": "d2f_envs.demos.sweep_pasta_demo (physics: a servoed brush head sweeps the pieces along "
                         "SWEEP_PASTA_PATH, no robot in scene; the head is not recorded)",
            "tracker": "ground truth (simulator): piece centres",
            "depth": "ground truth (simulator)",
        },
        extra={"pieces": NUM_PIECES, "pieces_in_bin_at_end": n_in, "timestep_s": float(model.opt.timestep)},
    )


def push_t_demo(fps: float = 30.0, duration: float = 4.0, spacing: float = 0.01) -> ObjectFlow:
    """The T-block slides and turns from the origin to (0.10, 0.08) m, +0.6 rad.

    Points: a ``spacing`` grid on the block's top face (what a camera above sees).
    """
    from .assets import load_asset
    from .tasks.push_t import T_HALF_HEIGHT, t_block_grid

    model = load_asset("push_t.xml").compile()
    data = mujoco.MjData(model)
    body = model.body("tblock").id
    qadr = [model.joint(j).qposadr[0] for j in ("tblock_x", "tblock_y", "tblock_yaw")]
    local = np.concatenate([t_block_grid(spacing), np.full((len(t_block_grid(spacing)), 1), T_HALF_HEIGHT)], axis=1)
    goal = np.array([0.10, 0.08, 0.6])
    pts = record_kinematic(model, data, body, local, qadr, min_jerk_path(goal, fps, duration))
    return ObjectFlow(
        points=pts,
        visible=np.ones(pts.shape[:2], dtype=bool),
        fps=fps,
        task="D2F-PushT-v0",
        object_name="T-block",
        source={
            "kind": "simulated demonstration",
            "generator": "d2f_envs.demos.push_t_demo (kinematic min-jerk SE(2) path, no robot in scene)",
            "tracker": "ground truth (simulator)",
            "depth": "ground truth (simulator)",
        },
        extra={"goal_pose_xy_yaw": goal.tolist(), "start_pose_xy_yaw": [0.0, 0.0, 0.0]},
    )


def _joint_demo(
    env_id: str, asset: str, body: str, joint: str, geoms, view_dir, opening: float, fps: float, duration: float,
    spacing: float, object_name: str, generator: str, extra: dict,
) -> ObjectFlow:
    """Drive one joint of an articulated scene from 0 to ``opening`` on a min-jerk profile and
    record points on the link's visible surfaces (``geoms``, seen along ``view_dir``, link frame)."""
    from .assets import load_asset
    from .tasks.articulated import link_surface_points

    model = load_asset(asset).compile()
    data = mujoco.MjData(model)
    bid = model.body(body).id
    qadr = model.joint(joint).qposadr[0]
    mujoco.mj_kinematics(model, data)
    world0 = link_surface_points(model, data, body, geoms, np.asarray(view_dir), spacing)
    R0, p0 = data.xmat[bid].reshape(3, 3).copy(), data.xpos[bid].copy()
    local = (world0 - p0) @ R0
    pts = record_kinematic(model, data, bid, local, [qadr], min_jerk_path(np.array([opening]), fps, duration))
    return ObjectFlow(
        points=pts,
        visible=np.ones(pts.shape[:2], dtype=bool),
        fps=fps,
        task=env_id,
        object_name=object_name,
        source={
            "kind": "simulated demonstration",
            "generator": generator,
            "tracker": "ground truth (simulator)",
            "depth": "ground truth (simulator)",
        },
        extra=dict(extra, joint=joint, joint_start=0.0, joint_end=float(opening)),
    )


def open_drawer_demo(fps: float = 30.0, duration: float = 4.0, spacing: float = 0.01) -> ObjectFlow:
    """The drawer slides out its full 20 cm travel (cabinet at its nominal pose).

    Points: a ``spacing`` grid on the drawer's front face and the front half of its handle bar
    (what a camera in front of the cabinet sees).
    """
    from .tasks.open_drawer import DRAWER_FLOW_GEOMS, DRAWER_VIEW_DIR

    return _joint_demo(
        "D2F-OpenDrawer-v0", "open_drawer.xml", "drawer", "drawer_slide", DRAWER_FLOW_GEOMS, DRAWER_VIEW_DIR,
        opening=0.2, fps=fps, duration=duration, spacing=spacing, object_name="drawer",
        generator="d2f_envs.demos.open_drawer_demo (kinematic min-jerk slide 0 -> 0.2 m, no robot in scene)",
        extra={"opening_m": 0.2},
    )


def open_door_demo(fps: float = 30.0, duration: float = 5.0, spacing: float = 0.015) -> ObjectFlow:
    """The cabinet door swings open 90 degrees about its vertical hinge (cabinet at its nominal pose).

    Points: a ``spacing`` grid on the door's front face and the front half of its handle bar.
    """
    from .tasks.open_door import DOOR_FLOW_GEOMS, DOOR_VIEW_DIR

    return _joint_demo(
        "D2F-OpenDoor-v0", "open_door.xml", "door", "door_hinge", DOOR_FLOW_GEOMS, DOOR_VIEW_DIR,
        opening=float(np.pi / 2), fps=fps, duration=duration, spacing=spacing, object_name="cabinet door",
        generator="d2f_envs.demos.open_door_demo (kinematic min-jerk hinge 0 -> 90 deg, no robot in scene)",
        extra={"opening_deg": 90.0},
    )


DEMOS: Dict[str, Callable[[], ObjectFlow]] = {
    "D2F-PushT-v0": push_t_demo,
    "D2F-OpenDrawer-v0": open_drawer_demo,
    "D2F-OpenDoor-v0": open_door_demo,
    "D2F-SweepPasta-v0": sweep_pasta_demo,
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write a task's scripted-demonstration flow.")
    ap.add_argument("env_id", choices=sorted(DEMOS))
    ap.add_argument("-o", "--output", required=True, help="output .npz path")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing file")
    args = ap.parse_args(argv)
    flow = DEMOS[args.env_id]()
    path = flow.save(args.output, overwrite=args.overwrite)
    print(f"wrote {path}: {flow}")


if __name__ == "__main__":
    main()
