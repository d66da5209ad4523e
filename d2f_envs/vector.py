"""A batched Gymnasium ``VectorEnv`` for every dream2flow-gym task: one ``mujoco.batch.Batch`` step per control step.

:class:`BatchedFlowVectorEnv` runs ``num_envs`` copies of one task. Each copy is a
real task env (``gym.make(env_id, **kwargs).unwrapped``) that keeps its own model,
``MjData``, controller, binding, reward and random generator, so that everything
that is task logic is the env's own code. What is batched:

* physics: the sub-envs' simulations live in one persistent ``Batch`` and advance
  with ONE ``Batch.step(nstep=n_substeps)`` per control step, on the batch's thread
  pool outside the GIL (bit-identical to a loop of ``mj_step``); with ``groups=G``
  the envs are split over G batches and a group's physics runs in a worker thread
  while Python handles the other groups (pipelined);
* the flow reward's time alignment (the nearest frame, skipping frames a centroid lower
  bound rules out: d2f_envs.alignment; subgoal, terms), the rigid binding's points and the
  observation's flow part: numpy array operations over all sub-envs at once, the same IEEE
  operations in the same order as :class:`~d2f_envs.reward.FlowTrackingReward` and
  ``FlowEnv._get_obs``;
* where the env's own code has a form over several envs (``*_batch`` methods, used only from
  the class that defines the per-env method): the controller for robots with a batched command
  (``EndEffectorController.step_targets``/``step_yaw_grip`` + the robot's ``command_batch``: the
  pusher, and the arms' differential IK, whose kinematics and Jacobian run in MuJoCo over the batch's
  rows: ``Batch.forward``/``Batch.jac``), the task's success
  test (``_task_success_batch``: Push-T's coverage) and the robot's proprioception
  (``proprio_batch``, read from the batch's rows).

Per sub-env Python remains where it is the env's own logic: ``controller.apply`` for the
other robots (floating gripper, brush) and with action latency or equality switches, a copy of the batch's ``MjData`` into the sub-env's
``data`` (``Batch.get_data``, 5-20 us) so that its code reads the state it would have stepped
itself, the divergence check's warning counters, and the success test of tasks without a
batched form.

Semantics are those of ``gymnasium.vector.SyncVectorEnv`` over ``gym.make(env_id)``
envs (``TimeLimit`` from the registry, ``NEXT_STEP`` autoreset, seeds ``seed + i``,
``infos`` as dict of arrays with ``_key`` masks); tests/test_vector_env.py checks that
observations, rewards, flags and infos are identical.

A task whose ``step`` is not ``FlowEnv.step`` cannot have its physics batched and is
refused with a clear error. A task that overrides ``_get_obs``/``_get_rew`` or uses
another reward class or a non-rigid binding gets the per-sub-env path for that part:
its own methods on each sub-env (still with batched physics), never an approximation;
the batched reward is also checked against a copy of the env's reward object at
construction, and the first batched observation against ``FlowEnv._get_obs``.

The batch runs sub-env 0's compiled model for all: the tasks randomise their start through
state (qpos, mocap). With domain randomisation (``randomize={...}``) each sub-env's reset
edits its own model (d2f_envs.sim2real.DomainRandomizer), so each simulation then runs on
its sub-env's model (``Batch.set_models``, set again after every reset); action latency
goes through the sub-env's own action queue. With ``obs_mode="real"`` the observation is
the sub-env's own (its tracker measures after every step); the physics stays batched.
Differences from N single envs: none in results;
a MuJoCo error (``mju_error``) inside one simulation, which would raise from a single
env's ``mj_step``, truncates that sub-env with ``truncation_reason`` instead.

``backend="warp"`` replaces the batches by one MuJoCo Warp ``Data`` with a world per sub-env
(GPU, or Warp's CPU device), for thousands of envs: same controllers, same reward and observation
code (this module), state read back into each sub-env's ``MjData`` after every step; float32 and
Warp's solver make results close to, not identical with, single envs (d2f_envs/warp_backend.py
says what it supports and how failures show; tests/test_warp_backend.py measures the difference).
"""
from __future__ import annotations

import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Union

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from mujoco.batch import Batch, SimulationError

from .base import FlowEnv
from .alignment import frame_centroids, nearest_frames, pair_errors
from .bindings import RigidBinding
from .reward import FlowTrackingReward
from .robots.controller import EndEffectorController

#: physics backends: mujoco.batch (CPU, bit-identical to single envs) or MuJoCo Warp (d2f_envs/warp_backend.py)
BACKENDS = ("mujoco", "warp")

