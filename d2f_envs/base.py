"""The shared MuJoCo env base: scene assembly, stepping, divergence handling, observations, rendering.

A task subclasses :class:`FlowEnv` and fills in a few fixed override points
(Gymnasium MuJoCo style):

* ``_build_scene()``: the task's scene as an ``MjSpec`` (the base attaches the robot);
* ``_make_binding()``: the :class:`~d2f_envs.bindings.PointBinding` of the task's object class;
* ``_set_nominal_state()``: the object's state the flow starts from (no randomness);
* ``reset_model()``: randomise the start with ``self.np_random``;
* ``_task_success(points)``: the task's own success criterion and extra ``info`` entries.

The base owns the flow, the reward, the robot and the controller, and
``_get_obs`` / ``_get_rew`` are the same for every task whose bound points
correspond one to one to the flow's. A task whose object is a set of
interchangeable pieces (granular: :class:`~d2f_envs.bindings.PieceSetBinding`) sets
``reward_metric = "chamfer"`` and ``reanchor_flow = False`` (no correspondence
to fit a rigid transform to) and overrides the two observation override points:

* ``_make_obs_layout()``: the named slices of the observation vector (the
  task's docstring documents them; ``proprio`` first, ``phase`` last);
* ``_get_obs()``: the observation, a fixed-size, order-independent summary of the pieces.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import os
import re
from collections import deque
from typing import Any, ClassVar, Dict, Optional, Tuple, Union

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from flows import FlowFormatError, ObjectFlow, farthest_point_sampling, shipped_flow
from .bindings import PieceSetBinding, PointBinding, RigidBinding
from .kwargs import (
    Arg, Choice, FlowSource, Integer, Number, Robot, Validated, Weights, check_kwargs, reject_unknown_kwargs,  # noqa: F401  (re-exported)
)
from .reward import ALIGNMENTS, FlowTrackingReward, RewardScales
from .robots import ROBOT_ALIASES, make_robot
from .robots.controller import ControllerConfig, EndEffectorController
from .sim2real import (
    CAMERA_KEYS, OBS_MODES, DomainRandomizer, PointTracker, validate_randomize, validate_real_obs,
)

_DIVERGENCE_WARNINGS = (
    mujoco.mjtWarning.mjWARN_BADQPOS,
    mujoco.mjtWarning.mjWARN_BADQVEL,
    mujoco.mjtWarning.mjWARN_BADQACC,
)
_WARN_IDS = sorted(int(i) for i in _DIVERGENCE_WARNINGS)
# the three are adjacent in mjtWarning: one slice of data.warning.number counts them all
_WARN_SLICE = slice(_WARN_IDS[0], _WARN_IDS[-1] + 1) if _WARN_IDS == list(range(_WARN_IDS[0], _WARN_IDS[-1] + 1)) else None
FlowLike = Union[None, str, os.PathLike, ObjectFlow]


def resolve_flow(flow: FlowLike, env_id: str) -> ObjectFlow:
    """``None`` -> the flow shipped for ``env_id``; a path -> loaded; an ``ObjectFlow`` as is."""
    if flow is None:
        return shipped_flow(env_id)
    if isinstance(flow, ObjectFlow):
        return flow
    if isinstance(flow, (str, os.PathLike)):
        return ObjectFlow.load(flow)
    raise TypeError(f"flow: expected None, a path or an ObjectFlow, got {type(flow).__name__}")


class FlowMismatchError(FlowFormatError):
    """A valid flow that does not fit the env: made for another task or object, or not placed in
    the task's scene (``.field`` says which: ``task``, ``object_name`` or ``points``)."""


def _check_real_obs(value, kwargs) -> None:
    if value is not None and kwargs.get("obs_mode", "state") != "real":
        raise ValueError("real_obs configures the tracker of obs_mode='real'; pass obs_mode='real' too")
    if value is not None:
        validate_real_obs(value)


def _words(name: str) -> set:
    return set(re.findall(r"[a-z0-9]+", name.lower()))


