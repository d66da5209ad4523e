"""CEM (cross-entropy method) on the env's own simulation.

Each iteration samples K action sequences from a diagonal Gaussian (mean plan,
per-step per-dof std; clipped to the action box; sample 0 is the mean, sample
1 all zeros), rolls them out exactly with
:class:`~d2f_rl.planners.rollout_cost.BatchRollout`, scores them with
:class:`~d2f_rl.planners.rollout_cost.FlowCost`, and refits the Gaussian to the
``elite_frac`` best (smoothed by ``alpha``: new = alpha * old + (1 - alpha) * elite
fit). The returned plan is the refit mean, unless the best sample seen this
control step beats the mean's own cost, then that sample (``return_best``).
The std restarts at ``noise`` every control step (the mean is warm-started).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .rollout_cost import SamplingPlanner


class CEMPlanner(SamplingPlanner):
    name = "cem"

    def __init__(self, env, horizon: int = 10, samples: int = 64, iterations: int = 2, seed: Optional[int] = 0,
                 noise: float = 0.5, elite_frac: float = 0.1, alpha: float = 0.1, min_std: float = 0.05,
                 return_best: bool = True, **kwargs):
        super().__init__(env, horizon=horizon, samples=samples, iterations=iterations, seed=seed, noise=noise, **kwargs)
        if not 0.0 < elite_frac <= 1.0:
            raise ValueError(f"elite_frac must be in (0, 1], got {elite_frac}")
        self.n_elite = max(2, int(round(elite_frac * self.samples)))
        self.alpha = float(alpha)
        self.min_std = float(min_std)
        self.return_best = bool(return_best)

    def _optimise(self, mean: np.ndarray) -> np.ndarray:
        std = np.full_like(mean, self.noise)
        best_a, best_c = None, np.inf
        for _ in range(self.iterations):
            a = self._sample(mean, std)
            c = self.evaluate(a)
            order = np.argsort(c, kind="stable")
            elite = a[order[: self.n_elite]]
            if c[order[0]] < best_c:
                best_c, best_a = float(c[order[0]]), a[order[0]].copy()
            mean = self.alpha * mean + (1 - self.alpha) * elite.mean(axis=0)
            std = np.maximum(self.alpha * std + (1 - self.alpha) * elite.std(axis=0), self.min_std)
        self.last_cost = best_c
        if self.return_best and best_a is not None:
            return best_a
        return mean