#: the ``mjSTATE_INTEGRATION`` components by MjData field: what a sub-env's reset writes into its batch row
#: (and what the planners' rollouts copy from the env, d2f_rl/planners/rollout_cost.py)
STATE_FIELDS = (
    ("time", mujoco.mjtState.mjSTATE_TIME),
    ("qpos", mujoco.mjtState.mjSTATE_QPOS),
    ("qvel", mujoco.mjtState.mjSTATE_QVEL),
    ("act", mujoco.mjtState.mjSTATE_ACT),
    ("history", mujoco.mjtState.mjSTATE_HISTORY),
    ("qacc_warmstart", mujoco.mjtState.mjSTATE_WARMSTART),
    ("ctrl", mujoco.mjtState.mjSTATE_CTRL),
    ("qfrc_applied", mujoco.mjtState.mjSTATE_QFRC_APPLIED),
    ("xfrc_applied", mujoco.mjtState.mjSTATE_XFRC_APPLIED),
    ("eq_active", mujoco.mjtState.mjSTATE_EQ_ACTIVE),
    ("mocap_pos", mujoco.mjtState.mjSTATE_MOCAP_POS),
    ("mocap_quat", mujoco.mjtState.mjSTATE_MOCAP_QUAT),
    ("userdata", mujoco.mjtState.mjSTATE_USERDATA),
    ("plugin_state", mujoco.mjtState.mjSTATE_PLUGIN),
    ("plastic", mujoco.mjtState.mjSTATE_PLASTIC),
)


def _defined_together(cls: type, name: str) -> bool:
    """Whether the class in ``cls``'s MRO that defines method ``name`` also defines ``name + "_batch"``
    (its form over several envs): a subclass that overrides only ``name`` must not get a stale batch form."""
    owner = next(c for c in cls.__mro__ if name in vars(c))
    return name + "_batch" in vars(owner)


class _SimGroup:
    """The simulations of sub-envs ``lo .. hi-1`` in one persistent Batch, with the views the env reads."""

    def __init__(self, model: mujoco.MjModel, ids: range, nthread: int, want_poses: bool):
        self.lo, self.hi = ids.start, ids.stop
        self.batch = Batch(model, nsim=self.hi - self.lo, nthread=nthread, persistent=True)
        self.state_views = [(name, self.batch.bind(name)) for name, bit in STATE_FIELDS
                            if mujoco.mj_stateSize(model, bit)]
        self.ctrl = self.batch.bind("ctrl")
        self.qpos, self.qvel = self.batch.bind("qpos"), self.batch.bind("qvel")
        # the pinch of the cloth task switches equality constraints in the controller: an input like ctrl
        self.eq_active = self.batch.bind("eq_active") if model.neq else None
        if want_poses:
            self.xpos, self.xmat = self.batch.bind("xpos"), self.batch.bind("xmat")
            self.site_xpos = self.batch.bind("site_xpos")
            self.site_xmat = self.batch.bind("site_xmat")

    def load(self, row: int, data: mujoco.MjData) -> None:
        """Make simulation ``row`` ``data``'s state (after the sub-env's reset)."""
        self.batch.reset(ids=[row], stage=mujoco.mjtStage.mjSTAGE_NONE)  # also clears its warning counters
        for name, view in self.state_views:
            view[row] = getattr(data, name)

    def set_inputs(self, row: int, data: mujoco.MjData) -> None:
        """What the sub-env's controller just wrote into ``data``: ctrl and the equality switches."""
        self.ctrl[row] = data.ctrl
        if self.eq_active is not None:
            self.eq_active[row] = data.eq_active

    def finite(self, rows: List[int]) -> List[bool]:
        """Per row: whether its qpos and qvel are finite (FlowEnv._check_divergence's state test)."""
        return (np.isfinite(self.qpos[rows]).all(axis=1) & np.isfinite(self.qvel[rows]).all(axis=1)).tolist()

    def get_data(self, row: int, data: mujoco.MjData) -> None:
        """``data`` <- simulation ``row`` (a copy of the batch's MjData)."""
        self.batch.get_data(row, data)

    def step(self, ks: List[int], nstep: int) -> Dict[int, str]:
        """Step the simulations of sub-envs ``ks``; returns {row: why} of those that failed (a MuJoCo
        error; they kept their state; the others completed). Runs in the physics thread when pipelined."""
        rows = None if len(ks) == self.hi - self.lo else [k - self.lo for k in ks]
        try:
            self.batch.step(ids=rows, nstep=nstep)
        except SimulationError as e:
            return {int(i): f"MuJoCo error {self.batch.error(int(i))!r}" for i in e.ids}  # ids: rows of this batch
        return {}