class FlowEnv(gym.Env):
    """Base class of every dream2flow-gym task (see each task's docstring for its manual).

    ## Real Observation (``obs_mode="real"``)
    Only what a robot can measure: the robot adapter's ``proprio`` (joint
    positions and velocities, TCP position, gripper opening: no object state)
    and the object's K tracked points as a camera tracker reports them
    (:class:`~d2f_envs.sim2real.PointTracker`, settings ``real_obs={...}``):

    ================ ============ ================================================
    name             size         meaning
    ================ ============ ================================================
    proprio          robot's      as in ``obs_mode="state"``
    object_points    3K           reported points (world, m): true + N(0,
                                  noise_std) per coordinate, camera extrinsics
                                  error applied, ``latency`` steps old; a lost
                                  point holds its last reported value
    keypoint_visible K            1: measured in the reported frame; 0: lost
                                  (occluded from ``camera`` or random dropout)
    subgoal_delta    3K           flow subgoal minus reported points
    goal_delta       3K           flow's last frame minus reported points
    tcp_to_object    3            reported points' centroid minus TCP
    phase            1            t* / (T - 1) of the reported points
    ================ ============ ================================================

    Occlusion: one batched ray cast (``mj_multiRay``) from the camera to the
    points; a point is lost when a visible geom is hit more than
    ``occlusion_margin`` in front of it (a rigid object's own body is
    excluded). MuJoCo's geom ray cast passes through flexes, so a cloth is ray
    cast on its own (``mj_rayFlex``, its triangles): a point with any part of
    the cloth more than 2 mm in front of it is lost, so a fold hides the layer
    under it while the top layer stays visible. The time alignment (``phase``, subgoal) is the reward's rule
    (:meth:`FlowTrackingReward.measure`) run on the reported points, so no
    entry is computed from the true object state; the reward (and ``info``)
    still uses the true points. No object velocities or contact forces.
    Granular tasks summarise the tracked piece centres instead (their
    docstring). All draws come from the env's seeded ``np_random``. With
    ``real_obs={"privileged_info": True}``, ``info["privileged_obs"]`` holds
    the state observation (``env.state_obs_layout``) for an asymmetric critic.

    ## Domain Randomisation (``randomize={key: (low, high)}``)
    Drawn uniformly per episode at ``reset`` (after restoring the nominal
    model: nothing accumulates) and applied to the env's own ``MjModel``; the
    values are in ``info["randomization"]`` at reset and ``env.randomization``.
    ``friction`` (factor on every geom's sliding friction and every dof's
    frictionloss), ``mass`` (factor on mass and inertia of every movable
    non-robot body), ``damping`` (factor on every dof's damping), ``kp``
    (factor on actuator gains: the position servos' kp), ``action_latency``
    (whole control steps an action waits before reaching the controller; the
    queue starts with zero actions), ``camera_translation`` /
    ``camera_rotation`` (per-axis offsets in m / rad of the tracker's camera
    extrinsics, ``obs_mode="real"`` only), ``size`` (factor on the tracked
    object's linear dimensions, in [0.5, 1.5]: its primitive geoms' sizes and
    positions, sites and centre of mass about the body origin, mass x s^3 and
    inertia x s^5, then ``mass`` on top; the object is lifted by (s - 1) x its
    rest height so it still rests on the table; MuJoCo's derived constants
    (collision bounds, inverse weights) follow). The flow's bound points stay
    body-fixed markers: a real object larger or smaller than the video's still
    follows the same motion, and the tasks' success tests keep their nominal
    geometry (Push-T's coverage compares the nominal T at the block's pose).
    Only tasks whose object is rigid bodies of primitive geoms accept ``size``
    (Push-T, pick-and-place, pasta); the cloth (a flex) and the drawer and door
    (fitted to their cabinets) refuse it, saying why.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    #: the checks of this class's own constructor arguments (subclasses add theirs; see
    #: d2f_envs.kwargs and kwarg_specs()). Every argument of every env is declared here or in a task.
    kwarg_spec: ClassVar[Dict[str, Arg]] = {
        "flow": FlowSource(),
        "robot": Robot(),
        "render_mode": Choice(("rgb_array",), none_ok=True),
        "alignment": Choice(ALIGNMENTS),
        "lookahead": Number(lo=0.0, unit="of seconds"),
        "max_lag": Number(lo=0.0, none_ok=True, unit="of seconds"),
        "reward_scales": Weights(keys=tuple(f.name for f in dataclasses.fields(RewardScales)),
                                 # a negative weight would turn a term's meaning around (pay for error)
                                 value=Number(lo=0.0)),
        "reward_sigma": Number(lo=0.0, lo_open=True, unit="(m)"),
        "success_threshold": Number(lo=0.0, lo_open=True, unit="(m)"),
        # the start noises are tuned at 1; at 10 the T-block already starts 20 cm and the cabinet
        # 1 rad off their nominal poses, so anything larger is a typo, not an experiment
        "reset_noise_scale": Number(lo=0.0, hi=10.0),
        # the offscreen framebuffer is sized to these (rendering.make_renderer): the bound catches
        # a typo (32000) before it asks the GL driver for gigabytes
        "width": Integer(lo=1, hi=8192, unit="of pixels"),
        "height": Integer(lo=1, hi=8192, unit="of pixels"),
        "obs_mode": Choice(OBS_MODES),
        "real_obs": Validated(_check_real_obs, "None or a dict of tracker settings (with obs_mode='real')"),
        "randomize": Validated(lambda v, kw: validate_randomize(v, kw.get("obs_mode", "state")),
                               "None or a dict of (low, high) ranges"),
    }

    def __new__(cls, *args: Any, **kwargs: Any):
        # checked before any __init__ runs: a task's __init__ uses its own arguments before it
        # calls the base's, and nothing is built for an argument that is wrong
        if args:
            bound = inspect.signature(cls.__init__).bind_partial(None, *args).arguments
            bound.pop(next(iter(bound)))  # self
            kwargs = {**bound, **kwargs}
        check_kwargs(cls, kwargs)
        return super().__new__(cls)

    @classmethod
    def kwarg_specs(cls) -> Dict[str, Arg]:
        """Every constructor argument's check, the base's first, a subclass's overriding."""
        out: Dict[str, Arg] = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("kwarg_spec", {}))
        return out

    # ---- task constants (override in subclasses)
    env_id: ClassVar[str] = ""
    #: "rigid" | "articulated" | "deformable" | "granular"
    object_class: ClassVar[str] = "rigid"
    #: robots this task runs on; the first is the default
    robots: ClassVar[Tuple[str, ...]] = ()
    #: controller dofs used by the task's actions
    dofs: ClassVar[Tuple[str, ...]] = ("x", "y")
    #: TCP workspace box (world, metres)
    workspace: ClassVar[Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = ((-1, -1, 0), (1, 1, 1))
    #: where each robot is mounted: name -> (x, y, z, yaw)
    robot_mounts: ClassVar[Dict[str, Tuple[float, float, float, float]]] = {}
    #: TCP working height (m) and home position (world)
    tcp_height: ClassVar[float] = 0.02
    tcp_home: ClassVar[Tuple[float, float, float]] = (0.0, 0.0, 0.02)
    #: physics timestep (s) and control period (s)
    timestep: ClassVar[float] = 0.01
    control_dt: ClassVar[float] = 0.1
    #: number of flow points the observation carries
    obs_keypoints: ClassVar[int] = 8
    #: number of flow points the reward tracks (farthest-point subsample of the flow)
    reward_points: ClassVar[int] = 64
    #: distance between the bound points and a flow frame: "pointwise" (point i is the flow's point i)
    #: or "chamfer" (interchangeable pieces, granular objects), see FlowTrackingReward
    reward_metric: ClassVar[str] = "pointwise"
    #: re-anchor the flow rigidly to the object's start at each reset (needs point correspondence;
    #: False: the flow is used in the world frame as given)
    reanchor_flow: ClassVar[bool] = True
    #: words that name this task's object in a flow's ``object_name`` (lower case; see
    #: _check_flow_labels). Names of other tasks' objects only refuse a flow when none of these match.
    object_words: ClassVar[Tuple[str, ...]] = ()
    #: every visible point of every flow frame must lie within the TCP workspace box grown by this
    #: (m): the object may reach beyond the TCP's box (a door's far edge), but not by more
    flow_scene_margin: ClassVar[float] = 0.25
    #: the flow's frame 0 must start on the object: the median distance (m) of its visible points to
    #: the object's nominal geometry at most this. Rigid flows are re-anchored at reset, so an offset of
    #: a few cm (a camera calibration error) is harmless; tens of cm means another frame or scene.
    flow_on_object_tol: ClassVar[float] = 0.10

    def __init__(
        self,
        flow: FlowLike = None,
        robot: Optional[str] = None,
        render_mode: Optional[str] = None,
        alignment: str = "nearest",
        lookahead: float = 0.3,
        max_lag: Optional[float] = 1.5,
        reward_scales: Optional[Dict[str, float]] = None,
        reward_sigma: float = 0.03,
        success_threshold: float = 0.02,
        reset_noise_scale: float = 1.0,
        width: int = 320,
        height: int = 240,
        obs_mode: str = "state",
        real_obs: Optional[Dict[str, Any]] = None,
        randomize: Optional[Dict[str, Any]] = None,
    ):
        # every argument was checked by __new__ (kwarg_spec); here they are only normalised
        self.obs_mode = obs_mode
        self.real_obs = validate_real_obs(real_obs) if obs_mode == "real" else None
        randomize = validate_randomize(randomize, obs_mode)
        robot = self.robots[0] if robot is None else ROBOT_ALIASES.get(robot, robot)
        self.render_mode = render_mode
        self.robot_name = robot
        self.reset_noise_scale = float(reset_noise_scale)
        self.width, self.height = int(width), int(height)
        self.n_substeps = int(round(self.control_dt / self.timestep))

        # ---- flow: the one format, resampled to the control rate
        source_flow = resolve_flow(flow, self.env_id)
        self._check_flow_labels(source_flow)
        self._check_flow_in_scene(source_flow)
        self.source_flow = source_flow
        self.flow = source_flow.resample(1.0 / self.control_dt).subsample(self.reward_points)

        # ---- scene: task objects + robot, compiled once
        spec = self._build_scene()
        spec.option.timestep = self.timestep
        self.robot = make_robot(robot)
        x, y, z, yaw = self.robot_mounts.get(robot, (0.0, 0.0, 0.0, 0.0))
        self.robot.attach(spec, base_pos=(x, y, z), base_yaw=yaw, tcp_height=self.tcp_height)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.robot.bind(self.model, self.data)
        self.controller = EndEffectorController(self.robot, self.dofs, self.workspace, ControllerConfig())

        # ---- reward: bind the flow's frame 0 to the object in its nominal state
        self.binding: PointBinding = self._make_binding()
        mujoco.mj_resetData(self.model, self.data)
        self._set_nominal_state()
        mujoco.mj_forward(self.model, self.data)
        self._check_flow_on_object(source_flow)
        self.binding.bind(self.model, self.data, self.flow.points[0])
        scales = RewardScales(**(reward_scales or {}))
        self.reward_fn = FlowTrackingReward(
            self.flow,
            scales=scales,
            sigma=reward_sigma,
            lookahead=int(round(lookahead / self.control_dt)),
            max_lag=None if max_lag is None else int(round(max_lag / self.control_dt)),
            alignment=alignment,
            success_threshold=success_threshold,
            dt=self.control_dt,
            metric=self.reward_metric,
        )
        self._kp = farthest_point_sampling(self.flow.points[0], self.obs_keypoints)

        # ---- sim-to-real (see d2f_envs.sim2real): None/empty unless asked for, so the default
        # env takes none of these code paths
        self._randomizer = None
        if randomize:
            # (data is still in the nominal state: randomize["size"] measures the object's rest height in it)
            sized = self._size_bodies() if "size" in randomize else None
            self._randomizer = DomainRandomizer(self.model, self.robot.prefix, randomize, size_bodies=sized, data=self.data)
        self.randomization: Dict[str, Any] = {}  # this episode's drawn values (also info["randomization"])
        self._action_queue = None  # actions waiting to reach the controller (randomize["action_latency"])
        self._tracker = None
        if obs_mode == "real":
            # a rigid object's own body never occludes its points (the tracker follows its faces)
            exclude = getattr(self.binding, "_id", -1) if type(self.binding).__name__ == "RigidBinding" else -1
            self._tracker = PointTracker(self.model, self.real_obs, exclude_body=exclude)
            self._real_t = 0  # the time alignment of the reported points (see _align_reported)
            self._real_sub = 0
            self._kp_vis = self._kp_nvis = None  # the flow's visibility at the keypoints (cached)

        # ---- spaces
        self._state_layout = self._make_obs_layout()  # the obs_mode="state" layout (also state_obs())
        self.obs_layout = self._make_real_obs_layout() if obs_mode == "real" else self._state_layout
        n_obs = max(s.stop for s in self.obs_layout.values())
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.controller.action_dim,), dtype=np.float32)

        self._renderer = None
        self._points = np.zeros((self.flow.num_points, 3))
        self._measured: Dict[str, Any] = {}
        self._warn_count = 0
        # hot-path caches (step() runs at several kHz: see benchmarks/env_step.py); each is keyed
        # by the object it was derived from, so a replaced data/target is picked up
        self._warn_number_of = None  # the MjData whose warning.number view is cached
        self._warn_number = None
        self._target_kp_of = None  # reward_fn.target the (T, K, 3) keypoint target was cut from
        self._target_kp = None

    # ------------------------------------------------------------------ kwargs
    @classmethod
    def valid_kwargs(cls) -> Tuple[str, ...]:
        names = []
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self" and p.name not in names:
                        names.append(p.name)
        return tuple(names)

    # ------------------------------------------------------------------ flow / env match
    def _check_flow_labels(self, flow: ObjectFlow) -> None:
        """Refuse a flow whose meta names another task, or another task's object.

        ``object_name`` is free text (``python -m flows extract --object NAME``), so a name is only
        refused when it has a word of another task's ``object_words`` and none of this task's:
        "cabinet door" in the drawer env is, "handle" or "" is not.
        """
        if flow.task and flow.task != self.env_id:
            raise FlowMismatchError(flow.origin, "task", f"the flow was made for {flow.task!r}, not {self.env_id!r}")
        words = _words(flow.object_name)
        if not words or words & set(self.object_words):
            return
        from . import ENV_IDS

        for env_id, (entry_point, _) in ENV_IDS.items():
            module, name = entry_point.split(":")
            other = getattr(importlib.import_module(module), name)
            hit = words & set(other.object_words)
            if env_id != self.env_id and hit:
                raise FlowMismatchError(
                    flow.origin, "object_name",
                    f"the flow's object {flow.object_name!r} is {env_id}'s object ({sorted(hit)[0]!r}), not "
                    f"{self.env_id}'s (words {list(self.object_words)}); pass the flow to {env_id}, or set "
                    "object_name to name this task's object",
                )

    def _check_flow_in_scene(self, flow: ObjectFlow) -> None:
        """Refuse a flow with a visible point far outside the task's scene (see ``flow_scene_margin``)."""
        lo = np.asarray(self.workspace[0], dtype=np.float64) - self.flow_scene_margin
        hi = np.asarray(self.workspace[1], dtype=np.float64) + self.flow_scene_margin
        p = flow.points.astype(np.float64)
        out = np.linalg.norm(np.maximum(np.maximum(lo - p, p - hi), 0.0), axis=2)
        out[~flow.visible] = 0.0
        if out.max() > 0.0:
            t, i = np.unravel_index(int(out.argmax()), out.shape)
            n = int((out > 0).sum())
            raise FlowMismatchError(
                flow.origin, "points",
                f"visible point {i} of frame {t} at {[round(float(x), 3) for x in p[t, i]]} m is {out[t, i]:.3f} m outside "
                f"{self.env_id}'s scene box {np.round(lo, 3).tolist()}..{np.round(hi, 3).tolist()} (the TCP "
                f"workspace grown by {self.flow_scene_margin} m; {n} of {int(flow.visible.sum())} visible points "
                "are outside): is the flow in the robot-base (world) frame, in metres?",
            )

    def _check_flow_on_object(self, flow: ObjectFlow) -> None:
        """Refuse a flow whose frame 0 does not start on the object (see ``flow_on_object_tol``);
        the model is in its nominal state, where the binding attaches frame 0."""
        vis = np.flatnonzero(flow.visible[0])
        d = self.binding.object_distance(self.model, self.data, flow.points[0, vis])
        med = float(np.median(d))
        if med > self.flow_on_object_tol:
            k = int(d.argmax())
            raise FlowMismatchError(
                flow.origin, "points",
                f"frame 0 does not start on {self.env_id}'s object: its visible points lie a median {med:.3f} m "
                f"from the object at its nominal pose (at most {self.flow_on_object_tol} m expected; point {vis[k]} "
                f"is farthest, {d[k]:.3f} m, at {[round(float(x), 3) for x in flow.points[0, vis[k]]]} m): a flow must start "
                "where the task's object is (its frame 0 is bound to the object)",
            )

    # ------------------------------------------------------------------ override points
    def _build_scene(self) -> mujoco.MjSpec:
        """The task's scene without a robot (typically ``load_asset("<task>.xml")``)."""
        raise NotImplementedError

    def _make_binding(self) -> PointBinding:
        raise NotImplementedError

    def _set_nominal_state(self) -> None:
        """Object state at the flow's frame 0 (deterministic)."""
        raise NotImplementedError

    def reset_model(self) -> None:
        """Randomise the start state with ``self.np_random`` (object and robot)."""
        raise NotImplementedError

    def _task_success(self, points: np.ndarray) -> Tuple[bool, Dict[str, Any]]:
        """The task's own success criterion (AND-ed with reaching the flow's end) and extra info."""
        return True, {}

    @classmethod
    def _task_success_batch(cls, envs, points: np.ndarray):
        """``[env._task_success(p) for env, p in zip(envs, points)]`` for envs of this class (the
        batched vector env calls this; a task may compute it over all envs at once, with the same
        results; d2f_envs.vector uses it only from the class that defines ``_task_success``)."""
        return [env._task_success(p) for env, p in zip(envs, points)]

    def _size_bodies(self) -> np.ndarray:
        """The bodies ``randomize["size"]`` scales: the tracked object's (a rigid binding's body, a piece
        set's pieces). A task whose object cannot be resized at run time raises ValueError saying why."""
        if isinstance(self.binding, RigidBinding):
            return np.array([self.binding._id], dtype=np.intp)
        if isinstance(self.binding, PieceSetBinding):
            return np.array(self.binding._ids, dtype=np.intp)
        raise ValueError(
            f"randomize['size'] is not supported by {self.env_id}: its object ({self.object_class}, "
            f"{type(self.binding).__name__}) is not made of rigid bodies")

    # ------------------------------------------------------------------ observation
    def _make_obs_layout(self) -> Dict[str, slice]:
        sizes = [
            ("proprio", self.robot.proprio_dim),  # robot joint/TCP state, see the robot adapter
            ("object_points", 3 * self.obs_keypoints),  # current positions of K flow points (world)
            ("subgoal_delta", 3 * self.obs_keypoints),  # subgoal frame minus current, same K points
            ("goal_delta", 3 * self.obs_keypoints),  # last flow frame minus current
            ("tcp_to_object", 3),  # object points' centroid minus TCP
            ("phase", 1),  # t* / (T - 1): how far along the flow the object is
        ]
        layout, start = {}, 0
        for name, n in sizes:
            layout[name] = slice(start, start + n)
            start += n
        return layout

    # ------------------------------------------------------------------ observation (obs_mode="real")
    def _tracked_points(self) -> np.ndarray:
        """The true positions of the points the camera tracker follows ((K, 3), world)."""
        return self._points[self._kp]

    def _make_real_obs_layout(self) -> Dict[str, slice]:
        """The state layout with ``keypoint_visible`` (K flags) after ``object_points``."""
        sizes = [(name, s.stop - s.start) for name, s in self._make_obs_layout().items()]
        i = [name for name, _ in sizes].index("object_points") + 1
        sizes.insert(i, ("keypoint_visible", self.obs_keypoints))
        layout, start = {}, 0
        for name, n in sizes:
            layout[name] = slice(start, start + n)
            start += n
        return layout

    def _reported_frame_errors(self, pts: np.ndarray, start: int) -> np.ndarray:
        """Mean distance (m) of the reported points to every flow frame from ``start`` on."""
        tk = self._keypoint_target()[start:]
        if self._kp_vis is None:
            self._kp_vis = self.flow.visible[:, self._kp].astype(np.float64)
            self._kp_nvis = np.maximum(self._kp_vis.sum(axis=1), 1.0)
        d = np.sqrt(((tk - pts) ** 2).sum(axis=2))
        return (d * self._kp_vis[start:]).sum(axis=1) / self._kp_nvis[start:]

    def _keypoint_target(self) -> np.ndarray:
        """(T, K, 3): the reward's target at the observation's keypoints, cached per target."""
        target = self.reward_fn.target
        if self._target_kp_of is not target:
            self._target_kp = target[:, self._kp]
            self._target_kp_of = target
        return self._target_kp

    def _align_reported(self, pts: np.ndarray) -> None:
        """The reward's time alignment rule (FlowTrackingReward.measure), run on the reported
        points: what a robot computes from its tracker, so phase/subgoal leak no true state."""
        rf = self.reward_fn
        last = self.flow.num_frames - 1
        errs = self._reported_frame_errors(pts, self._real_t)
        j = int(errs.argmin())
        # Hysteresis: t* only moves forward, so with a bare argmin the tracker's noise ratchets it
        # along near-identical frames (a static door's phase reached 0.1 in 120 steps). Advance
        # only when the later frame fits better by more than the noise (the reported points' mean
        # distance moves by about noise_std); real motion soon clears that margin.
        if errs[0] - errs[j] <= self._tracker.noise_std:
            j = 0
        t_new = self._real_t + j
        self._real_t = t_new
        clock = int(round(rf.steps * rf.dt * rf.flow.fps))
        if rf.alignment == "nearest":
            sub = min(t_new + rf.lookahead, last)
            if rf.max_lag is not None:
                sub = max(sub, min(clock - rf.max_lag, last))
        else:
            sub = min(clock, last)
        self._real_sub = sub

    def _get_real_obs(self) -> np.ndarray:
        # the state layout's entries computed from the tracker's reported points and their own
        # time alignment, plus the visibility flags (see _make_real_obs_layout); written in place
        pts, vis = self._tracker.reported()
        tk = self._keypoint_target()
        layout = self.obs_layout
        k = pts.shape[0]
        obs = np.empty(layout["phase"].stop)
        obs[layout["proprio"]] = self.robot.proprio(self.data)
        obs[layout["object_points"]] = pts.ravel()
        obs[layout["keypoint_visible"]] = vis
        np.subtract(tk[self._real_sub], pts, out=obs[layout["subgoal_delta"]].reshape(k, 3))
        np.subtract(tk[-1], pts, out=obs[layout["goal_delta"]].reshape(k, 3))
        # (sum / k: numpy's mean() costs more than the rest of this function)
        np.subtract(np.divide(pts.sum(axis=0), k), self.robot.tcp_pos(self.data), out=obs[layout["tcp_to_object"]])
        obs[-1] = self._real_t / max(self.flow.num_frames - 1, 1)
        return obs

    def _track(self, first: bool) -> None:
        """One tracker measurement of this step's true points, and the alignment of what it reports."""
        m, d, rng = self.model, self.data, self.np_random
        if first:
            self._tracker.reset(m, d, self._tracked_points(), rng)
            self._real_t = 0
            self._real_sub = self._measured["subgoal_index"]  # the state rule's start (no step yet)
        else:
            self._tracker.update(m, d, self._tracked_points(), rng)
            self._align_reported(self._tracker.reported()[0])

    def state_obs(self) -> np.ndarray:
        """The ``obs_mode="state"`` observation of the current state (layout: ``state_obs_layout``),
        whatever this env's ``obs_mode``: the privileged input of an asymmetric critic."""
        tracker, self._tracker = self._tracker, None  # _get_obs's state branch (every task's)
        try:
            return self._get_obs()
        finally:
            self._tracker = tracker

    @property
    def state_obs_layout(self) -> Dict[str, slice]:
        return self._state_layout

    # ------------------------------------------------------------------ observation (obs_mode="state")
    def _get_obs(self) -> np.ndarray:
        if self._tracker is not None:
            return self._get_real_obs()
        # layout (see _make_obs_layout): proprio | points | subgoal - points | goal - points |
        # centroid - tcp | phase, written in place into one new array (same values as concatenating)
        pts = self._points[self._kp]
        target = self.reward_fn.target
        if self._target_kp_of is not target:
            self._target_kp = target[:, self._kp]
            self._target_kp_of = target
        tk = self._target_kp
        sub = tk[self._measured["subgoal_index"]]
        goal = tk[-1]
        tcp = self.robot.tcp_pos(self.data)
        phase = self._measured["flow_index"] / max(self.flow.num_frames - 1, 1)
        proprio = self.robot.proprio(self.data)
        k = pts.shape[0]
        a, b = proprio.shape[0], proprio.shape[0] + 3 * k
        obs = np.empty(b + 6 * k + 4)
        obs[:a] = proprio
        obs[a:b] = pts.ravel()
        np.subtract(sub, pts, out=obs[b:b + 3 * k].reshape(k, 3))
        np.subtract(goal, pts, out=obs[b + 3 * k:b + 6 * k].reshape(k, 3))
        np.subtract(np.divide(pts.sum(axis=0), k), tcp, out=obs[b + 6 * k:b + 6 * k + 3])  # == mean
        obs[-1] = phase
        return obs

    # ------------------------------------------------------------------ reward
    def _get_rew(self, action: np.ndarray) -> Tuple[float, Dict[str, Any]]:
        """``(reward, info)``: reward is the sum of ``info``'s ``reward_*`` terms."""
        ok, extra = self._task_success(self._points)
        tcp = self.robot.tcp_pos(self.data) if self.reward_fn.scales.reach else None
        reward, info = self.reward_fn.step(self._points, action, task_success=ok, tcp=tcp)
        info.update(extra)
        # the last valid measurement: the observation's subgoal, and what a diverged step reports
        self._measured = {k: v for k, v in info.items() if not k.startswith("reward_") and k != "is_success"}
        return reward, info

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        m, d = self.model, self.data
        if self._randomizer is not None:
            # drawn first (a fixed order), from the nominal model: nothing accumulates
            self.randomization = self._randomizer.apply(m, self.np_random)
            k = self.randomization.get("action_latency", 0)
            self._action_queue = deque([np.zeros(self.action_space.shape)] * k) if k else None
            if self._tracker is not None:
                self._tracker.set_camera_error(*(self.randomization.get(key) for key in CAMERA_KEYS))
        mujoco.mj_resetData(m, d)
        self._set_nominal_state()
        self.reset_model()
        if self._randomizer is not None:
            self._randomizer.place(m, d)  # a resized object still rests where the task put it
        mujoco.mj_forward(m, d)
        self.controller.reset(m, d)
        self._points = self.binding.points(d)
        self.reward_fn.reset(self._points, anchor=self.reanchor_flow)
        self._measured = {
            "flow_index": 0,
            "subgoal_index": min(self.reward_fn.lookahead, self.flow.num_frames - 1)
            if self.reward_fn.alignment == "nearest" else 0,
        }
        self._warn_count = self._divergence_count()
        info = {
            "tracking_error": self.reward_fn.frame_error(self._points, self._measured["subgoal_index"]),
            "final_error": self.reward_fn.frame_error(self._points, self.flow.num_frames - 1),
            "flow_index": 0,
            "is_success": False,
        }
        if self._tracker is not None:
            self._track(first=True)
            if self.real_obs["privileged_info"]:
                info["privileged_obs"] = self.state_obs()
        if self._randomizer is not None:
            info["randomization"] = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in self.randomization.items()}
        return self._get_obs(), info

    def _divergence_count(self) -> int:
        d = self.data
        if self._warn_number_of is not d:  # a view into d's memory: fetching it costs more than reading it
            self._warn_number = d.warning.number
            self._warn_number_of = d
        n = self._warn_number
        if _WARN_SLICE is not None:
            return sum(n[_WARN_SLICE].tolist())
        return sum(int(n[i]) for i in _WARN_IDS)

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"{self.env_id}: action of shape {action.shape}, expected {self.action_space.shape}")
        m, d = self.model, self.data
        # a.a is finite when every entry is (one cheap call; on overflow nan_to_num is a no-op)
        if not math.isfinite(action.dot(action)):
            # a NaN action would poison the simulation state; treat it as "no motion"
            action = np.nan_to_num(action, nan=0.0, posinf=1.0, neginf=-1.0)
        self.controller.apply(m, d, self._delayed_action(action))
        mujoco.mj_step(m, d, nstep=self.n_substeps)
        reason = self._check_divergence()
        if reason:
            return self._diverged_step(action, reason)
        obs, reward, info = self._finish_step(action)
        return obs, reward, False, False, info

    # (the two halves of step() around the physics, also run by d2f_envs.vector's batched physics)
    def _delayed_action(self, action: np.ndarray) -> np.ndarray:
        """The action that reaches the controller this step: ``action``, or with randomised action
        latency the one of k steps ago (``action`` joins the queue)."""
        if self._action_queue is None:
            return action
        self._action_queue.append(action)
        return self._action_queue.popleft()

    def _finish_step(self, action: np.ndarray) -> Tuple[np.ndarray, float, Dict[str, Any]]:
        """After a healthy physics step: bound points, reward and info, tracker, observation."""
        self._points = self.binding.points(self.data)
        reward, info = self._get_rew(action)
        if self._tracker is not None:
            self._track(first=False)
            if self.real_obs["privileged_info"]:
                info["privileged_obs"] = self.state_obs()
        return self._get_obs(), reward, info

    def _check_divergence(self) -> Optional[str]:
        n = self._divergence_count()
        if n != self._warn_count:
            self._warn_count = n
            names = [i.name for i in _DIVERGENCE_WARNINGS if self.data.warning[i].number]
            return f"physics diverged: MuJoCo warning(s) {names} at t={self.data.time:.3f}s"
        qpos, qvel = self.data.qpos, self.data.qvel
        # q.q is finite when every entry is (MuJoCo keeps |q| < 1e10, far from overflow): one
        # cheap call per vector, with the exact test when it is not
        if not (math.isfinite(qpos.dot(qpos)) and math.isfinite(qvel.dot(qvel))):
            if not (np.isfinite(qpos).all() and np.isfinite(qvel).all()):
                return f"physics diverged: non-finite state at t={self.data.time:.3f}s"
        return None

    def _diverged_step(self, action, reason: str):
        """Truncate the episode with a finite observation and zero reward, saying why."""
        mujoco.mj_resetData(self.model, self.data)
        self._set_nominal_state()
        if self._randomizer is not None:
            self._randomizer.place(self.model, self.data)
        mujoco.mj_forward(self.model, self.data)
        self._warn_count = self._divergence_count()
        self._points = self.binding.points(self.data)
        info = {k: 0.0 for k in ("reward_tracking", "reward_progress", "reward_action", "reward_success")}
        info.update(self._measured)
        info.update({"is_success": False, "truncation_reason": reason, "diverged": True})
        info.setdefault("tracking_error", float("nan"))
        info.setdefault("final_error", float("nan"))
        return self._get_obs(), 0.0, False, True, info

    # ------------------------------------------------------------------ rendering
    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from .rendering import render_frame

        if self._renderer is None:
            from .rendering import make_renderer

            self._renderer = make_renderer(self.model, self.width, self.height)
        sub = self.reward_fn.target[self._measured.get("subgoal_index", 0)]
        goal = self.reward_fn.target[-1]
        return render_frame(self._renderer, self.data, camera="overview", subgoal=sub, goal=goal)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_renderer"] = None
        # a pickled view of data.warning.number comes back as a detached copy: drop the cache
        state["_warn_number_of"] = state["_warn_number"] = None
        return state
