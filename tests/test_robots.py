"""Robot adapters: TCP tracking under the shared controller, the Panda in Push-T, missing robosuite."""
import importlib.util

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import d2f_envs  # noqa: F401  (registers the env ids)
from d2f_envs.assets import load_asset
from d2f_envs.robots import make_robot
from d2f_envs.robots.controller import EndEffectorController
from d2f_envs.tasks.push_t import PushTEnv



def free_space_push_t(robot_name):
    """The Push-T scene without its T-block, with the robot mounted as the task mounts it."""
    spec = load_asset("push_t.xml")
    spec.delete(spec.body("tblock"))
    spec.option.timestep = PushTEnv.timestep
    robot = make_robot(robot_name)
    x, y, z, yaw = PushTEnv.robot_mounts[robot_name]
    robot.attach(spec, base_pos=(x, y, z), base_yaw=yaw, tcp_height=PushTEnv.tcp_height)
    model = spec.compile()
    data = mujoco.MjData(model)
    robot.bind(model, data)
    return robot, model, data


# A 12 cm square at full speed (3 cm per 0.1 s step), then 3 steps holding still.
SQUARE = [(1, 0)] * 4 + [(0, 1)] * 4 + [(-1, 0)] * 4 + [(0, -1)] * 4 + [(0, 0)] * 3


def run_square(robot_name):
    """Per control step: TCP error to that step's target (m) and the TCP pose at its end."""
    robot, model, data = free_space_push_t(robot_name)
    controller = EndEffectorController(robot, PushTEnv.dofs, PushTEnv.workspace)
    n_substeps = int(round(PushTEnv.control_dt / PushTEnv.timestep))
    robot.reset(model, data, np.array(PushTEnv.tcp_home))
    mujoco.mj_forward(model, data)
    controller.reset(model, data)
    start = controller.target_pos.copy()
    errors, heights, tool_z = [], [], []
    for action in SQUARE:
        controller.apply(model, data, np.array(action, dtype=float))
        mujoco.mj_step(model, data, nstep=n_substeps)
        mujoco.mj_kinematics(model, data)  # the TCP pose of the state mj_step ended in
        errors.append(np.linalg.norm(robot.tcp_pos(data) - controller.target_pos))
        heights.append(robot.tcp_pos(data)[2])
        tool_z.append(data.site_xmat[robot.tcp_site_id].reshape(3, 3)[:, 2])
    # the square closes: the last target is the start
    np.testing.assert_allclose(controller.target_pos, start, atol=1e-9)
    return np.array(errors), np.array(heights), np.array(tool_z)


def test_panda_tracks_square_in_free_space():
    errors, heights, tool_z = run_square("panda")
    moving, holding = errors[:16], errors[16:]
    assert moving.max() < 0.005, f"Panda TCP lags its target by up to {moving.max() * 1000:.1f} mm"
    assert holding[1:].max() < 0.001, "Panda TCP does not settle on the target one step after it stops"
    assert np.abs(heights - PushTEnv.tcp_height).max() < 0.002
    # the tool points straight down (site z axis = -world z) within 1 degree
    assert np.all(tool_z[:, 2] < -np.cos(np.radians(1.0)))


def test_pusher_tracks_square():
    errors, heights, _ = run_square("pusher")
    # the XY stage (kp 300 N/m, 0.5 kg disk) trails a full-speed target by ~9 mm
    assert errors[:16].max() < 0.012
    assert errors[-1] < 0.001
    np.testing.assert_allclose(heights, PushTEnv.tcp_height, atol=1e-9)


@pytest.fixture(scope="module")
def panda_env():
    env = gym.make("D2F-PushT-v0", robot="panda")
    yield env
    env.close()


def test_panda_push_t_reset_and_random_steps(panda_env):
    env = panda_env
    robot = env.unwrapped.robot
    assert robot.proprio_dim == 17
    assert env.observation_space.shape == (17 + 76,)
    assert env.action_space.shape == (2,)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and np.all(np.isfinite(obs))
    # reset put the TCP at the task's home (+- the reset noise) at Push-T height, tool down
    data = env.unwrapped.data
    home = np.array(PushTEnv.tcp_home)
    assert np.all(np.abs(robot.tcp_pos(data)[:2] - home[:2]) <= PushTEnv.tcp_noise + 1e-6)
    assert abs(robot.tcp_pos(data)[2] - PushTEnv.tcp_height) < 1e-5
    assert data.site_xmat[robot.tcp_site_id][8] < -0.9999
    proprio = obs[env.unwrapped.obs_layout["proprio"]]
    np.testing.assert_allclose(proprio[14:17], robot.tcp_pos(data))
    env.action_space.seed(0)
    for _ in range(50):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == env.observation_space.shape
        assert np.all(np.isfinite(obs)) and np.isfinite(reward)
        assert not info.get("diverged", False), info.get("truncation_reason")