class BatchedFlowVectorEnv(VectorEnv):
    """``num_envs`` copies of ``env_id`` with batched physics, reward and observations (see the module docstring).

    Args:
        env_id: a registered dream2flow-gym id (``d2f_envs.ENV_IDS``).
        num_envs: number of sub-envs.
        max_episode_steps: ``TimeLimit``; None: the registry's.
        nthread: physics threads of each group's Batch; None: 1 when pipelined (the physics worker
            thread is the second core's work), else 0 (all CPUs).
        groups: how many Batches the envs are split into; with more than one, a group's physics runs
            in a worker thread while Python handles the controls and results of the others (pipelined).
            None: 1 (physics on the batch's own thread pool, Python waits for it).
        vectorize: False runs the reward and observation per sub-env with the env's own
            methods (the reference path; physics stays batched).
        profile: accumulate seconds per phase in ``self.timings`` (benchmarks).
        backend: ``"mujoco"`` (``mujoco.batch`` on the CPU cores, bit-identical to single envs) or
            ``"warp"`` (all sub-envs as the worlds of one MuJoCo Warp ``Data``, for thousands of envs on a
            GPU; float32 and Warp's own solver: close to, not identical with, single envs; needs
            ``pip install 'dream2flow-gym[warp]'``; see :mod:`d2f_envs.warp_backend`).
        device: the warp backend's Warp device (``"cuda:0"``, ``"cpu"``); None: CUDA if available, else CPU.
        nconmax, njmax: the warp backend's contact and constraint buffer sizes per world (MuJoCo Warp's
            buffers are fixed; an overflow truncates the env, saying so); None: 4x the nominal scene's
            contacts (at least 64) and their constraint rows (see ``WarpSimGroup``).
        **env_kwargs: passed to every sub-env (``robot=``, ``flow=``, ...).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    #: the arms' kinematics refresh and Jacobian in the batch (Batch.forward + Batch.jac: two thread-pool
    #: round trips) rather than per env on its synced MjData (three MuJoCo calls each); same results
    _ik_in_batch = False

    def __init__(self, env_id: str, num_envs: int, *, max_episode_steps: Optional[int] = None,
                 nthread: Optional[int] = None, groups: Optional[int] = None, vectorize: bool = True,
                 profile: bool = False, backend: str = "mujoco", device: Optional[str] = None,
                 nconmax: Optional[int] = None, njmax: Optional[int] = None, **env_kwargs: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "mujoco" and (device, nconmax, njmax) != (None, None, None):
            raise ValueError("device, nconmax and njmax configure backend='warp'; backend='mujoco' has none")
        if backend == "warp" and (groups not in (None, 1) or nthread is not None):
            raise ValueError("groups and nthread configure backend='mujoco' (CPU batches and threads); "
                             "backend='warp' runs all envs as the worlds of one device Data")
        self.backend = backend
        if backend == "warp":  # a missing optional package fails here, before num_envs envs are built
            from .warp_backend import import_warp

            import_warp()
        if env_kwargs.get("render_mode") is not None:
            raise ValueError("BatchedFlowVectorEnv does not render; use gym.make_vec(..., vectorization_mode='sync')")
        env_kwargs.pop("render_mode", None)
        spec = gym.spec(env_id)
        self.env_id = env_id
        self.num_envs = int(num_envs)
        self.max_episode_steps = spec.max_episode_steps if max_episode_steps is None else int(max_episode_steps)
        # real task envs: each owns its model, data, controller, binding, reward and np_random
        self.envs: List[FlowEnv] = [gym.make(env_id, disable_env_checker=True, **env_kwargs).unwrapped
                                    for _ in range(self.num_envs)]
        e0 = self.envs[0]
        cls = type(e0)
        if not isinstance(e0, FlowEnv):
            raise TypeError(f"{env_id}: {cls.__name__} is not a FlowEnv; BatchedFlowVectorEnv batches FlowEnv tasks")
        if cls.step is not FlowEnv.step:
            raise NotImplementedError(
                f"{env_id}: {cls.__name__} overrides step(), so its physics cannot be batched; "
                "use gym.make_vec(..., vectorization_mode='sync') or 'async'")
        self.model = e0.model
        self.n_substeps = e0.n_substeps
        self.single_observation_space = e0.observation_space
        self.single_action_space = e0.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self.spec = None

        # ---- which parts can be computed over all sub-envs at once (else: the env's own methods per sub-env)
        rf = e0.reward_fn
        self.vectorized = bool(vectorize) and (
            cls._get_obs is FlowEnv._get_obs and cls._get_rew is FlowEnv._get_rew
            and cls._make_obs_layout is FlowEnv._make_obs_layout and type(rf) is FlowTrackingReward
            and not rf.scales.reach  # the optional reach term is not in the batched kernel: each env's own reward
            and e0._tracker is None)  # obs_mode="real": the tracker's observation is each env's own
        self.rigid_points = bool(vectorize) and type(e0.binding) is RigidBinding
        # the controller over envs at once: a robot with a batched command (the pusher), the standard
        # controller without yaw/grip dofs, no action latency (an action queue per env), no equality switches
        ctl = e0.controller
        self._batched_controls = (
            bool(vectorize) and _defined_together(type(e0.robot), "command") and type(ctl) is EndEffectorController
            and ctl._pos_any and e0._randomizer is None and not e0.model.neq and backend == "mujoco")
        self._batched_proprio = bool(vectorize) and backend == "mujoco" and _defined_together(type(e0.robot), "proprio")
        # the task's success test over envs at once, when the class that defines _task_success also
        # defines its batched form (a subclass overriding only _task_success gets the per-env loop)
        self._success_batch = (cls._task_success_batch if vectorize and _defined_together(cls, "_task_success")
                               else FlowEnv._task_success_batch.__func__.__get__(cls))

        # ---- the batches: every sub-env's model is compiled from the same spec and kwargs, so one model serves
        #      all (tasks randomise through state: qpos, mocap, never model edits). The envs are split into
        #      `groups` contiguous ranges, one Batch each, so that one group's physics (a worker thread,
        #      outside the GIL) runs while Python works on another group's controls and results.
        E = self.num_envs
        if groups is None:  # pipelining only pays with a core to spare for the physics thread (see benchmarks)
            groups = 1
        groups = max(1, min(int(groups), E))
        self.pipelined = groups > 1
        nthread = (1 if self.pipelined else 0) if nthread is None else int(nthread)
        bounds = np.linspace(0, E, groups + 1).round().astype(int).tolist()
        want_poses = self.rigid_points or self.vectorized or self._batched_controls
        if backend == "warp":  # one group: all sub-envs are the worlds of one MuJoCo Warp Data
            from .warp_backend import WarpSimGroup, check_supported

            check_supported(e0, env_id)
            self._groups = [WarpSimGroup(self.model, E, device=device, nconmax=nconmax, njmax=njmax,
                                         want_poses=want_poses, nominal=e0.data)]
        else:
            self._groups = [_SimGroup(self.model, range(lo, hi), nthread, want_poses=want_poses)
                            for lo, hi in zip(bounds[:-1], bounds[1:])]
        self._group_of = np.repeat(np.arange(groups), np.diff(bounds)).tolist()
        # domain randomisation edits each sub-env's own model at its reset: each simulation runs on it
        self.randomized = e0._randomizer is not None
        if self.randomized and backend == "mujoco":
            for g in self._groups:
                g.batch.set_models([e.model for e in self.envs[g.lo:g.hi]])
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d2f-physics") if self.pipelined else None
        if self.rigid_points:
            self._body = e0.binding._id
            self._local = np.stack([e.binding.local_points for e in self.envs])  # (E, N, 3)
        if self.vectorized:
            self._tcp_site = e0.robot.tcp_site_id
            T, N = rf._vis.shape
            self._T = T
            self._vis, self._nvis, self._all_visible = rf._vis, rf._nvis, rf._all_visible
            self._planes = np.empty((self.num_envs, T, 3, N))  # each sub-env's target as per-frame coordinate planes
            self._cents = np.empty((self.num_envs, T, 3))  # their frame centroids (d2f_envs.alignment)
            self._kp = e0._kp
            self._target_kp = np.empty((self.num_envs, T, len(self._kp), 3))
            self._t_star = np.zeros(self.num_envs, dtype=np.int64)
            self._steps = np.zeros(self.num_envs, dtype=np.int64)
            self._proprio_dim = e0.robot.proprio_dim
            if not self._reward_kernel_matches_reward():
                warnings.warn(f"{env_id}: {type(rf).__name__} computes something the batched reward does not "
                              "mirror; using each env's own _get_rew/_get_obs (physics stays batched)")
                self.vectorized = False
        self._obs_checked = False  # the first vectorised observation is checked against the env's own _get_obs

        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._obs = np.zeros((self.num_envs,) + self.single_observation_space.shape)
        self.profile = bool(profile)
        self.timings: Dict[str, float] = {}

    # ------------------------------------------------------------------ helpers
    def _tick(self, name: str, t0: float) -> float:
        t = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + t - t0
        return t

    def _load_row(self, k: int) -> None:
        """Make sub-env k's simulation in its batch the sub-env's current state (after a reset)."""
        g = self._groups[self._group_of[k]]
        g.load(k - g.lo, self.envs[k].data)

    def _after_reset(self, k: int) -> None:
        """Copy sub-env k's new episode (target, alignment clock) into the vectorised state."""
        if self.randomized and self.backend == "mujoco":  # its reset edited its model: the batch reads
            # models again after an edit (the warp backend refuses model edits: one shared device Model)
            g = self._groups[self._group_of[k]]
            g.batch.set_models([e.model for e in self.envs[g.lo:g.hi]])
        self._load_row(k)
        self._elapsed[k] = 0
        if self.vectorized:
            rf = self.envs[k].reward_fn
            self._planes[k] = rf.target.transpose(0, 2, 1)
            self._cents[k] = frame_centroids(rf.target, self._vis, self._nvis, self._all_visible)
            self._target_kp[k] = rf.target[:, self._kp]
            self._t_star[k] = rf.t_star
            self._steps[k] = rf.steps
        if self.rigid_points:
            self._local[k] = self.envs[k].binding.local_points

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: Union[None, int, Sequence[Optional[int]]] = None, options: Optional[dict] = None):
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed: a list of {len(seeds)} seeds for {self.num_envs} envs")
        options = dict(options) if options else None
        mask = None
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options.pop("reset_mask"))
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with a True")
        ids = range(self.num_envs) if mask is None else np.flatnonzero(mask).tolist()
        infos: Dict[str, Any] = {}
        for k in ids:
            self._obs[k], info = self.envs[k].reset(seed=seeds[k], options=options or None)
            self._after_reset(k)
            self._autoreset[k] = False
            infos = self._add_info(infos, info, k)
        return self._obs.copy(), infos

    def step(self, actions):
        actions = np.asarray(actions)
        E = self.num_envs
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions of shape {actions.shape}, expected {self.action_space.shape}")
        prof = self.profile
        t0 = time.perf_counter() if prof else 0.0
        envs = self.envs
        rewards = np.zeros(E)
        terminated = np.zeros(E, dtype=bool)
        truncated = np.zeros(E, dtype=bool)
        extra_infos: List[tuple] = []  # (k, info dict) merged after the array-built entries

        # ---- NEXT_STEP autoreset: an env done at the last step is reset now instead of stepped
        reset_ids = np.flatnonzero(self._autoreset).tolist()
        for k in reset_ids:
            self._obs[k], info = envs[k].reset()
            self._after_reset(k)
            extra_infos.append((k, info))
        step_ids = np.flatnonzero(~self._autoreset).tolist() if reset_ids else list(range(E))
        if not step_ids:
            self._autoreset[:] = False
            infos: Dict[str, Any] = {}
            for k, info in extra_infos:
                infos = self._add_info(infos, info, k)
            return self._obs.copy(), rewards, terminated, truncated, infos

        # ---- per group: actions -> ctrl (the env's own controller on its own data, as FlowEnv.step), then
        #      that group's physics, one Batch.step, in the worker thread while the next group's controls run
        acts: List[Any] = [None] * E
        stepped = [[k for k in step_ids if g.lo <= k < g.hi] for g in self._groups]
        pending = []
        for g, ks in zip(self._groups, stepped):
            if not ks:
                pending.append(None)
                continue
            self._apply_controls(g, ks, actions, acts)
            if prof:
                t0 = self._tick("controller", t0)
            if self._executor is not None:
                pending.append(self._executor.submit(g.step, ks, self.n_substeps))
            else:
                pending.append(g.step(ks, self.n_substeps))
            if prof:
                t0 = self._tick("physics", t0)  # pipelined: only the hand-over; the wait is physics_wait

        # ---- per group, as its physics completes: each env's data <- its simulation, the env's own
        #      divergence check, then the per-env parts of the reward/observation (overlapping the next
        #      group's physics)
        healthy, diverged = [], []
        parts = []  # vectorised path: per group (healthy ids, points, tcp)
        infos: Dict[str, Any] = {}
        for g, ks, res in zip(self._groups, stepped, pending):
            if res is None:
                continue
            failed = res.result() if self._executor is not None else res
            if prof:
                t0 = self._tick("physics_wait", t0)
            h = []
            # the finiteness half of each env's divergence check, over the group's rows at once
            finite = g.finite([k - g.lo for k in ks]) if self.backend == "mujoco" else None
            for j, k in enumerate(ks):
                env = envs[k]
                g.get_data(k - g.lo, env.data)
                if finite is not None and finite[j] and env._divergence_count() == env._warn_count:
                    reason = None  # what env._check_divergence() finds without a new warning in a finite state
                else:
                    reason = env._check_divergence()
                if k - g.lo in failed:  # a single env's mj_step would have raised here; truncate instead
                    reason = f"physics failed: {failed[k - g.lo]} at t={env.data.time:.3f}s"
                if reason:
                    diverged.append((k, reason))
                else:
                    h.append(k)
            healthy += h
            if prof:
                t0 = self._tick("sync", t0)
            if not h:
                continue
            if self.vectorized:
                parts.append(self._per_env_part(g, h, extra_infos))
                if prof:
                    t0 = time.perf_counter()  # _per_env_part accounts its own phases
            else:
                for k in h:  # FlowEnv.step after its physics: points, reward, tracker, observation
                    self._obs[k], rewards[k], info = envs[k]._finish_step(acts[k])
                    extra_infos.append((k, info))
                if prof:
                    t0 = self._tick("reward_obs_per_env", t0)
        self._elapsed[step_ids] += 1

        if parts:
            infos = self._vectorized_rewards_obs(parts, acts, rewards, t0)
            if not self._obs_checked:  # FlowEnv._get_obs changed under us? then use it, never a stale copy
                self._obs_checked = True
                if not np.array_equal(envs[healthy[0]]._get_obs(), self._obs[healthy[0]]):
                    warnings.warn(f"{self.env_id}: the batched observation differs from FlowEnv._get_obs; "
                                  "using each env's own _get_rew/_get_obs from now on")
                    self.vectorized = False
                    for k in healthy:
                        self._obs[k] = envs[k]._get_obs()
        for k, reason in sorted(diverged):
            self._obs[k], rewards[k], terminated[k], truncated[k], info = envs[k]._diverged_step(acts[k], reason)
            self._load_row(k)  # the env reset its data to the nominal state: keep the batch in step
            extra_infos.append((k, info))
        extra_infos.sort(key=lambda x: x[0])  # env order, as SyncVectorEnv creates arrays
        if not self._add_uniform_infos(infos, extra_infos):
            for k, info in extra_infos:
                infos = self._add_info(infos, info, k)

        # ---- TimeLimit, then NEXT_STEP autoreset flags
        truncated[step_ids] |= self._elapsed[step_ids] >= self.max_episode_steps
        self._autoreset = terminated | truncated
        return self._obs.copy(), rewards, terminated, truncated, infos

    def _reward_kernel(self, pts, t_old, steps, planes, cents, acts, task_ok, reward_fns) -> Dict[str, np.ndarray]:
        """FlowTrackingReward.step (measure, terms, success, reward) for E_h envs at once.

        ``pts`` (E_h, N, 3); ``t_old`` t* before the step; ``steps`` the step counts after it; ``planes``
        (E_h, T, 3, N) the re-anchored targets, ``cents`` (E_h, T, 3) their frame centroids
        (d2f_envs.alignment); ``acts`` the float64 actions; ``task_ok`` the task's criterion.
        Same IEEE operations in the same order as the reward's own code, element by element.
        """
        rf0 = self.envs[0].reward_fn
        nh = len(pts)
        # ---- time alignment (FlowTrackingReward.measure): the nearest frame from each env's t* on, computing
        #      exact errors (FlowTrackingReward._errors_from's arithmetic) only for frames that can be nearest
        vis, nvis, allv = self._vis, self._nvis, self._all_visible
        pts_t = np.ascontiguousarray(pts.transpose(0, 2, 1))  # (E_h, 3, N)
        t_new = nearest_frames(planes, cents, pts, pts_t, t_old, vis, nvis, allv)
        last = self._T - 1
        clock = np.rint(steps * rf0.dt * rf0.flow.fps).astype(np.int64)  # == int(round(.)): half to even
        if rf0.alignment == "nearest":
            sub = np.minimum(t_new + rf0.lookahead, last)
            if rf0.max_lag is not None:
                sub = np.maximum(sub, np.minimum(clock - rf0.max_lag, last))
        else:
            sub = np.minimum(clock, last)
        rows = np.arange(nh)
        at = pair_errors(planes, pts_t, np.concatenate([rows, rows]), np.concatenate([sub, np.full(nh, last)]),
                         vis, nvis, allv)
        tracking, final = at[:nh], at[nh:]
        for j in np.flatnonzero(sub < t_old).tolist():  # clock alignment only: the reward's frame_error path
            tracking[j] = reward_fns[j].frame_error(pts[j], int(sub[j]))
        progress = t_new - t_old
        # ---- terms (FlowTrackingReward.terms): math.exp / a @ a per env keep libm's and BLAS's roundings
        s = rf0.scales
        sigma = rf0.sigma
        r_track = np.array([s.tracking * math.exp(-e / sigma) for e in tracking.tolist()])
        r_prog = s.progress * progress / rf0._tmax
        r_act = np.array([-s.action * float(a @ a) / max(a.size, 1) for a in acts])
        success = (final < rf0.success_threshold) & task_ok
        r_succ = s.success * success.astype(np.float64)
        return {
            "tracking_error": tracking, "final_error": final, "flow_index": t_new, "subgoal_index": sub,
            "progress": progress, "reward_tracking": r_track, "reward_progress": r_prog, "reward_action": r_act,
            "reward_success": r_succ, "is_success": success,
            "reward": ((r_track + r_prog) + r_act) + r_succ,  # == float(sum(terms.values())), in dict order
        }

    def _reward_kernel_matches_reward(self) -> bool:
        """Whether :meth:`_reward_kernel` computes what the env's reward object computes, checked on a
        copy of it over a few probe steps (a changed metric or alignment rule in reward.py shows up here,
        and the batched env then uses the env's own methods instead of computing something else)."""
        import copy

        rf = copy.deepcopy(self.envs[0].reward_fn)
        rng = np.random.default_rng(0)
        rf.reset(rf.flow.points[0] + 0.01, anchor=True)
        planes = rf.target.transpose(0, 2, 1)[None].copy()
        cents = frame_centroids(rf.target, rf._vis, rf._nvis, rf._all_visible)[None]
        t_star, steps = 0, 0
        for frame in np.linspace(0, self._T - 1, 6).round().astype(int).tolist():
            pts = rf.target[frame] + rng.normal(scale=0.005, size=rf.target[frame].shape)
            act = rng.uniform(-1, 1, size=self.single_action_space.shape)
            ok = bool(rng.integers(2))
            r = self._reward_kernel(pts[None], np.array([t_star]), np.array([steps + 1]), planes, cents, [act],
                                    np.array([ok]), [rf])
            reward, info = rf.step(pts, act, task_success=ok)
            t_star, steps = rf.t_star, rf.steps
            if set(info) != set(r) - {"reward"} or reward != r["reward"][0]:
                return False
            if any(info[k] != r[k][0] for k in info):
                return False
        return True

    # ------------------------------------------------------------------ the vectorised reward + observation
    def _apply_controls(self, g: "_SimGroup", ks: List[int], actions: np.ndarray, acts: List[Any]) -> None:
        envs = self.envs
        if self._batched_controls:
            # EndEffectorController.apply + the robot's command as array operations over the envs; the
            # envs' controllers keep their targets, their data gets the ctrl from the batch after the step
            A = np.array(actions[ks], dtype=np.float64)
            for j in np.flatnonzero(~np.isfinite(A).all(axis=1)).tolist():  # as FlowEnv.step
                A[j] = np.nan_to_num(A[j], nan=0.0, posinf=1.0, neginf=-1.0)
            rows = [k - g.lo for k in ks]
            tcp = np.array([envs[k].robot.tcp_pos(envs[k].data) for k in ks])
            ctrls = [envs[k].controller for k in ks]
            targets = EndEffectorController.step_targets(ctrls, A, tcp)
            yaws, grips = EndEffectorController.step_yaw_grip(ctrls, A)
            for j, (k, yaw, grip) in enumerate(zip(ks, yaws.tolist(), grips.tolist())):
                acts[k] = A[j]
                c = ctrls[j]
                c.target_pos, c.target_yaw, c.grip = targets[j], yaw, grip
            sub = [envs[k] for k in ks]
            if self._ik_in_batch:
                sub[0].robot.command_batch([e.robot for e in sub], targets, yaws, grips, g, rows)
            else:
                sub[0].robot.command_batch([e.robot for e in sub], targets, yaws, grips, g, rows,
                                           models=[e.model for e in sub], datas=[e.data for e in sub])
            return
        for k in ks:
            a = np.asarray(actions[k], dtype=np.float64)
            if not math.isfinite(a.dot(a)):  # as FlowEnv.step: a NaN action means "no motion"
                a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0)
            acts[k] = a
            env = envs[k]
            env.controller.apply(env.model, env.data, env._delayed_action(a))  # (randomised action latency)
            g.set_inputs(k - g.lo, env.data)  # ctrl, and eq_active (the cloth's pinch)

    def _per_env_part(self, g: "_SimGroup", h: List[int], extra_infos: list) -> tuple:
        """What stays per env on the vectorised path, for group g's healthy envs ``h`` (runs while the
        next group's physics does): bound points, the task's own success test, proprioception."""
        envs = self.envs
        rows = [k - g.lo for k in h]
        t0 = time.perf_counter() if self.profile else 0.0
        # ---- points (E_h, N, 3): RigidBinding.points (local @ R^T + p) over envs
        if self.rigid_points:
            b = self._body
            R = g.xmat[rows, b].reshape(-1, 3, 3)
            pts = np.matmul(self._local[h], R.transpose(0, 2, 1))
            pts += g.xpos[rows, b][:, None, :]
        else:
            pts = np.stack([envs[k].binding.points(envs[k].data) for k in h])
        if self.profile:
            t0 = self._tick("binding", t0)
        # ---- the task's own success criterion (reads the env's synced data), proprioception
        task_ok, extras = [], []
        a_ = self._proprio_dim
        obs = self._obs
        hs = [envs[k] for k in h]
        for j, env in enumerate(hs):
            env._points = pts[j]
        for j, (ok, extra) in enumerate(self._success_batch(hs, pts)):
            task_ok.append(bool(ok))
            extras.append(extra)
            extra_infos.append((h[j], extra))
        if self._batched_proprio:  # from the batch's rows: the state and outputs get_data copied into env.data
            obs[h, :a_] = hs[0].robot.proprio_batch(g.qpos[rows], g.qvel[rows], g.site_xpos[rows])
        else:
            for k, env in zip(h, hs):
                obs[k, :a_] = env.robot.proprio(env.data)
        if self.profile:
            self._tick("task_success", t0)  # with the proprioception (a few us per env)
        return h, pts, g.site_xpos[rows, self._tcp_site], task_ok, extras

    def _vectorized_rewards_obs(self, parts: list, acts, rewards, t0) -> Dict[str, Any]:
        """FlowEnv._get_rew + _get_obs for the healthy envs, as array operations over envs.

        Mirrors FlowTrackingReward.measure/terms/step and FlowEnv._get_obs operation by operation
        (same IEEE operations in the same order), so the numbers are the single env's bit for bit.
        """
        prof = self.profile
        envs, E = self.envs, self.num_envs
        healthy = [k for part in parts for k in part[0]]
        h = np.asarray(healthy)
        pts = parts[0][1] if len(parts) == 1 else np.concatenate([part[1] for part in parts])
        tcp = parts[0][2] if len(parts) == 1 else np.concatenate([part[2] for part in parts])
        task_ok = [ok for part in parts for ok in part[3]]
        extras = [x for part in parts for x in part[4]]
        t_old = self._t_star[h]
        steps = self._steps[h] + 1
        r = self._reward_kernel(pts, t_old, steps, self._planes if len(healthy) == E else self._planes[h],
                                self._cents if len(healthy) == E else self._cents[h],
                                [acts[k] for k in healthy], np.array(task_ok),
                                [envs[k].reward_fn for k in healthy])
        tracking, final, t_new, sub, progress = r["tracking_error"], r["final_error"], r["flow_index"], \
            r["subgoal_index"], r["progress"]
        r_track, r_prog, r_act, r_succ, success = r["reward_tracking"], r["reward_progress"], r["reward_action"], \
            r["reward_success"], r["is_success"]
        rewards[h] = r["reward"]
        self._t_star[h] = t_new
        self._steps[h] = steps
        if prof:
            t0 = self._tick("reward", t0)

        # ---- observation (FlowEnv._get_obs)
        pk = pts[:, self._kp]  # (E_h, K, 3)
        K = pk.shape[1]
        subp = self._target_kp[h, sub]  # (gathering only the two frames used, not every env's (T, K, 3))
        goal = self._target_kp[h, -1]
        phase = t_new / max(self._T - 1, 1)
        a_, b_ = self._proprio_dim, self._proprio_dim + 3 * K
        obs = self._obs
        obs[h, a_:b_] = pk.reshape(len(h), -1)
        obs[h, b_:b_ + 3 * K] = (subp - pk).reshape(len(h), -1)
        obs[h, b_ + 3 * K:b_ + 6 * K] = (goal - pk).reshape(len(h), -1)
        obs[h, b_ + 6 * K:b_ + 6 * K + 3] = np.divide(pk.sum(axis=1), K) - tcp
        obs[h, -1] = phase

        # ---- the envs' own state, as their step would have left it (render, divergence info, fallbacks)
        te, fe, tn, sb, pr = tracking.tolist(), final.tolist(), t_new.tolist(), sub.tolist(), progress.tolist()
        st = steps.tolist()
        for j, k in enumerate(healthy):
            env = envs[k]
            env.reward_fn.t_star, env.reward_fn.steps = tn[j], st[j]
            measured = {"tracking_error": te[j], "final_error": fe[j], "flow_index": tn[j],
                        "subgoal_index": sb[j], "progress": pr[j]}
            measured.update(extras[j])
            env._measured = measured

        # ---- infos: the entries every healthy env has, as arrays with their masks (the task's extras are
        #      merged by the caller with _add_info, as SyncVectorEnv would)
        infos: Dict[str, Any] = {}
        mask = np.zeros(E, dtype=bool)
        mask[h] = True
        for key, vals, dtype in (
            ("tracking_error", tracking, float), ("final_error", final, float), ("flow_index", t_new, int),
            ("subgoal_index", sub, int), ("progress", progress, int), ("reward_tracking", r_track, float),
            ("reward_progress", r_prog, float), ("reward_action", r_act, float), ("reward_success", r_succ, float),
            ("is_success", success, bool),
        ):
            arr = np.zeros(E, dtype=dtype)
            arr[h] = vals
            infos[key], infos["_" + key] = arr, mask.copy()
        if prof:
            self._tick("obs", t0)
        return infos

    def _add_uniform_infos(self, infos: Dict[str, Any], extra_infos: List[tuple]) -> bool:
        """What ``_add_info`` over ``extra_infos`` (sorted by env) would add, as one array per key, when
        every env has the same new keys with scalars of one type each (the task's extras in a step
        without resets: Push-T's coverage); returns False (nothing added) otherwise."""
        if not extra_infos:
            return True
        keys = list(extra_infos[0][1])
        if any(list(info) != keys for _, info in extra_infos):
            return False
        columns = []
        for key in keys:
            vals = [info[key] for _, info in extra_infos]
            t = type(vals[0])
            # _add_info's array type for a new key: that of the first env's value (int, float, bool, numpy scalar)
            if key in infos or "_" + key in infos or not (t in (int, float, bool) or issubclass(t, np.number)):
                return False
            if any(type(v) is not t for v in vals):
                return False
            columns.append((key, vals, t))
        ids = [k for k, _ in extra_infos]
        for key, vals, t in columns:
            arr = np.zeros(self.num_envs, dtype=t)
            arr[ids] = vals
            mask = np.zeros(self.num_envs, dtype=np.bool_)
            mask[ids] = True
            infos[key], infos["_" + key] = arr, mask
        return True

    # ------------------------------------------------------------------ misc
    def simulation(self, k: int):
        """``(batch, row)``: the ``mujoco.batch.Batch`` and its row that hold sub-env k's simulation
        (e.g. ``batch.bind("qvel")[row]``: its live state; ``env.data`` is a copy, refreshed each step).
        With ``backend="warp"``: the :class:`~d2f_envs.warp_backend.WarpSimGroup` and the world, whose
        ``bind(name)`` is the host-side state uploaded before every step."""
        g = self._groups[self._group_of[k]]
        return g.batch, k - g.lo

    def call(self, name: str, *args, **kwargs) -> tuple:
        """``getattr(sub_env, name)(*args, **kwargs)`` (or the attribute) for every sub-env."""
        out = []
        for env in self.envs:
            attr = getattr(env, name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(out)

    def get_attr(self, name: str) -> tuple:
        return tuple(getattr(env, name) for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for env in self.envs:
            env.close()
