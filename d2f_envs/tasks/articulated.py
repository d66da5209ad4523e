"""Shared parts of the articulated-object tasks (a cabinet with one moving link).

An articulated task's scene has a mocap body ``cabinet`` (moved at reset) that
carries the moving link (drawer, door) on one joint, and a site on the link's
handle. The flow's points are fixed on the link (:class:`RigidBinding`). The
task's own criterion is a threshold on the joint (e.g. 90 % of a drawer's
travel); by default the flow's ``success_threshold`` is derived from it: the
final error the link's points have when the joint sits exactly at that
threshold, so the two halves of the success test agree.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Optional, Tuple

import mujoco
import numpy as np

from ..assets import load_asset
from ..base import FlowEnv
from ..kwargs import Number
from ..bindings import RigidBinding


def yaw_of(R: np.ndarray) -> float:
    """Rotation about world z of a 3x3 rotation (angle of its x axis in the xy plane)."""
    return float(np.arctan2(R[1, 0], R[0, 0]))


def link_surface_points(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    body: str,
    geoms: Tuple[str, ...],
    view_dir: np.ndarray,
    spacing: float = 0.01,
) -> np.ndarray:
    """World points (M, 3) on the surfaces of ``geoms`` of ``body`` that face ``-view_dir``.

    ``view_dir`` is the direction a camera looks along, in the *body* frame.
    Boxes: a ``spacing`` grid on the face whose outward normal is most
    opposite to ``view_dir``. Capsules: rings every ``spacing`` along the
    axis, keeping the points whose normal faces the camera. Positions are
    taken from ``data`` (call ``mj_kinematics`` first).
    """
    view = np.asarray(view_dir, dtype=np.float64)
    view = view / np.linalg.norm(view)
    bid = model.body(body).id
    local = []
    for name in geoms:
        g = model.geom(name)
        if g.bodyid[0] != bid:
            raise ValueError(f"geom {name!r} is not on body {body!r}")
        Rg = np.zeros(9)
        mujoco.mju_quat2Mat(Rg, g.quat)
        Rg = Rg.reshape(3, 3)  # geom frame -> body frame
        pos, size = g.pos.copy(), g.size.copy()
        if g.type[0] == mujoco.mjtGeom.mjGEOM_BOX:
            v = Rg.T @ view  # view direction in the geom frame
            ax = int(np.argmax(np.abs(v)))
            sign = -np.sign(v[ax])  # outward normal of the visible face
            u, w = [i for i in range(3) if i != ax]
            us = np.arange(-size[u] + spacing / 2, size[u], spacing)
            ws = np.arange(-size[w] + spacing / 2, size[w], spacing)
            uu, ww = np.meshgrid(us, ws, indexing="ij")
            pts = np.zeros((uu.size, 3))
            pts[:, u], pts[:, w] = uu.ravel(), ww.ravel()
            pts[:, ax] = sign * size[ax]
        elif g.type[0] == mujoco.mjtGeom.mjGEOM_CAPSULE:
            r, half = size[0], size[1]
            zs = np.arange(-half + spacing / 2, half, spacing)
            phis = np.linspace(0, 2 * np.pi, 8, endpoint=False)
            n = np.stack([np.cos(phis), np.sin(phis), np.zeros_like(phis)], axis=1)
            keep = (n @ Rg.T) @ view < -0.3
            n = n[keep]
            pts = (n[None, :, :] * r + np.stack([np.zeros_like(zs)] * 2 + [zs], axis=1)[:, None, :]).reshape(-1, 3)
        else:
            raise ValueError(f"geom {name!r}: only boxes and capsules are sampled")
        local.append(pts @ Rg.T + pos)
    local = np.concatenate(local)
    R = data.xmat[bid].reshape(3, 3)
    return local @ R.T + data.xpos[bid]


class ArticulatedEnv(FlowEnv):
    """Base of the cabinet tasks: a mocap ``cabinet`` carrying one jointed link with a handle."""

    object_class = "articulated"
    robots: ClassVar[Tuple[str, ...]] = ("floating_gripper",)
    robot_mounts = {"floating_gripper": (0.0, 0.0, 0.0, 0.0)}
    timestep = 0.01
    control_dt = 0.1

    #: the scene file, the moving link's body and joint, the handle's site
    asset: ClassVar[str] = ""
    link_body: ClassVar[str] = ""
    link_joint: ClassVar[str] = ""
    handle_site: ClassVar[str] = ""
    cabinet_body: ClassVar[str] = "cabinet"
    #: start-state noise at reset_noise_scale = 1
    cabinet_xy_noise: ClassVar[float] = 0.02
    cabinet_yaw_noise: ClassVar[float] = 0.1
    tcp_noise: ClassVar[float] = 0.03

    # None: derived from the joint criterion (_derived_threshold)
    kwarg_spec = {"success_threshold": Number(lo=0.0, lo_open=True, none_ok=True, unit="(m)")}

    def __init__(self, success_threshold: Optional[float] = None, **kwargs: Any):
        super().__init__(success_threshold=1.0 if success_threshold is None else success_threshold, **kwargs)
        m = self.model
        jnt = m.joint(self.link_joint)
        self._jq = int(jnt.qposadr[0])
        self._jd = int(jnt.dofadr[0])
        self.joint_range = (float(jnt.range[0]), float(jnt.range[1]))
        self._handle = m.site(self.handle_site).id
        self._cab = m.body(self.cabinet_body).id
        self._mocap = int(m.body_mocapid[self._cab])
        if success_threshold is None:
            success_threshold = self._derived_threshold()
        self.success_threshold = float(success_threshold)
        self.reward_fn.success_threshold = self.success_threshold

    # ------------------------------------------------------------------ task-specific
    def _joint_threshold(self) -> float:
        """Joint value at which the task's own criterion starts to hold."""
        raise NotImplementedError

    def _derived_threshold(self) -> float:
        """Final flow error (m) of the link's points with the joint at its success threshold
        and the cabinet at its nominal pose, rounded up to the millimetre, plus 1 mm."""
        d = mujoco.MjData(self.model)
        mujoco.mj_resetData(self.model, d)
        d.qpos[self._jq] = self._joint_threshold()
        mujoco.mj_kinematics(self.model, d)
        err = self.reward_fn.frame_error(self.binding.points(d), self.flow.num_frames - 1)
        return math.ceil(round(err * 1000.0, 3)) / 1000.0 + 0.001

    # ------------------------------------------------------------------ override points
    def _build_scene(self) -> mujoco.MjSpec:
        return load_asset(self.asset)

    def _make_binding(self) -> RigidBinding:
        return RigidBinding(self.link_body)

    def _size_bodies(self) -> np.ndarray:
        # the link is fitted to its cabinet (it does not collide with the carcass: its joint and range
        # keep it in place): a scaled link would stick through the carcass's walls, and scaling the whole
        # cabinet would move the joint and change the travel the flow records
        raise ValueError(
            f"randomize['size'] is not supported by {self.env_id}: the {self.link_body} is fitted to its cabinet and "
            f"joint; scaling it alone would push it through the carcass, scaling the cabinet would move the joint")

    def _set_nominal_state(self) -> None:
        # the flows start with the cabinet where the scene puts it and the link closed (qpos0);
        # mj_resetData restores both (mocap pose = the body's model pose)
        pass

    def reset_model(self) -> None:
        s = self.reset_noise_scale
        rng = self.np_random
        d, m = self.data, self.model
        base = m.body_pos[self._cab]
        d.mocap_pos[self._mocap] = base + np.r_[rng.uniform(-1, 1, size=2) * self.cabinet_xy_noise * s, 0.0]
        yaw = rng.uniform(-1, 1) * self.cabinet_yaw_noise * s
        d.mocap_quat[self._mocap] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        tcp = np.array(self.tcp_home, dtype=np.float64)
        tcp += rng.uniform(-1, 1, size=3) * self.tcp_noise * s
        self.robot.reset(m, d, tcp, 0.0)

    # ------------------------------------------------------------------ task geometry
    def joint_value(self) -> float:
        """The link's joint position (m for a slide, rad for a hinge)."""
        return float(self.data.qpos[self._jq])

    def handle_pos(self) -> np.ndarray:
        """World position of the handle bar's centre."""
        return self.data.site_xpos[self._handle].copy()

    def handle_yaw(self) -> float:
        """Yaw (rad) that aligns the gripper's closing axis with the handle's pull direction."""
        return yaw_of(self.data.xmat[self.model.body(self.link_body).id].reshape(3, 3))

    def cabinet_pose(self) -> Tuple[np.ndarray, float]:
        """Cabinet position and yaw (world)."""
        q = self.data.mocap_quat[self._mocap]
        return self.data.mocap_pos[self._mocap].copy(), float(2.0 * np.arctan2(q[3], q[0]))
