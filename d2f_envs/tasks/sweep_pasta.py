"""D2F-SweepPasta-v0: sweep 36 pasta pieces into a recessed bin with a brush, following a 3D object flow."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import mujoco
import numpy as np

from ..assets import load_asset
from ..base import FlowEnv
from ..kwargs import Number
from ..bindings import PieceSetBinding

# ---- the pieces: short solid pasta (2.2 cm long, 8 mm thick, 1.5 g: ~1.5 g/cm^3, dry durum pasta)
NUM_PIECES = 36
PIECE_RADIUS = 0.004
PIECE_HALF_LENGTH = 0.007  # half the capsule's cylinder: 2.2 cm overall with the caps
PIECE_MASS = 0.0015
#: dry pasta on wood and on pasta: sliding 0.35, torsional 5 mm, rolling 0.3 mm (see the scene)
PIECE_FRICTION = (0.35, 0.005, 0.0003)
#: the patch the pieces start in (x range, y range; world, m), in front of the bin
PATCH = ((-0.17, -0.02), (-0.075, 0.075))
#: smallest gap between two pieces' surfaces when they are placed (m)
PLACEMENT_GAP = 0.002
#: the nominal layout (the shipped flow's start) is the scatter of this seed
NOMINAL_SEED = 0
#: a piece is in the bin when its centre is inside the opening (x, y) and this far below the table top
IN_BIN_DEPTH = PIECE_RADIUS
#: the brush head's working height: its centre, its bottom 4 mm above the table (robots/brush.py): at the
#: pieces' mid-height, so the head pushes a piece at its middle and never squeezes it into the table
TCP_HEIGHT = 0.014
#: the observation's occupancy grid: 4 x 4 cells over this area (x range, y range; world, m)
OCC_AREA = ((-0.22, 0.26), (-0.16, 0.16))
OCC_CELLS = 4


def piece_quat(yaw: float) -> np.ndarray:
    """Orientation (w, x, y, z) of a piece lying flat with its axis at heading ``yaw``:
    Rz(yaw) Ry(pi/2) (a capsule's axis is its local z)."""
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]),
                       np.array([np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]))
    return out


