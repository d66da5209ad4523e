"""Generic conformance of every registered env id on every robot its class lists.

Parametrised from ``d2f_envs.ENV_IDS`` and each class's ``robots`` tuple, so a
new task or robot is covered as soon as it is registered. Task-specific checks
(Push-T geometry) follow at the end.
"""
from __future__ import annotations

import importlib
import inspect
import math
import pickle
import re
import warnings
from pathlib import Path

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import gymnasium as gym
import mujoco
import numpy as np
import pytest

from flows import FlowFormatError, ObjectFlow, fit_rigid_transform, shipped_flow, shipped_flow_path


def env_class(env_id: str) -> type:
    module, name = d2f_envs.ENV_IDS[env_id][0].split(":")
    return getattr(importlib.import_module(module), name)


ENV_IDS = list(d2f_envs.ENV_IDS)
CASES = [pytest.param(i, r, id=f"{i}-{r}") for i in ENV_IDS for r in env_class(i).robots]
RIGID_IDS = [i for i in ENV_IDS if env_class(i).object_class == "rigid"]
REQUIRED_INFO = ("tracking_error", "final_error", "flow_index", "is_success")
PUSH_T = "D2F-PushT-v0"
#: per-task info keys beyond REQUIRED_INFO
EXTRA_INFO = {PUSH_T: ("coverage",), "D2F-SweepPasta-v0": ("in_bin_fraction",)}


def extra_info_keys(env_id: str) -> tuple:
    return EXTRA_INFO.get(env_id, ())



def reward_terms(info: dict) -> dict:
    return {k: v for k, v in info.items() if k.startswith("reward_")}


