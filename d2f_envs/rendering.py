"""Offscreen rendering with the flow's target points drawn over the scene.

Rendering uses EGL (Mesa on CPU machines): ``MUJOCO_GL=egl`` is set by
``d2f_envs`` at import unless the user chose another backend.
"""
from __future__ import annotations

import os
from typing import Optional

import mujoco
import numpy as np

SUBGOAL_RGBA = np.array([0.1, 0.9, 0.2, 0.9], dtype=np.float32)
GOAL_RGBA = np.array([0.95, 0.2, 0.2, 0.5], dtype=np.float32)


def _ensure_offscreen_backend() -> None:
    """Use EGL when there is no display, even if ``mujoco`` was imported before ``d2f_envs``.

    MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when it is first imported;
    without a display its default (GLFW) cannot create a context, so swap in EGL.
    """
    if os.environ.get("DISPLAY"):
        return
    os.environ.setdefault("MUJOCO_GL", "egl")
    from mujoco.rendering.classic import gl_context

    current = getattr(gl_context, "GLContext", None)
    if current is None or "glfw" in getattr(current, "__module__", ""):
        from mujoco.egl import GLContext

        gl_context.GLContext = GLContext


def make_renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    _ensure_offscreen_backend()
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as exc:  # no OpenGL: say how to get one
        raise RuntimeError(
            f"offscreen rendering failed ({exc}); set MUJOCO_GL=egl before importing mujoco "
            "and install an EGL driver (Debian: libegl1 libgl1-mesa-dri)"
        ) from exc


def _add_spheres(scene: mujoco.MjvScene, points: np.ndarray, radius: float, rgba: np.ndarray) -> None:
    size = np.array([radius, 0, 0])
    eye = np.eye(3).ravel()
    for p in points:
        if scene.ngeom >= scene.maxgeom:
            return
        mujoco.mjv_initGeom(scene.geoms[scene.ngeom], mujoco.mjtGeom.mjGEOM_SPHERE, size, p, eye, rgba)
        scene.ngeom += 1


def render_frame(
    renderer: mujoco.Renderer,
    data: mujoco.MjData,
    camera: str = "overview",
    subgoal: Optional[np.ndarray] = None,
    goal: Optional[np.ndarray] = None,
) -> np.ndarray:
    """RGB image (H, W, 3) uint8 of ``data`` seen from ``camera``, with subgoal points
    (green) and the flow's final frame (red) drawn as small spheres."""
    renderer.update_scene(data, camera=camera)
    if goal is not None:
        _add_spheres(renderer.scene, goal, 0.004, GOAL_RGBA)
    if subgoal is not None:
        _add_spheres(renderer.scene, subgoal, 0.005, SUBGOAL_RGBA)
    return renderer.render()
