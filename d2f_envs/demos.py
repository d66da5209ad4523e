"""Scripted demonstrations in simulation: the source of the shipped flows.

A demonstration moves the task's object along a scripted path with no robot in
the scene (the object is driven kinematically, as if by an unseen hand) and
records the world positions of points on its visible surface (Sweep-Pasta's
granular demonstration is simulated instead: a scripted brush head pushes the
pieces, and the pieces' centres are recorded, see :func:`sweep_pasta_demo`). The result is
labelled ``source.kind = "simulated demonstration"``; flows extracted from
rendered videos of the same demonstrations come with the extraction pipeline.

    python -m d2f_envs.demos D2F-PushT-v0 -o flows/data/push_t/demo.npz --overwrite
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, List, Optional, Tuple

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


class DemoStates:
    """The simulator states of a demonstration, one per flow frame: what a renderer replays.

    Pass one as ``states=`` to a demo function: it gets the demo's compiled model (the scene with
    no robot, plus the demo's own actors such as Sweep-Pasta's brush head or Cover-Bowl's mocap
    hand) and, at every recorded frame, copies of ``qpos`` and ``mocap_pos``. Setting both on an
    ``MjData`` of that model and calling ``mj_forward`` reproduces the frame's scene exactly
    (positions only; velocities are not needed to render). Recording changes nothing in the demo.
    """

    def __init__(self) -> None:
        self.model: Optional[mujoco.MjModel] = None
        self.qpos: List[np.ndarray] = []
        self.mocap_pos: List[np.ndarray] = []

    def record(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        self.model = model
        self.qpos.append(data.qpos.copy())
        self.mocap_pos.append(data.mocap_pos.copy())

    def __len__(self) -> int:
        return len(self.qpos)


def demo_flow(points: np.ndarray, fps: float, task: str, object_name: str, generator: str, extra: dict,
              tracker: str = "ground truth (simulator)") -> ObjectFlow:
    """The ObjectFlow of a simulated demonstration: every point visible, simulator ground truth."""
    return ObjectFlow(
        points=points,
        visible=np.ones(points.shape[:2], dtype=bool),
        fps=fps,
        task=task,
        object_name=object_name,
        source={"kind": "simulated demonstration", "generator": generator, "tracker": tracker,
                "depth": "ground truth (simulator)"},
        extra=extra,
    )


def record_kinematic(model, data, body: int, local: np.ndarray, qadr, path: np.ndarray,
                     states: Optional[DemoStates] = None) -> np.ndarray:
    """World positions (T, N, 3) of ``local`` points fixed on ``body`` while ``qpos[qadr]`` follows ``path``.

    The object is driven kinematically (as if by an unseen hand): no robot, no dynamics.
    ``states``: also record the simulator state of every frame (see :class:`DemoStates`).
    """
    pts = np.empty((len(path), len(local), 3), dtype=np.float32)
    for t, q in enumerate(path):
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        R = data.xmat[body].reshape(3, 3)
        pts[t] = local @ R.T + data.xpos[body]
        if states is not None:
            states.record(model, data)
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


def sweep_pasta_demo(fps: float = 30.0, states: Optional[DemoStates] = None) -> ObjectFlow:
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
    if states is not None:
        states.record(model, data)
    for k, target in enumerate(targets, start=1):
        data.ctrl[:4] = target
        mujoco.mj_step(model, data)
        if k % per_frame == 0:
            frames.append(data.xpos[ids].astype(np.float32))
            if states is not None:
                states.record(model, data)
    pts = np.stack(frames)
    site = model.site("bin")
    n_in = int(in_bin(pts[-1], site.pos, site.size).sum())
    return demo_flow(
        pts, fps, "D2F-SweepPasta-v0", "pasta pieces",
        "d2f_envs.demos.sweep_pasta_demo (physics: a servoed brush head sweeps the pieces along "
        "SWEEP_PASTA_PATH, no robot in scene; the head is not recorded)",
        extra={"pieces": NUM_PIECES, "pieces_in_bin_at_end": n_in, "timestep_s": float(model.opt.timestep)},
        tracker="ground truth (simulator): piece centres",
    )


def push_t_demo(fps: float = 30.0, duration: float = 4.0, spacing: float = 0.01,
                states: Optional[DemoStates] = None) -> ObjectFlow:
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
    pts = record_kinematic(model, data, body, local, qadr, min_jerk_path(goal, fps, duration), states)
    return demo_flow(
        pts, fps, "D2F-PushT-v0", "T-block",
        "d2f_envs.demos.push_t_demo (kinematic min-jerk SE(2) path, no robot in scene)",
        extra={"goal_pose_xy_yaw": goal.tolist(), "start_pose_xy_yaw": [0.0, 0.0, 0.0]},
    )


def _joint_demo(
    env_id: str, asset: str, body: str, joint: str, geoms, view_dir, opening: float, fps: float, duration: float,
    spacing: float, object_name: str, generator: str, extra: dict, states: Optional[DemoStates] = None,
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
    pts = record_kinematic(model, data, bid, local, [qadr], min_jerk_path(np.array([opening]), fps, duration),
                           states)
    return demo_flow(
        pts, fps, env_id, object_name,
        generator,
        extra=dict(extra, joint=joint, joint_start=0.0, joint_end=float(opening)),
    )


def open_drawer_demo(fps: float = 30.0, duration: float = 4.0, spacing: float = 0.01,
                     states: Optional[DemoStates] = None) -> ObjectFlow:
    """The drawer slides out its full 20 cm travel (cabinet at its nominal pose).

    Points: a ``spacing`` grid on the drawer's front face and the front half of its handle bar
    (what a camera in front of the cabinet sees).
    """
    from .tasks.open_drawer import DRAWER_FLOW_GEOMS, DRAWER_VIEW_DIR

    return _joint_demo(
        "D2F-OpenDrawer-v0", "open_drawer.xml", "drawer", "drawer_slide", DRAWER_FLOW_GEOMS, DRAWER_VIEW_DIR,
        opening=0.2, fps=fps, duration=duration, spacing=spacing, object_name="drawer",
        generator="d2f_envs.demos.open_drawer_demo (kinematic min-jerk slide 0 -> 0.2 m, no robot in scene)",
        extra={"opening_m": 0.2}, states=states,
    )


def open_door_demo(fps: float = 30.0, duration: float = 5.0, spacing: float = 0.015,
                   states: Optional[DemoStates] = None) -> ObjectFlow:
    """The cabinet door swings open 90 degrees about its vertical hinge (cabinet at its nominal pose).

    Points: a ``spacing`` grid on the door's front face and the front half of its handle bar.
    """
    from .tasks.open_door import DOOR_FLOW_GEOMS, DOOR_VIEW_DIR

    return _joint_demo(
        "D2F-OpenDoor-v0", "open_door.xml", "door", "door_hinge", DOOR_FLOW_GEOMS, DOOR_VIEW_DIR,
        opening=float(np.pi / 2), fps=fps, duration=duration, spacing=spacing, object_name="cabinet door",
        generator="d2f_envs.demos.open_door_demo (kinematic min-jerk hinge 0 -> 90 deg, no robot in scene)",
        extra={"opening_deg": 90.0}, states=states,
    )


def pick_place_demo(fps: float = 30.0, spacing: float = 0.01, states: Optional[DemoStates] = None) -> ObjectFlow:
    """The bread loaf is lifted 11 cm, carried over the bowl while turning 0.5 rad, and lowered
    onto the bowl's floor (scene at its nominal pose), 5 s in all.

    Three min-jerk moves between (x, y, z, yaw) waypoints, overlapping in time as a hand's
    would (each starts before the last one ends, so the loaf never stops on the way): lift
    (0 - 1.4 s, straight up until its bottom is 4 cm above the bowl's rim), carry (0.9 - 3.7 s,
    to above the bowl's centre, turning about the vertical) and lower (3.2 - 5 s, onto the
    bowl's floor). The overlaps keep the loaf's bottom 4 cm above the rim whenever it or the
    fingers holding it are over the bowl's wall. Points: a ``spacing`` grid on the loaf's side
    facing the robot and rings on the upper half of its crust (what a camera in front of and
    above the table sees).
    """
    from .assets import load_asset
    from .tasks.articulated import link_surface_points
    from .tasks.pick_place import (
        BOWL_FLOOR_TOP, BOWL_RIM_HEIGHT, LOAF_FLOW_GEOMS, LOAF_HALF_HEIGHT, LOAF_VIEW_DIR, yaw_quat,
    )

    model = load_asset("pick_place.xml").compile()
    data = mujoco.MjData(model)
    body = model.body("loaf").id
    q0 = model.joint("loaf_free").qposadr[0]
    qadr = list(range(q0, q0 + 7))
    mujoco.mj_kinematics(model, data)
    world0 = link_surface_points(model, data, "loaf", LOAF_FLOW_GEOMS, np.asarray(LOAF_VIEW_DIR), spacing)
    R0, p0 = data.xmat[body].reshape(3, 3).copy(), data.xpos[body].copy()
    local = (world0 - p0) @ R0
    bowl = model.body("bowl").pos.copy()
    carry_z = BOWL_RIM_HEIGHT + 0.04 + LOAF_HALF_HEIGHT  # loaf centre while carried
    end = np.array([bowl[0], bowl[1], bowl[2] + BOWL_FLOOR_TOP + LOAF_HALF_HEIGHT])
    turn = 0.5
    waypoints = np.array([
        [p0[0], p0[1], p0[2], 0.0],
        [p0[0], p0[1], carry_z, 0.0],
        [end[0], end[1], carry_z, turn],
        [end[0], end[1], end[2], turn],
    ])
    windows = ((0.0, 1.4), (0.9, 3.7), (3.2, 5.0))  # (start, end) of each move (s)
    t = np.arange(int(round(windows[-1][1] * fps)) + 1) / fps
    xyzyaw = np.tile(waypoints[0], (len(t), 1))
    for k, (a, b) in enumerate(windows):
        xyzyaw += min_jerk((t - a) / (b - a))[:, None] * (waypoints[k + 1] - waypoints[k])
    path = np.concatenate([xyzyaw[:, :3], np.stack([yaw_quat(y) for y in xyzyaw[:, 3]])], axis=1)
    pts = record_kinematic(model, data, body, local, qadr, path, states)
    return demo_flow(
        pts, fps, "D2F-PickPlace-v0", "bread loaf",
        "d2f_envs.demos.pick_place_demo (kinematic, overlapping min-jerk lift / carry + "
        "turn / lower of the loaf into the bowl, no robot in scene)",
        extra={
            "waypoints_xyz_yaw": waypoints.tolist(),
            "move_windows_s": [list(w) for w in windows],
            "bowl_pos": bowl.tolist(),
        },
    )


def cover_bowl_demo(
    fps: float = 25.0, duration: float = 4.0, hold: float = 0.5, cloth_shift=(0.0, 0.0), cloth_yaw: float = 0.0,
    states: Optional[DemoStates] = None,
) -> ObjectFlow:
    """The cloth is lifted by the middle of its +x edge, carried over the bowl and laid down over it.

    Simulated, not kinematic: an unseen hand (a mocap body with a ``connect`` equality to the grasp
    vertex, no robot in the scene) moves that one vertex on a min-jerk path from its rest position
    to (0.27, 0, 0.03) m, arcing 15 cm up on the way, over ``duration`` seconds, then holds still
    for ``hold`` seconds while the cloth settles; the rest of the cloth is simulated with the env's
    physics (10 ms steps, ``fps`` must divide 100). Points: the cloth's 81 vertices.

    ``cloth_shift`` (m) / ``cloth_yaw`` (rad, about the cloth's centre) start the cloth elsewhere,
    with the hand's goal moved alike (the same demonstration from another start, as the env's
    reset noise does; benchmarks/cloth_demo_spread.py measures how differently it lands). The
    shipped flow is the default: the cloth at rest where the scene puts it.
    """
    from .tasks.cover_bowl import CLOTH_NAME, GRASP_VERTEX, PINCH_SOLIMP, cover_bowl_scene

    dt = 0.01
    substeps = int(round(1.0 / (fps * dt)))
    if abs(substeps * dt * fps - 1.0) > 1e-9:
        raise ValueError(f"fps must divide {1 / dt:.0f} (whole physics steps per frame), got {fps}")
    spec = cover_bowl_scene()
    spec.option.timestep = dt
    spec.worldbody.add_body(name="hand", mocap=True)
    spec.add_equality(
        name="hand", type=mujoco.mjtEq.mjEQ_CONNECT, objtype=mujoco.mjtObj.mjOBJ_BODY,
        name1=f"{CLOTH_NAME}_{GRASP_VERTEX}", name2="hand", data=np.zeros(12),
        solimp=list(PINCH_SOLIMP),  # held as the env's pinch holds it
    )
    model = spec.compile()
    data = mujoco.MjData(model)
    fid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_FLEX, CLOTH_NAME)
    vadr, vnum = int(model.flex_vertadr[fid]), int(model.flex_vertnum[fid])
    goal, lift = np.array([0.27, 0.0, 0.03]), 0.15
    if np.any(cloth_shift) or cloth_yaw:
        # each vertex's 3 slide joints hold its displacement from the rest position
        bodies = model.flex_vertbodyid[vadr:vadr + vnum]
        rest = model.body_pos[bodies]
        c = rest.mean(axis=0)
        cy, sy = np.cos(cloth_yaw), np.sin(cloth_yaw)
        R = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        t = c - R @ c + np.r_[np.asarray(cloth_shift, dtype=np.float64), 0.0]
        qadr = np.stack([model.jnt_qposadr[model.body_jntadr[b]] + np.arange(3) for b in bodies])
        data.qpos[qadr] = rest @ R.T + t - rest
        goal = R @ goal + t
    mujoco.mj_forward(model, data)
    start = data.flexvert_xpos[vadr + GRASP_VERTEX].copy()
    # the compiler put the hand-side anchor where the hand's body was at qpos0: make it the hand itself
    model.eq_data[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_EQUALITY, "hand"), 3:6] = 0.0
    n = int(round(duration * fps))
    s = min_jerk(np.arange(n + 1) / n)
    path = start + s[:, None] * (goal - start)
    path[:, 2] += lift * np.sin(np.pi * s)
    path = np.concatenate([path, np.repeat(path[-1:], int(round(hold * fps)), axis=0)])
    pts = np.empty((len(path), vnum, 3), dtype=np.float32)
    data.mocap_pos[0] = path[0]
    pts[0] = data.flexvert_xpos[vadr:vadr + vnum]
    if states is not None:
        states.record(model, data)
    for t in range(1, len(path)):
        data.mocap_pos[0] = path[t]
        mujoco.mj_step(model, data, nstep=substeps)
        pts[t] = data.flexvert_xpos[vadr:vadr + vnum]
        if states is not None:
            states.record(model, data)
    if not np.isfinite(pts).all() or data.warning.number.any():
        raise RuntimeError("cover_bowl_demo: the cloth simulation diverged")
    return demo_flow(
        pts, fps, "D2F-CoverBowl-v0", "cloth",
        "d2f_envs.demos.cover_bowl_demo (grasp vertex on a min-jerk arc by a mocap hand, "
        "cloth simulated, no robot in scene)",
        extra={"grasp_vertex": int(GRASP_VERTEX), "grasp_start": start.tolist(), "grasp_goal": goal.tolist(),
               "lift_m": lift},
    )


DEMOS: Dict[str, Callable[..., ObjectFlow]] = {
    "D2F-PushT-v0": push_t_demo,
    "D2F-OpenDrawer-v0": open_drawer_demo,
    "D2F-OpenDoor-v0": open_door_demo,
    "D2F-PickPlace-v0": pick_place_demo,
    "D2F-CoverBowl-v0": cover_bowl_demo,
    "D2F-SweepPasta-v0": sweep_pasta_demo,
}


def demo_with_states(env_id: str) -> Tuple[ObjectFlow, DemoStates]:
    """The task's shipped demonstration (the same flow as :data:`DEMOS`) and its per-frame simulator states."""
    if env_id not in DEMOS:
        raise KeyError(f"no demonstration for {env_id!r}; known: {sorted(DEMOS)}")
    states = DemoStates()
    flow = DEMOS[env_id](states=states)
    if len(states) != flow.num_frames:  # a demo that records states at other moments than its flow frames
        raise RuntimeError(f"{env_id}: {len(states)} recorded states for {flow.num_frames} flow frames")
    return flow, states


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
