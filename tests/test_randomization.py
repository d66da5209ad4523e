"""``randomize={...}``: per-episode domain randomisation (d2f_envs.sim2real.DomainRandomizer).

Checks: drawn values respect their ranges and change per episode, the model holds nominal x
factor (never accumulated) and restore() gives back the whole nominal model, robot bodies keep
their masses, object size scales the object's geometry, mass, inertia and the constants MuJoCo
derives from them (and what it collides with) with the object still resting on the table, stays
stable at the allowed range's ends and is refused where the object cannot be resized, action
latency delays actions exactly, camera extrinsics errors move the reported points rigidly, seeded
determinism (and pickling), kwarg validation, and that defaults (and an empty ``randomize``) leave
the env untouched.
"""
from __future__ import annotations

import copy
import pickle
from pathlib import Path

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import gymnasium as gym
import mujoco
import numpy as np
import pytest

from d2f_envs.sim2real import DERIVED_FIELDS, RANDOMIZE_KEYS, lowest_point_z

PUSH_T = "D2F-PushT-v0"
ALL_PHYSICS = {"friction": (0.5, 1.5), "mass": (0.5, 2.0), "damping": (0.5, 1.5), "kp": (0.7, 1.3), "action_latency": (0, 3)}
#: the tasks whose object is made of rigid primitive geoms (randomize["size"]); the others refuse it
SIZE_ENVS = ["D2F-PushT-v0", "D2F-PickPlace-v0", "D2F-SweepPasta-v0"]
SIZE_REFUSED = {"D2F-CoverBowl-v0": "flex", "D2F-OpenDrawer-v0": "fitted", "D2F-OpenDoor-v0": "fitted"}


def model_arrays(m: mujoco.MjModel) -> dict:
    """Every array field of an MjModel, by name."""
    out = {}
    for name in dir(m):
        if not name.startswith("_"):
            v = getattr(m, name, None)
            if isinstance(v, np.ndarray):
                out[name] = v
    return out


def lowest(u) -> float:
    """World height of the lowest point of the env's sized object (its geoms), as the model is now."""
    m = u.model
    geoms = np.flatnonzero(np.isin(m.geom_bodyid, u._size_bodies()))
    return min(lowest_point_z(m, u.data, g) for g in geoms.tolist())



def actions(env, n, seed):
    space = type(env.action_space)(env.action_space.low, env.action_space.high, dtype=env.action_space.dtype)
    space.seed(seed)
    return [space.sample() for _ in range(n)]


@pytest.mark.parametrize("env_id", list(d2f_envs.ENV_IDS))
def test_values_in_range_resampled_and_applied_to_nominal(make, env_id):
    env = make(env_id, randomize=ALL_PHYSICS)
    u = env.unwrapped
    nominal = make(env_id).unwrapped.model  # an untouched model of the same scene
    obj = u._randomizer.object_bodies
    robot_bodies = [b for b in range(1, u.model.nbody) if u.model.body(b).name.startswith(u.robot.prefix)]
    assert obj.size and robot_bodies and not set(obj) & set(robot_bodies)
    seen = []
    for seed in range(6):
        _, info = env.reset(seed=seed)
        v = info["randomization"]
        assert v == u.randomization and set(v) == set(ALL_PHYSICS)
        for key, (lo, hi) in ALL_PHYSICS.items():
            assert lo <= v[key] <= hi, key
        assert isinstance(v["action_latency"], int)
        m = u.model
        # nominal x this episode's factor (not x the previous episodes' factors too)
        np.testing.assert_allclose(m.geom_friction[:, 0], nominal.geom_friction[:, 0] * v["friction"])
        np.testing.assert_allclose(m.dof_frictionloss, nominal.dof_frictionloss * v["friction"])
        np.testing.assert_allclose(m.body_mass[obj], nominal.body_mass[obj] * v["mass"])
        np.testing.assert_allclose(m.body_inertia[obj], nominal.body_inertia[obj] * v["mass"])
        np.testing.assert_array_equal(m.body_mass[robot_bodies], nominal.body_mass[robot_bodies])
        np.testing.assert_allclose(m.dof_damping, nominal.dof_damping * v["damping"])
        np.testing.assert_allclose(m.actuator_gainprm[:, 0], nominal.actuator_gainprm[:, 0] * v["kp"])
        np.testing.assert_allclose(m.actuator_biasprm[:, 1], nominal.actuator_biasprm[:, 1] * v["kp"])
        np.testing.assert_array_equal(m.actuator_biasprm[:, 2], nominal.actuator_biasprm[:, 2])  # kv kept
        # the constants derived from the masses (constraint softness, subtree masses) are MuJoCo's own
        ref = copy.copy(m)
        mujoco.mj_setConst(ref, mujoco.MjData(ref))
        for name in ("body_subtreemass", "body_invweight0", "dof_invweight0", "dof_M0"):
            np.testing.assert_allclose(getattr(m, name), getattr(ref, name), rtol=1e-12, atol=1e-15, err_msg=name)
        assert not np.array_equal(m.body_invweight0[obj], nominal.body_invweight0[obj])
        seen.append(v)
    for key in ("friction", "mass", "damping", "kp"):
        assert len({s[key] for s in seen}) == len(seen), key  # a new draw each episode
    assert len({s["action_latency"] for s in seen}) > 1
    # restore() puts the whole model back bit for bit (the constants derived from the masses too)
    u._randomizer.restore(u.model)
    ref = model_arrays(nominal)
    for name, value in model_arrays(u.model).items():
        np.testing.assert_array_equal(value, ref[name], err_msg=name)


