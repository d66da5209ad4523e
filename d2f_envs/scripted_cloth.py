"""A scripted, closed-loop, flow-following pinch-and-carry controller for D2F-CoverBowl-v0.

It uses privileged simulator state (the cloth's vertices, the env's re-anchored
flow and its time alignment) and outputs the env's ordinary actions (TCP
displacements, grip), so it works for every robot of the task::

    import gymnasium as gym, d2f_envs
    from d2f_envs.scripted_cloth import FlowFollowingClothGripper
    from d2f_envs.rollout import run_episode

    env = gym.make("D2F-CoverBowl-v0")
    run_episode(env, FlowFollowingClothGripper(env), seed=0)["is_success"]

Phases:

1. **approach**: the TCP goes 6 cm above the grasp vertex (the middle of the
   cloth's near edge, the one the demonstration drives), fingers open;
2. **descend**: straight down until the pinch point is on the vertex;
3. **grasp**: grip closes for a few steps (the env's pinch takes the vertex);
   if nothing was pinched it starts over;
4. **follow**: every step the grasp vertex's target is read from the flow
   (``reward_fn.target``, the re-anchored flow) at the frame one ahead of the
   time since the grasp, at the flow point that sat on that vertex at the
   start (or the nearest one, offset), and the TCP is sent to hold the vertex
   there: the drape depends on the path the edge takes, so the controller
   replays it in time rather than cutting towards a later subgoal. After the
   flow's end it holds the last frame.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .rollout import run_episode  # noqa: F401  (the one episode loop; re-exported)
from .tasks.cover_bowl import PINCH_BELOW_TCP, CoverBowlEnv


class FlowFollowingClothGripper:
    """Pinch the cloth's near edge, then carry it so the cloth follows the flow's subgoal."""

    pregrasp_height = 0.06
    approach_tol = 0.012
    descend_tol = 0.006
    grasp_steps = 2
    #: flow frames the carried vertex's target leads the time since the grasp
    lead_frames = 1

    def __init__(self, env: Any):
        u = env.unwrapped
        if not isinstance(u, CoverBowlEnv):
            raise TypeError(f"FlowFollowingClothGripper drives D2F-CoverBowl-v0, not {type(u).__name__}")
        self.env = u
        self.reset()

    def reset(self) -> None:
        """Start of an episode (call after ``env.reset``)."""
        u = self.env
        self.phase = "approach"
        self._count = 0
        # the flow point that started nearest the grasp vertex, and the vertex's offset from it
        v0 = u.grasp_vertex_pos()
        t0 = u.reward_fn.target[0]
        self._j = int(np.linalg.norm(t0 - v0, axis=1).argmin())
        self._offset = v0 - t0[self._j]

    def _action(self, tcp_goal: np.ndarray, grip: float) -> np.ndarray:
        ctrl = self.env.controller
        a = np.zeros(4, dtype=np.float32)
        a[:3] = (np.asarray(tcp_goal) - ctrl.target_pos) / ctrl.config.max_delta_pos
        a[3] = grip
        return np.clip(a, -1.0, 1.0)

    def __call__(self, obs=None) -> np.ndarray:
        u = self.env
        below = np.array([0.0, 0.0, PINCH_BELOW_TCP])
        vertex = u.grasp_vertex_pos()
        if self.phase == "approach":
            goal = vertex + below + np.array([0.0, 0.0, self.pregrasp_height])
            if np.linalg.norm(goal - u.robot.tcp_pos(u.data)) < self.approach_tol:
                self.phase = "descend"
            else:
                return self._action(goal, -1.0)
        if self.phase == "descend":
            if np.linalg.norm(u.pinch_point() - vertex) < self.descend_tol:
                self.phase, self._count = "grasp", 0
            else:
                return self._action(vertex + below, -1.0)
        if self.phase == "grasp":
            self._count += 1
            if self._count <= self.grasp_steps:
                return self._action(vertex + below, 1.0)
            if u.pinched_vertex() < 0:  # missed: try again from above
                self.phase = "approach"
                return self._action(vertex + below + np.array([0.0, 0.0, self.pregrasp_height]), -1.0)
            self.phase = "follow"
        # follow the flow in time from the grasp on, one frame ahead (the servo's lag): the cloth's
        # drape depends on the path the edge takes, so the arc is not short-cut towards a later
        # subgoal
        rf = u.reward_fn
        self._count += 1
        sub = min(self._count - self.grasp_steps + self.lead_frames, rf.num_frames - 1)
        return self._action(rf.target[sub][self._j] + self._offset + below, 1.0)
