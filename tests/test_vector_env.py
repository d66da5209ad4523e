"""The batched vector env (d2f_envs/vector.py) and its SB3 adapter (d2f_rl/vec_env.py).

The reference is what the batched env replaces: ``SyncVectorEnv`` over ``gym.make`` envs (and SB3's
``DummyVecEnv``) with the same seeds and actions. Everything is compared bit for bit: the batch steps
each simulation exactly as ``mj_step`` does, and the vectorised reward/observation repeat the
single env's floating-point operations in the same order.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import d2f_envs
from d2f_envs.tasks.push_t import PushTEnv
from d2f_envs.vector import BatchedFlowVectorEnv

PUSHT = "D2F-PushT-v0"


def reference(env_id: str, n: int, max_steps: int, **kwargs) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: gym.make(env_id, max_episode_steps=max_steps, **kwargs) for _ in range(n)])


def assert_infos_equal(a: dict, b: dict, where: str) -> None:
    assert set(a) == set(b), f"{where}: info keys differ: {sorted(set(a) ^ set(b))}"
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):  # a nested info dict (e.g. "randomization"): batched per key alike
            assert isinstance(y, dict), f"{where}: info[{key!r}] is a dict in one env only"
            assert_infos_equal(x, y, f"{where}: info[{key!r}]")
            continue
        assert x.dtype == y.dtype, f"{where}: info[{key!r}] dtype {x.dtype} != {y.dtype}"
        if x.dtype == object:
            assert list(x) == list(y), f"{where}: info[{key!r}] {x} != {y}"
        else:
            assert np.array_equal(x, y, equal_nan=True), f"{where}: info[{key!r}] {x} != {y}"


def assert_same_run(ref, bat, steps: int, seed: int, action_seed: int = 0, before_step=None, policy=None) -> list:
    """Reset both with ``seed`` and step both with the same actions (random, or ``policy()``'s); every
    output must be equal. Returns the batched env's (terminated, truncated, infos) per step."""
    r, b = ref.reset(seed=seed), bat.reset(seed=seed)
    assert np.array_equal(r[0], b[0]), "reset observations differ"
    assert_infos_equal(r[1], b[1], "reset")
    rng = np.random.default_rng(action_seed)
    out = []
    for t in range(steps):
        if before_step is not None:
            before_step(t)
        a = rng.uniform(-1, 1, size=ref.action_space.shape).astype(np.float32) if policy is None else policy()
        r, b = ref.step(a), bat.step(a)
        where = f"step {t}"
        obs_diff = np.argwhere(r[0] != b[0])[:4].tolist()
        assert np.array_equal(r[0], b[0]), f"{where}: observations differ at {obs_diff}"
        assert r[1].dtype == b[1].dtype and np.array_equal(r[1], b[1]), f"{where}: rewards {r[1]} != {b[1]}"
        assert np.array_equal(r[2], b[2]) and np.array_equal(r[3], b[3]), f"{where}: terminated/truncated differ"
        assert_infos_equal(r[4], b[4], where)
        out.append((b[2], b[3], b[4]))
    return out


# --------------------------------------------------------------------------- equivalence with single envs
@pytest.mark.parametrize("env_id, robot, n, steps, max_steps", [
    (PUSHT, "pusher", 3, 40, 12),  # 3+ episodes per env: NEXT_STEP autoresets included
    (PUSHT, "panda", 2, 14, 6),  # an arm: differential IK per env in controller.apply
    ("D2F-PickPlace-v0", "floating_gripper", 2, 14, 6),  # a gripper task: 5-dof actions, contact-based success
])
def test_identical_to_sync_vector_env_of_single_envs(env_id, robot, n, steps, max_steps):
    bat = BatchedFlowVectorEnv(env_id, n, max_episode_steps=max_steps, robot=robot)
    assert bat.vectorized and bat.rigid_points  # the array path is the one under test
    runs = assert_same_run(reference(env_id, n, max_steps, robot=robot), bat, steps, seed=11)
    # the run did cover episode ends (truncation by the time limit) and the resets after them
    assert sum(int(tr.sum()) for _, tr, _ in runs) >= n * (steps // (max_steps + 1))


def test_pushing_policy_with_wild_actions_is_identical_too():
    """Push-T with the pusher pushing its block (coverage changes: the batched coverage recomputes it;
    the batched controller clips large, NaN and infinite actions as FlowEnv.step does)."""
    n = 4
    bat = BatchedFlowVectorEnv(PUSHT, n, max_episode_steps=15)
    assert bat._batched_controls and bat._success_batch.__func__ is PushTEnv._task_success_batch.__func__
    lay = bat.envs[0].obs_layout["tcp_to_object"]
    rng = np.random.default_rng(5)

    def policy():
        a = 40.0 * bat._obs[:, lay][:, :2] + rng.normal(scale=0.5, size=(n, 2))  # towards the block, clipped
        a[rng.random((n, 2)) < 0.03] = np.nan
        a[rng.random((n, 2)) < 0.02] = np.inf
        return a.astype(np.float32)

    runs = assert_same_run(reference(PUSHT, n, 15), bat, 45, seed=3, policy=policy)
    covs = np.array([info["coverage"] for _, _, info in runs])
    assert len(np.unique(covs)) > 10  # the blocks did move


@pytest.mark.parametrize("env_id, robot, n, steps, in_batch", [
    (PUSHT, "panda", 4, 120, False),  # x/y pushes, out to the reach limit (ArmRobot._within_reach)
    (PUSHT, "panda", 3, 60, True),  # kinematics and Jacobian by Batch.forward + Batch.jac instead
    ("D2F-OpenDoor-v0", "panda_gripper", 3, 60, False),  # x, y, z, yaw, grip
    ("D2F-OpenDrawer-v0", "spot_arm", 2, 40, False),
])
def test_batched_arm_ik_is_identical_with_saturating_actions(env_id, robot, n, steps, in_batch):
    """The arms' differential IK over envs at once (ArmRobot.command_batch): saturated and random actions
    that drive the targets to the reach limit and the joint step cap, NaN actions included."""
    bat = BatchedFlowVectorEnv(env_id, n, max_episode_steps=50, robot=robot)
    bat._ik_in_batch = in_batch
    assert bat._batched_controls
    rng = np.random.default_rng(2)
    t = [0]

    def policy():
        a = rng.uniform(-1, 1, size=bat.action_space.shape)
        if t[0] % 40 < 25:
            a = np.sign(a)
        if t[0] % 17 == 3:
            a[0, 0] = np.nan
        t[0] += 1
        return a.astype(np.float32)

    assert_same_run(reference(env_id, n, 50, robot=robot), bat, steps, seed=7, policy=policy)


def test_pipelined_groups_are_identical_too():
    """groups=2: two Batches, one's physics in a worker thread while Python handles the other."""
    bat = BatchedFlowVectorEnv(PUSHT, 3, max_episode_steps=8, groups=2)
    assert bat.pipelined and bat.simulation(2)[1] == 0  # env 2 is row 0 of the second batch
    assert_same_run(reference(PUSHT, 3, 8), bat, 18, seed=8)
    bat.close()


def test_per_env_reference_path_is_identical_too():
    """vectorize=False: the env's own _get_rew/_get_obs per sub-env (the fallback for overriding tasks)."""
    bat = BatchedFlowVectorEnv(PUSHT, 2, max_episode_steps=8, vectorize=False)
    assert not bat.vectorized
    assert_same_run(reference(PUSHT, 2, 8), bat, 18, seed=4)


def test_domain_randomization_and_real_obs_are_identical_too():
    """randomize={...} edits each sub-env's own model at its reset (each simulation runs on it), action
    latency goes through each sub-env's queue, obs_mode="real" reports each sub-env's own tracker."""
    kwargs = {"obs_mode": "real", "randomize": {"size": (0.7, 1.3), "mass": (0.5, 2.0), "friction": (0.5, 1.5),
                                                "action_latency": (0, 2)}}
    n = 3
    ref = reference(PUSHT, n, 10, **kwargs)
    bat = BatchedFlowVectorEnv(PUSHT, n, max_episode_steps=10, **kwargs)
    assert bat.randomized and not bat.vectorized  # the tracker's observation is each env's own

    def push():  # each pusher into its own block (so sizes and masses matter), as the reference sees it
        out = []
        for e in ref.envs:
            u = e.unwrapped
            d = u._tracked_points().mean(axis=0)[:2] - u.robot.tcp_pos(u.data)[:2]
            out.append(np.clip(d / 0.03, -1, 1))
        return np.array(out, dtype=np.float32)

    block_speed = []  # the blocks' joint speeds seen before each step: were they pushed?
    runs = assert_same_run(ref, bat, 24, seed=21, policy=push,
                           before_step=lambda t: block_speed.append(max(abs(e.unwrapped.data.qvel[:3]).max() for e in ref.envs)))
    sizes = {float(e.randomization["size"]) for e in bat.envs}
    assert len(sizes) == n  # different objects in the sub-envs, each simulated on its own model
    for k, env in enumerate(bat.envs):
        batch, row = bat.simulation(k)
        assert batch.models[row] is env.model
    assert sum(int(tr.sum()) for _, tr, _ in runs) >= n  # autoresets (new draws) were part of the run
    assert max(block_speed) > 0.01  # contact with blocks of different sizes and masses was part of the run
    bat.close()


def test_cloth_pinch_reaches_the_batched_physics():
    """The cloth task's controller grasps by switching ``data.eq_active`` (a pinch constraint): the
    batched env must carry that input into each simulation as it carries ``ctrl`` (it once copied only
    ctrl, so the batched cloth was never held)."""
    from d2f_envs.scripted_cloth import FlowFollowingClothGripper

    env_id, n = "D2F-CoverBowl-v0", 2
    ref = reference(env_id, n, 80)
    bat = BatchedFlowVectorEnv(env_id, n, max_episode_steps=80)
    ref.reset(seed=3)  # (assert_same_run resets again with the same seed: the scripts start from it)
    scripts = [FlowFollowingClothGripper(e) for e in ref.envs]
    runs = assert_same_run(ref, bat, 11, seed=3, policy=lambda: np.stack([s() for s in scripts]))
    pinched = runs[-1][2]["pinched_vertex"]
    assert (pinched >= 0).all(), f"the scripts grasped the cloth in the run: {pinched}"
    bat.close()


class _ObsOverridePushT(PushTEnv):
    """A task that overrides the observation: the batched env must use this method, not its own copy."""

    def _get_obs(self):
        return super()._get_obs() * 2.0


class _StepOverridePushT(PushTEnv):
    def step(self, action):
        return super().step(action)


for _name, _cls in (("D2FTest-ObsOverride-v0", _ObsOverridePushT), ("D2FTest-StepOverride-v0", _StepOverridePushT)):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls, max_episode_steps=80)


def test_task_overriding_obs_gets_its_own_method():
    bat = BatchedFlowVectorEnv("D2FTest-ObsOverride-v0", 2, max_episode_steps=6)
    assert not bat.vectorized
    assert_same_run(reference("D2FTest-ObsOverride-v0", 2, 6), bat, 8, seed=2)


def test_task_overriding_step_is_refused_clearly():
    with pytest.raises(NotImplementedError, match="overrides step"):
        BatchedFlowVectorEnv("D2FTest-StepOverride-v0", 2)


def test_changed_reward_semantics_fall_back_to_the_envs_own_methods(monkeypatch):
    """If reward.py's terms change (say a new metric), the batched kernel's self-check at construction
    notices and the env's own _get_rew is used: results stay those of single envs."""
    from d2f_envs.reward import FlowTrackingReward

    orig = FlowTrackingReward.terms

    def terms(self, measured, action, success):
        out = orig(self, measured, action, success)
        out["reward_tracking"] *= 0.5
        return out

    monkeypatch.setattr(FlowTrackingReward, "terms", terms)
    with pytest.warns(UserWarning, match="does not mirror"):
        bat = BatchedFlowVectorEnv(PUSHT, 2, max_episode_steps=6)
    assert not bat.vectorized
    assert_same_run(reference(PUSHT, 2, 6), bat, 8, seed=1)


def test_changed_base_observation_is_caught_on_the_first_step(monkeypatch):
    from d2f_envs.base import FlowEnv

    orig = FlowEnv._get_obs
    monkeypatch.setattr(FlowEnv, "_get_obs", lambda self: orig(self) + 1.0)
    bat = BatchedFlowVectorEnv(PUSHT, 2, max_episode_steps=6)
    with pytest.warns(UserWarning, match="differs from FlowEnv._get_obs"):
        assert_same_run(reference(PUSHT, 2, 6), bat, 8, seed=1)
    assert not bat.vectorized


def test_divergence_in_one_env_truncates_it_alone():
    """A velocity beyond MuJoCo's limit in sub-env 1 only: MuJoCo warns (BADQVEL) and resets that
    simulation; that env is truncated with a reason, the others carry on exactly as single envs."""
    n, k, at = 3, 1, 5
    ref, bat = reference(PUSHT, n, 30), BatchedFlowVectorEnv(PUSHT, n, max_episode_steps=30, groups=2)

    def blow_up(t):
        if t == at:
            ref.envs[k].unwrapped.data.qvel[0] = 1e11
            batch, row = bat.simulation(k)
            batch.bind("qvel")[row, 0] = 1e11

    runs = assert_same_run(ref, bat, at + 3, seed=7, before_step=blow_up)
    term, trunc, infos = runs[at]
    assert trunc.tolist() == [False, True, False] and not term.any()
    assert infos["_truncation_reason"].tolist() == [False, True, False]
    assert "BADQVEL" in infos["truncation_reason"][k] and infos["diverged"][k]
    _, trunc_next, infos_next = runs[at + 1]  # NEXT_STEP: the diverged env is reset, the others step on
    assert not trunc_next.any() and infos_next["flow_index"][k] == 0 and "_reward_tracking" in infos_next
    assert infos_next["_reward_tracking"].tolist() == [True, False, True]


# --------------------------------------------------------------------------- seeding, spaces, API
def test_seeding_is_per_env_and_deterministic():
    a, b = BatchedFlowVectorEnv(PUSHT, 3), BatchedFlowVectorEnv(PUSHT, 3)
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=[5, 6, 7])  # an int seed s means s + i for env i (SyncVectorEnv's rule)
    assert np.array_equal(oa, ob)
    assert not np.array_equal(oa[0], oa[1])  # different seeds, different starts
    single = gym.make(PUSHT)
    assert np.array_equal(single.reset(seed=6)[0], oa[1])
    acts = np.random.default_rng(0).uniform(-1, 1, (4, 3, 2))
    for act in acts:
        assert np.array_equal(a.step(act)[0], b.step(act)[0])
    oc, _ = a.reset()  # no seed: each env continues its own generator, no error
    assert oc.shape == oa.shape


