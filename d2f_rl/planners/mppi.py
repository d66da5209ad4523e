"""MPPI (model-predictive path integral control) on the env's own simulation.

Each iteration samples K action sequences around the current mean plan
(Gaussian noise of std ``noise``, clipped to the action box; sample 0 is the
mean itself, sample 1 all zeros), rolls them out exactly with
:class:`~d2f_rl.planners.rollout_cost.BatchRollout`, scores them with
:class:`~d2f_rl.planners.rollout_cost.FlowCost`, and replaces the mean by the
softmin-weighted average ``sum_k w_k a_k``, ``w_k ~ exp(-(c_k - min c) / (lambda * (median c - min c)))``:
the temperature is relative to the cost spread, so one ``lambda`` suits any cost
scale. The noise shrinks by ``noise_decay`` per iteration within a control step.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .rollout_cost import SamplingPlanner


class MPPIPlanner(SamplingPlanner):
    name = "mppi"

    def __init__(self, env, horizon: int = 10, samples: int = 64, iterations: int = 2, seed: Optional[int] = 0,
                 noise: float = 0.5, temperature: float = 0.1, noise_decay: float = 0.7, **kwargs):
        super().__init__(env, horizon=horizon, samples=samples, iterations=iterations, seed=seed, noise=noise, **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.noise_decay = float(noise_decay)

    def _optimise(self, mean: np.ndarray) -> np.ndarray:
        std = self.noise
        for _ in range(self.iterations):
            a = self._sample(mean, std)
            c = self.evaluate(a)
            lo = c.min()
            scale = max(float(np.median(c) - lo), 1e-9) * self.temperature
            w = np.exp(-(c - lo) / scale)
            w /= w.sum()
            mean = np.einsum("k,kha->ha", w, a)
            self.last_cost = float(lo)
            std = std * self.noise_decay
        return mean
