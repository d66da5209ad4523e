"""The deploy loop: observe -> policy -> safety limits -> act, at the policy's control rate.

Safety, in the order applied each step:

1. **Watchdog** (``obs_timeout``): ``robot.observe()`` runs on a helper thread; if no
   observation (``None`` means "none fresh yet") arrives within ``obs_timeout`` seconds, or
   it has a non-finite entry, or the wrong size, the loop calls ``robot.stop()`` and ends
   (``stop_reason`` starts with ``"watchdog"``). A stalled ``observe()`` cannot hold the
   loop past the timeout.
2. **Action-rate limit** (``max_action_delta``): ``|a_t - a_{t-1}|`` is clipped per entry
   (``a_{-1}`` = ``initial_action``, zeros: start from rest).
3. **Workspace box** on the TCP position (world, metres): from ``robot.tcp_position()`` if
   the robot has it, else from the observation at ``policy.json``'s ``observation.tcp_slice``.
   At or past a face of the box, each action entry that moves the TCP further out (the
   ``action.dofs`` named ``x``, ``y``, ``z``: the d2f controller's actions are world-frame TCP
   displacements) is zeroed, so the policy can only bring the tool back. More than
   ``workspace_margin`` outside: ``robot.stop()`` and the loop ends (``"workspace: ..."``).
   Defaults to the env's workspace box from policy.json. This comes after the rate limit:
   cutting an outward push to 0 is never slowed down by it.
4. Clip to the action bounds; a non-finite action stops the robot.

``robot.stop()`` is also called once when the loop ends for any other reason (steps done,
``robot.done``, an exception, Ctrl-C), so the robot is never left moving.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

AXES = ("x", "y", "z")


@dataclasses.dataclass
class SafetyLimits:
    """Limits the deploy loop enforces (see the module docstring); None disables one."""

    #: TCP box (world, m); None: no workspace check
    workspace_low: Optional[Sequence[float]] = None
    workspace_high: Optional[Sequence[float]] = None
    #: how far (m) the TCP may be outside the box before the robot is stopped
    workspace_margin: float = 0.05
    #: per-step cap on |a_t - a_{t-1}| per action entry (action units); None: no cap
    max_action_delta: Optional[float] = None
    #: seconds without a fresh finite observation before the watchdog stops the robot
    obs_timeout: float = 0.5
    #: where the TCP position sits in the observation ([start, stop]), if the robot has no tcp_position()
    tcp_slice: Optional[slice] = None
    #: the action's dofs (names), to know which entries move the TCP along x/y/z
    dofs: Sequence[str] = ()
    #: action bounds (final clip)
    action_low: Optional[Sequence[float]] = None
    action_high: Optional[Sequence[float]] = None

    @classmethod
    def from_policy(cls, policy: Any, **overrides: Any) -> "SafetyLimits":
        """Limits from an :class:`~d2f_rl.deploy.OnnxPolicy`'s JSON (workspace, tcp slice, dofs, bounds)."""
        ws = getattr(policy, "workspace", None)
        base = dict(
            workspace_low=None if ws is None else ws[0], workspace_high=None if ws is None else ws[1],
            tcp_slice=getattr(policy, "tcp_slice", None), dofs=tuple(getattr(policy, "dofs", ()) or ()),
            action_low=getattr(policy, "action_low", None), action_high=getattr(policy, "action_high", None),
        )
        base.update(overrides)
        return cls(**base)


@dataclasses.dataclass
class DeployResult:
    steps: int
    stop_reason: str
    #: True when a safety limit (watchdog, workspace) ended the run
    safety_stop: bool
    #: how many steps each limit changed the action: {"action_rate": n, "workspace": n, "bounds": n}
    interventions: Dict[str, int]
    #: timing statistics (seconds), see :func:`timing_stats`
    timing: Dict[str, Any]
    actions: List[np.ndarray] = dataclasses.field(default_factory=list, repr=False)
    #: perf_counter() at the start of each completed step
    step_starts: List[float] = dataclasses.field(default_factory=list, repr=False)


