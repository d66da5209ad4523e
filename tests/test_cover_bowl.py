"""D2F-CoverBowl-v0 specifics: the cloth's flex binding, the coverage test, the pinch, forced
divergence of the cloth, and the scripted controller (the generic checks are in test_envs.py)."""
from __future__ import annotations

import math
import warnings

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import gymnasium as gym
import mujoco
import numpy as np
import pytest

from d2f_envs.bindings import FlexBinding
from d2f_envs.rollout import random_policy, run_episode
from d2f_envs.scripted_cloth import FlowFollowingClothGripper
from d2f_envs.tasks.cover_bowl import (
    BOWL_CENTER, BOWL_RIM_HEIGHT, CLOTH_COUNT, CLOTH_NAME, CLOTH_SPACING, GRASP_VERTEX, PINCH_BELOW_TCP, TCP_BODY,
    CoverBowlEnv,
)
from flows import shipped_flow, shipped_flow_path

ENV_ID = "D2F-CoverBowl-v0"
ZERO = np.zeros(4, np.float32)


@pytest.fixture
def make():
    envs = []

    def _make(**kw):
        # the demo flow unless told: its points are cloth vertices, which the geometry tests below rely on
        # (the env's default, the extracted flow, has points anywhere on the triangles)
        kw.setdefault("flow", shipped_flow_path(ENV_ID, "demo"))
        env = gym.make(ENV_ID, **kw)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


def bound_vertices(u: CoverBowlEnv) -> np.ndarray:
    """The cloth vertex each of the env's flow points sits on (the shipped flow's points are vertices)."""
    w = u.binding.weights
    assert np.allclose(w.max(axis=1), 1.0) and np.allclose(u.binding.offsets, 0.0)
    return u.binding.triangles[np.arange(len(w)), w.argmax(axis=1)]


def place_cloth(u: CoverBowlEnv, vertices: np.ndarray) -> None:
    u.set_cloth_vertices(vertices)
    mujoco.mj_forward(u.model, u.data)


def anchored_source_frame(u: CoverBowlEnv, k: int) -> np.ndarray:
    """All 81 vertices of the shipped flow's frame ``k`` (its own fps), moved by the env's re-anchoring."""
    A = u.reward_fn.anchor
    return u.source_flow.points[k].astype(np.float64) @ A[:3, :3].T + A[:3, 3]


# =========================================================================== model
@pytest.mark.parametrize("robot", CoverBowlEnv.robots)
def test_cloth_is_a_flex_on_the_discrete_integrator(make, robot):
    u = make(robot=robot).unwrapped
    m = u.model
    assert m.opt.integrator == mujoco.mjtIntegrator.mjINT_DISCRETE  # MuJoCo 4: flex elasticity needs it
    fid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_FLEX, CLOTH_NAME)
    assert fid >= 0 and m.flex_dim[fid] == 2 and m.flex_vertnum[fid] == CLOTH_COUNT**2 == 81
    # the module's cloth constants describe the asset's flexcomp (the demo and controller rely on them)
    v = u.cloth_vertices()
    np.testing.assert_allclose(v[1] - v[0], [0, CLOTH_SPACING, 0], atol=1e-9)
    np.testing.assert_allclose(v[CLOTH_COUNT] - v[0], [CLOTH_SPACING, 0, 0], atol=1e-9)
    assert v[GRASP_VERTEX, 0] == v[:, 0].max() and abs(v[GRASP_VERTEX, 1] - v[:, 1].mean()) < 1e-9
    assert u.object_class == "deformable" and isinstance(u.binding, FlexBinding)
    # the pinch equalities hang on the body that carries the robot's TCP
    assert m.body(int(m.site_bodyid[u.robot.tcp_site_id])).name == TCP_BODY[robot]
    assert not u.data.eq_active[u._pinch_eq].any()