def test_randomized_physics_changes_the_motion(make):
    heavy = make(PUSH_T, randomize={"mass": (3.0, 3.0), "friction": (2.0, 2.0)}, reset_noise_scale=0.0).unwrapped
    plain = make(PUSH_T, reset_noise_scale=0.0).unwrapped
    heavy.reset(seed=0)
    plain.reset(seed=0)
    np.testing.assert_array_equal(heavy.data.qpos, plain.data.qpos)  # the same start
    for _ in range(15):  # push the block the same way in both
        for u in (heavy, plain):
            d = u._points.mean(axis=0)[:2] - u.robot.tcp_pos(u.data)[:2]
            u.step(np.clip(d / 0.03, -1, 1).astype(np.float32))
    assert np.abs(heavy.block_pose()[:3, 3] - plain.block_pose()[:3, 3]).max() > 1e-3


def test_action_latency_delays_actions_exactly(make):
    k = 2
    late = make(PUSH_T, randomize={"action_latency": (k, k)}, reset_noise_scale=0.0).unwrapped
    plain = make(PUSH_T, reset_noise_scale=0.0).unwrapped
    assert late.reset(seed=0)[1]["randomization"] == {"action_latency": k}
    plain.reset(seed=0)
    acts = actions(late, 12, seed=1)
    zero = np.zeros(late.action_space.shape, np.float32)
    for t, a in enumerate(acts):
        late.step(a)
        plain.step(acts[t - k] if t >= k else zero)  # what the controller of `late` received
        np.testing.assert_array_equal(late.data.qpos, plain.data.qpos, err_msg=f"step {t}")
    # and the delay is real: without it the trajectories part
    undelayed = make(PUSH_T, reset_noise_scale=0.0).unwrapped
    undelayed.reset(seed=0)
    for a in acts:
        undelayed.step(a)
    assert np.abs(undelayed.data.qpos - late.data.qpos).max() > 1e-3


def test_camera_error_moves_the_reported_points_rigidly(make):
    exact = {"noise_std": 0.0, "dropout": 0.0, "occlusion": False, "latency": 0}
    shift = make(PUSH_T, obs_mode="real", real_obs=exact, randomize={"camera_translation": (0.02, 0.02)}).unwrapped
    obs, info = shift.reset(seed=0)
    np.testing.assert_allclose(info["randomization"]["camera_translation"], [0.02] * 3)
    pts = obs[shift.obs_layout["object_points"]].reshape(-1, 3)
    np.testing.assert_allclose(pts - shift._tracked_points(), 0.02, atol=1e-12)
    turn = make(PUSH_T, obs_mode="real", real_obs=exact, randomize={"camera_rotation": (-0.05, 0.05)}).unwrapped
    rot = []
    for seed in (0, 1):
        obs, info = turn.reset(seed=seed)
        rot.append(info["randomization"]["camera_rotation"])
        pts = obs[turn.obs_layout["object_points"]].reshape(-1, 3)
        true = turn._tracked_points()
        c = turn.data.cam_xpos[turn._tracker.camera_id]
        # a rotation about the camera: distances to it and between the points are kept
        np.testing.assert_allclose(np.linalg.norm(pts - c, axis=1), np.linalg.norm(true - c, axis=1), atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(pts[1:] - pts[0], axis=1), np.linalg.norm(true[1:] - true[0], axis=1), atol=1e-12)
        assert np.abs(pts - true).max() > 1e-3
    assert not np.allclose(rot[0], rot[1])


