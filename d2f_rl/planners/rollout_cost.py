"""The shared machinery of the sampling planners: batched MuJoCo rollouts, the flow cost, the policy shell.

Three parts, used by :mod:`~d2f_rl.planners.mppi` and :mod:`~d2f_rl.planners.cem`
(which only say how to turn sampled costs into the next plan distribution):

* :class:`BatchRollout`: K copies of the env's own simulation in a persistent
  :class:`mujoco.batch.Batch`, started from the env's full integration state
  (``mjSTATE_INTEGRATION``: qpos, qvel, act, warm start, ctrl, applied forces,
  mocap, ...). Each candidate action sequence is rolled out *closed loop with
  the env's own controller*: at every control step, sample k's MjData
  (``Batch.get_data`` of the persistent batch: its state and the derived fields
  of its last call, exactly what ``env.data`` holds after ``env.step``) goes
  through ``env.controller.apply`` with sample k's copy of the controller's
  TCP-target state; that writes ``ctrl`` (a direct function of the target for
  the pusher and the floating gripper, the differential IK for arms), which is
  copied into the batch, and the batch steps all K simulations ``n_substeps``
  at once on its thread pool. Because it is the env's code on the env's state
  (anti-windup against the measured TCP included), a rollout reproduces
  ``env.step`` bit for bit for the same actions (tests/test_planners.py);
  the one thing not reproduced is the env's divergence reset, a diverged
  sample just gets a large cost.
* :class:`FlowCost`: the cost a planner minimises, the env's own flow-tracking
  reward turned into metres (see the class docstring for each term).
* :class:`SamplingPlanner`: the policy shell. ``planner(obs)`` reads the env's
  current state (the observation itself is not used), improves a warm-started
  mean action sequence for ``iterations`` rounds of ``samples`` rollouts of
  ``horizon`` control steps, returns its first action and shifts the plan by
  one step for the next call. A new episode (the env's reward clock at 0)
  clears the plan. Deterministic for a seed (numpy Generator; the batch is
  bit-identical at any thread count).

No torch here: the planners are usable wherever ``d2f_envs`` is.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import mujoco
import numpy as np
from mujoco.batch import Batch

from d2f_envs.bindings import RigidBinding
from d2f_envs.reward import chamfer_errors
from d2f_envs.vector import STATE_FIELDS


@dataclass
class Rollouts:
    """What K rollouts of H control steps produced (after each control step, as ``env.step`` sees it)."""

    points: np.ndarray  # (K, H, N, 3) the object's bound flow points, world frame
    tcp: np.ndarray  # (K, H, 3) the robot's TCP
    diverged: np.ndarray  # (K,) bool: the simulation failed or went non-finite


# --------------------------------------------------------------------------- rollouts
class _Poses:
    """The two MjData fields a RigidBinding reads, for one sample of the batch."""

    __slots__ = ("xpos", "xmat")

    def __init__(self, xpos: np.ndarray, xmat: np.ndarray):
        self.xpos, self.xmat = xpos, xmat


class BatchRollout:
    """Exact closed-loop rollouts of K action sequences from the env's current state (see the module docstring).

    Args:
        env: the (possibly wrapped) FlowEnv; its model is copied into the batch
            at construction (a task that edits its model at reset would need a new one).
        samples: K, the number of simulations.
        nthread: the batch's threads; 0 or None: all CPUs.
    """

    def __init__(self, env, samples: int, nthread: Optional[int] = None):
        u = env.unwrapped
        self.env = u
        self.model = u.model
        self.samples = int(samples)
        self.n_substeps = int(u.n_substeps)
        self.batch = Batch(u.model, nsim=self.samples, nthread=0 if nthread is None else int(nthread), persistent=True)
        m = u.model
        self._state = []  # (field name, mjtState bit, size) of the non-empty integration-state components
        for name, bit in STATE_FIELDS:
            n = mujoco.mj_stateSize(m, bit)
            if n:
                self._state.append((name, bit, n, self.batch.bind(name)))
        self._ctrl = self.batch.bind("ctrl")
        # a controller may switch equality constraints (the cloth task's pinch grasp): copy them too
        self._eq_active = next((view for name, _, _, view in self._state if name == "eq_active"), None)
        self._qpos = self.batch.bind("qpos")
        self._qvel = self.batch.bind("qvel")
        self._xpos = self.batch.bind("xpos")
        self._xmat = self.batch.bind("xmat")
        self._site_xpos = self.batch.bind("site_xpos")
        self._scratch = mujoco.MjData(m)
        self._controller = copy.copy(u.controller)  # same robot and config; its target state is swapped per sample
        b = u.binding
        self._rigid = isinstance(b, RigidBinding)
        self._tcp_site = u.robot.tcp_site_id
        self._init: Dict[str, np.ndarray] = {}
        self._init_data = mujoco.MjData(m)
        self._init_target: Tuple[np.ndarray, float, float] = (np.zeros(3), 0.0, -1.0)

    # ------------------------------------------------------------------ state
    def load_state(self) -> None:
        """Remember the env's current state (full integration state, its derived fields, the controller's target)."""
        u, m = self.env, self.model
        for name, bit, n, _ in self._state:
            buf = np.empty(n)
            mujoco.mj_getState(m, u.data, buf, bit)
            self._init[name] = buf
        mujoco.mj_copyData(self._init_data, m, u.data)  # derived fields as env.step left them
        c = u.controller
        self._init_target = (np.array(c.target_pos, dtype=np.float64), float(c.target_yaw), float(c.grip))

    def _reset_rows(self) -> None:
        for name, _, n, view in self._state:
            if view.ndim == 1:  # a scalar per simulation (time)
                view[:] = self._init[name][0]
            else:
                view[...] = self._init[name].reshape((1,) + view.shape[1:])

    # ------------------------------------------------------------------ rollout
    def rollout(self, actions: np.ndarray) -> Rollouts:
        """Roll out ``actions`` (K, H, A), each sample from the state of the last :meth:`load_state`."""
        actions = np.asarray(actions, dtype=np.float64)
        K, H, _ = actions.shape
        if K != self.samples:
            raise ValueError(f"rollout: {K} action sequences for a batch of {self.samples}")
        m, ctl, sd = self.model, self._controller, self._scratch
        self._reset_rows()
        tp0, ty0, g0 = self._init_target
        targets = np.repeat(tp0[None], K, axis=0)
        yaws = np.full(K, ty0)
        grips = np.full(K, g0)
        # the binding's point count: the flow's N, or a granular object's number of pieces
        N = len(self.env.binding.points(self.env.data))
        points = np.empty((K, H, N, 3))
        tcp = np.empty((K, H, 3))
        diverged = np.zeros(K, dtype=bool)
        for h in range(H):
            for k in range(K):
                if h == 0:
                    mujoco.mj_copyData(sd, m, self._init_data)  # apply() may touch derived fields (arm IK)
                else:
                    self.batch.get_data(k, sd)
                ctl.target_pos, ctl.target_yaw, ctl.grip = targets[k], yaws[k], grips[k]
                ctl.apply(m, sd, actions[k, h])  # the env's own action -> ctrl mapping
                targets[k], yaws[k], grips[k] = ctl.target_pos, ctl.target_yaw, ctl.grip
                self._ctrl[k] = sd.ctrl
                if self._eq_active is not None:
                    self._eq_active[k] = sd.eq_active
            try:
                self.batch.step(nstep=self.n_substeps)
            except Exception as e:  # mujoco.batch.SimulationError: those samples kept their state
                ids = getattr(e, "ids", None)
                if ids is None:
                    raise
                diverged[np.asarray(ids)] = True
            if self._rigid:  # the binding's own points() on a view of sample k's body poses (same arithmetic)
                binding = self.env.binding
                for k in range(K):
                    points[k, h] = binding.points(_Poses(self._xpos[k], self._xmat[k]))
            else:  # any other binding: its own points() on each sample's MjData
                for k in range(K):
                    points[k, h] = self.env.binding.points(self.batch.get_data(k, sd))
            tcp[:, h] = self._site_xpos[:, self._tcp_site]
        diverged |= ~np.isfinite(self._qpos).all(axis=1) | ~np.isfinite(self._qvel).all(axis=1)
        diverged |= ~np.isfinite(points).all(axis=(1, 2, 3))
        return Rollouts(points=points, tcp=tcp, diverged=diverged)


# --------------------------------------------------------------------------- cost
@dataclass(frozen=True)
class CostWeights:
    """Weights of :class:`FlowCost`'s terms (all terms are in metres, or in action units squared)."""

    #: mean over the horizon of the env's tracking error: the bound points' mean distance to the
    #: time-aligned subgoal frame (t* + lookahead, t* the nearest frame searched forward, with the
    #: env's max_lag deadline), exactly what ``info["tracking_error"]`` reports each step
    tracking: float = 1.0
    #: the env's final error (distance to the flow's last frame) at the end of the horizon: the
    #: success criterion, and a gradient towards progress when the subgoal is far
    goal: float = 0.5
    #: -(frames t* advanced over the horizon) / (T - 1): the reward's progress term, in flow fractions
    progress: float = 0.05
    #: mean over the horizon of max(0, distance from the TCP to the nearest bound point - tool_reach):
    #: pulls the tool to the object so the cost is not flat while the tool is far from it
    tool: float = 0.2
    tool_reach: float = 0.03
    #: mean(a^2): the reward's action penalty (small motions)
    action: float = 0.002
    #: mean((a_t - a_{t-1})^2), a_{-1} the last action sent: smooth plans
    smoothness: float = 0.002
    #: discount per control step on the per-step terms (1: uniform)
    discount: float = 1.0
    #: the cost of a sample whose simulation diverged
    diverged: float = 10.0


