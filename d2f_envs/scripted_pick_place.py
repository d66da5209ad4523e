"""A scripted, closed-loop, flow-following pick-and-place controller for D2F-PickPlace-v0.

The articulated tasks' :class:`~d2f_envs.scripted_articulated.FlowFollowingGripper`
with a grasp on the loaf instead of a handle and a release at the flow's end.
It uses privileged simulator state (the loaf's pose, the env's re-anchored flow
and its time alignment) and outputs the env's ordinary actions, so it works for
every robot of the task::

    import gymnasium as gym, d2f_envs
    from d2f_envs.scripted_pick_place import FlowFollowingPicker

    env = gym.make("D2F-PickPlace-v0", robot="panda_gripper")
    ctrl = FlowFollowingPicker(env)
    out = run_episode(env, ctrl, seed=0)   # from d2f_envs.rollout

Phases:

1. **approach**: the TCP goes 8 cm above the grasp point, fingers open, turned
   so the fingers close across the loaf's width (of the two yaws that do, the
   one nearer the TCP's);
2. **descend**: straight down to the grasp point, the loaf's centre raised so
   the fingertips clear the table by ``fingertip_clearance``;
3. **grasp**: fingers close for a few steps; the grasp is recorded in the
   loaf's frame;
4. **follow**: the loaf's target pose is the rigid fit of its bound points on
   the flow's subgoal frame, and the TCP goes where the grasp is on the loaf
   in that pose (the articulated controller's rule); the subgoal is
   ``lookahead`` frames past ``t*`` and at least ``min_lead`` (2 cm) ahead of
   the loaf, so the few millimetres a soft grasp gives while lifting cannot
   stall it where the flow moves slowly;
5. **release**: once the loaf has reached the flow's last frame (``t*`` within
   the lookahead of the end and the loaf within ``release_tol`` of that frame),
   the fingers open for a few steps;
6. **retreat**: the open gripper rises ``retreat_height`` and waits there.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from flows import fit_rigid_transform
from .rollout import run_episode  # noqa: F401  (the one episode loop; re-exported)
from .scripted_articulated import FlowFollowingGripper, _wrap
from .tasks.articulated import yaw_of
from .tasks.pick_place import LOAF_HALF_HEIGHT, PickPlaceEnv


class FlowFollowingPicker(FlowFollowingGripper):
    """Grasp the loaf, carry it so its points follow the flow's subgoal, let go at the end."""

    pregrasp_height = 0.08
    approach_tol = 0.01
    descend_tol = 0.006
    yaw_tol = 0.05
    grasp_steps = 5
    #: fingertips this far above the table at the grasp (m): the pads still hold the loaf's base
    fingertip_clearance = 0.012
    #: the loaf must be this close (mean point error, m) to the flow's last frame to be let go
    release_tol = 0.012
    release_steps = 5
    #: the subgoal is at least this far (mean point distance, m) ahead of the loaf's flow frame
    min_lead = 0.02
    retreat_height = 0.12

    def __init__(self, env: Any):
        u = env.unwrapped
        if not isinstance(u, PickPlaceEnv):
            raise TypeError(f"FlowFollowingPicker drives D2F-PickPlace-v0, not {type(u).__name__}")
        self.env = u
        self._dofs = u.dofs
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._hold_pos: Optional[np.ndarray] = None
        self._hold_yaw = 0.0

    def _grasp_point(self) -> np.ndarray:
        """TCP position for the grasp: above the loaf's centre, fingertips clear of the table."""
        u = self.env
        c = u.data.xpos[u.binding._id].copy()
        tip_below_tcp = u.robot.gripper.finger_tip_below_tcp
        c[2] = c[2] - LOAF_HALF_HEIGHT + self.fingertip_clearance + tip_below_tcp
        return c

    def _closing_yaw(self, tcp_yaw: float) -> float:
        """The loaf's yaw or that plus pi (both close the fingers across it), the nearer one."""
        y = self.env.loaf_yaw()
        return y if abs(_wrap(y - tcp_yaw)) <= np.pi / 2 else _wrap(y + np.pi)

    def _target_link_pose(self) -> np.ndarray:
        """The loaf's pose at the subgoal: ``lookahead`` frames past ``t*``, and further on until
        the flow's points are ``min_lead`` (mean) away from frame ``t*`` (or at the flow's end):
        where the flow slows down (lift-off, the turn from lifting to carrying) a subgoal a
        fixed number of frames ahead is within a small grasp slip of the loaf and would stall it."""
        u = self.env
        rf = u.reward_fn
        last = rf.num_frames - 1
        t = min(u._measured.get("flow_index", 0), last)
        sub = min(t + rf.lookahead, last)
        while sub < last and np.linalg.norm(rf.target[sub] - rf.target[t], axis=1).mean() < self.min_lead:
            sub += 1
        return fit_rigid_transform(u.binding.local_points, rf.target[sub], weights=u.flow.visible[sub])

    def __call__(self, obs: Optional[np.ndarray] = None) -> np.ndarray:
        u = self.env
        tcp = u.robot.tcp_pos(u.data)
        tcp_yaw = u.robot.tcp_yaw(u.data)
        if self.phase in ("approach", "descend"):
            grasp = self._grasp_point()
            yaw = self._closing_yaw(u.controller.target_yaw)
        if self.phase == "approach":
            goal = grasp + np.array([0.0, 0.0, self.pregrasp_height])
            if np.linalg.norm(goal - tcp) < self.approach_tol and abs(_wrap(yaw - tcp_yaw)) < self.yaw_tol:
                self.phase = "descend"
            else:
                return self._action(goal, yaw, -1.0)
        if self.phase == "descend":
            if np.linalg.norm(grasp - tcp) < self.descend_tol:
                self.phase = "grasp"
                self._count = 0
                # hold this TCP pose while the fingers close: a grasp point that followed the loaf
                # would chase it upwards as the closing pads lift it
                self._hold_pos, self._hold_yaw = grasp, yaw
            else:
                return self._action(grasp, yaw, -1.0)
        if self.phase == "grasp":
            self._count += 1
            if self._count <= self.grasp_steps:
                return self._action(self._hold_pos, self._hold_yaw, 1.0)
            X = self._link_pose()
            self._grasp_local = X[:3, :3].T @ (tcp - X[:3, 3])
            self._grasp_yaw = _wrap(tcp_yaw - yaw_of(X[:3, :3]))
            self.phase = "follow"
        if self.phase == "follow":
            rf = u.reward_fn
            last = rf.num_frames - 1
            # near the end in time and in space: t* within the lookahead of the last frame (the
            # flow's last frames hardly differ, so t* need not reach it exactly) and the loaf close
            near_end = u._measured.get("flow_index", 0) >= last - rf.lookahead
            if near_end and rf.frame_error(u._points, last) < self.release_tol:
                self.phase = "release"
                self._count = 0
                self._hold_pos = u.controller.target_pos.copy()
                self._hold_yaw = u.controller.target_yaw
            else:
                Xt = self._target_link_pose()
                goal = Xt[:3, :3] @ self._grasp_local + Xt[:3, 3]
                return self._action(goal, yaw_of(Xt[:3, :3]) + self._grasp_yaw, 1.0)
        if self.phase == "release":
            self._count += 1
            if self._count <= self.release_steps:
                return self._action(self._hold_pos, self._hold_yaw, -1.0)
            self.phase = "retreat"
        # retreat: straight up with the fingers open, then wait
        up = self._hold_pos + np.array([0.0, 0.0, self.retreat_height])
        return self._action(up, self._hold_yaw, -1.0)
