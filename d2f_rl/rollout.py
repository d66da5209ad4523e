"""Making envs from a run's configuration, and running one episode with per-step records.

Used by the training-time evaluation (:mod:`d2f_rl.callbacks`) and by
:mod:`d2f_rl.evaluate`; both step a plain (non-vectorised) env so the final
step's ``info`` and rendered frame are never lost to an auto-reset.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Optional, Sequence

import gymnasium as gym
import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]


def import_env_packages(packages: Sequence[str] = ()) -> None:
    """Import ``d2f_envs`` (registers its ids) and any extra ``--gym-packages``."""
    importlib.import_module("d2f_envs")
    for name in packages:
        importlib.import_module(name)


def make_env(
    env_id: str,
    env_kwargs: Optional[Dict[str, Any]] = None,
    wrapper: Optional[Callable[[gym.Env], gym.Env]] = None,
    render_mode: Optional[str] = None,
    max_episode_steps: Optional[int] = None,
) -> gym.Env:
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)  # gym.make's TimeLimit, not an env argument
    env = gym.make(env_id, **kwargs)
    return wrapper(env) if wrapper is not None else env


def run_episode(env: gym.Env, policy: Policy, seed: Optional[int] = None, render: bool = False) -> Dict[str, Any]:
    """One episode of ``policy`` (obs -> action) in ``env``.

    Returns ``return``, ``length``, ``is_success`` / ``final_error`` /
    ``coverage`` at the last step, ``mean_tracking_error`` over the steps,
    per-step lists ``tracking_error``, ``final_error_curve``, ``flow_index``,
    ``reward``, any ``truncation_reason``, and ``frames`` (when ``render``).
    """
    obs, info = env.reset(seed=seed)
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
    if "truncation_reason" in info:
        out["truncation_reason"] = str(info["truncation_reason"])
    if render:
        out["frames"] = frames
    return out


def model_policy(model: Any, obs_normalizer: Any = None, deterministic: bool = True) -> Policy:
    """A policy from an SB3 model, normalising observations with a ``VecNormalize``'s statistics if given."""

    def act(obs: np.ndarray) -> np.ndarray:
        if obs_normalizer is not None:
            obs = obs_normalizer.normalize_obs(obs)
        action, _ = model.predict(obs, deterministic=deterministic)
        return action

    return act


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