class _Observer:
    """Calls ``robot.observe()`` on a daemon thread so a stalled sensor cannot block the loop."""

    def __init__(self, observe: Callable[[], Any]):
        self._observe = observe
        self._requests: "queue.Queue[bool]" = queue.Queue()
        self._results: "queue.Queue[tuple]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="d2f-deploy-observe", daemon=True)
        self._thread.start()
        self._busy = False

    def _run(self) -> None:
        while self._requests.get():
            try:
                self._results.put((True, self._observe()))
            except BaseException as e:  # handed to the loop, which stops the robot and re-raises
                self._results.put((False, e))

    def get(self, timeout: float):
        """The next non-None observation, or raises TimeoutError after ``timeout`` seconds."""
        deadline = time.perf_counter() + timeout
        while True:
            if not self._busy:
                self._requests.put(True)
                self._busy = True
            remaining = deadline - time.perf_counter()
            try:
                ok, value = self._results.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise TimeoutError from None
            self._busy = False
            if not ok:
                raise value
            if value is not None:
                return value
            if deadline - time.perf_counter() <= 0:
                raise TimeoutError
            time.sleep(min(0.001, max(deadline - time.perf_counter(), 0.0)))

    def close(self) -> None:
        self._requests.put(False)  # the thread ends after a stalled observe() returns, if ever (daemon)


def timing_stats(starts: Sequence[float], compute: Sequence[float], period: float, realtime: bool) -> Dict[str, Any]:
    """Loop timing: periods between step starts, their jitter, compute time per step, overruns.

    ``jitter_std_ms`` is the standard deviation of the measured period, ``jitter_max_ms`` the
    largest |period - target| (realtime only: otherwise there is no schedule); an overrun is a step whose observe + policy + act took longer
    than the target period (its next step then starts late).
    """
    periods = np.diff(np.asarray(starts, dtype=np.float64))
    comp = np.asarray(compute, dtype=np.float64)
    ms = lambda v: float(v) * 1e3  # noqa: E731
    out: Dict[str, Any] = {
        "realtime": bool(realtime),
        "target_period_ms": ms(period),
        "steps": int(len(comp)),
        "overruns": int((comp > period).sum()),
        "compute_mean_ms": ms(comp.mean()) if len(comp) else None,
        "compute_max_ms": ms(comp.max()) if len(comp) else None,
    }
    if len(periods):
        out.update(period_mean_ms=ms(periods.mean()), period_max_ms=ms(periods.max()), period_min_ms=ms(periods.min()),
                   jitter_std_ms=ms(periods.std()),
                   jitter_max_ms=ms(np.abs(periods - period).max()) if realtime else None,
                   rate_hz=float(1.0 / periods.mean()) if periods.mean() > 0 else None)
    else:
        out.update(period_mean_ms=None, period_max_ms=None, period_min_ms=None, jitter_std_ms=None,
                   jitter_max_ms=None, rate_hz=None)
    return out


def _sleep_until(t: float) -> None:
    """Sleep to ``t`` (perf_counter), the last half millisecond by spinning for a sharper edge."""
    while True:
        left = t - time.perf_counter()
        if left <= 0:
            return
        if left > 0.0005:
            time.sleep(left - 0.0005)