@pytest.mark.parametrize("robot_name", ["panda", "pusher"])
def test_tcp_stays_in_workspace(robot_name, request):
    if robot_name == "panda":
        env = request.getfixturevalue("panda_env")
    else:
        env = gym.make("D2F-PushT-v0", robot="pusher")
    lo, hi = (np.array(b) for b in PushTEnv.workspace)
    data, robot = env.unwrapped.data, env.unwrapped.robot
    rng = np.random.default_rng(1)
    env.reset(seed=1)
    # full-speed pushes into each side of the box, with random jitter
    for direction in [(-1, 0), (0, 1), (0, -1), (1, 0), (-1, -1), (-1, 1)]:
        for _ in range(12):
            action = np.clip(np.array(direction) + rng.uniform(-0.3, 0.3, 2), -1, 1)
            env.step(action)
            tcp = robot.tcp_pos(data)
            assert np.all(tcp >= lo - 0.01) and np.all(tcp <= hi + 0.01), f"TCP {tcp} left the workspace box"


def test_panda_pushes_t_block_at_constant_height(panda_env):
    env = panda_env.unwrapped
    env.reset(seed=0)
    data, robot = env.data, env.robot
    block = env.model.body("tblock").id

    def go_to(xy, steps=15):
        for _ in range(steps):
            env.step(np.clip((np.asarray(xy) - robot.tcp_pos(data)[:2]) / 0.03, -1, 1))

    go_to((0.0, -0.17))  # below the stem's end
    start = data.xpos[block].copy()
    heights, errors = [], []
    for _ in range(12):  # push the block in +y through its stem
        env.step(np.array([0.0, 0.6]))
        heights.append(robot.tcp_pos(data)[2])
        errors.append(np.linalg.norm(robot.tcp_pos(data) - env.controller.target_pos))
    assert data.xpos[block][1] - start[1] > 0.1, "the Panda did not push the T-block"
    assert np.abs(np.array(heights) - PushTEnv.tcp_height).max() < 0.003
    assert max(errors) < 0.005


def test_panda_without_robosuite_is_a_clear_import_error(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec_without_robosuite(name, *args, **kwargs):
        return None if name == "robosuite" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_robosuite)
    with pytest.raises(ImportError, match=r"pip install robosuite"):
        gym.make("D2F-PushT-v0", robot="panda")
    robot = make_robot("panda")  # building the adapter needs no model files...
    with pytest.raises(ImportError, match="robosuite"):  # ...attaching it does
        robot.attach(load_asset("push_t.xml"), base_pos=(0, 0, 0), base_yaw=0.0, tcp_height=0.015)


def test_panda_env_deepcopy_is_independent(panda_env):
    # the adapter caches views into MjData: a copied env must drive its own data
    import copy

    env = panda_env.unwrapped
    env.reset(seed=0)
    clone = copy.deepcopy(env)
    qpos = env.data.qpos.copy()
    for _ in range(5):
        clone.step(np.array([0.0, 1.0]))
    np.testing.assert_array_equal(env.data.qpos, qpos)
    assert np.linalg.norm(clone.data.qpos - qpos) > 1e-3


# --------------------------------------------------------------------------- arms with the parallel gripper
from d2f_envs.tasks.open_door import OpenDoorEnv  # noqa: E402

ROBOSUITE_ROBOTS = ["panda", "panda_gripper", "spot_arm", "gr1"]
GRIPPER_ARMS = [r for r in ("panda_gripper", "spot_arm", "gr1") if r in OpenDoorEnv.robots]
DOOR_DOFS = ("x", "y", "z", "yaw", "grip")


def free_space_door(robot_name, box_mass=None):
    """The Open-Door scene without its cabinet (optionally with a 4 x 4 x 5 cm box below the TCP's
    home), the robot mounted as the task mounts it."""
    spec = load_asset("open_door.xml")
    spec.delete(spec.body("cabinet"))
    spec.option.timestep = OpenDoorEnv.timestep
    if box_mass is not None:
        x, y, _ = OpenDoorEnv.tcp_home
        box = spec.worldbody.add_body(name="box", pos=[x, y, 0.025])
        box.add_freejoint()
        box.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.02, 0.02, 0.025], mass=box_mass, contype=1, conaffinity=1)
    robot = make_robot(robot_name)
    x, y, z, yaw = OpenDoorEnv.robot_mounts[robot_name]
    robot.attach(spec, base_pos=(x, y, z), base_yaw=yaw, tcp_height=0.0)
    model = spec.compile()
    data = mujoco.MjData(model)
    robot.bind(model, data)
    controller = EndEffectorController(robot, DOOR_DOFS, OpenDoorEnv.workspace)
    return robot, model, data, controller


