"""Zero-shot sampling-based MPC on the flow-tracking cost: ``python eval.py --env D2F-PushT-v0 --planner mppi``.

    from d2f_rl.planners import make_planner
    planner = make_planner("mppi", env, horizon=10, samples=64, iterations=2, seed=0)
    action = planner(obs)  # plans from env.unwrapped's current state

* :mod:`.rollout_cost`: exact batched rollouts on copies of the env's model
  (``mujoco.batch``), the flow cost, the shared policy shell;
* :mod:`.mppi`, :mod:`.cem`: the two update rules.

Torch-free (unlike the rest of ``d2f_rl``'s training code).
"""
from __future__ import annotations

from typing import Any, Dict, Type

from .cem import CEMPlanner
from .mppi import MPPIPlanner
from .rollout_cost import BatchRollout, CostWeights, FlowCost, Rollouts, SamplingPlanner

#: name -> planner class
PLANNERS: Dict[str, Type[SamplingPlanner]] = {"mppi": MPPIPlanner, "cem": CEMPlanner}


def make_planner(name: str, env: Any, **kwargs: Any) -> SamplingPlanner:
    """A planner by name (see :data:`PLANNERS`) acting in ``env``; kwargs go to its constructor."""
    try:
        cls = PLANNERS[name]
    except KeyError:
        raise ValueError(f"unknown planner {name!r}; choose from {sorted(PLANNERS)}") from None
    return cls(env, **kwargs)


__all__ = ["PLANNERS", "BatchRollout", "CEMPlanner", "CostWeights", "FlowCost", "MPPIPlanner", "Rollouts",
           "SamplingPlanner", "make_planner"]
