"""Small env wrappers named in the hyperparameter files (``env_wrapper:``), rl-zoo style."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Float32Observation(gym.ObservationWrapper):
    """Cast a ``Box`` observation to float32.

    The d2f envs emit float64 observations; SB3 stores replay buffers in the
    observation space's dtype, so this halves replay-buffer memory and
    checkpoint size at no cost in precision that matters (positions in metres).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box):
            raise TypeError(f"Float32Observation needs a Box observation space, got {space}")
        self.observation_space = spaces.Box(
            low=space.low.astype(np.float32), high=space.high.astype(np.float32), shape=space.shape, dtype=np.float32
        )

    def observation(self, observation):
        return np.asarray(observation, dtype=np.float32)


#: dotted names of the wrappers that add privileged (simulator-only) entries to the observation;
#: the exporter drops them from the deployed env's wrapper spec (:func:`deployable_wrapper_spec`)
PRIVILEGED_WRAPPERS = ("d2f_rl.wrappers.PrivilegedObservation",)


class PrivilegedObservation(gym.ObservationWrapper):
    """Append the privileged state observation to the env's own one, for an asymmetric actor-critic.

    ``obs = [real observation (actor_dim entries) | env.state_obs() (privileged_dim entries)]``

    The first ``actor_dim`` entries are exactly the wrapped env's observation (with
    ``obs_mode="real"``: what a robot measures; layout ``env.unwrapped.obs_layout``). The rest is
    the ``obs_mode="state"`` observation of the current simulator state (layout
    ``env.unwrapped.state_obs_layout``: true object points, the true flow alignment), read from
    ``env.unwrapped.state_obs()`` at every observation, so ``info["privileged_obs"]`` is not
    needed. :attr:`layout` names both parts (``"privileged/<name>"`` for the second).

    With :class:`d2f_rl.policies.AsymmetricActorCriticPolicy` the actor reads only
    ``obs[..., :actor_dim]`` and the critic all of it; the ONNX export then takes only the
    first ``actor_dim`` entries (``d2f_rl.export``), so a deployed policy needs nothing
    privileged. Works under SB3's vec envs and under :class:`d2f_rl.vec_env.BatchedVecEnv`
    (which builds one wrapper stack per sub-env, so each row reads its own sub-env's state).
    The dtype is the wrapped observation's (put ``Float32Observation`` before or after it).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        if not callable(getattr(base, "state_obs", None)):
            raise TypeError(f"PrivilegedObservation needs an env with state_obs() (a d2f FlowEnv), got {type(base).__name__}")
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise TypeError(f"PrivilegedObservation needs a flat Box observation space, got {space}")
        self.actor_dim = int(space.shape[0])
        state_layout = getattr(base, "state_obs_layout", None)
        # the state layout gives the size without a reset (state_obs() needs one); else ask the env
        self.privileged_dim = (max(s.stop for s in state_layout.values()) if state_layout
                               else int(np.asarray(base.state_obs()).shape[0]))
        self.observation_space = spaces.Box(
            low=np.concatenate([space.low, np.full(self.privileged_dim, -np.inf, dtype=space.dtype)]),
            high=np.concatenate([space.high, np.full(self.privileged_dim, np.inf, dtype=space.dtype)]),
            dtype=space.dtype,
        )
        actor_layout = getattr(base, "obs_layout", None) or {"observation": slice(0, self.actor_dim)}
        state_layout = state_layout or {"state": slice(0, self.privileged_dim)}
        n = self.actor_dim
        self.layout = {**{k: slice(s.start, s.stop) for k, s in actor_layout.items()},
                       **{f"privileged/{k}": slice(n + s.start, n + s.stop) for k, s in state_layout.items()}}

    def observation(self, observation):
        priv = np.asarray(self.env.unwrapped.state_obs(), dtype=self.observation_space.dtype)
        return np.concatenate([np.asarray(observation, dtype=self.observation_space.dtype), priv])


def _wrapper_name(item) -> str:
    if isinstance(item, dict):
        ((name, _),) = item.items()
        return str(name)
    return str(item)


def deployable_wrapper_spec(spec):
    """An rl-zoo ``env_wrapper`` spec without the privileged wrappers (:data:`PRIVILEGED_WRAPPERS`):
    the observation a robot (or ``python -m d2f_rl.deploy --sim``) produces. None when nothing is left."""
    if not spec:
        return spec
    items = spec if isinstance(spec, list) else [spec]
    kept = [item for item in items if _wrapper_name(item) not in PRIVILEGED_WRAPPERS]
    if not kept:
        return None
    return kept if isinstance(spec, list) else kept[0]


def find_privileged(env: gym.Env):
    """The :class:`PrivilegedObservation` layer of a wrapped env, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, PrivilegedObservation):
            return env
        env = env.env
    return None