@pytest.mark.parametrize("robot_name", GRIPPER_ARMS)
def test_arm_with_gripper_tracks_square_and_yaw(robot_name):
    robot, model, data, controller = free_space_door(robot_name)
    assert robot.has_gripper and robot.can_yaw
    n_substeps = int(round(OpenDoorEnv.control_dt / OpenDoorEnv.timestep))
    robot.reset(model, data, np.array(OpenDoorEnv.tcp_home))
    mujoco.mj_forward(model, data)
    np.testing.assert_allclose(robot.tcp_pos(data), OpenDoorEnv.tcp_home, atol=1e-4)
    controller.reset(model, data)
    start = controller.target_pos.copy()
    errors, tool_z = [], []
    # the square, while the gripper turns by 0.375 rad (3 x 0.125, half speed) and back
    yaws = [0.5] * 3 + [0] * 10 + [-0.5] * 3 + [0] * 3
    for (dx, dy), dyaw in zip(SQUARE, yaws):
        controller.apply(model, data, np.array([dx, dy, 0.0, dyaw, -1.0]))
        mujoco.mj_step(model, data, nstep=n_substeps)
        mujoco.mj_kinematics(model, data)
        errors.append(np.linalg.norm(robot.tcp_pos(data) - controller.target_pos))
        tool_z.append(data.site_xmat[robot.tcp_site_id].reshape(3, 3)[:, 2])
    np.testing.assert_allclose(controller.target_pos, start, atol=1e-9)
    errors = np.array(errors)
    assert errors[:16].max() < 0.01, f"{robot_name} TCP lags its target by up to {errors[:16].max() * 1000:.1f} mm"
    assert errors[-1] < 0.002
    assert abs(robot.tcp_yaw(data) - controller.target_yaw) < 0.02
    # the gripper points straight down within 3 degrees
    assert np.all(np.array(tool_z)[:, 2] < -np.cos(np.radians(3.0)))
    p = robot.proprio(data)
    assert p.shape == (robot.proprio_dim,) and p.dtype == np.float64
    np.testing.assert_allclose(p[2 * robot.n_arm:2 * robot.n_arm + 3], robot.tcp_pos(data))


@pytest.mark.parametrize("robot_name", ["panda_gripper"])
def test_arm_gripper_lifts_a_100g_box(robot_name):
    # (Spot's arm lets a 100 g box creep out of the fingers during a lift: MuJoCo's soft contacts on
    # the light box; it holds the door's and drawer's handles, see test_articulated's scripted runs)
    robot, model, data, ctl = free_space_door(robot_name, box_mass=0.1)
    n_substeps = int(round(OpenDoorEnv.control_dt / OpenDoorEnv.timestep))
    x, y, _ = OpenDoorEnv.tcp_home
    robot.reset(model, data, np.array([x, y, 0.15]))
    mujoco.mj_forward(model, data)
    ctl.reset(model, data)
    box = model.body("box").id

    def go(z, grip, steps, speed=1.0):
        for _ in range(steps):
            dz = (z - ctl.target_pos[2]) / ctl.config.max_delta_pos
            ctl.apply(model, data, np.array([0, 0, np.clip(dz, -speed, speed), 0, grip]))
            mujoco.mj_step(model, data, nstep=n_substeps)

    go(0.03, -1.0, 15)  # down around the box
    go(0.03, 1.0, 5)  # close
    assert 0.03 < robot.opening(data) < 0.042  # stopped by the 4 cm box
    go(0.20, 1.0, 25, speed=0.5)  # lift 17 cm at 15 cm/s
    go(0.20, 1.0, 10)  # and hold
    assert data.xpos[box][2] > 0.17
    go(0.20, -1.0, 10)  # release: it falls
    assert data.xpos[box][2] < 0.05


@pytest.mark.parametrize("robot_name", ROBOSUITE_ROBOTS)
def test_robosuite_robots_without_robosuite_are_a_clear_import_error(robot_name, monkeypatch):
    from d2f_envs.robots import ROBOTS

    assert robot_name in ROBOTS
    real_find_spec = importlib.util.find_spec

    def find_spec_without_robosuite(name, *args, **kwargs):
        return None if name == "robosuite" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_robosuite)
    robot = make_robot(robot_name)  # building the adapter needs no model files...
    with pytest.raises(ImportError, match=r"pip install robosuite"):  # ...attaching it does
        robot.attach(load_asset("open_door.xml"), base_pos=(0, 0, 0), base_yaw=0.0, tcp_height=0.0)


# --------------------------------------------------------------------------- GR1: a static humanoid at the door
DOOR_OBSTACLES = ("door_leaf", "door_handle", "door_post_near", "door_post_far",
                  "carcass_top", "carcass_left", "carcass_right", "carcass_back")


