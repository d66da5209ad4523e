"""The robot side of a deployment: the :class:`RobotInterface` protocol and two implementations.

Implement :class:`RobotInterface` for your hardware (a ROS node, a vendor SDK client, ...)::

    class MyRobot:
        control_rate = 10.0                 # Hz: the rate the policy was trained at (policy.json)

        def observe(self):                  # the latest observation in the env's layout, or None
            ...                             # when no fresh one has arrived (may also block)

        def act(self, action):              # send one normalised action (policy.json "action")
            ...

        def stop(self):                     # halt: hold position / cut velocity; must be safe to
            ...                             # call more than once and from another thread

        def tcp_position(self):             # optional: the TCP position (m, world) from the robot;
            ...                             # without it the loop reads policy.json's tcp_slice

        @property
        def done(self):                     # optional: True ends the loop (episode over)
            ...

Shipped: :class:`SimulatedRobot` (the MuJoCo env the policy was trained in; d2f_envs is
imported when one is constructed, not when this module is) and :class:`ReplayRobot`, a test
double that replays recorded observations (hardware cannot exist in tests).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class RobotInterface(Protocol):
    """What :func:`d2f_rl.deploy.run_policy` needs from a robot (see the module docstring)."""

    control_rate: float

    def observe(self) -> Optional[np.ndarray]:
        """The latest observation, or None if no fresh one is available yet."""

    def act(self, action: np.ndarray) -> None:
        """Apply one action (already checked by the deploy loop's safety limits)."""

    def stop(self) -> None:
        """Bring the robot to a safe halt."""


class ReplayRobot:
    """Test double (no hardware here): replays recorded observations and records what it is sent.

    ``observe()`` returns ``observations[i]`` where ``i`` is the number of ``act()`` calls so
    far; after the last one ``done`` is True. ``stall_at=k`` makes the ``k``-th ``observe()``
    call (0-based) block for ``stall_seconds`` (or until ``stop()``), as a dead sensor link
    would. ``tcp_positions`` (optional, one per observation) makes ``tcp_position()``
    available; without them the loop reads the TCP from the observation.
    """

    def __init__(
        self,
        observations: Sequence[np.ndarray],
        control_rate: float = 10.0,
        stall_at: Optional[int] = None,
        stall_seconds: float = 10.0,
        tcp_positions: Optional[Sequence[np.ndarray]] = None,
    ):
        self.observations = [np.asarray(o) for o in observations]
        self.control_rate = float(control_rate)
        self.stall_at = stall_at
        self.stall_seconds = float(stall_seconds)
        self._tcp = None if tcp_positions is None else [np.asarray(t, dtype=np.float64) for t in tcp_positions]
        if self._tcp is not None:
            self.tcp_position = self._tcp_position  # only offered when given
        self.actions: List[np.ndarray] = []
        self.action_times: List[float] = []
        self.stop_times: List[float] = []
        self.observe_calls = 0
        self._stopped = threading.Event()

    @property
    def index(self) -> int:
        return min(len(self.actions), len(self.observations) - 1)

    @property
    def done(self) -> bool:
        return len(self.actions) >= len(self.observations)

    def observe(self) -> Optional[np.ndarray]:
        call = self.observe_calls
        self.observe_calls += 1
        if self.stall_at is not None and call == self.stall_at:
            self._stopped.wait(self.stall_seconds)
        return self.observations[self.index].copy()

    def act(self, action: np.ndarray) -> None:
        if self._stopped.is_set():
            raise RuntimeError("ReplayRobot: act() after stop()")
        self.actions.append(np.array(action, copy=True))
        self.action_times.append(time.perf_counter())

    def stop(self) -> None:
        self.stop_times.append(time.perf_counter())
        self._stopped.set()

    def _tcp_position(self) -> np.ndarray:
        return self._tcp[self.index]


def _wrappers(spec: Any) -> List[tuple]:
    """``[(class, kwargs)]`` from an rl-zoo ``env_wrapper`` spec (a class path, or a list of paths /
    ``{path: kwargs}``), as :func:`d2f_rl.utils.get_wrapper_class` reads it (without its yaml import)."""
    import importlib

    out = []
    for item in (spec if isinstance(spec, list) else [spec]) if spec else []:
        if isinstance(item, dict):
            ((name, kwargs),) = item.items()
        else:
            name, kwargs = item, {}
        module, _, attr = str(name).rpartition(".")
        out.append((getattr(importlib.import_module(module), attr), dict(kwargs or {})))
    return out


class SimulatedRobot:
    """A d2f env as the robot: ``act`` steps the MuJoCo simulation one control period.

    Built from ``policy.json``'s env id, kwargs and observation wrapper
    (:meth:`from_policy`), so the observations are exactly what training saw.
    ``done`` turns True when the episode terminates or is truncated; ``info`` is the last
    step's info (``is_success``, ``final_error``, ...).
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: Optional[Dict[str, Any]] = None,
        wrapper: Any = None,
        seed: Optional[int] = 0,
        max_episode_steps: Optional[int] = None,
    ):
        import gymnasium as gym

        import d2f_envs  # noqa: F401  (registers the ids)

        kwargs = dict(env_kwargs or {})
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = int(max_episode_steps)
        env = gym.make(env_id, **kwargs)
        for cls, kw in _wrappers(wrapper):  # the run config's env_wrapper (e.g. Float32Observation)
            env = cls(env, **kw)
        self.env = env
        self.env_id = env_id
        base = env.unwrapped
        self.control_rate = 1.0 / float(base.control_dt)
        self.obs, self.info = env.reset(seed=seed)
        self.steps = 0
        self.episode_return = 0.0
        self.terminated = self.truncated = False
        self.stopped = False

    @classmethod
    def from_policy(cls, policy: Any, env_id: Optional[str] = None, seed: Optional[int] = 0, **kwargs) -> "SimulatedRobot":
        env = policy.meta.get("env") or {}
        env_id = env_id or env.get("id")
        if not env_id:
            raise ValueError("policy.json names no env id: pass one (--sim ENV_ID)")
        return cls(env_id, env.get("kwargs"), env.get("wrapper"), seed=seed, **kwargs)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def observe(self) -> np.ndarray:
        return np.array(self.obs, copy=True)

    def act(self, action: np.ndarray) -> None:
        if self.stopped:
            raise RuntimeError("SimulatedRobot: act() after stop()")
        self.obs, reward, self.terminated, self.truncated, self.info = self.env.step(np.asarray(action))
        self.episode_return += float(reward)
        self.steps += 1

    def stop(self) -> None:
        self.stopped = True  # the simulation just stops being stepped

    def tcp_position(self) -> np.ndarray:
        base = self.env.unwrapped
        return np.array(base.robot.tcp_pos(base.data), dtype=np.float64)

    def close(self) -> None:
        self.env.close()


__all__ = ["ReplayRobot", "RobotInterface", "SimulatedRobot"]