def _point_segment(p: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """Distances (K,) from points ``p`` to segments ``s0``-``s1`` (each (K, 2) or broadcastable)."""
    d = s1 - s0
    t = np.clip(((p - s0) * d).sum(axis=-1) / np.maximum((d * d).sum(axis=-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (s0 + t[..., None] * d), axis=-1)


def _segment_gaps(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Distances (K,) between the 2-D segment ``a0``-``a1`` and the segments ``b0[k]``-``b1[k]``
    (0 where they cross)."""
    def cross(o, u, v):
        return (u[..., 0] - o[..., 0]) * (v[..., 1] - o[..., 1]) - (u[..., 1] - o[..., 1]) * (v[..., 0] - o[..., 0])

    crossing = (cross(a0, a1, b0) * cross(a0, a1, b1) < 0) & (cross(b0, b1, a0) * cross(b0, b1, a1) < 0)
    gap = np.minimum(np.minimum(_point_segment(a0, b0, b1), _point_segment(a1, b0, b1)),
                     np.minimum(_point_segment(b0, a0, a1), _point_segment(b1, a0, a1)))
    return np.where(crossing, 0.0, gap)


def _axis_ends(poses: np.ndarray, scale: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """The ends of the pieces' axis segments in the plane, for poses (..., 3) rows x, y, yaw
    (pieces ``scale`` times the nominal size)."""
    poses = np.asarray(poses, dtype=np.float64)
    h = PIECE_HALF_LENGTH * scale * np.stack([np.cos(poses[..., 2]), np.sin(poses[..., 2])], axis=-1)
    return poses[..., :2] - h, poses[..., :2] + h


def pieces_clear(poses: np.ndarray, i: int, others, scale: float = 1.0) -> bool:
    """Whether piece ``i`` (pose rows x, y, yaw) keeps ``PLACEMENT_GAP`` from the pieces ``others``
    (all pieces ``scale`` times the nominal size: ``randomize["size"]``)."""
    others = np.asarray([j for j in others if j != i], dtype=np.intp)
    if others.size == 0:
        return True
    a0, a1 = _axis_ends(poses[i], scale)
    b0, b1 = _axis_ends(poses[others], scale)
    return bool((_segment_gaps(a0, a1, b0, b1) >= 2 * PIECE_RADIUS * scale + PLACEMENT_GAP).all())


def scatter_pieces(rng: np.random.Generator, n: int = NUM_PIECES, patch=PATCH, jitter: float = 0.006,
                   tries: int = 200) -> np.ndarray:
    """(n, 3) poses (x, y, yaw) of ``n`` pieces lying in ``patch`` without touching.

    Piece i sits in cell i of a square grid over the patch (ceil(sqrt(n)) cells a side), moved
    by up to ``jitter`` in x and y and turned at random; a draw that makes it touch a piece
    placed before is redrawn (random sequential placement alone jams long before 36 pieces fit).
    """
    (x0, x1), (y0, y1) = patch
    side = int(np.ceil(np.sqrt(n)))
    cx = x0 + (np.arange(side) + 0.5) * (x1 - x0) / side
    cy = y0 + (np.arange(side) + 0.5) * (y1 - y0) / side
    poses = np.zeros((n, 3))
    for i in range(n):
        centre = np.array([cx[i // side], cy[i % side]])
        for _ in range(tries):
            poses[i, :2] = centre + rng.uniform(-jitter, jitter, size=2)
            poses[i, 2] = rng.uniform(0, np.pi)
            if pieces_clear(poses, i, range(i)):
                break
        else:
            raise RuntimeError(f"scatter_pieces: no room for piece {i} of {n} in the patch {patch}")
    return poses


NOMINAL_POSES = scatter_pieces(np.random.default_rng(NOMINAL_SEED))


def build_scene() -> mujoco.MjSpec:
    """The task's scene (table, bin) with the pieces in their nominal layout, and no robot."""
    spec = load_asset("sweep_pasta.xml")
    for i, (x, y, yaw) in enumerate(NOMINAL_POSES):
        body = spec.worldbody.add_body(name=f"piece_{i:02d}", pos=[x, y, PIECE_RADIUS], quat=piece_quat(yaw).tolist())
        body.add_freejoint(name=f"piece_{i:02d}")
        body.add_geom(
            type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[PIECE_RADIUS, PIECE_HALF_LENGTH, 0], mass=PIECE_MASS,
            friction=list(PIECE_FRICTION), rgba=[0.96, 0.82, 0.42, 1], contype=3, conaffinity=3,
        )
    return spec


def bin_box(model: mujoco.MjModel) -> Tuple[np.ndarray, np.ndarray]:
    """(centre, half size) of the bin's opening and depth, from the scene's ``bin`` site."""
    s = model.site("bin")
    return s.pos.copy(), s.size.copy()


def in_bin(points: np.ndarray, centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Which pieces (centres (M, 3)) are in the bin: inside the opening in x and y and sunk at least
    ``IN_BIN_DEPTH`` below the table top (the top of the bin site)."""
    p = np.asarray(points)
    inside = (np.abs(p[:, 0] - centre[0]) <= half[0]) & (np.abs(p[:, 1] - centre[1]) <= half[1])
    return inside & (p[:, 2] < centre[2] + half[2] - IN_BIN_DEPTH)


class SweepPastaEnv(FlowEnv):
    """Sweep pasta pieces with a brush so they follow a 3D object flow into a bin (granular object class).

    ## Description
    36 pieces of short pasta (free capsules 2.2 cm long, 8 mm thick, 1.5 g;
    friction 0.35 on the wooden table and on each other, with rolling
    friction, so a rolled piece stops) lie scattered in a 15 x 15 cm patch
    on a table. 8 cm beyond the patch the table has a recessed bin: a
    14 x 24 cm opening, 3 cm deep. A robot holds a 16 cm wide, 2 cm tall
    brush head 4 mm above the table (at the pieces' mid-height, so a piece is
    pushed, never squeezed under it) and must sweep the pieces over the bin's
    edge, where they drop in. The flow is the pieces' motion in a demonstration (36 points,
    one per piece). The pieces are interchangeable: the reward compares the
    pieces' centres with a flow frame as a set (symmetric Chamfer distance),
    and the flow is used in the world frame (the bin does not move, so there
    is nothing to re-anchor). At reset every piece is moved by up to 1.5 cm
    and turned at random (no two touch).

    ## Robots (``robot=``)
    ``"brush"`` (default): the brush head on an x/y/z stage with a yaw hinge,
    see :class:`~d2f_envs.robots.brush.BrushRobot`.
    ``"panda_brush"``: a Franka Panda holding the same head on a 15 cm handle
    (:class:`~d2f_envs.robots.brush.PandaBrushRobot`), its base on the table
    at the side, 50 cm from the patch's middle line (x -0.05, y -0.50, facing
    +y), driven by differential IK (:class:`~d2f_envs.robots.arm.ArmRobot`).

    ## Action Space
    ``Box(-1, 1, (4,), float32)``: ``(x, y, z, yaw)``. TCP target
    displacement in world x, y, z scaled by 3 cm per step (0.3 m/s), and the
    brush's yaw (its sweep direction) by 0.25 rad per step. The workspace box
    keeps the head's bottom between 4 mm and 16 cm above the table.

    ## Observation Space
    ``Box(-inf, inf, (8 + 34,), float64)``, layout in ``env.unwrapped.obs_layout``.
    The pieces are interchangeable, so every entry is a function of the set of
    piece centres, not of their order:

    ================= ============ ===============================================
    name              size         meaning
    ================= ============ ===============================================
    proprio           8            brush: TCP position (3), yaw (1), x/y/z/yaw
                                   velocities (4); panda_brush: 17 values, see
                                   ``PandaRobot.proprio``
    pieces_centroid   3            mean of the piece centres, world frame (m)
    pieces_spread     3            standard deviation of the centres per axis (m)
    occupancy         16           fraction of the pieces in each cell of a 4 x 4
                                   grid over x in [-0.22, 0.26], y in [-0.16, 0.16]
                                   (row-major in x; outside pieces count in the
                                   nearest cell)
    subgoal_delta     3            subgoal frame's centroid minus pieces_centroid
    goal_delta        3            last frame's centroid minus pieces_centroid
    set_errors        2            Chamfer distance to the subgoal frame and to the
                                   last frame (m)
    tcp_to_object     3            centroid of the pieces not in the bin (all, when
                                   every piece is in) minus TCP
    phase             1            t* / (T - 1), progress along the flow
    ================= ============ ===============================================

    ## Real Observation (``obs_mode="real"``)
    The layout above with ``pieces_visible`` (1: the fraction of the pieces
    seen in the reported measurement) after ``occupancy``; every entry is
    computed from the camera tracker model's piece centres (noise, dropouts
    held at the last seen value, occlusion, latency: see
    :class:`~d2f_envs.base.FlowEnv`), ``set_errors`` and ``phase`` included.

    ## Rewards
    :class:`~d2f_envs.reward.FlowTrackingReward` with ``metric="chamfer"``:
    the sum of the terms in ``info``: ``reward_tracking`` =
    exp(-tracking_error / sigma), ``reward_progress`` (flow frames advanced /
    (T - 1), x10), ``reward_action`` (-0.05 mean(a^2)) and ``reward_success``
    (2 per step while successful). ``tracking_error`` and ``final_error`` are
    symmetric Chamfer distances (m): the mean of the distance from each piece
    to the nearest flow point and from each flow point to the nearest piece,
    averaged.

    ## Success (``info["is_success"]``)
    ``info["in_bin_fraction"]`` >= ``in_bin_threshold`` (default 0.8: the
    fraction of pieces whose centre is inside the bin's opening and sunk at
    least a piece radius below the table top) AND ``final_error`` <
    ``success_threshold`` (default 2.5 cm, Chamfer distance to the flow's
    last frame). The in-bin fraction is the task. The final error is a
    guard that the pieces end where the flow puts them, spread over the bin
    as in the demonstration: all 36 pieces heaped in one corner of the bin
    are 4 cm away and fail it. It is no substitute for the in-bin count (a
    quarter of the pieces left on the table 10 cm before the bin still
    measure under 2 cm: the Chamfer distance averages over the pieces), and
    pieces in the bin never reach zero (they drop in other spots than in the
    demonstration: 1 - 1.7 cm for the scripted sweeper), so it is looser
    than the rigid tasks' 2 cm.

    ## Episode End
    No termination; truncation after 150 steps (15 s, 2.5 times the shipped
    flow's length: the brush needs several strokes to gather the pieces that
    slip past its ends) by the registered ``TimeLimit``, or at once when the
    physics diverges (``info["truncation_reason"]``).

    ## Arguments
    ================== ============ ====================================================
    argument           default      meaning
    ================== ============ ====================================================
    flow               shipped      ``ObjectFlow``, path to a ``.npz`` flow, or None
    robot              "brush"      ``"brush"`` or ``"panda_brush"``
    render_mode        None         ``"rgb_array"`` draws the flow's subgoal (green) and
                                    final (red) points over the scene
    alignment          "nearest"    time alignment: ``"nearest"`` or ``"clock"``
    lookahead          0.3          subgoal lead in seconds (nearest alignment)
    max_lag            1.5          subgoal deadline: at most this many seconds behind
                                    the clock (None: the paper's rule exactly)
    reward_scales      None         dict overriding ``RewardScales`` fields
    reward_sigma       0.03         tracking term length scale (m)
    success_threshold  0.025        final Chamfer error for success (m)
    in_bin_threshold   0.8          fraction of the pieces in the bin for success
    reset_noise_scale  1.0          x (+-1.5 cm per piece, random turn; +-2 cm brush)
                                    start noise
    width, height      320, 240     render size in pixels
    obs_mode           "state"      ``"real"``: only what a robot can measure; the object's
                                    points come from a camera tracker model (see
                                    "Real Observation")
    real_obs           None         tracker settings over ``sim2real.REAL_OBS_DEFAULTS``
                                    (noise_std 0.003 m, dropout 0.02, occlusion True,
                                    latency 2 steps, camera "overview"); obs_mode="real"
    randomize          None         per-episode domain randomisation ``{key: (low,
                                    high)}``: friction, mass, damping, kp, size
                                    (factors; size: every piece, and above 1 the start
                                    layout spreads by the same factor, keeping its
                                    gaps), action_latency (steps), camera_translation
                                    (m), camera_rotation (rad); see ``d2f_envs.sim2real``
    ================== ============ ====================================================
    """

    env_id = "D2F-SweepPasta-v0"
    object_class = "granular"
    robots = ("brush", "panda_brush")
    dofs = ("x", "y", "z", "yaw")
    workspace = ((-0.30, -0.22, TCP_HEIGHT), (0.24, 0.22, TCP_HEIGHT + 0.16))
    #: the Panda stands at the table's side (from behind the patch it cannot fold close enough to
    #: reach the patch's start with the brush down, and the bin would be at the end of its reach)
    robot_mounts = {"brush": (0.0, 0.0, 0.0, 0.0), "panda_brush": (-0.05, -0.50, 0.0, float(np.pi / 2))}
    tcp_height = TCP_HEIGHT
    #: the brush starts behind the patch, 4 cm up (clear of the pieces), facing the bin
    tcp_home = (-0.21, 0.0, TCP_HEIGHT + 0.04)
    #: 1/120 s: 12 substeps per control step, 4 per frame of the 30 fps demonstration; 1.5 g
    #: pieces stay stable (the default contact time constant, 0.02 s, is > 2 timesteps)
    timestep = 1.0 / 120.0
    control_dt = 0.1
    reward_metric = "chamfer"
    reanchor_flow = False

    # start-state noise at reset_noise_scale = 1
    piece_xy_noise = 0.015
    piece_yaw_noise = np.pi
    tcp_noise = 0.02

    kwarg_spec = {"in_bin_threshold": Number(lo=0.0, hi=1.0, lo_open=True, unit="(fraction of the pieces)")}
    object_words = ("pasta", "macaroni", "penne", "noodle", "noodles", "grains", "beans")

    def __init__(self, in_bin_threshold: float = 0.8, success_threshold: float = 0.025, **kwargs: Any):
        self.in_bin_threshold = float(in_bin_threshold)
        super().__init__(success_threshold=success_threshold, **kwargs)
        m = self.model
        self._piece_qadr = np.array([m.joint(f"piece_{i:02d}").qposadr[0] for i in range(NUM_PIECES)])
        self._piece_dadr = np.array([m.joint(f"piece_{i:02d}").dofadr[0] for i in range(NUM_PIECES)])
        self._bin_centre, self._bin_half = bin_box(m)
        self._centroids_of = None  # reward_fn.target the per-frame centroids (T, 3) were computed from
        self._centroids = None
        self._occ_lo = np.array([OCC_AREA[0][0], OCC_AREA[1][0]])
        self._occ_cell = np.array([OCC_AREA[0][1] - OCC_AREA[0][0], OCC_AREA[1][1] - OCC_AREA[1][0]]) / OCC_CELLS

    # ------------------------------------------------------------------ override points
    def _build_scene(self) -> mujoco.MjSpec:
        return build_scene()

    def _make_binding(self) -> PieceSetBinding:
        return PieceSetBinding([f"piece_{i:02d}" for i in range(NUM_PIECES)])

    def _set_nominal_state(self) -> None:
        # the shipped flow starts from the nominal layout, each piece lying flat (qpos0)
        pass

    def _write_poses(self, poses: np.ndarray) -> None:
        d = self.data
        for i, (x, y, yaw) in enumerate(poses):
            a = self._piece_qadr[i]
            d.qpos[a:a + 3] = x, y, PIECE_RADIUS
            d.qpos[a + 3:a + 7] = piece_quat(yaw)
        d.qvel[self._piece_dadr[:, None] + np.arange(6)] = 0.0

    def reset_model(self) -> None:
        s = self.reset_noise_scale
        rng = self.np_random
        size = float(self.randomization.get("size", 1.0))  # this episode's randomize["size"] (drawn first)
        poses = NOMINAL_POSES.copy()
        if size > 1.0:
            # larger pieces would overlap in the nominal layout (its closest pieces are 2 mm apart): the
            # layout is spread about its centre by the same factor, which scales every gap by it too
            c = poses[:, :2].mean(axis=0)
            poses[:, :2] = c + (poses[:, :2] - c) * size
        if s > 0:
            # move the pieces one by one; a move that would make a piece touch another is redrawn
            # (after 20 tries the piece stays where it is): pieces never start interpenetrating
            for i in range(NUM_PIECES):
                nominal = poses[i].copy()
                for _ in range(20):
                    poses[i, :2] = nominal[:2] + rng.uniform(-1, 1, size=2) * self.piece_xy_noise * s
                    poses[i, 2] = nominal[2] + rng.uniform(-1, 1) * self.piece_yaw_noise * s
                    if pieces_clear(poses, i, range(NUM_PIECES), size):
                        break
                else:
                    poses[i] = nominal
        self._write_poses(poses)
        tcp = np.array(self.tcp_home, dtype=np.float64)
        tcp[:2] += rng.uniform(-1, 1, size=2) * self.tcp_noise * s
        self.robot.reset(self.model, self.data, tcp)

    def _task_success(self, points: np.ndarray) -> Tuple[bool, Dict[str, Any]]:
        frac = self.in_bin_fraction(points)
        return frac >= self.in_bin_threshold, {"in_bin_fraction": frac}

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        info["in_bin_fraction"] = self.in_bin_fraction(self._points)
        return obs, info

    # ------------------------------------------------------------------ task geometry
    def in_bin_mask(self, points: np.ndarray) -> np.ndarray:
        """Which pieces (rows of ``points``) are in the bin."""
        return in_bin(points, self._bin_centre, self._bin_half)

    def in_bin_fraction(self, points: np.ndarray) -> float:
        return float(np.count_nonzero(self.in_bin_mask(points)) / len(points))

    # ------------------------------------------------------------------ observation (granular)
    def _make_obs_layout(self) -> Dict[str, slice]:
        sizes = [
            ("proprio", self.robot.proprio_dim),
            ("pieces_centroid", 3),
            ("pieces_spread", 3),
            ("occupancy", OCC_CELLS * OCC_CELLS),
            ("subgoal_delta", 3),
            ("goal_delta", 3),
            ("set_errors", 2),
            ("tcp_to_object", 3),
            ("phase", 1),
        ]
        layout, start = {}, 0
        for name, n in sizes:
            layout[name] = slice(start, start + n)
            start += n
        return layout

    def _frame_centroids(self) -> np.ndarray:
        """(T, 3) centroid of each flow frame's visible points, cached per reward target."""
        target = self.reward_fn.target
        if self._centroids_of is not target:
            vis = self.flow.visible.astype(np.float64)
            self._centroids = (target * vis[:, :, None]).sum(axis=1) / vis.sum(axis=1)[:, None]
            self._centroids_of = target
        return self._centroids

    def _get_obs(self) -> np.ndarray:
        if self._tracker is not None:
            return self._get_real_obs()
        pts = self._points
        sub = self._measured["subgoal_index"]
        measured = self._measured
        if "final_error" in measured:  # this step's reward measured both (the same Chamfer distances)
            errors = measured["tracking_error"], measured["final_error"]
        else:  # at reset
            rf = self.reward_fn
            errors = rf.frame_error(pts, sub), rf.frame_error(pts, self.flow.num_frames - 1)
        return self._summary_obs(pts, sub, measured["flow_index"], errors)

    def _summary_obs(self, pts: np.ndarray, sub: int, flow_index: int, errors, visible=None) -> np.ndarray:
        """The observation of piece positions ``pts`` at subgoal ``sub`` / alignment ``flow_index``
        (the real layout with ``visible``, the state layout without)."""
        layout = self.obs_layout if visible is not None else self._state_layout
        obs = np.empty(layout["phase"].stop)
        obs[layout["proprio"]] = self.robot.proprio(self.data)
        centroid = pts.mean(axis=0)
        obs[layout["pieces_centroid"]] = centroid
        obs[layout["pieces_spread"]] = pts.std(axis=0)
        cell = np.clip(((pts[:, :2] - self._occ_lo) / self._occ_cell).astype(np.intp), 0, OCC_CELLS - 1)
        counts = np.bincount(cell[:, 0] * OCC_CELLS + cell[:, 1], minlength=OCC_CELLS * OCC_CELLS)
        obs[layout["occupancy"]] = counts / len(pts)
        last = self.flow.num_frames - 1
        c = self._frame_centroids()
        obs[layout["subgoal_delta"]] = c[sub] - centroid
        obs[layout["goal_delta"]] = c[last] - centroid
        obs[layout["set_errors"]] = errors
        out = ~self.in_bin_mask(pts)
        loose = pts[out] if out.any() else pts
        obs[layout["tcp_to_object"]] = loose.mean(axis=0) - self.robot.tcp_pos(self.data)
        obs[layout["phase"]] = flow_index / max(last, 1)
        if visible is not None:
            obs[layout["pieces_visible"]] = visible
        return obs

    # ------------------------------------------------------------------ obs_mode="real"
    def _tracked_points(self) -> np.ndarray:
        return self._points  # the tracker follows every piece's centre

    def _make_real_obs_layout(self) -> Dict[str, slice]:
        sizes = [(name, s.stop - s.start) for name, s in self._make_obs_layout().items()]
        sizes.insert([n for n, _ in sizes].index("occupancy") + 1, ("pieces_visible", 1))
        layout, start = {}, 0
        for name, n in sizes:
            layout[name] = slice(start, start + n)
            start += n
        return layout

    def _reported_frame_errors(self, pts: np.ndarray, start: int) -> np.ndarray:
        return self.reward_fn.errors_to_frames(pts, start)  # Chamfer: the pieces as a set

    def _get_real_obs(self) -> np.ndarray:
        pts, vis = self._tracker.reported()
        rf, last = self.reward_fn, self.flow.num_frames - 1
        errors = rf.frame_error(pts, self._real_sub), rf.frame_error(pts, last)
        return self._summary_obs(pts, self._real_sub, self._real_t, errors, visible=vis.mean())
