"""D2F-PushT-v0: push a T-block along a 3D object flow into the pose where the flow ends."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import mujoco
import numpy as np

from flows import fit_rigid_transform
from ..assets import load_asset
from ..base import FlowEnv
from ..kwargs import Number
from ..bindings import RigidBinding

# T geometry in the block's frame (metres): (x_center, y_center, half_x, half_y) per box
T_BOXES = np.array([
    [0.0, 0.05, 0.10, 0.025],  # bar
    [0.0, -0.05, 0.025, 0.075],  # stem
])
T_HALF_HEIGHT = 0.015
T_AREA = float(np.sum(4 * T_BOXES[:, 2] * T_BOXES[:, 3]))


# the same boxes as (centre, half size) per box coordinate, for the max-norm inside test of coverage():
# inside box k  <=>  max(|x - cx| / hx, |y - cy| / hy) <= 1
_BOX_CENTRE = T_BOXES[:, :2].ravel()  # cx0, cy0, cx1, cy1
_BOX_HALF = T_BOXES[:, 2:].ravel()  # hx0, hy0, hx1, hy1
_BOX_AXIS = np.tile([0, 1], len(T_BOXES))  # the block-frame axis of each of those columns


def t_block_grid(spacing: float = 0.005) -> np.ndarray:
    """Cell centres (M, 2) of a grid covering the T's area, in the block's frame."""
    cells = []
    for cx, cy, hx, hy in T_BOXES:
        xs = np.arange(cx - hx + spacing / 2, cx + hx, spacing)
        ys = np.arange(cy - hy + spacing / 2, cy + hy, spacing)
        cells.append(np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2))
    return np.concatenate(cells)


def inside_t(xy: np.ndarray) -> np.ndarray:
    """Whether block-frame points (M, 2) lie inside the T."""
    inside = np.zeros(len(xy), dtype=bool)
    for cx, cy, hx, hy in T_BOXES:
        inside |= (np.abs(xy[:, 0] - cx) <= hx) & (np.abs(xy[:, 1] - cy) <= hy)
    return inside


class PushTEnv(FlowEnv):
    """Push a T-block so its points follow a 3D object flow (rigid object class).

    ## Description
    A 20 cm T-block (0.2 kg) lies on a table, on planar joints whose friction
    models the table. A robot pushes it with a vertical tool at 1.5 cm height;
    the block must follow the flow and come to rest in the pose where the flow
    ends. The flow is re-anchored rigidly to the block's randomised start, so
    it always describes the same relative motion.

    ## Robots (``robot=``)
    ``"pusher"`` (default): a disk on an XY stage, as in the classic Push-T.
    ``"panda"``: a Franka Panda arm with a cylindrical push tool, driven by the
    shared differential-IK end-effector controller.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: TCP target displacement in world x and y,
    scaled by 3 cm per step (0.3 m/s); the tool height is held at 1.5 cm.

    ## Observation Space
    ``Box(-inf, inf, (proprio + 76,), float64)``, layout in ``env.unwrapped.obs_layout``:

    ============== ============ ==================================================
    name           size         meaning
    ============== ============ ==================================================
    proprio        robot's      pusher: TCP position (3), stage velocity (2);
                                panda: see ``PandaRobot.proprio``
    object_points  24           8 tracked points of the block, world frame (m)
    subgoal_delta  24           flow subgoal minus current, same 8 points
    goal_delta     24           flow's last frame minus current, same 8 points
    tcp_to_object  3            centroid of the 8 points minus TCP
    phase          1            t* / (T - 1), progress along the flow
    ============== ============ ==================================================

    ## Real Observation (``obs_mode="real"``)
    The layout above with ``keypoint_visible`` (8 flags: 1 the point was seen
    in the reported measurement, 0 it holds its last seen value) after
    ``object_points``; every point entry comes from the camera tracker model
    (noise, dropouts, occlusion, latency: see :class:`~d2f_envs.base.FlowEnv`)
    and ``phase``/``subgoal_delta`` from the flow's time alignment of the
    reported points. ``proprio`` is the robot's own measurement.

    ## Rewards
    :class:`~d2f_envs.reward.FlowTrackingReward`, the sum of the terms in
    ``info``: ``reward_tracking`` = exp(-tracking_error / sigma),
    ``reward_progress`` (flow frames advanced / (T - 1), x10),
    ``reward_action`` (-0.05 mean(a^2)) and ``reward_success`` (2 per step
    while successful). Weights are set with ``reward_scales={...}``.

    ## Success (``info["is_success"]``)
    ``final_error`` < ``success_threshold`` (default 2 cm, mean over the
    tracked points against the flow's last frame) AND ``info["coverage"]`` >=
    0.95: the fraction of the T's area at its goal pose covered by the T
    (the classic Push-T criterion).

    ## Episode End
    No termination; truncation after 80 steps (8 s, twice the shipped flow's
    length) by the registered ``TimeLimit``, or at once when the physics
    diverges (``info["truncation_reason"]``).

    ## Arguments
    ================== ============ ====================================================
    argument           default      meaning
    ================== ============ ====================================================
    flow               shipped      ``ObjectFlow``, path to a ``.npz`` flow, or None
    robot              "pusher"     ``"pusher"`` or ``"panda"``
    render_mode        None         ``"rgb_array"`` draws the flow's subgoal (green) and
                                    final (red) points over the scene
    alignment          "nearest"    time alignment: ``"nearest"`` or ``"clock"``
    lookahead          0.3          subgoal lead in seconds (nearest alignment)
    max_lag            1.5          subgoal deadline: at most this many seconds behind
                                    the clock (None: the paper's rule exactly)
    reward_scales      None         dict overriding ``RewardScales`` fields
    reward_sigma       0.03         tracking term length scale (m)
    success_threshold  0.02         final error for success (m)
    coverage_threshold 0.95         goal-area coverage for success
    reset_noise_scale  1.0          x (+-2 cm, +-0.15 rad block; +-3 cm tool) start noise
    width, height      320, 240     render size in pixels
    obs_mode           "state"      ``"real"``: only what a robot can measure; the object's
                                    points come from a camera tracker model (see
                                    "Real Observation")
    real_obs           None         tracker settings over ``sim2real.REAL_OBS_DEFAULTS``
                                    (noise_std 0.003 m, dropout 0.02, occlusion True,
                                    latency 2 steps, camera "overview"); obs_mode="real"
    randomize          None         per-episode domain randomisation ``{key: (low,
                                    high)}``: friction, mass, damping, kp, size
                                    (factors; size: the T-block, resting on the table),
                                    action_latency (steps), camera_translation (m),
                                    camera_rotation (rad); see ``d2f_envs.sim2real``
    ================== ============ ====================================================
    """

    env_id = "D2F-PushT-v0"
    object_class = "rigid"
    robots = ("pusher", "panda")
    dofs = ("x", "y")
    workspace = ((-0.32, -0.32, 0.0), (0.38, 0.38, 0.3))
    robot_mounts = {"pusher": (0.0, 0.0, 0.0, 0.0), "panda": (-0.54, 0.0, 0.0, 0.0)}
    tcp_height = T_HALF_HEIGHT
    tcp_home = (-0.15, -0.10, T_HALF_HEIGHT)
    timestep = 0.01
    control_dt = 0.1

    # start-state noise at reset_noise_scale = 1
    block_xy_noise = 0.02
    block_yaw_noise = 0.15
    tcp_noise = 0.03

    kwarg_spec = {"coverage_threshold": Number(lo=0.0, hi=1.0, lo_open=True, unit="(fraction)")}
    object_words = ("tblock", "tee", "tshape")

    def __init__(self, coverage_threshold: float = 0.95, **kwargs: Any):
        self.coverage_threshold = float(coverage_threshold)
        self._grid = t_block_grid()
        super().__init__(**kwargs)
        self._qadr = np.array([self.model.joint(j).qposadr[0] for j in ("tblock_x", "tblock_y", "tblock_yaw")])
        self._goal_pose = np.eye(4)
        # coverage(): the grid at the goal pose, in world coordinates, cached per goal pose
        # (``_goal_pose`` is replaced, never modified in place, at each reset)
        self._goal_grid_of = None
        self._goal_grid = None
        # coverage() of (goal pose, block pose bytes): see _coverage_cached
        self._cov_of = (None, b"")
        self._cov = 0.0

    # ------------------------------------------------------------------ override points
    def _build_scene(self) -> mujoco.MjSpec:
        return load_asset("push_t.xml")

    def _make_binding(self) -> RigidBinding:
        return RigidBinding("tblock")

    def _set_nominal_state(self) -> None:
        # the shipped flow starts with the block at the origin, yaw 0 (qpos0)
        pass

    def reset_model(self) -> None:
        s = self.reset_noise_scale
        rng = self.np_random
        d = self.data
        d.qpos[self._qadr[0]] += rng.uniform(-1, 1) * self.block_xy_noise * s
        d.qpos[self._qadr[1]] += rng.uniform(-1, 1) * self.block_xy_noise * s
        d.qpos[self._qadr[2]] += rng.uniform(-1, 1) * self.block_yaw_noise * s
        tcp = np.array(self.tcp_home, dtype=np.float64)
        tcp[:2] += rng.uniform(-1, 1, size=2) * self.tcp_noise * s
        self.robot.reset(self.model, d, tcp)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        # the block's goal pose: where its bound points best fit the (re-anchored) last flow frame
        self._goal_pose = fit_rigid_transform(
            self.binding.local_points, self.reward_fn.target[-1], weights=self.flow.visible[-1]
        )
        info["coverage"] = self.coverage()
        return obs, info

    def _task_success(self, points: np.ndarray) -> Tuple[bool, Dict[str, Any]]:
        cov = self.coverage()
        return cov >= self.coverage_threshold, {"coverage": cov}

    @classmethod
    def _task_success_batch(cls, envs, points: np.ndarray):
        """``_task_success`` of several envs at once (d2f_envs.vector): coverage() for all of them as one
        stacked computation (the same IEEE operations per env), recomputed only for the envs whose
        block moved since the last call with the same envs and goals (cached on the first env)."""
        bid = envs[0].binding._id
        xpos = np.array([e.data.xpos[bid] for e in envs])
        xmat = np.array([e.data.xmat[bid] for e in envs])
        cache = envs[0].__dict__.get("_cov_batch")
        if (cache is not None and len(cache["envs"]) == len(envs)
                and all(a is b and a._goal_pose is g for a, b, g in zip(envs, cache["envs"], cache["goals"]))):
            todo = np.flatnonzero((xpos != cache["xpos"]).any(axis=1) | (xmat != cache["xmat"]).any(axis=1))
        else:  # other envs or new goals (a reset): stack the goal grids again
            cache = {"envs": list(envs), "goals": [e._goal_pose for e in envs], "cov": np.zeros(len(envs)),
                     "grids": np.stack([e._goal_grid_world() for e in envs])}
            envs[0]._cov_batch = cache
            todo = np.arange(len(envs))
        cache["xpos"], cache["xmat"] = xpos, xmat
        if len(todo):
            C = xmat[todo].reshape(-1, 3, 3)[:, :, _BOX_AXIS] / _BOX_HALF  # (n, 3, 4), as coverage()'s C
            u = np.matmul(cache["grids"][todo], C)  # per env: the same dgemm as goal_grid @ C
            u -= np.matmul(xpos[todo, None, :], C) + _BOX_CENTRE / _BOX_HALF  # pc @ C + ..., per env
            cache["cov"][todo] = _covered_fraction(u)
        return [(c >= e.coverage_threshold, {"coverage": c}) for e, c in zip(envs, cache["cov"].tolist())]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_cov_batch", None)  # the batched coverage's cache refers to the other envs of a vector env
        return state

    # ------------------------------------------------------------------ task geometry
    def block_pose(self) -> np.ndarray:
        return self.binding.pose(self.data)

    def _goal_grid_world(self) -> np.ndarray:
        """The grid's cell centres at the goal pose, world frame (M, 3), cached per goal pose
        (``_goal_pose`` is replaced, never modified in place, at each reset)."""
        Xg = self._goal_pose
        if self._goal_grid_of is not Xg:
            grid = np.zeros((len(self._grid), 3))
            grid[:, :2] = self._grid
            self._goal_grid = grid @ Xg[:3, :3].T + Xg[:3, 3]
            self._goal_grid_of = Xg
        return self._goal_grid

    def _block_pose_rows(self) -> Tuple[np.ndarray, np.ndarray]:
        d, bid = self.data, self.binding._id
        return d.xmat[bid].reshape(3, 3), d.xpos[bid]

    def _pose_bytes(self) -> bytes:
        d, bid = self.data, self.binding._id
        return d.xpos[bid].tobytes() + d.xmat[bid].tobytes()

    def _coverage_cached(self) -> bool:
        """Whether ``self._cov`` is coverage() now: it is a function of the goal pose and the block's
        pose only. A block at rest (most steps: the tool is elsewhere; 79% of random-action steps)
        keeps its pose to the bit, and then the 700 cells need no new test."""
        goal, pose = self._cov_of
        return goal is self._goal_pose and pose == self._pose_bytes()

    def coverage(self) -> float:
        """Fraction of the T's area at its goal pose that the T covers now (planar).

        The T's area is sampled by ``t_block_grid()`` (5 mm cells, 700 cell centres) at the goal
        pose; a cell counts when its centre lies inside the T at the current pose.
        """
        if self._coverage_cached():
            return self._cov
        Rc, pc = self._block_pose_rows()
        # world -> current block frame: local = Rc^T (w - pc); all boxes' scaled coordinates at once:
        # u[:, j] = (local[:, axis_j] - centre_j) / half_j
        C = Rc[:, _BOX_AXIS] / _BOX_HALF
        u = self._goal_grid_world() @ C
        u -= pc @ C + _BOX_CENTRE / _BOX_HALF
        self._cov_of, self._cov = (self._goal_pose, self._pose_bytes()), _covered_fraction(u[None])[0]
        return self._cov


def _covered_fraction(u: np.ndarray) -> list:
    """Per env, the fraction of cells inside the T, from the cells' scaled box coordinates
    ``u`` (n, M, 4) (modified in place): a cell is inside box k when max(|u_x|, |u_y|) <= 1."""
    np.abs(u, out=u)
    m = np.maximum(u[..., 0::2], u[..., 1::2])
    best = m[..., 0]
    for k in range(1, m.shape[-1]):  # (numpy's min(axis=-1) over 2 columns is ~20x slower)
        best = np.minimum(best, m[..., k])
    # a Python float with numpy 1 and 2
    return [int(c) / best.shape[-1] for c in np.count_nonzero(best <= 1.0, axis=-1).tolist()]