def assert_same(a, b, what=""):
    """Exact equality of nested step results (arrays, floats, dicts)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), what
        for k in a:
            assert_same(a[k], b[k], f"{what}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{what}[{i}]")
    elif isinstance(a, (np.ndarray, float, int, np.floating, np.integer, bool, np.bool_)):
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f"), what
    else:
        assert a == b, what


# =========================================================================== checkers
@pytest.mark.parametrize("env_id,robot", CASES)
def test_gymnasium_check_env(make, env_id, robot):
    from gymnasium.utils.env_checker import check_env

    env = make(env_id, robot=robot)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)  # also makes and renders an rgb_array env from the spec
    # the only accepted complaint: the (documented) unbounded observation box
    other = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert other == []


@pytest.mark.parametrize("env_id,robot", CASES)
def test_sb3_check_env(make, env_id, robot):
    from stable_baselines3.common.env_checker import check_env

    env = make(env_id, robot=robot)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, warn=True)
    assert [str(w.message) for w in caught] == []


# =========================================================================== determinism
def run_actions(env, actions):
    out = []
    for a in actions:
        out.append(env.step(a))
    return out


def seeded_actions(env, n, seed):
    space = env.action_space
    space = type(space)(space.low, space.high, dtype=space.dtype)  # a fresh copy, not the env's
    space.seed(seed)
    return [space.sample() for _ in range(n)]


@pytest.mark.parametrize("env_id,robot", CASES)
def test_same_seed_same_trajectory(make, env_id, robot):
    a, b = make(env_id, robot=robot), make(env_id, robot=robot)
    actions = seeded_actions(a, 50, seed=7)
    ra, rb = a.reset(seed=123), b.reset(seed=123)
    assert_same(ra, rb, "reset")
    for t, (sa, sb) in enumerate(zip(run_actions(a, actions), run_actions(b, actions))):
        assert_same(sa, sb, f"step {t}")
    # and the seed matters (reset noise), so the comparison above is not vacuous
    other = make(env_id, robot=robot)
    assert not np.array_equal(other.reset(seed=124)[0], ra[0])
    # re-seeding the same env reproduces its first episode
    assert_same(a.reset(seed=123), ra, "re-reset")


@pytest.mark.parametrize("env_id,robot", CASES)
def test_pickle_round_trip(make, env_id, robot, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    env = make(env_id, robot=robot).unwrapped
    env.reset(seed=5)
    actions = seeded_actions(env, 30, seed=11)
    run_actions(env, actions[:5])  # mid-episode state
    clone = pickle.loads(pickle.dumps(env))
    assert clone is not env and clone.data is not env.data
    for t, (sa, sb) in enumerate(zip(run_actions(env, actions[5:]), run_actions(clone, actions[5:]))):
        assert_same(sa, sb, f"step {t}")
    assert_same(env.reset(seed=9), clone.reset(seed=9), "reset after round trip")
    # the clone still notices when its physics diverges (no state shared with, or cached from, the original)
    env.step(actions[0])
    clone = pickle.loads(pickle.dumps(env))
    clone.data.qvel[:] = 1e12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truncated, info = clone.step(actions[1])[3:]
    assert truncated is True and "diverg" in info["truncation_reason"].lower()
    assert "truncation_reason" not in env.step(actions[1])[4]
    clone.close()


# =========================================================================== reward and info
@pytest.mark.parametrize("env_id,robot", CASES)
def test_reward_is_sum_of_terms_and_info_complete(make, env_id, robot):
    env = make(env_id, robot=robot)
    obs, info = env.reset(seed=3)
    for key in REQUIRED_INFO + extra_info_keys(env_id):
        assert key in info, f"reset info lacks {key!r}"
    assert info["flow_index"] == 0 and info["is_success"] is False
    rng = np.random.default_rng(0)
    last = 0
    for t in range(40):
        # a persistent random direction so the object is actually pushed around
        a = np.clip(rng.normal(0.6 * np.sign(np.sin(t / 7 + np.arange(env.action_space.shape[0]))), 0.3), -1, 1)
        obs, reward, terminated, truncated, info = env.step(a.astype(np.float32))
        assert not truncated and not terminated
        for key in REQUIRED_INFO + extra_info_keys(env_id):
            assert key in info, f"step info lacks {key!r}"
        terms = reward_terms(info)
        assert {"reward_tracking", "reward_progress", "reward_action", "reward_success"} <= terms.keys()
        assert isinstance(reward, float) and math.isfinite(reward)
        assert reward == pytest.approx(sum(terms.values()), abs=1e-12)
        assert info["flow_index"] >= last, "flow_index went backwards"
        last = info["flow_index"]
        assert 0 <= last < env.unwrapped.flow.num_frames
        assert isinstance(info["is_success"], (bool, np.bool_))
        assert info["tracking_error"] >= 0 and info["final_error"] >= 0
        if "coverage" in info:
            assert 0.0 <= info["coverage"] <= 1.0
        assert env.observation_space.contains(obs)
        phase = obs[env.unwrapped.obs_layout["phase"]]
        assert phase[0] == pytest.approx(last / (env.unwrapped.flow.num_frames - 1))


# =========================================================================== documented spaces
@pytest.mark.parametrize("env_id,robot", CASES)
def test_spaces_match_layout_and_dofs(make, env_id, robot):
    env = make(env_id, robot=robot)
    u = env.unwrapped
    cls = env_class(env_id)
    layout = u.obs_layout
    start = 0
    for name, s in layout.items():  # contiguous, in order, non-overlapping
        assert isinstance(s, slice) and s.step in (None, 1), name
        assert s.start == start and s.stop > s.start, name
        start = s.stop
    sizes = {name: s.stop - s.start for name, s in layout.items()}
    assert env.observation_space.shape == (sum(sizes.values()),)
    assert env.observation_space.dtype == np.float64
    assert sizes["proprio"] == u.robot.proprio_dim
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    assert len(u.robot.proprio(u.data)) == u.robot.proprio_dim
    np.testing.assert_array_equal(obs[layout["proprio"]], u.robot.proprio(u.data))

    n = len(cls.dofs)
    assert env.action_space.shape == (n,)
    assert env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, -np.ones(n, np.float32))
    np.testing.assert_array_equal(env.action_space.high, np.ones(n, np.float32))


def doc_section(doc: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", doc, re.S | re.M)
    assert m, f"docstring has no '## {title}' section"
    return m.group(1)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_docstring_documents_the_real_spaces(env_id):
    cls = env_class(env_id)
    doc = inspect.getdoc(cls)
    assert doc
    env = cls()  # default robot
    try:
        action = doc_section(doc, "Action Space")
        assert f"Box(-1, 1, ({len(cls.dofs)},), float32)" in action
        obs_doc = doc_section(doc, "Observation Space")
        rows = re.findall(r"^(\w+)\s+(\d+|robot's)\s", obs_doc, re.M)
        names = [name for name, _ in rows if name != "name"]
        assert names == list(env.obs_layout), "docstring table vs obs_layout"
        sizes = {name: env.obs_layout[name].stop - env.obs_layout[name].start for name in names}
        for name, size in rows:
            if size.isdigit():
                assert int(size) == sizes[name], name
        # "Box(-inf, inf, (proprio + 76,), float64)" or, for the default robot, "(16 + 76,)"
        m = re.search(r"Box\(-inf, inf, \((proprio|\d+) \+ (\d+),\), float64\)", obs_doc)
        assert m, "no 'Box(-inf, inf, (<proprio> + <n>,), float64)' in the Observation Space section"
        assert int(m.group(2)) == sum(sizes.values()) - sizes["proprio"]
        if m.group(1) != "proprio":
            assert int(m.group(1)) == sizes["proprio"] == env.robot.proprio_dim
        # every robot the class lists is documented
        robots_doc = doc_section(doc, "Robots (``robot=``)")
        for robot in cls.robots:
            assert f'"{robot}"' in robots_doc
        # every constructor argument is documented in the Arguments table
        args_doc = doc_section(doc, "Arguments")
        for kw in cls.valid_kwargs():
            assert re.search(rf"^{kw}\b", args_doc, re.M) or kw in ("width", "height") and "width, height" in args_doc, kw
    finally:
        env.close()


# =========================================================================== constructor arguments
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_unknown_kwarg_names_it_and_suggests(env_id):
    with pytest.raises(TypeError) as exc:
        gym.make(env_id, robto="pusher")
    assert "'robto'" in str(exc.value) and "did you mean 'robot'" in str(exc.value)
    with pytest.raises(TypeError, match="zz_not_an_argument"):
        env_class(env_id)(zz_not_an_argument=1)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_unsupported_robot_lists_valid_ones(env_id):
    with pytest.raises(ValueError) as exc:
        gym.make(env_id, robot="no_such_robot")
    msg = str(exc.value)
    assert "no_such_robot" in msg
    for robot in env_class(env_id).robots:
        assert repr(robot) in msg


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_flow_argument_accepts_str_path_and_objectflow(make, env_id):
    path = shipped_flow_path(env_id)
    ref = make(env_id)
    ref_obs, _ = ref.reset(seed=1)
    for flow in (str(path), Path(path), ObjectFlow.load(path)):
        env = make(env_id, flow=flow)
        np.testing.assert_array_equal(env.unwrapped.flow.points, ref.unwrapped.flow.points)
        np.testing.assert_array_equal(env.reset(seed=1)[0], ref_obs)
    # a different flow really is used
    moved = shipped_flow(env_id).transform(np.array([[1, 0, 0, 0.05], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    env = make(env_id, flow=moved)
    assert not np.array_equal(env.unwrapped.flow.points, ref.unwrapped.flow.points)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_flow_for_another_task_is_refused(env_id, tmp_path):
    other = shipped_flow(env_id).replace(task="D2F-SomethingElse-v0")
    with pytest.raises(FlowFormatError) as exc:
        gym.make(env_id, flow=other)
    assert exc.value.field == "task" and "'task'" in str(exc.value)
    path = other.save(tmp_path / "other.npz")
    with pytest.raises(FlowFormatError) as exc:
        gym.make(env_id, flow=path)
    assert exc.value.field == "task" and str(path) in str(exc.value)
    # a flow with no task label is accepted
    gym.make(env_id, flow=shipped_flow(env_id).replace(task="")).close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_flow_of_another_tasks_object_is_refused(env_id):
    from d2f_envs.base import FlowMismatchError

    others = [i for i in ENV_IDS if i != env_id]
    for other in others:
        name = f"the {env_class(other).object_words[0]}"
        with pytest.raises(FlowMismatchError) as exc:
            gym.make(env_id, flow=shipped_flow(env_id).replace(task="", object_name=name))
        assert exc.value.field == "object_name" and repr(name) in str(exc.value) and other in str(exc.value)
    # free text naming nothing known, or this task's object, is accepted
    for name in ("thing to move", f"red {env_class(env_id).object_words[0]}"):
        gym.make(env_id, flow=shipped_flow(env_id).replace(task="", object_name=name)).close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_flow_far_outside_the_scene_is_refused(env_id):
    from d2f_envs.base import FlowMismatchError

    flow = shipped_flow(env_id)
    lifted = flow.transform(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.5], [0, 0, 0, 1.0]]))  # 1.5 m up
    with pytest.raises(FlowMismatchError) as exc:
        gym.make(env_id, flow=lifted)
    msg = str(exc.value)
    assert exc.value.field == "points" and "outside" in msg
    # which frame and point, where, and how far
    i, t, dist = re.search(r"visible point (\d+) of frame (\d+) at \[.*\] m is ([0-9.]+) m outside", msg).groups()
    hi = np.asarray(env_class(env_id).workspace[1]) + env_class(env_id).flow_scene_margin
    assert float(dist) == pytest.approx(float(lifted.points[int(t), int(i), 2]) - hi[2], abs=2e-3)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_flow_that_does_not_start_on_the_object_is_refused(env_id):
    """A flow inside the scene but not on the object: frame 0 (static flow) at the workspace's corner."""
    from d2f_envs.base import FlowMismatchError

    flow = shipped_flow(env_id)
    cls = env_class(env_id)
    p0 = flow.points[0].astype(np.float64)
    shift = np.r_[np.asarray(cls.workspace[0][:2]) - p0.mean(axis=0)[:2], 0.0]
    static = np.repeat((p0 + shift)[None], flow.num_frames, axis=0).astype(np.float32)
    moved = flow.replace(points=static, visible=np.repeat(flow.visible[:1], flow.num_frames, axis=0))
    with pytest.raises(FlowMismatchError) as exc:
        gym.make(env_id, flow=moved)
    msg = str(exc.value)
    assert exc.value.field == "points" and "frame 0 does not start on" in msg
    median = float(re.search(r"a median ([0-9.]+) m from the object", msg).group(1))
    assert median > cls.flow_on_object_tol and re.search(r"point \d+ is farthest, [0-9.]+ m, at \[", msg)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_extracted_and_ground_truth_flows_are_accepted(env_id):
    """The flows the extraction pipeline made from the rendered demonstrations pass the placement checks."""
    from flows.shipped import shipped_extracted_path, shipped_ground_truth_path

    for path in (shipped_extracted_path(env_id), shipped_ground_truth_path(env_id)):
        env = gym.make(env_id, flow=path)
        env.reset(seed=0)
        env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_missing_flow_file(env_id, tmp_path):
    missing = tmp_path / "does_not_exist.npz"
    for flow in (missing, str(missing)):
        with pytest.raises(FileNotFoundError) as exc:
            gym.make(env_id, flow=flow)
        assert str(missing) in str(exc.value)