def run_policy(
    policy: Callable[[np.ndarray], np.ndarray],
    robot: Any,
    steps: Optional[int] = None,
    limits: Optional[SafetyLimits] = None,
    realtime: bool = True,
    control_rate: Optional[float] = None,
    initial_action: Optional[np.ndarray] = None,
    on_step: Optional[Callable[[int, np.ndarray, np.ndarray], None]] = None,
    keep_actions: bool = False,
) -> DeployResult:
    """Run ``policy`` on ``robot`` for ``steps`` control steps, or until ``robot.done`` (if it has one).

    ``policy``: obs -> action (an :class:`~d2f_rl.deploy.OnnxPolicy`, or any callable).
    ``limits``: None takes :meth:`SafetyLimits.from_policy` when ``policy`` has the JSON's
    fields, else no limits but the default watchdog. ``realtime=False`` runs as fast as
    possible (tests, simulation); the timing statistics are measured either way.
    ``control_rate``: Hz, default ``robot.control_rate`` (should equal policy.json's).
    ``on_step(step, obs, action)`` is called after each ``act``.
    """
    if limits is None:
        limits = SafetyLimits.from_policy(policy) if hasattr(policy, "meta") else SafetyLimits()
    rate = float(control_rate if control_rate is not None else getattr(robot, "control_rate", 0) or 0)
    if not rate > 0:
        raise ValueError("control rate unknown: give the robot a control_rate (Hz) or pass control_rate=")
    period = 1.0 / rate
    if steps is None and not hasattr(robot, "done"):
        raise ValueError("steps=None runs until robot.done, but the robot has no 'done'")

    # ---- the workspace check needs the TCP position: from the robot, or from the observation
    box = None
    tcp_from_robot = getattr(robot, "tcp_position", None)
    if limits.workspace_low is not None or limits.workspace_high is not None:
        if limits.workspace_low is None or limits.workspace_high is None:
            raise ValueError("workspace: give both workspace_low and workspace_high")
        box = (np.asarray(limits.workspace_low, dtype=np.float64), np.asarray(limits.workspace_high, dtype=np.float64))
        if box[0].shape != (3,) or box[1].shape != (3,) or not (box[0] <= box[1]).all():
            raise ValueError(f"workspace: low/high must be 3-vectors with low <= high, got {box}")
        if tcp_from_robot is None and limits.tcp_slice is None:
            raise ValueError("workspace limits need the TCP position: the robot has no tcp_position() and "
                             "policy.json gives no observation.tcp_slice (pass SafetyLimits(tcp_slice=...))")
    tcp_slice = limits.tcp_slice
    if tcp_slice is not None and not isinstance(tcp_slice, slice):
        tcp_slice = slice(int(tcp_slice[0]), int(tcp_slice[1]))
    axis_index = [(k, list(limits.dofs).index(a)) for k, a in enumerate(AXES) if a in tuple(limits.dofs)]
    low = None if limits.action_low is None else np.asarray(limits.action_low, dtype=np.float32)
    high = None if limits.action_high is None else np.asarray(limits.action_high, dtype=np.float32)
    obs_size = getattr(policy, "obs_size", None)

    prev = None if initial_action is None else np.asarray(initial_action, dtype=np.float32)
    interventions = {"action_rate": 0, "workspace": 0, "bounds": 0}
    starts: List[float] = []
    compute: List[float] = []
    actions: List[np.ndarray] = []
    reason, safety = "", False
    observer = _Observer(robot.observe)
    step = 0
    t_next = time.perf_counter()
    try:
        while True:
            if steps is not None and step >= steps:
                reason = "steps"
                break
            if getattr(robot, "done", False):
                reason = "done"
                break
            if realtime:
                _sleep_until(t_next)
            t0 = time.perf_counter()
            starts.append(t0)

            # 1. watchdog
            try:
                obs = observer.get(limits.obs_timeout)
            except TimeoutError:
                reason, safety = f"watchdog: no observation within {limits.obs_timeout:g} s", True
                break
            obs = np.asarray(obs)
            if obs_size is not None and obs.shape != (obs_size,):
                reason, safety = f"watchdog: observation of shape {obs.shape}, expected ({obs_size},)", True
                break
            if not np.isfinite(obs).all():
                reason, safety = "watchdog: non-finite observation", True
                break

            action = np.array(policy(obs), dtype=np.float32).reshape(-1)
            if not np.isfinite(action).all():
                reason, safety = "non-finite action from the policy", True
                break

            # 2. action-rate limit (before the workspace rule, so zeroing an outward push is never undone)
            if limits.max_action_delta is not None:
                if prev is None:
                    prev = np.zeros_like(action)
                d = float(limits.max_action_delta)
                limited = prev + np.clip(action - prev, -d, d)
                if not np.array_equal(limited, action):
                    interventions["action_rate"] += 1
                action = limited.astype(np.float32)

            # 3. workspace box on the TCP
            if box is not None:
                tcp = np.asarray(tcp_from_robot() if tcp_from_robot is not None else obs[tcp_slice], dtype=np.float64)
                outside = np.maximum(box[0] - tcp, tcp - box[1])  # > 0: outside along that axis
                if (outside > limits.workspace_margin).any() or not np.isfinite(tcp).all():
                    reason, safety = (f"workspace: TCP {np.round(tcp, 4).tolist()} is more than "
                                      f"{limits.workspace_margin:g} m outside {box[0].tolist()}..{box[1].tolist()}"), True
                    break
                changed = False
                for k, i in axis_index:
                    if (tcp[k] >= box[1][k] and action[i] > 0) or (tcp[k] <= box[0][k] and action[i] < 0):
                        action[i] = 0.0
                        changed = True
                interventions["workspace"] += int(changed)

            # 4. bounds
            if low is not None and high is not None:
                bounded = np.minimum(np.maximum(action, low), high)
                interventions["bounds"] += int(not np.array_equal(bounded, action))
                action = bounded

            robot.act(action)
            prev = action
            if keep_actions:
                actions.append(action.copy())
            if on_step is not None:
                on_step(step, obs, action)
            t1 = time.perf_counter()
            compute.append(t1 - t0)
            step += 1
            t_next += period
            if t_next < t1:  # overran: start the next step now, do not burst to catch up
                t_next = t1
    except KeyboardInterrupt:
        reason = "interrupted"
        raise
    finally:
        robot.stop()
        observer.close()
    return DeployResult(steps=step, stop_reason=reason, safety_stop=safety, interventions=interventions,
                        timing=timing_stats(starts[:len(compute)], compute, period, realtime),
                        actions=actions, step_starts=starts[:len(compute)])


__all__ = ["DeployResult", "SafetyLimits", "run_policy", "timing_stats"]
