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