# =========================================================================== robustness
@pytest.mark.parametrize("corrupt,first_step", [
    ("qvel_huge", False), ("qvel_nan", False), ("qpos_nan", False), ("qvel_huge", True),
])
@pytest.mark.parametrize("env_id,robot", CASES)
def test_divergence_truncates_cleanly(make, env_id, robot, corrupt, first_step, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    env = make(env_id, robot=robot)
    env.reset(seed=0)
    u = env.unwrapped
    if not first_step:
        env.step(np.zeros(env.action_space.shape, np.float32))
    if corrupt == "qvel_huge":
        u.data.qvel[:] = 1e12
    elif corrupt == "qvel_nan":
        u.data.qvel[:] = np.nan
    else:
        u.data.qpos[:] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MuJoCo's own instability warning
        obs, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert truncated is True and terminated is False
    assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
    assert math.isfinite(reward)
    assert "diverg" in info["truncation_reason"].lower()
    assert reward == pytest.approx(sum(reward_terms(info).values()))
    # the same keys as any step (errors are NaN when there was no valid step yet)
    for key in REQUIRED_INFO + (() if first_step else extra_info_keys(env_id)):
        assert key in info, key
    assert info["is_success"] is False
    assert np.all(np.isfinite(u.data.qpos)) and np.all(np.isfinite(u.data.qvel))
    # the next episode is normal
    obs, info = env.reset(seed=1)
    assert np.all(np.isfinite(obs))
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert not truncated and "truncation_reason" not in info
        assert np.all(np.isfinite(obs)) and math.isfinite(reward)


@pytest.mark.parametrize("env_id,robot", CASES)
def test_nan_action_does_not_poison_state(make, env_id, robot):
    env, twin = make(env_id, robot=robot), make(env_id, robot=robot)
    env.reset(seed=2)
    twin.reset(seed=2)
    n = env.action_space.shape[0]
    bad = env.unwrapped.step(np.full(n, np.nan, np.float32))
    ok = twin.unwrapped.step(np.zeros(n, np.float32))  # NaN means "no motion"
    assert_same(bad, ok, "nan action vs zero action")
    obs, reward, terminated, truncated, info = bad
    assert not truncated and np.all(np.isfinite(obs)) and math.isfinite(reward)
    inf = env.unwrapped.step(np.array([np.inf, -np.inf] * n, np.float32)[:n])
    assert np.all(np.isfinite(inf[0])) and not inf[3]
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert not truncated and np.all(np.isfinite(obs)) and math.isfinite(reward)
    u = env.unwrapped
    assert np.all(np.isfinite(u.data.qpos)) and np.all(np.isfinite(u.data.ctrl))
    assert np.all(np.isfinite(u.controller.target_pos))


# =========================================================================== rendering
def green_pixels(img: np.ndarray) -> int:
    im = img.astype(int)
    return int(((im[..., 1] > 150) & (im[..., 0] < 120) & (im[..., 2] < 120)).sum())


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_rgb_array_with_markers(make, env_id):
    # (every robot is rendered by check_env above; markers do not depend on the robot)
    env = make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert isinstance(img, np.ndarray) and img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert img.std() > 5, "constant image"
    assert green_pixels(img) > 20, "no subgoal markers drawn"
    u = env.unwrapped
    # markers at another subgoal give another image
    u._measured["subgoal_index"] = u.flow.num_frames - 1
    moved = env.render()
    assert (moved != img).any(axis=2).sum() > 50
    # no render mode: no image
    plain = make(env_id)
    plain.reset(seed=0)
    assert plain.render() is None


def test_render_size_follows_width_height(make):
    env = make(ENV_IDS[0], render_mode="rgb_array", width=160, height=120)
    env.reset(seed=0)
    assert env.render().shape == (120, 160, 3)


# =========================================================================== re-anchoring (rigid objects)
@pytest.mark.parametrize("env_id", RIGID_IDS)
def test_flow_reanchored_to_noisy_start(make, env_id):
    env = make(env_id, reset_noise_scale=1.0)
    u = env.unwrapped
    starts = []
    for seed in (0, 1, 2):
        env.reset(seed=seed)
        pts = u.binding.points(u.data)
        starts.append(pts)
        rf = u.reward_fn
        assert rf.frame_error(pts, 0) < 1e-6
        # every frame moved by the one rigid transform that maps frame 0 onto the start
        X = fit_rigid_transform(u.flow.points[0], pts, weights=u.flow.visible[0])
        expect = u.flow.points.astype(np.float64) @ X[:3, :3].T + X[:3, 3]
        np.testing.assert_allclose(rf.target, expect, atol=1e-6)
    assert np.abs(starts[0] - starts[1]).max() > 1e-3, "reset noise did not move the object"


# =========================================================================== Push-T specifics
def set_block_pose(u, X: np.ndarray) -> None:
    """Put the T-block's planar joints at world pose X (4x4) and forward the model."""
    body = u.model.body("tblock")
    z0 = body.pos[2]
    assert abs(X[2, 3] - z0) < 1e-5 and abs(X[2, 2] - 1) < 1e-6, "flow pose is not planar"
    q = u.model.jnt_qposadr
    u.data.qpos[q[u.model.joint("tblock_x").id]] = X[0, 3]
    u.data.qpos[q[u.model.joint("tblock_y").id]] = X[1, 3]
    u.data.qpos[q[u.model.joint("tblock_yaw").id]] = math.atan2(X[1, 0], X[0, 0])
    u.data.qvel[:] = 0
    mujoco.mj_forward(u.model, u.data)


def flow_pose(u, k: int) -> np.ndarray:
    return fit_rigid_transform(u.binding.local_points, u.reward_fn.target[k], weights=u.flow.visible[k])


@pytest.mark.parametrize("robot", env_class(PUSH_T).robots)
def test_pusht_error_zero_on_flow_and_one_cm_off(make, robot):
    # the demo flow: an exactly rigid, planar motion, so the block can be put exactly on it
    env = make(PUSH_T, robot=robot, flow=shipped_flow_path(PUSH_T, "demo"))
    env.reset(seed=4)
    u = env.unwrapped
    T = u.flow.num_frames
    for k in (0, T // 3, T // 2, T - 1):
        set_block_pose(u, flow_pose(u, k))
        pts = u.binding.points(u.data)
        assert u.reward_fn.frame_error(pts, k) < 1e-6, k
        X = flow_pose(u, k)
        X[0, 3] += 0.01  # 1 cm in x
        set_block_pose(u, X)
        assert 0.0095 <= u.reward_fn.frame_error(u.binding.points(u.data), k) <= 0.0105
        X[0, 3] -= 0.01
        X[1, 3] -= 0.01  # 1 cm in -y
        set_block_pose(u, X)
        assert 0.0095 <= u.reward_fn.frame_error(u.binding.points(u.data), k) <= 0.0105


@pytest.mark.parametrize("robot", env_class(PUSH_T).robots)
def test_pusht_success_at_final_pose(make, robot):
    env = make(PUSH_T, robot=robot, flow=shipped_flow_path(PUSH_T, "demo"))  # exactly rigid and planar
    env.reset(seed=6)
    u = env.unwrapped
    T = u.flow.num_frames
    # half way along the flow: neither reached nor covered
    set_block_pose(u, flow_pose(u, T // 2))
    obs, reward, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["is_success"] is False and info["coverage"] < 0.95
    assert info["flow_index"] == pytest.approx(T // 2, abs=1)
    # at the final pose (the tool is parked far away so it cannot touch the block)
    set_block_pose(u, flow_pose(u, T - 1))
    u.robot.reset(u.model, u.data, np.array([-0.3, -0.3, u.tcp_height]))
    mujoco.mj_forward(u.model, u.data)
    u.controller.reset(u.model, u.data)
    assert u.coverage() > 0.99
    obs, reward, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["is_success"] is True
    assert info["coverage"] == pytest.approx(1.0, abs=0.01)
    assert info["final_error"] < 1e-3 and info["flow_index"] == T - 1
    assert info["reward_success"] > 0
    assert obs[u.obs_layout["phase"]][0] == pytest.approx(1.0)
    np.testing.assert_allclose(obs[u.obs_layout["goal_delta"]], 0.0, atol=2e-3)
    # the coverage threshold gates success
    strict = make(PUSH_T, robot=robot, coverage_threshold=1.0, success_threshold=1e-9, flow=u.flow)
    strict.reset(seed=6)
    su = strict.unwrapped
    set_block_pose(su, flow_pose(su, T - 1))
    X = flow_pose(su, T - 1)
    X[0, 3] += 0.015
    set_block_pose(su, X)
    info = strict.step(np.zeros(strict.action_space.shape, np.float32))[4]
    assert info["is_success"] is False


def test_pusht_target_is_shipped_flow_moved_rigidly(make):
    env = make(PUSH_T, reset_noise_scale=1.0)
    env.reset(seed=8)
    u = env.unwrapped
    shipped = shipped_flow(PUSH_T)
    # the rigid motion of the block from its nominal pose (qpos0) to its noisy start
    X = u.binding.pose(u.data)
    nominal = np.eye(4)
    nominal[:3, 3] = u.model.body("tblock").pos
    M = X @ np.linalg.inv(nominal)
    assert np.abs(M[:2, 3]).max() > 1e-4 or abs(math.atan2(M[1, 0], M[0, 0])) > 1e-4
    np.testing.assert_allclose(u.reward_fn.anchor, M, atol=1e-5)
    # match the env's (subsampled) points to the shipped flow's points on frame 0
    d = np.linalg.norm(u.flow.points[0][:, None] - shipped.points[0][None], axis=2)
    idx = d.argmin(axis=1)
    assert d.min(axis=1).max() < 1e-6
    last = shipped.points[-1, idx].astype(np.float64) @ M[:3, :3].T + M[:3, 3]
    np.testing.assert_allclose(u.reward_fn.target[-1], last, atol=1e-5)
    np.testing.assert_allclose(u.reward_fn.target[0], u.binding.points(u.data), atol=1e-6)
    # without noise the target is the shipped flow itself
    still = make(PUSH_T, reset_noise_scale=0.0)
    still.reset(seed=8)
    np.testing.assert_allclose(still.unwrapped.reward_fn.target[-1], shipped.points[-1, idx], atol=1e-6)


def test_robot_alias_spot_means_spot_arm(make):
    assert make("D2F-OpenDoor-v0", robot="spot").unwrapped.robot_name == "spot_arm"
    with pytest.raises(ValueError, match="robot 'spot' is not supported"):
        make("D2F-PushT-v0", robot="spot")
