"""Running a policy for one episode, and summarising episodes (no torch).

One loop for every caller: the scripted controllers, the planners, training-time
evaluation and ``eval.py``. A policy is any callable ``obs -> action``; one with
a ``reset()`` method (a stateful controller) is reset at the start of the episode.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import gymnasium as gym
import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]


def run_episode(env: gym.Env, policy: Policy, seed: Optional[int] = None, render: bool = False) -> Dict[str, Any]:
    """One episode of ``policy`` (obs -> action) in ``env``.

    Returns ``return``, ``length``, ``is_success`` / ``final_error`` /
    ``coverage`` at the last step, ``mean_tracking_error`` over the steps,
    per-step lists ``tracking_error``, ``final_error_curve``, ``flow_index``,
    ``reward``, any ``truncation_reason``, the last ``info``, and ``frames``
    (when ``render``). A policy with a ``reset()`` method is reset after the env.
    """
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "reset"):  # stateful controllers (the scripted ones, planners) start afresh
        policy.reset()
    frames: List[np.ndarray] = [env.render()] if render else []
    rec: Dict[str, List[float]] = {"tracking_error": [], "final_error_curve": [], "flow_index": [], "reward": []}
    success_steps = 0
    done = False
    while not done:
        action = policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        rec["reward"].append(float(reward))
        rec["tracking_error"].append(float(info.get("tracking_error", np.nan)))
        rec["final_error_curve"].append(float(info.get("final_error", np.nan)))
        rec["flow_index"].append(int(info.get("flow_index", 0)))
        success_steps += bool(info.get("is_success", False))
        if render:
            frames.append(env.render())
    out: Dict[str, Any] = {
        "seed": seed,
        "return": float(np.sum(rec["reward"])),
        "length": len(rec["reward"]),
        "is_success": bool(info.get("is_success", False)),
        "success_steps": int(success_steps),
        "final_error": float(info.get("final_error", np.nan)),
        "mean_tracking_error": float(np.nanmean(rec["tracking_error"])) if rec["tracking_error"] else float("nan"),
        "coverage": float(info.get("coverage", np.nan)),
        "final_flow_index": int(rec["flow_index"][-1]) if rec["flow_index"] else 0,
        **rec,
    }
    out["info"] = info
    if "truncation_reason" in info:
        out["truncation_reason"] = str(info["truncation_reason"])
    if render:
        out["frames"] = frames
    return out


def random_policy(action_space: gym.spaces.Space, seed: Optional[int] = None) -> Policy:
    action_space.seed(seed)
    return lambda obs: action_space.sample()


def summarize(episodes: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """Aggregate of :func:`run_episode` results."""

    def mean(key):
        return float(np.mean([e[key] for e in episodes])) if episodes else float("nan")

    return {
        "episodes": len(episodes),
        "success_rate": mean("is_success"),
        "mean_final_error": mean("final_error"),
        "mean_tracking_error": mean("mean_tracking_error"),
        "mean_return": mean("return"),
        "std_return": float(np.std([e["return"] for e in episodes])) if episodes else float("nan"),
        "mean_length": mean("length"),
        "mean_coverage": mean("coverage"),
    }
