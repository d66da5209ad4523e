"""A scripted, closed-loop, flow-following grasp-and-pull controller for the articulated tasks
(D2F-OpenDrawer-v0, D2F-OpenDoor-v0).

It uses privileged simulator state (the handle's position, the link's pose,
the env's re-anchored flow and its time alignment) and outputs the env's
ordinary actions (TCP displacements, yaw, grip), so it works for every robot
of the task that has a gripper::

    import gymnasium as gym, d2f_envs
    from d2f_envs.scripted_articulated import FlowFollowingGripper

    env = gym.make("D2F-OpenDrawer-v0")
    ctrl = FlowFollowingGripper(env)
    obs, info = env.reset(seed=0)
    ctrl.reset()                      # after every env.reset
    while True:
        obs, r, term, trunc, info = env.step(ctrl(obs))
        if term or trunc:
            break
    info["is_success"]

or ``run_episode(env, ctrl, seed)``.

Phases:

1. **approach**: the TCP goes above the handle (8 cm), fingers open, turned so
   that the fingers close along the link's pull direction;
2. **descend**: straight down until the TCP is at the handle bar's centre;
3. **grasp**: fingers close for a few steps; the grasp is recorded as the
   TCP's position and yaw in the link's frame;
4. **follow**: every step, the link's target pose is the rigid fit of its bound
   points onto the flow's subgoal frame (``reward_fn.target[subgoal_index]``)
   and the TCP is sent to where the grasp would be on the link in that pose
   (and turned by the link's yaw). After the flow's end it holds the last frame.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from flows import fit_rigid_transform
from .tasks.articulated import ArticulatedEnv, yaw_of
from .rollout import run_episode  # noqa: F401  (the one episode loop; re-exported)


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


class FlowFollowingGripper:
    """Grasp the handle, then move the TCP so the link follows the flow's subgoal."""

    pregrasp_height = 0.08
    approach_tol = 0.012
    descend_tol = 0.006
    yaw_tol = 0.05
    grasp_steps = 4

    def __init__(self, env: Any):
        u = env.unwrapped
        if not isinstance(u, ArticulatedEnv):
            raise TypeError(f"FlowFollowingGripper drives the articulated tasks, not {type(u).__name__}")
        self.env = u
        self._dofs = u.dofs
        self.reset()

    def reset(self) -> None:
        """Start of an episode (call after ``env.reset``)."""
        self.phase = "approach"
        self._count = 0
        self._grasp_local: Optional[np.ndarray] = None
        self._grasp_yaw = 0.0

    # ------------------------------------------------------------------ helpers
    def _action(self, pos: np.ndarray, yaw: float, grip: float) -> np.ndarray:
        u = self.env
        ctrl, cfg = u.controller, u.controller.config
        a = np.zeros(len(self._dofs), dtype=np.float32)
        delta = (np.asarray(pos) - ctrl.target_pos) / cfg.max_delta_pos
        for i, d in enumerate(self._dofs):
            if d in "xyz" and len(d) == 1:
                a[i] = delta["xyz".index(d)]
            elif d == "yaw":
                a[i] = _wrap(yaw - ctrl.target_yaw) / cfg.max_delta_yaw
            elif d == "grip":
                a[i] = grip
        return np.clip(a, -1.0, 1.0)

    def _link_pose(self) -> np.ndarray:
        return self.env.binding.pose(self.env.data)

    def _target_link_pose(self) -> np.ndarray:
        u = self.env
        rf = u.reward_fn
        T = rf.num_frames
        sub = min(u._measured.get("flow_index", 0) + rf.lookahead, T - 1)
        return fit_rigid_transform(u.binding.local_points, rf.target[sub], weights=u.flow.visible[sub])

    # ------------------------------------------------------------------ policy
    def __call__(self, obs: Optional[np.ndarray] = None) -> np.ndarray:
        u = self.env
        tcp = u.robot.tcp_pos(u.data)
        tcp_yaw = u.robot.tcp_yaw(u.data)
        handle = u.handle_pos()
        yaw = u.handle_yaw() if "yaw" in self._dofs else u.controller.target_yaw
        if self.phase == "approach":
            goal = handle + np.array([0.0, 0.0, self.pregrasp_height])
            if np.linalg.norm(goal - tcp) < self.approach_tol and abs(_wrap(yaw - tcp_yaw)) < self.yaw_tol:
                self.phase = "descend"
            else:
                return self._action(goal, yaw, -1.0)
        if self.phase == "descend":
            if np.linalg.norm(handle - tcp) < self.descend_tol:
                self.phase = "grasp"
                self._count = 0
            else:
                # keep x/y on the handle, come down
                return self._action(handle, yaw, -1.0)
        if self.phase == "grasp":
            self._count += 1
            if self._count <= self.grasp_steps:
                return self._action(handle, yaw, 1.0)
            X = self._link_pose()
            self._grasp_local = X[:3, :3].T @ (handle - X[:3, 3])
            self._grasp_yaw = _wrap(yaw - yaw_of(X[:3, :3]))
            self.phase = "follow"
        # follow
        Xt = self._target_link_pose()
        goal = Xt[:3, :3] @ self._grasp_local + Xt[:3, 3]
        goal_yaw = yaw_of(Xt[:3, :3]) + self._grasp_yaw if "yaw" in self._dofs else yaw
        return self._action(goal, goal_yaw, 1.0)
