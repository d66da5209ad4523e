"""Stable-Baselines3 ``VecEnv`` over the batched :class:`~d2f_envs.vector.BatchedFlowVectorEnv`.

SB3's convention differs from Gymnasium 1.x's ``NEXT_STEP`` autoreset: a done
sub-env is reset in the same ``step``, the returned observation is the new
episode's first one, and the last one goes to ``infos[i]["terminal_observation"]``;
``infos[i]["TimeLimit.truncated"]`` says the episode was cut (not terminated).
:class:`BatchedVecEnv` gets there with one masked reset of the done sub-envs
(``reset(options={"reset_mask": done})``) right after the batched step, so it
returns what ``DummyVecEnv`` over ``gym.make`` envs returns (tests/test_vector_env.py).

    from d2f_rl.vec_env import make_batched_vec_env
    venv = make_batched_vec_env("D2F-PushT-v0", n_envs=16, seed=0, env_kwargs={"robot": "pusher"})
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from d2f_envs.vector import BatchedFlowVectorEnv


def unbatch_infos(infos: Dict[str, Any], num_envs: int) -> List[Dict[str, Any]]:
    """Gymnasium's dict of arrays with ``_key`` masks -> one dict per sub-env, Python scalars (as a single env's)."""
    out: List[Dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, arr in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get("_" + key)
        if isinstance(arr, dict):  # nested infos
            for i, sub in enumerate(unbatch_infos(arr, num_envs)):
                if mask is None or mask[i]:
                    out[i][key] = sub
            continue
        values = arr.tolist() if isinstance(arr, np.ndarray) and arr.ndim == 1 else list(arr)
        for i in (np.flatnonzero(mask).tolist() if mask is not None else range(num_envs)):
            out[i][key] = values[i]
    return out


def observation_wrappers(wrapper: Optional[Callable[[gym.Env], gym.Env]], env: gym.Env) -> List[gym.ObservationWrapper]:
    """The layers ``wrapper(env)`` adds, innermost first; each must be a ``gym.ObservationWrapper``.

    A batched env has no per-env wrapper stack: an observation wrapper (rl-zoo's ``env_wrapper``,
    e.g. ``Float32Observation``) is applied to each row of the batch instead; any other wrapper
    (one that changes rewards, actions or episodes) is refused rather than silently dropped.
    """
    if wrapper is None:
        return []
    layers, w = [], wrapper(env)
    while w is not env:
        if not isinstance(w, gym.ObservationWrapper):
            raise ValueError(
                f"the batched vec env applies observation wrappers only, got {type(w).__name__}; "
                "use --vec-env dummy or subproc for this env_wrapper")
        layers.append(w)
        w = w.env
    return layers[::-1]


class BatchedVecEnv(VecEnv):
    """SB3 ``VecEnv`` of a :class:`BatchedFlowVectorEnv` (see the module docstring).

    ``wrapper``: rl-zoo's ``env_wrapper`` callable; only observation wrappers, one stack per sub-env
    built over that sub-env and applied to its row (see :func:`observation_wrappers`). ``get_attr``/``set_attr``/``env_method``
    reach the sub-envs (the unwrapped task envs).
    """

    def __init__(self, venv: BatchedFlowVectorEnv, wrapper: Optional[Callable[[gym.Env], gym.Env]] = None):
        self.venv = venv
        # one wrapper stack per sub-env, each over its own sub-env: a wrapper that reads its env's state
        # (PrivilegedObservation's state_obs()) sees that row's simulation, not sub-env 0's
        self._obs_layers = [observation_wrappers(wrapper, e) for e in venv.envs]
        self._wrapped = bool(self._obs_layers[0])
        obs_space = self._obs_layers[0][-1].observation_space if self._wrapped else venv.single_observation_space
        super().__init__(venv.num_envs, obs_space, venv.single_action_space)
        self._actions: Optional[np.ndarray] = None

    def _wrap_obs(self, obs: np.ndarray, ids: Optional[Sequence[int]] = None) -> np.ndarray:
        """Rows ``obs[j]`` of sub-envs ``ids`` (default: all, in order) through their own wrapper stacks;
        call it while those sub-envs are in the state the rows observe."""
        if not self._wrapped:
            return obs
        ids = range(len(obs)) if ids is None else ids
        out = np.empty((len(obs),) + self.observation_space.shape, dtype=self.observation_space.dtype)
        for j, (i, o) in enumerate(zip(ids, obs)):
            for layer in self._obs_layers[i]:
                o = layer.observation(o)
            out[j] = o
        return out

    # ------------------------------------------------------------------ core API
    def reset(self):
        opts = self._options
        if any(opts) and any(o != opts[0] for o in opts):
            raise NotImplementedError("BatchedVecEnv: per-env reset options differ; pass the same options to all")
        obs, infos = self.venv.reset(seed=list(self._seeds), options=dict(opts[0]) if opts[0] else None)
        self.reset_infos = unbatch_infos(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return self._wrap_obs(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rew, term, trunc, infos = self.venv.step(self._actions)
        dones = term | trunc
        info_list = unbatch_infos(infos, self.num_envs)
        for i, info in enumerate(info_list):
            info["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
        if dones.any():
            done_ids = np.flatnonzero(dones).tolist()
            # the last observations, wrapped before the reset: a wrapper reading the sub-env's state
            # must see the episode's last state, not the next episode's first
            terminal = self._wrap_obs(obs[done_ids].copy(), done_ids)
            for i, o in zip(done_ids, terminal):
                info_list[i]["terminal_observation"] = o
            # SB3 resets in the same step: the new episodes' first observations replace the last ones
            reset_obs, reset_infos = self.venv.reset(options={"reset_mask": dones})
            obs[dones] = reset_obs[dones]
            r_infos = unbatch_infos(reset_infos, self.num_envs)
            for i in done_ids:
                self.reset_infos[i] = r_infos[i]
        return self._wrap_obs(obs), rew.astype(np.float32), dones, info_list

    def close(self) -> None:
        self.venv.close()

    # ------------------------------------------------------------------ sub-env access
    def _targets(self, indices: VecEnvIndices):
        return [self.venv.envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> List[Any]:
        if attr_name == "render_mode":
            return [None for _ in self._get_indices(indices)]
        return [getattr(env, attr_name) for env in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for env in self._targets(indices):
            setattr(env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> List[Any]:
        return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class, indices: VecEnvIndices = None) -> List[bool]:
        # the sub-envs are the bare task envs: TimeLimit is the batched env's, episode stats need VecMonitor
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[Optional[np.ndarray]]:
        return [None for _ in range(self.num_envs)]


def make_batched_vec_env(env_id: str, n_envs: int, seed: Optional[int] = None,
                         env_kwargs: Optional[Dict[str, Any]] = None, wrapper_class: Optional[Callable] = None,
                         **batch_kwargs: Any) -> BatchedVecEnv:
    """``make_vec_env``'s counterpart: ``n_envs`` batched sub-envs, seeded ``seed + i`` at the first reset;
    ``wrapper_class``: observation wrappers only (see :func:`observation_wrappers`)."""
    venv = BatchedVecEnv(BatchedFlowVectorEnv(env_id, n_envs, **batch_kwargs, **(env_kwargs or {})), wrapper_class)
    if seed is not None:
        venv.seed(seed)
    return venv