def mesh_clearance(model, data, geom, obstacle, vertices):
    """Smallest distance (m) from the mesh ``vertices`` of ``geom`` (its frame) to the box of ``obstacle``
    (a capsule: its bounding box); negative: a vertex inside it."""
    world = vertices @ data.geom_xmat[geom].reshape(3, 3).T + data.geom_xpos[geom]
    local = np.abs((world - data.geom_xpos[obstacle]) @ data.geom_xmat[obstacle].reshape(3, 3))
    size = model.geom_size[obstacle].copy()
    if model.geom_type[obstacle] == mujoco.mjtGeom.mjGEOM_CAPSULE:
        size = np.array([size[0], size[0], size[1] + size[0]])
    outside = np.linalg.norm(np.maximum(local - size, 0.0), axis=1)
    inside = np.min(size - local, axis=1)
    return float(np.where(outside > 0, outside, -inside).min())


def test_gr1_humanoid_stays_clear_of_the_cabinet_while_opening_the_door():
    # GR1's links have no collision geoms (only the gripper touches anything), so nothing but its
    # placement keeps its meshes out of the cabinet: check them along a scripted opening with the
    # cabinet pushed towards the humanoid by the reset noise
    from d2f_envs.scripted_articulated import FlowFollowingGripper

    env = gym.make("D2F-OpenDoor-v0", robot="gr1")
    u = env.unwrapped
    m, d = u.model, u.data
    meshes = [g for g in range(m.ngeom) if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH
              and m.body(m.geom_bodyid[g]).name.startswith("gr1/")]
    # every 3rd vertex of the dense meshes (~190k vertices in all) keeps the test cheap
    vertices = {}
    for g in meshes:
        first, count = m.mesh_vertadr[m.geom_dataid[g]], m.mesh_vertnum[m.geom_dataid[g]]
        vertices[g] = m.mesh_vert[first:first + count:3].astype(float)
    moving = [g for g in meshes if m.body_weldid[m.geom_bodyid[g]] != 0]  # the arm's links
    static = [g for g in meshes if g not in moving]
    assert len(moving) >= 6 and len(static) >= 10
    obstacles = [m.geom(name).id for name in DOOR_OBSTACLES]
    mesh_radius = {g: np.linalg.norm(v, axis=1).max() for g, v in vertices.items()}
    obstacle_radius = {o: np.linalg.norm(m.geom_size[o]) + m.geom_size[o][0] for o in obstacles}
    ctrl = FlowFollowingGripper(env)
    obs, _ = env.reset(seed=3)
    ctrl.reset()
    static_pose = d.geom_xpos[static].copy()
    clearance, lowest_arm_point = np.inf, np.inf
    for t in range(env.spec.max_episode_steps):
        obs, _, _, _, info = env.step(ctrl(obs))
        if t % 5 == 0 or t == env.spec.max_episode_steps - 1:
            for g in meshes:
                for o in obstacles:
                    gap = np.linalg.norm(d.geom_xpos[g] - d.geom_xpos[o]) - mesh_radius[g] - obstacle_radius[o]
                    if gap < clearance:  # the bounding spheres may be closer than the closest point so far
                        clearance = min(clearance, mesh_clearance(m, d, g, o, vertices[g]))
            for g in moving:
                world = vertices[g] @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g]
                lowest_arm_point = min(lowest_arm_point, world[:, 2].min())
    assert info["is_success"] and info["door_angle"] > 85.0
    assert clearance > 0.002, f"a GR1 mesh comes within {clearance * 1000:.1f} mm of the cabinet or door"
    assert lowest_arm_point > 0.2  # the arm stays above the table top and the handle
    np.testing.assert_array_equal(d.geom_xpos[static], static_pose)  # the humanoid's body never moves
    env.close()


def test_gr1_static_humanoid_costs_no_dofs_and_few_bodies():
    # the free joint, legs, waist, head and left arm are welded, and their joint-less bodies are
    # fused when the scene compiles: only the right arm's links (and the gripper's fingers) remain
    env = gym.make("D2F-OpenDoor-v0", robot="gr1")
    m = env.unwrapped.model
    gr1_joints = [m.joint(j).name for j in range(m.njnt) if m.joint(j).name.startswith("gr1/")]
    assert gr1_joints == ["gr1/" + j for j in make_robot("gr1").arm_joints] + ["gr1/finger_left", "gr1/finger_right"]
    gr1_bodies = [b for b in range(m.nbody) if m.body(b).name.startswith("gr1/")]
    static_bodies = [b for b in gr1_bodies if m.body_weldid[b] == 0]
    assert len(gr1_bodies) - len(static_bodies) == 9  # 7 arm links, 2 fingers
    assert len(static_bodies) <= 8, [m.body(b).name for b in static_bodies]  # of ~40 in robosuite's model
    env.close()