def test_kwargs_are_validated():
    for kw in ({"coverage_threshold": 0.0}, {"coverage_threshold": 1.5}, {"cover_sag": -0.01}, {"cover_sag": 0.2},
               {"success_threshold": 0.0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            CoverBowlEnv(**kw)


# =========================================================================== binding
def test_flex_binding_follows_a_rigidly_moved_cloth_off_and_on_the_surface(make):
    u = make().unwrapped
    u.reset(seed=0)
    rng = np.random.default_rng(1)
    rest = u.cloth_vertices().copy()
    # points inside triangles, 1-3 cm above the cloth, and beyond its edge
    pts = np.concatenate([
        rest[rng.choice(81, 10, replace=False)] + rng.uniform(-0.015, 0.015, (10, 3)) * [1, 1, 0],
        rest[rng.choice(81, 10, replace=False)] + [0.0, 0.0, 0.02],
        [[0.2, 0.3, 0.05], [-0.5, 0.0, 0.01]],
    ])
    b = FlexBinding(CLOTH_NAME)
    b.bind(u.model, u.data, pts)
    np.testing.assert_allclose(b.points(u.data), pts, atol=1e-12)
    assert len(b._off) >= 12  # the raised and outside points really use the frame term
    # turn the cloth 0.7 rad about a tilted axis and shift it: every point moves the same way
    axis = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + math.sin(0.7) * K + (1 - math.cos(0.7)) * K @ K
    p = np.array([0.05, -0.02, 0.3])
    place_cloth(u, rest @ R.T + p)
    np.testing.assert_allclose(b.points(u.data), pts @ R.T + p, atol=1e-9)


def test_flex_binding_rejects_what_it_cannot_bind(make):
    u = make().unwrapped
    with pytest.raises(ValueError, match="no flex named"):
        FlexBinding("no_such_cloth").bind(u.model, u.data, np.zeros((1, 3)))


def test_cloth_on_a_flow_frame_has_zero_error_and_one_cm_off_has_one_cm(make):
    env = make()
    env.reset(seed=4)
    u = env.unwrapped
    rf = u.reward_fn
    T = rf.num_frames
    verts = bound_vertices(u)
    for k in (0, T // 2, T - 1):
        cloth = u.cloth_vertices().copy()
        cloth[verts] = rf.target[k]
        place_cloth(u, cloth)
        pts = u.binding.points(u.data)
        assert rf.frame_error(pts, k) < 1e-6, k  # (MuJoCo places the vertices to ~1e-8 m)
        # every vertex 1 cm off, each in its own direction
        d = np.random.default_rng(k).normal(size=(81, 3))
        place_cloth(u, cloth + 0.01 * d / np.linalg.norm(d, axis=1, keepdims=True))
        assert rf.frame_error(u.binding.points(u.data), k) == pytest.approx(0.01, abs=1e-6)
    assert rf.frame_error(u.binding.points(u.data), 0) > 0.2  # the frames differ: the checks above can fail


# =========================================================================== coverage and success
def test_coverage_flat_beside_the_bowl_is_zero_and_draped_over_it_is_one(make):
    env = make()
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    assert info["coverage"] == 0.0 and u.coverage() == 0.0
    # the demonstration's last frame: draped over the bowl
    assert u.coverage(anchored_source_frame(u, -1)) >= 0.99
    flat = u.cloth_vertices().copy()
    centred = flat - flat.mean(axis=0) + [BOWL_CENTER[0], BOWL_CENTER[1], 0.0]
    # flat over the opening, just above the rim: covered; at the bottom of the bowl, or sagging
    # deeper than cover_sag: not covered
    assert u.coverage(centred + [0, 0, BOWL_RIM_HEIGHT + 0.005]) == 1.0
    assert u.coverage(centred + [0, 0, 0.005]) == 0.0
    assert u.coverage(centred + [0, 0, BOWL_RIM_HEIGHT - u.cover_sag - 0.002]) == 0.0
    assert u.coverage(centred + [0, 0, BOWL_RIM_HEIGHT - u.cover_sag + 0.002]) == 1.0
    # half the cloth over half the opening
    half = centred + [-0.15 - BOWL_CENTER[0] * 0 + 0.0, 0, BOWL_RIM_HEIGHT + 0.005]
    assert 0.4 < u.coverage(half) < 0.6


def test_success_when_the_cloth_lies_where_the_flow_ends(make):
    env = make()
    env.reset(seed=2)
    u = env.unwrapped
    place_cloth(u, anchored_source_frame(u, -1))
    # the grip stays open: nothing holds the cloth, it settles for one step
    obs, reward, terminated, truncated, info = env.step(np.array([0, 0, 0, -1], np.float32))
    assert not truncated and info["coverage"] >= 0.9 and info["final_error"] < u.success_threshold
    assert info["is_success"] is True and info["reward_success"] > 0
    # the same cloth with a stricter final-error threshold fails
    strict = make(success_threshold=1e-4)
    strict.reset(seed=2)
    su = strict.unwrapped
    place_cloth(su, anchored_source_frame(su, -1))
    info = strict.step(np.array([0, 0, 0, -1], np.float32))[4]
    assert info["is_success"] is False and info["coverage"] >= 0.9
    # a flow that leaves the cloth where it lies: its end is reached at once, but the bowl is bare
    still = shipped_flow(ENV_ID, "demo")
    still = still.replace(points=np.repeat(still.points[:1], still.num_frames, axis=0))
    env = make(flow=still, reset_noise_scale=0.0)
    env.reset(seed=0)
    info = env.step(np.array([0, 0, 0, -1], np.float32))[4]
    assert info["final_error"] < 0.005 and info["coverage"] == 0.0 and info["is_success"] is False


# =========================================================================== the pinch
@pytest.mark.parametrize("robot", CoverBowlEnv.robots)
def test_pinch_takes_the_vertex_under_the_fingers_lifts_it_and_lets_go(make, robot):
    env = make(robot=robot)
    env.reset(seed=0)
    u = env.unwrapped
    ctrl = FlowFollowingClothGripper(env)
    # closing the grip in the air pinches nothing
    info = env.step(np.array([0, 0, 0, 1], np.float32))[4]
    assert info["pinched_vertex"] == -1
    env.step(np.array([0, 0, 0, -1], np.float32))
    while ctrl.phase in ("approach", "descend"):
        env.step(ctrl())
    info = env.step(np.array([0, 0, 0, 1], np.float32))[4]
    assert info["pinched_vertex"] == GRASP_VERTEX == u.pinched_vertex()
    for _ in range(4):  # up 12 cm, grip held
        env.step(np.array([0, 0, 1, 1], np.float32))
    v = u.grasp_vertex_pos()
    assert v[2] > 0.08 and np.linalg.norm(v - u.pinch_point()) < 0.005
    # 2 cm below the TCP along the tool (the arm's tool tilts a little while it moves)
    assert np.linalg.norm(u.pinch_point() - (u.robot.tcp_pos(u.data) - [0, 0, PINCH_BELOW_TCP])) < 1e-3
    info = env.step(np.array([0, 0, 0, -1], np.float32))[4]
    assert info["pinched_vertex"] == -1
    for _ in range(5):
        env.step(np.array([0, 0, 0, -1], np.float32))
    assert u.grasp_vertex_pos()[2] < 0.03  # dropped


# =========================================================================== divergence
@pytest.mark.parametrize("corrupt", ["cloth_qvel_huge", "cloth_qpos_nan", "timestep_huge"])
def test_forced_cloth_divergence_truncates_with_a_reason(make, corrupt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    env = make()
    env.reset(seed=0)
    u = env.unwrapped
    ctrl = FlowFollowingClothGripper(env)
    for _ in range(12):  # mid-episode, cloth pinched and moving
        env.step(ctrl())
    assert u.pinched_vertex() == GRASP_VERTEX
    dt = u.model.opt.timestep
    if corrupt == "cloth_qvel_huge":
        u.data.qvel[u._vert_dadr] = 1e12
    elif corrupt == "cloth_qpos_nan":
        u.data.qpos[u._vert_qadr[40]] = np.nan
    else:
        # an absurd step: the cloth flies 1e7 m away, finite and without a MuJoCo warning
        u.model.opt.timestep = 1e4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs, reward, terminated, truncated, info = env.step(ctrl())
    u.model.opt.timestep = dt
    assert truncated is True and terminated is False
    assert "diverg" in info["truncation_reason"].lower() and info["diverged"] is True
    assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs) and reward == 0.0
    assert info["is_success"] is False
    assert np.all(np.isfinite(u.cloth_vertices())) and u.pinched_vertex() == -1
    # the next episode is normal
    obs, info = env.reset(seed=1)
    ctrl.reset()
    assert np.all(np.isfinite(obs)) and info["coverage"] == 0.0
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(ctrl())
        assert not truncated and "truncation_reason" not in info and np.all(np.isfinite(obs))


# =========================================================================== scripted controller
@pytest.mark.parametrize("robot,seed", [("floating_gripper", 0), ("panda_gripper", 1)])
def test_scripted_controller_covers_the_bowl_where_random_does_not(make, robot, seed):
    env = make(robot=robot, flow=shipped_flow_path(ENV_ID))  # the env's default flow (flows.shipped.DEFAULT)
    out = run_episode(env, FlowFollowingClothGripper(env), seed=seed)
    assert out["is_success"] and out["coverage"] >= 0.9 and "truncation_reason" not in out
    rand = run_episode(env, random_policy(env.action_space, seed), seed=seed)
    assert not rand["is_success"] and rand["coverage"] < 0.5
    assert out["return"] > rand["return"] + 10

