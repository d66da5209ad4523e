"""Making envs from a run's configuration, and running one episode with per-step records.

Used by the training-time evaluation (:mod:`d2f_rl.callbacks`) and by
:mod:`d2f_rl.evaluate`; both step a plain (non-vectorised) env so the final
step's ``info`` and rendered frame are never lost to an auto-reset.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import gymnasium as gym
import numpy as np

from d2f_envs.rollout import Policy, random_policy, run_episode, summarize  # noqa: F401  (re-exported)


def import_env_packages(packages: Sequence[str] = ()) -> None:
    """Import ``d2f_envs`` (registers its ids) and any extra ``--gym-packages``."""
    importlib.import_module("d2f_envs")
    for name in packages:
        importlib.import_module(name)


def check_env_args(env_id: str, env_kwargs: Optional[Dict[str, Any]] = None) -> Tuple[gym.Space, gym.Space]:
    """Fail early, in one line, on a wrong env id or env kwargs (before any run folder is made).

    Builds the env once: an unknown id suggests the close matches; a bad kwarg, a missing
    or malformed flow file gives the env's own error (it names the argument or file).
    Returns the env's ``(observation_space, action_space)``.
    """
    import difflib

    from gymnasium.envs.registration import registry

    from flows import FlowFormatError

    if env_id not in registry:
        close = difflib.get_close_matches(env_id, list(registry), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        import d2f_envs

        raise SystemExit(f"unknown env id {env_id!r}{hint} (dream2flow-gym ids: {', '.join(d2f_envs.ENV_IDS)})")
    try:
        env = gym.make(env_id, **dict(env_kwargs or {}))
    except (TypeError, ValueError, KeyError, FileNotFoundError, FlowFormatError) as exc:
        raise SystemExit(f"{env_id} with env kwargs {dict(env_kwargs or {})}: {exc}") from None
    spaces = (env.observation_space, env.action_space)
    env.close()
    return spaces


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


def model_policy(model: Any, obs_normalizer: Any = None, deterministic: bool = True) -> Policy:
    """A policy from an SB3 model, normalising observations with a ``VecNormalize``'s statistics if given."""

    def act(obs: np.ndarray) -> np.ndarray:
        if obs_normalizer is not None:
            obs = obs_normalizer.normalize_obs(obs)
        action, _ = model.predict(obs, deterministic=deterministic)
        return action

    return act