def test_spaces_metadata_and_make_vec():
    venv = gym.make_vec(PUSHT, num_envs=4, vectorization_mode="vector_entry_point")
    single = gym.make(PUSHT)
    assert isinstance(venv, BatchedFlowVectorEnv)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert venv.max_episode_steps == d2f_envs.ENV_IDS[PUSHT][1]
    assert venv.single_observation_space == single.observation_space
    assert venv.single_action_space == single.action_space
    assert venv.observation_space.shape == (4,) + single.observation_space.shape
    assert venv.action_space.shape == (4,) + single.action_space.shape
    assert venv.spec is not None and venv.spec.id == PUSHT
    obs, info = venv.reset(seed=0)
    assert obs in venv.observation_space and obs.dtype == np.float64
    obs, rew, term, trunc, info = venv.step(venv.action_space.sample())
    assert obs in venv.observation_space
    assert rew.shape == term.shape == trunc.shape == (4,)
    assert rew.dtype == np.float64 and term.dtype == trunc.dtype == np.bool_
    for key in ("is_success", "tracking_error", "final_error", "coverage"):
        assert info[key].shape == (4,) and info["_" + key].all()
    with pytest.raises(ValueError, match="actions of shape"):
        venv.step(np.zeros((3, 2)))
    assert venv.get_attr("robot_name") == ("pusher",) * 4
    venv.close()