class FlowCost:
    """The cost of K rollouts: the env's flow-tracking objective, in metres (lower is better).

    ``cost_k = tracking * mean_h(track_err[k, h]) + goal * final_err[k, H-1]
    - progress * (t*[k, H-1] - t*_0) / (T - 1) + tool * mean_h(max(0, |tcp - nearest point| - reach))
    + action * mean(a^2) + smoothness * mean(diff(a)^2)`` (see :class:`CostWeights`).

    The time alignment replays the env's :class:`~d2f_envs.reward.FlowTrackingReward` from
    its current ``t*`` and step count: per sample and step, ``t*`` is the nearest flow
    frame searched forward from the previous ``t*``, the subgoal ``t* + lookahead`` capped
    at the last frame and kept within ``max_lag`` of the clock (or the clock frame with
    ``alignment="clock"``), over the target as re-anchored at the episode's reset.
    """

    def __init__(self, env, weights: CostWeights = CostWeights()):
        self.env = env.unwrapped
        self.w = weights

    def frame_errors(self, points: np.ndarray) -> np.ndarray:
        """(K, H, T): each sample's distance to every flow frame, in the env reward's metric (the mean
        visible-point distance, or the Chamfer distance of a granular object's pieces)."""
        rf = self.env.reward_fn
        target = rf.target  # (T, N, 3)
        vis, nvis = rf.visibility_weights  # (T, N), (T,)
        K, H = points.shape[:2]
        out = np.empty((K, H, target.shape[0]))
        if rf.metric == "chamfer":  # one control step at a time: (K, T, N, M) distances at once
            visible = None if rf.flow.visible.all() else rf.flow.visible
            for h in range(H):
                out[:, h] = chamfer_errors(points[:, h], target, visible)
            return out
        if rf.metric != "pointwise":
            raise NotImplementedError(f"FlowCost: no batched frame errors for reward metric {rf.metric!r}")
        for h in range(H):
            d = np.sqrt(((points[:, h, None, :, :] - target[None]) ** 2).sum(axis=-1))  # (K, T, N)
            out[:, h] = (d * vis[None]).sum(axis=-1) / nvis[None]
        return out

    def __call__(self, rollouts: Rollouts, actions: np.ndarray, prev_action: Optional[np.ndarray] = None,
                 details: bool = False):
        w, rf = self.w, self.env.reward_fn
        pts = rollouts.points
        K, H = pts.shape[:2]
        T = rf.num_frames
        last = T - 1
        errs = self.frame_errors(pts)  # (K, H, T)
        frames = np.arange(T)
        t_star = np.full(K, rf.t_star)
        t0 = t_star.copy()
        track = np.empty((K, H))
        rows = np.arange(K)
        for h in range(H):
            e = np.where(frames[None] >= t_star[:, None], errs[:, h], np.inf)  # never search back
            t_star = e.argmin(axis=1)
            clock = int(round((rf.steps + h + 1) * rf.dt * rf.flow.fps))
            if rf.alignment == "nearest":
                sub = np.minimum(t_star + rf.lookahead, last)
                if rf.max_lag is not None:
                    sub = np.maximum(sub, min(clock - rf.max_lag, last))
            else:
                sub = np.full(K, min(clock, last))
            track[:, h] = errs[rows, h, sub]
        disc = w.discount ** np.arange(H)
        disc = disc / disc.sum()
        tracking = track @ disc
        final = errs[:, -1, last]
        progress = (t_star - t0) / max(last, 1)
        # TCP to the nearest bound point, beyond the tool's reach
        gap = np.sqrt(((rollouts.tcp[:, :, None, :] - pts) ** 2).sum(axis=-1)).min(axis=-1)  # (K, H)
        tool = np.maximum(gap - w.tool_reach, 0.0) @ disc
        a = np.asarray(actions, dtype=np.float64)
        act = (a ** 2).mean(axis=(1, 2))
        prev = np.zeros(a.shape[2]) if prev_action is None else np.asarray(prev_action, dtype=np.float64)
        da = np.diff(np.concatenate([np.broadcast_to(prev, (K, 1, a.shape[2])), a], axis=1), axis=1)
        smooth = (da ** 2).mean(axis=(1, 2))
        cost = (w.tracking * tracking + w.goal * final - w.progress * progress + w.tool * tool
                + w.action * act + w.smoothness * smooth)
        cost = np.where(rollouts.diverged | ~np.isfinite(cost), w.diverged, cost)
        if details:
            return cost, {"tracking": tracking, "final": final, "progress": progress, "tool": tool,
                          "action": act, "smoothness": smooth}
        return cost


