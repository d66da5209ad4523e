"""Downstream success: does a robot that is rewarded for following this flow do the task?

A flow is used exactly as a user would use it: ``gym.make(task, flow=flow)``, and a policy acts
on that env's flow-tracking reward: the zero-shot MPPI / CEM planner of ``d2f_rl.planners``
(default), or, with ``--train``, a short SB3 run with the task's tuned config.

Success is judged against the *task*, not against the flow the robot was given: a flow with a
depth-scale error leads a good tracker to the wrong place, and the env built on that flow would call
it a success. So every episode's actions are replayed, from the same seed, in the env built with the
task's reference flow (the shipped one, ``gym.make(task)``); the flow does not touch the physics,
so the replay reproduces the episode's motion exactly, and that env's ``is_success`` and
``final_error`` at the last step are the episode's ``success`` and ``final_error``. The env's own
verdict on the given flow is kept as ``flow_success`` (CSV).

Imports of ``gymnasium``, ``d2f_envs`` and ``d2f_rl`` are inside the functions: the benchmark is
the one place where ``flows`` drives the envs, and ``import flows`` must stay free of them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..format import ObjectFlow


@dataclass(frozen=True)
class PlannerBudget:
    """The sampling planner's settings (``d2f_rl.planners.make_planner``)."""

    planner: str = "mppi"
    horizon: int = 10
    samples: int = 64
    iterations: int = 2

    def describe(self) -> str:
        return f"{self.planner} h{self.horizon} x{self.samples} x{self.iterations}"


class _RecordingPolicy:
    """Wraps a policy and keeps the actions of the current episode (for the judge's replay)."""

    def __init__(self, policy: Callable[[np.ndarray], np.ndarray]):
        self.policy = policy
        self.actions: List[np.ndarray] = []

    def reset(self) -> None:
        self.actions = []
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        action = np.array(self.policy(obs), dtype=np.float64, copy=True)
        self.actions.append(action)
        return action


def replay(judge: Any, actions: Sequence[np.ndarray], seed: int) -> Dict[str, Any]:
    """The last step's info of ``actions`` replayed in ``judge`` from ``reset(seed=seed)``."""
    _, info = judge.reset(seed=seed)
    for a in actions:
        _, _, terminated, truncated, info = judge.step(a)
        if terminated or truncated:
            break
    return info


def judged_episode(env: Any, judge: Any, policy: Callable, seed: int) -> Dict[str, Any]:
    """One episode of ``policy`` in ``env`` (the flow under test), judged by ``judge`` (the task's flow)."""
    from d2f_envs.rollout import run_episode

    rec = _RecordingPolicy(policy)
    ep = run_episode(env, rec, seed=seed)
    info = replay(judge, rec.actions, seed)
    return {
        "seed": seed, "success": bool(info.get("is_success", False)), "final_error_m": float(info.get("final_error", np.nan)),
        "flow_success": bool(ep["is_success"]), "flow_final_error_m": float(ep["final_error"]),
        "mean_tracking_error_m": float(ep["mean_tracking_error"]), "steps": int(ep["length"]),
        "truncation_reason": ep.get("truncation_reason", ""),
    }


def summarize_episodes(episodes: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Success rate and errors over judged episodes."""
    def mean(key):
        return float(np.mean([e[key] for e in episodes])) if episodes else float("nan")

    return {
        "episodes": len(episodes), "seeds": [e["seed"] for e in episodes],
        "success_rate": mean("success"), "flow_success_rate": mean("flow_success"),
        "median_final_error_m": float(np.median([e["final_error_m"] for e in episodes])) if episodes else float("nan"),
        "mean_tracking_error_m": mean("mean_tracking_error_m"),
    }


def planner_success(env_id: str, flow: ObjectFlow, seeds: Sequence[int], budget: PlannerBudget,
                    on_episode: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Judged success of the zero-shot planner rewarded by ``flow`` on ``env_id`` (default robot).

    A fresh planner per episode, seeded with the episode's seed, so an episode's result does not
    depend on which episodes ran before it (any subset of seeds reproduces the same numbers).
    """
    import gymnasium as gym

    import d2f_envs  # noqa: F401  (registers the env ids)
    from d2f_rl.planners import make_planner

    env = gym.make(env_id, flow=flow)
    judge = gym.make(env_id)
    episodes = []
    try:
        for seed in seeds:
            planner = make_planner(budget.planner, env, horizon=budget.horizon, samples=budget.samples,
                                   iterations=budget.iterations, seed=int(seed))
            episodes.append(judged_episode(env, judge, planner, int(seed)))
            if on_episode:
                on_episode()
    finally:
        env.close()
        judge.close()
    return dict(summarize_episodes(episodes), policy=budget.describe(), budget=asdict(budget), episode_results=episodes)


def trained_success(env_id: str, flow: ObjectFlow, seeds: Sequence[int], steps: int, algo: str, workdir: Path,
                    train_seed: int = 0, hyperparams: Sequence[str] = ()) -> Dict[str, Any]:
    """Judged success of an SB3 policy trained for ``steps`` env steps on ``flow``'s reward with the
    task's tuned config (``d2f_rl/hyperparams/<algo>.yml``, ``hyperparams``: ``key:value`` overrides as
    train.py's ``-params``); the run folder stays under ``workdir``."""
    import gymnasium as gym

    from d2f_rl.evaluate import load_run
    from d2f_rl.rollout import make_env, model_policy
    from d2f_rl.train import main as train_main

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    flow_path = flow.save(workdir / "flow.npz", overwrite=True)
    run_dir = train_main([
        "--algo", algo, "--env", env_id, "-n", str(int(steps)), "--seed", str(int(train_seed)),
        "-f", str(workdir / "logs"), "--env-kwargs", f"flow:{str(flow_path)!r}", "--eval-freq", "0",
        "--save-freq", "0", "--no-progress", "--no-wandb", "-v", "0",
    ] + (["-params", *hyperparams] if hyperparams else []))
    model, normalizer, _, env_kwargs, wrapper, _ = load_run(run_dir, "final")
    env = make_env(env_id, env_kwargs, wrapper)
    judge = gym.make(env_id)
    try:
        episodes = [judged_episode(env, judge, model_policy(model, normalizer, True), int(s)) for s in seeds]
    finally:
        env.close()
        judge.close()
    return dict(summarize_episodes(episodes), policy=f"{algo} {steps} steps", run_dir=str(run_dir),
                episode_results=episodes)