def test_reset_mask_resets_only_those_envs():
    bat = BatchedFlowVectorEnv(PUSHT, 3)
    obs0, _ = bat.reset(seed=0)
    obs1 = bat.step(np.ones((3, 2)))[0]
    obs2, info = bat.reset(options={"reset_mask": np.array([False, True, False])})
    assert info["_flow_index"].tolist() == [False, True, False]
    assert np.array_equal(obs2[[0, 2]], obs1[[0, 2]])
    assert not np.array_equal(obs2[1], obs1[1])


def test_backend_argument_is_checked():
    with pytest.raises(ValueError, match=r"backend must be one of \('mujoco', 'warp'\), got 'jax'"):
        BatchedFlowVectorEnv(PUSHT, 2, backend="jax")
    with pytest.raises(ValueError, match="configure backend='warp'"):
        BatchedFlowVectorEnv(PUSHT, 2, device="cpu")
    with pytest.raises(ValueError, match="groups and nthread configure backend='mujoco'"):
        BatchedFlowVectorEnv(PUSHT, 2, backend="warp", groups=2)


NO_WARP = """
import sys

class _NoWarp:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("warp", "mujoco_warp"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _NoWarp())
import numpy as np
import gymnasium as gym
import d2f_envs
venv = gym.make_vec("D2F-PushT-v0", num_envs=2, vectorization_mode="vector_entry_point")
venv.reset(seed=0)
assert np.isfinite(venv.step(np.zeros((2, 2)))[1]).all()
try:
    gym.make_vec("D2F-PushT-v0", num_envs=2, vectorization_mode="vector_entry_point", backend="warp")
except ImportError as e:
    print("IMPORT_ERROR:", e)
assert "warp" not in sys.modules and "mujoco_warp" not in sys.modules
"""