# --------------------------------------------------------------------------- policy shell
class SamplingPlanner:
    """Sampling-based MPC on the env's own simulation; subclasses implement :meth:`_optimise`.

    Args:
        env: the FlowEnv (wrapped or not) the planner acts in; ``planner(obs)`` plans from its current state.
        horizon: H, control steps per rollout.
        samples: K, rollouts per iteration.
        iterations: optimisation rounds per control step.
        seed: the sampling seed.
        noise: initial std of the sampled actions (action units).
        nthread: rollout threads (None: all CPUs).
        weights: :class:`CostWeights` or a dict of its fields.
    """

    name = "sampling"

    def __init__(self, env, horizon: int = 10, samples: int = 64, iterations: int = 2, seed: Optional[int] = 0,
                 noise: float = 0.5, nthread: Optional[int] = None, weights: Any = None):
        if horizon < 1 or samples < 2 or iterations < 1:
            raise ValueError("horizon >= 1, samples >= 2 and iterations >= 1 are required")
        self.env = env.unwrapped
        self.horizon, self.samples, self.iterations = int(horizon), int(samples), int(iterations)
        self.noise = float(noise)
        self.seed = seed
        if isinstance(weights, dict):
            weights = CostWeights(**weights)
        self.cost = FlowCost(env, weights or CostWeights())
        self.rollout = BatchRollout(env, self.samples, nthread)
        space = self.env.action_space
        self.lo = np.asarray(space.low, dtype=np.float64)
        self.hi = np.asarray(space.high, dtype=np.float64)
        self.action_dim = int(space.shape[0])
        self.rng = np.random.default_rng(seed)
        self.mean = np.zeros((self.horizon, self.action_dim))
        self.prev_action = np.zeros(self.action_dim)
        self.last_cost = float("nan")
        self.last_info: Dict[str, Any] = {}

    def reset(self) -> None:
        """Forget the plan (a new episode)."""
        self.mean = np.zeros((self.horizon, self.action_dim))
        self.prev_action = np.zeros(self.action_dim)
        self._reset_distribution()

    def _reset_distribution(self) -> None:
        """Per-episode state of a subclass's sampling distribution (override)."""

    def evaluate(self, actions: np.ndarray) -> np.ndarray:
        """Costs of K action sequences (K, H, A) from the state of the last :meth:`plan`/:meth:`load`."""
        a = np.clip(np.asarray(actions, dtype=np.float64), self.lo, self.hi)
        return self.cost(self.rollout.rollout(a), a, self.prev_action)

    def load(self) -> None:
        """Take the env's current state as the rollouts' start."""
        self.rollout.load_state()

    def plan(self) -> np.ndarray:
        """Optimise the (H, A) plan from the env's current state; returns it (the planner keeps it)."""
        if self.env.reward_fn.steps == 0:
            self.reset()
        self.load()
        self.mean = self._optimise(self.mean)
        return self.mean.copy()

    def __call__(self, obs: Any = None) -> np.ndarray:
        plan = self.plan()
        action = plan[0].copy()
        self.prev_action = action
        # warm start: shift by one control step, repeating the last action
        self.mean = np.concatenate([plan[1:], plan[-1:]], axis=0)
        return action.astype(np.float32)

    def _sample(self, mean: np.ndarray, std: Any) -> np.ndarray:
        """K clipped action sequences around ``mean``; sample 0 is ``mean`` itself, sample 1 all zeros."""
        eps = self.rng.standard_normal((self.samples, self.horizon, self.action_dim)) * std
        a = np.clip(mean[None] + eps, self.lo, self.hi)
        a[0] = np.clip(mean, self.lo, self.hi)
        a[1] = 0.0
        return a

    def _optimise(self, mean: np.ndarray) -> np.ndarray:
        raise NotImplementedError
