"""A scripted, closed-loop sweeping controller for D2F-SweepPasta-v0 that pushes the pieces where the flow ends.

It uses privileged simulator state (the pieces' centres, the bin, the env's
flow) and outputs the env's ordinary actions (TCP displacements in x, y, z
and yaw), so it works for every robot of the task::

    import gymnasium as gym, d2f_envs
    from d2f_envs.scripted_sweep import FlowFollowingSweeper

    env = gym.make("D2F-SweepPasta-v0", robot="panda_brush")
    ctrl = FlowFollowingSweeper(env)
    out = run_episode(env, ctrl, seed=0)   # d2f_envs.rollout.run_episode

Strokes, planned one at a time from the pieces still outside the bin (the
*loose* pieces), towards the centroid of the flow's last frame (where the
demonstration's pieces ended: the goal):

1. **plan**: the loose piece farthest from the goal sets the stroke's line
   (through it, towards the goal); the line is shifted sideways to the mean of
   the loose pieces within the head's reach of it, so one stroke gathers a
   band as wide as the brush. The stroke starts behind the last of those
   pieces and ends with the head over the goal (the pieces ahead of it have
   dropped over the bin's edge by then); the brush turns to face along it;
2. **lift**, **travel** to above the start, **lower** to the working height;
3. **push** along the line at 0.3 m/s, then lift and plan the next stroke.

When no piece is loose it lifts the brush and holds still. The flow enters
through its last frame only (where to push); the strokes' order and pace are
the controller's own, like the demonstration's strokes, which the flow does
not spell out either.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from .rollout import run_episode  # noqa: F401  (the one episode loop; re-exported)
from .robots.brush import BRUSH_HEAD_HALF
from .tasks.sweep_pasta import PIECE_HALF_LENGTH, PIECE_RADIUS, SweepPastaEnv


def _wrap(a: float) -> float:
    return float((a + math.pi) % (2 * math.pi) - math.pi)


class FlowFollowingSweeper:
    """Sweep the loose pieces towards the flow's final frame, one brush-wide stroke at a time."""

    #: lift between strokes (m above the working height)
    lift = 0.05
    #: the head starts this far behind the last piece of its band (m, between the surfaces)
    run_up = 0.025
    #: half the band a stroke gathers: the head's half width less a piece's half length
    band = BRUSH_HEAD_HALF[1] - PIECE_HALF_LENGTH
    #: tolerances for "arrived" (m, rad)
    pos_tol = 0.006
    yaw_tol = 0.08

    def __init__(self, env: Any):
        u = env.unwrapped
        if not isinstance(u, SweepPastaEnv):
            raise TypeError(f"FlowFollowingSweeper drives D2F-SweepPasta-v0, not {type(u).__name__}")
        self.env = u
        self.reset()

    def reset(self) -> None:
        """Start of an episode (call after ``env.reset``)."""
        self.mode = "plan"
        self.start: Optional[np.ndarray] = None
        self.end: Optional[np.ndarray] = None
        self.yaw = 0.0
        self.strokes = 0

    # ------------------------------------------------------------------ helpers
    def _goal_xy(self) -> np.ndarray:
        return self.env.reward_fn.target[-1][:, :2].mean(axis=0)

    def _action(self, pos, yaw: float) -> np.ndarray:
        u = self.env
        ctrl, cfg = u.controller, u.controller.config
        a = np.zeros(4)
        a[:3] = (np.asarray(pos, dtype=np.float64) - ctrl.target_pos) / cfg.max_delta_pos
        a[3] = _wrap(yaw - ctrl.target_yaw) / cfg.max_delta_yaw
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def _at(self, pos, yaw: Optional[float] = None) -> bool:
        u = self.env
        ok = np.linalg.norm(u.robot.tcp_pos(u.data) - pos) < self.pos_tol
        if yaw is not None:
            ok = ok and abs(_wrap(u.robot.tcp_yaw(u.data) - yaw)) < self.yaw_tol
        return bool(ok)

    def _clip_workspace(self, p: np.ndarray) -> np.ndarray:
        lo, hi = self.env.controller.lo, self.env.controller.hi
        return np.minimum(np.maximum(p, lo), hi)

    def _plan(self) -> bool:
        """Plan the next stroke from the loose pieces; False when none is loose."""
        u = self.env
        pts = u.binding.points(u.data)
        loose = pts[~u.in_bin_mask(pts)][:, :2]
        if len(loose) == 0:
            return False
        goal = self._goal_xy()
        far = loose[np.argmax(np.linalg.norm(loose - goal, axis=1))]
        d = goal - far
        n = np.linalg.norm(d)
        if n < 1e-6:
            return False
        ahead = d / n
        side = np.array([-ahead[1], ahead[0]])
        rel = loose - far
        lateral = rel @ side
        along = rel @ ahead
        band = np.abs(lateral) <= self.band
        offset = float(lateral[band].mean())  # centre the head on the band's pieces
        back = float(along[band].min()) - (BRUSH_HEAD_HALF[0] + PIECE_HALF_LENGTH + PIECE_RADIUS + self.run_up)
        h = u.tcp_height
        start = far + back * ahead + offset * side
        # end: the head over the goal, on the stroke's line
        end_along = float((goal - far) @ ahead)
        end = far + end_along * ahead + offset * side
        self.start = self._clip_workspace(np.array([start[0], start[1], h]))
        self.end = self._clip_workspace(np.array([end[0], end[1], h]))
        self.yaw = float(math.atan2(ahead[1], ahead[0]))
        self.strokes += 1
        return True

    # ------------------------------------------------------------------ policy
    def __call__(self, obs: Any = None) -> np.ndarray:
        u = self.env
        tcp = u.robot.tcp_pos(u.data)
        up = u.tcp_height + self.lift
        for _ in range(6):  # a few mode changes per call at most
            if self.mode == "plan":
                if not self._plan():
                    self.mode = "done"
                    continue
                self.mode = "lift"
            if self.mode == "lift":
                target = np.array([tcp[0], tcp[1], up])
                if tcp[2] < up - self.pos_tol:
                    return self._action(target, u.controller.target_yaw)
                self.mode = "travel"
            if self.mode == "travel":
                target = np.array([self.start[0], self.start[1], up])
                if not self._at(target, self.yaw):
                    return self._action(target, self.yaw)
                self.mode = "lower"
            if self.mode == "lower":
                if not self._at(self.start):
                    return self._action(self.start, self.yaw)
                self.mode = "push"
            if self.mode == "push":
                if not self._at(self.end):
                    return self._action(self.end, self.yaw)
                self.mode = "plan"
                tcp = u.robot.tcp_pos(u.data)
                continue
            if self.mode == "done":  # a piece knocked out of the bin would be swept again
                if self._plan():
                    self.mode = "lift"
                    continue
                return self._action(np.array([tcp[0], tcp[1], up]), u.controller.target_yaw)
        return self._action(tcp, u.controller.target_yaw)