def test_envs_work_without_warp_and_the_warp_backend_says_how_to_install_it(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-c", NO_WARP], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    msg = res.stdout.strip().splitlines()[-1]
    assert msg.startswith("IMPORT_ERROR:") and "pip install 'dream2flow-gym[warp]'" in msg, msg


def test_refuses_render_mode_and_bad_num_envs():
    with pytest.raises(ValueError, match="does not render"):
        BatchedFlowVectorEnv(PUSHT, 2, render_mode="rgb_array")
    with pytest.raises(ValueError, match="num_envs"):
        BatchedFlowVectorEnv(PUSHT, 0)


# --------------------------------------------------------------------------- SB3 adapter
def test_sb3_adapter_matches_dummy_vec_env():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from d2f_rl.vec_env import make_batched_vec_env
    from d2f_rl.wrappers import Float32Observation

    n, max_steps = 3, 7
    ref = DummyVecEnv([lambda: Float32Observation(gym.make(PUSHT, max_episode_steps=max_steps)) for _ in range(n)])
    ref.seed(9)
    bat = make_batched_vec_env(PUSHT, n, seed=9, max_episode_steps=max_steps, wrapper_class=Float32Observation)
    assert bat.observation_space == ref.observation_space and bat.action_space == ref.action_space
    o_ref, o_bat = ref.reset(), bat.reset()
    assert o_bat.dtype == np.float32 and np.array_equal(o_ref, o_bat)
    assert ref.reset_infos == bat.reset_infos
    rng = np.random.default_rng(3)
    dones_seen = 0
    for t in range(16):
        a = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        r, b = ref.step(a), bat.step(a)
        for x, y in zip(r[:3], b[:3]):
            assert x.dtype == y.dtype and np.array_equal(x, y), f"step {t}"
        for i_ref, i_bat in zip(r[3], b[3]):
            assert set(i_ref) == set(i_bat), f"step {t}: {set(i_ref) ^ set(i_bat)}"
            for key, v in i_ref.items():
                if key == "terminal_observation":
                    assert i_bat[key].dtype == np.float32 and np.array_equal(v, i_bat[key])
                else:
                    assert v == i_bat[key] and type(v) is type(i_bat[key]), f"step {t}: {key}"
        assert ref.reset_infos == bat.reset_infos
        dones_seen += int(b[2].sum())
    assert dones_seen == 2 * n  # two episode ends per env: SB3's same-step reset exercised
    assert bat.get_attr("robot_name") == ["pusher"] * n
    assert bat.env_method("coverage", indices=[0])[0] == pytest.approx(b[3][0]["coverage"])
    bat.set_attr("reset_noise_scale", 0.0)
    assert bat.get_attr("reset_noise_scale", indices=2) == [0.0]
    assert bat.seed(1) == [1, 2, 3]


def test_sb3_adapter_refuses_non_observation_wrappers():
    from stable_baselines3.common.monitor import Monitor

    from d2f_rl.vec_env import make_batched_vec_env

    with pytest.raises(ValueError, match="observation wrappers only"):
        make_batched_vec_env(PUSHT, 2, wrapper_class=Monitor)


def test_ppo_learns_a_few_hundred_steps_on_the_batched_env():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    from d2f_rl.vec_env import make_batched_vec_env

    venv = VecMonitor(make_batched_vec_env(PUSHT, 4, seed=0, max_episode_steps=20))
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [16]}, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    assert len(model.ep_info_buffer) == 4 * (256 // 4 // 20)  # VecMonitor saw every episode end
    assert all(np.isfinite(ep["r"]) and ep["l"] == 20 for ep in model.ep_info_buffer)


@pytest.mark.parametrize("env_id, robot", [(PUSHT, "pusher"), (PUSHT, "panda"), ("D2F-OpenDoor-v0", "floating_gripper"),
                                           ("D2F-OpenDrawer-v0", "panda_gripper")])
def test_batched_proprio_is_the_robots_own(env_id, robot):
    """The robots' proprio_batch (from the Batch's rows) is their proprio (from each env's MjData)."""
    bat = BatchedFlowVectorEnv(env_id, 3, robot=robot)
    assert bat._batched_proprio
    bat.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        bat.step(rng.uniform(-1, 1, size=bat.action_space.shape))
        for k, env in enumerate(bat.envs):
            assert np.array_equal(bat._obs[k, :env.robot.proprio_dim], env.robot.proprio(env.data))