def test_randomization_is_seeded(make):
    cfg = {**ALL_PHYSICS, "size": (0.8, 1.2), "camera_translation": (-0.01, 0.01)}
    a, b = make(PUSH_T, obs_mode="real", randomize=cfg), make(PUSH_T, obs_mode="real", randomize=cfg)
    ra, rb = a.reset(seed=3), b.reset(seed=3)
    np.testing.assert_array_equal(ra[0], rb[0])
    assert ra[1]["randomization"] == rb[1]["randomization"]
    acts = actions(a, 16, seed=0)
    for act in acts[:8]:
        np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])
    twin = pickle.loads(pickle.dumps(a.unwrapped))  # the randomiser's nominal copies travel along
    for act in acts[8:]:
        np.testing.assert_array_equal(a.step(act)[0], twin.step(act)[0])
    again = a.reset(seed=4)[1]["randomization"]
    assert again != ra[1]["randomization"]
    assert twin.reset(seed=4)[1]["randomization"] == again


# =========================================================================== object size
@pytest.mark.parametrize("env_id", SIZE_ENVS)
def test_size_scales_the_object_resting_where_it_was(make, env_id):
    env = make(env_id, randomize={"size": (0.6, 1.4), "mass": (0.5, 2.0)})
    u = env.unwrapped
    plain = make(env_id).unwrapped
    plain.reset(seed=0)
    table = lowest(plain)  # where the nominal object's lowest point rests
    nm = plain.model
    obj = u._size_bodies()
    sized = np.isin(nm.geom_bodyid, obj)
    assert sized.any() and not sized.all()
    sizes = []
    for seed in range(4):
        _, info = env.reset(seed=seed)
        s, f = info["randomization"]["size"], info["randomization"]["mass"]
        assert 0.6 <= s <= 1.4 and info["randomization"] == u.randomization
        sizes.append(s)
        m = u.model
        np.testing.assert_allclose(m.geom_size[sized], nm.geom_size[sized] * s, rtol=1e-12)
        np.testing.assert_allclose(m.geom_pos[sized], nm.geom_pos[sized] * s, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(m.geom_rbound[sized], nm.geom_rbound[sized] * s, rtol=1e-12)
        np.testing.assert_array_equal(m.geom_size[~sized], nm.geom_size[~sized])
        np.testing.assert_array_equal(m.geom_pos[~sized], nm.geom_pos[~sized])
        # size first (same density), then the mass factor
        np.testing.assert_allclose(m.body_mass[obj], nm.body_mass[obj] * s ** 3 * f, rtol=1e-12)
        np.testing.assert_allclose(m.body_inertia[obj], nm.body_inertia[obj] * s ** 5 * f, rtol=1e-12)
        # collision bounds, inverse weights, subtree masses: what MuJoCo's own mj_setConst derives
        ref = copy.copy(m)
        mujoco.mj_setConst(ref, mujoco.MjData(ref))
        for name in DERIVED_FIELDS:
            np.testing.assert_allclose(getattr(m, name), getattr(ref, name), rtol=1e-12, atol=1e-15, err_msg=name)
        # still resting on the table (not sunk into it nor floating above it)
        assert abs(lowest(u) - table) < 1e-9, (s, lowest(u), table)
        if env_id != "D2F-SweepPasta-v0":
            # the flow's points stay body-fixed markers: the binding is the nominal one
            np.testing.assert_array_equal(u.binding.local_points, plain.binding.local_points)
    assert len(set(sizes)) == len(sizes)
    u._randomizer.restore(u.model)
    ref = model_arrays(nm)
    for name, value in model_arrays(u.model).items():
        np.testing.assert_array_equal(value, ref[name], err_msg=name)


def test_size_changes_what_the_object_collides_with(make):
    # the pusher's disk (radius 1.5 cm) 5 mm into where the bar's end is at size 1.25 and 2 cm clear of
    # the nominal bar: a contact only with the larger block (collision detection sees the new size:
    # broadphase, midphase and narrowphase); a ray along the bar measures its length
    contacts, length = {}, {}
    for s in (0.8, 1.0, 1.25):
        u = make(PUSH_T, randomize={"size": (s, s)}, reset_noise_scale=0.0).unwrapped
        u.reset(seed=0)
        m, d = u.model, u.data
        np.testing.assert_allclose(u.block_pose()[:3, :3], np.eye(3), atol=1e-12)  # the nominal pose
        bar = m.geom("tblock_bar").id
        u.robot.reset(m, d, np.array([0.1 * 1.25 + 0.015 - 0.005, 0.05 * 1.25, u.tcp_height]))
        mujoco.mj_forward(m, d)
        disk = [g for g in range(m.ngeom) if m.body(m.geom_bodyid[g]).name.startswith(u.robot.prefix)]
        pairs = {(int(d.contact.geom1[i]), int(d.contact.geom2[i])) for i in range(d.ncon)}
        contacts[s] = any((g, bar) in pairs or (bar, g) in pairs for g in disk)
        gid = np.zeros(1, dtype=np.int32)
        start = np.array([0.5, 0.05 * s, d.geom_xpos[bar][2]])
        # (past the disk, which sits on this ray)
        dist = mujoco.mj_ray(m, d, start, np.array([-1.0, 0.0, 0.0]), None, 1, int(m.geom_bodyid[disk[0]]), gid)
        assert gid[0] == bar
        length[s] = 2 * (start[0] - dist)  # the bar is centred on the block's origin
    assert contacts == {0.8: False, 1.0: False, 1.25: True}
    for s, l in length.items():
        assert abs(l - 0.2 * s) < 1e-9, (s, l)


def _object_dofs(u) -> list:
    m = u.model
    return [i for i in range(m.nv) if int(m.dof_bodyid[i]) in set(u._size_bodies().tolist())]


@pytest.mark.parametrize("env_id", SIZE_ENVS)
@pytest.mark.parametrize("s", RANDOMIZE_KEYS["size"][1])  # the ends of the allowed range
def test_size_physics_stays_stable_at_the_allowed_extremes(make, env_id, s):
    env = make(env_id, randomize={"size": (s, s)})
    u = env.unwrapped
    _, info = env.reset(seed=1)
    assert info["randomization"] == {"size": s}
    table = lowest(u)
    dofs = _object_dofs(u)
    if env_id == "D2F-PickPlace-v0":  # the scripted picker: approach, descend onto the loaf, grasp
        from d2f_envs.scripted_pick_place import FlowFollowingPicker

        policy = FlowFollowingPicker(env)
        policy.reset()
    elif env_id == PUSH_T:  # drive the pusher into the block
        def policy():
            d = u._points.mean(axis=0)[:2] - u.robot.tcp_pos(u.data)[:2]
            return np.clip(d / 0.03, -1, 1).astype(np.float32)
    else:  # the brush through the pieces
        acts = iter(actions(env, 30, seed=1))
        policy = lambda: next(acts)  # noqa: E731
    speed, low, moved = 0.0, np.inf, 0.0
    start = u.data.qpos.copy()
    for _ in range(30):
        _, _, _, truncated, info = env.step(policy())
        assert not truncated and "diverged" not in info
        speed = max(speed, float(np.abs(u.data.qvel[dofs]).max()))
        low = min(low, lowest(u))
        moved = max(moved, float(np.abs(u.data.qpos - start).max()))
    assert np.isfinite(u.data.qpos).all() and moved > 1e-3  # something did happen
    assert speed < 5.0, speed  # m/s or rad/s: no object thrown around
    assert low > table - 2e-3, (low, table)  # nothing sinks through the table


@pytest.mark.parametrize("env_id", sorted(SIZE_REFUSED))
def test_size_is_refused_where_the_object_cannot_be_resized(env_id):
    with pytest.raises(ValueError, match=rf"randomize\['size'\] is not supported by {env_id}: .*{SIZE_REFUSED[env_id]}"):
        gym.make(env_id, randomize={"size": (0.9, 1.1)})


def test_defaults_and_empty_randomize_are_untouched(make):
    ref = make(PUSH_T)
    same = [make(PUSH_T, obs_mode="state", randomize=None), make(PUSH_T, randomize={})]
    acts = actions(ref, 30, seed=2)
    out = [ref.reset(seed=9)] + [e.reset(seed=9) for e in same]
    assert all("randomization" not in o[1] for o in out)
    for e in [ref] + same:
        assert e.unwrapped._randomizer is None and e.unwrapped._tracker is None
    for a in acts:
        steps = [e.step(a) for e in [ref] + same]
        for s in steps[1:]:
            np.testing.assert_array_equal(s[0], steps[0][0])
            assert s[1] == steps[0][1] and s[4] == steps[0][4]


@pytest.mark.parametrize("randomize,error,match", [
    ({"fricton": (0.9, 1.1)}, ValueError, "did you mean 'friction'"),
    ({"size": (0.4, 1.1)}, ValueError, r"size.*outside the allowed \[0.5, 1.5\]"),
    ({"size": (0.0, 1.1)}, ValueError, "size.*outside the allowed"),
    ({"mass": 1.2}, TypeError, "mass.*pair"),
    ({"mass": (0.8, 1.2, 1.5)}, TypeError, "mass.*pair"),
    ({"mass": "0.8-1.2"}, TypeError, "mass.*pair"),
    ({"mass": (0.8, "1.2")}, TypeError, "finite numbers"),
    ({"mass": (1.2, 0.8)}, ValueError, "low 1.2 > high 0.8"),
    ({"friction": (0.0, 1.0)}, ValueError, "outside the allowed"),
    ({"kp": (0.5, 100.0)}, ValueError, "outside the allowed"),
    ({"action_latency": (0, 1.5)}, TypeError, "whole control steps"),
    ({"action_latency": (0, 30)}, ValueError, "outside the allowed"),
    ({"camera_rotation": (-0.01, 0.01)}, ValueError, "obs_mode='real' only"),
    ([("mass", (0.8, 1.2))], TypeError, "dict"),
])
def test_randomize_validation(randomize, error, match):
    with pytest.raises(error, match=match):
        gym.make(PUSH_T, randomize=randomize)


def test_yaml_lists_are_accepted_as_ranges(make):
    # rl-zoo's YAML env_kwargs give lists, not tuples (d2f_rl/hyperparams/ppo_real.yml)
    import yaml

    from d2f_rl.utils import read_hyperparams

    conf = Path(__file__).resolve().parents[1] / "d2f_rl" / "hyperparams" / "ppo_real.yml"
    env_kwargs = read_hyperparams("ppo", PUSH_T, conf)["env_kwargs"]
    assert yaml.safe_dump(env_kwargs)  # plain data
    env = make(PUSH_T, **env_kwargs)
    _, info = env.reset(seed=0)
    assert env.unwrapped.obs_mode == "real" and set(info["randomization"]) == set(env_kwargs["randomize"])


@pytest.mark.parametrize("env_id", sorted(d2f_envs.ENV_IDS))
def test_every_task_has_a_real_obs_yaml_entry_that_builds(make, env_id):
    # `-conf d2f_rl/hyperparams/ppo_real.yml` must work for every task: real observations plus the
    # randomisation ranges that task accepts, each drawn and reported at reset
    from d2f_rl.utils import read_hyperparams

    conf = Path(__file__).resolve().parents[1] / "d2f_rl" / "hyperparams" / "ppo_real.yml"
    env_kwargs = read_hyperparams("ppo", env_id, conf, quiet=True)["env_kwargs"]
    env = make(env_id, **env_kwargs)
    _, info = env.reset(seed=0)
    assert env.unwrapped.obs_mode == "real" and set(info["randomization"]) == set(env_kwargs["randomize"])
