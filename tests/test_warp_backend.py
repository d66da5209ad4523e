"""``backend="warp"`` of the batched vector env (d2f_envs/warp_backend.py), on Warp's CPU device.

Needs the ``warp`` extra (``pip install 'dream2flow-gym[warp]'``): without mujoco-warp this file fails at
import, on purpose (nothing here is skipped). ``D2F_WARP_TEST_DEVICE=cuda:0`` runs it on a GPU instead.

The reference is ``backend="mujoco"`` (bit-identical to single envs, tests/test_vector_env.py) with the same
seeds and actions. MuJoCo Warp computes in float32 with its own solver and collision code, so results are
close, not equal. Measured on this CPU (Warp 1.19, mujoco-warp 4.0.0, 2 envs, seed 0, the scripted
controllers' actions replayed open loop; worst over the steps and envs):

* Push-T (pusher), 30 steps, the block pushed 14 cm: until step 25 every difference stays below 1e-6
  (float32 rounding); at step 26 a contact event opens a gap: qpos 3.3e-3, qvel 0.17 (a transient),
  observation 2.5e-2 (its velocities), reward 4.6e-3, tracking error 2.6e-4 m. (Open loop the gap
  persists: over 40 steps qpos 3.5e-3, reward 7.2e-3.)
* Open Door (floating gripper), 20 steps, grasping the handle at step 9: a transient at the grasp,
  qvel and observation 7.6e-3, qpos 6.4e-4, reward 1.7e-4, tracking error 5.3e-6 m, decaying to ~2e-6
  within 5 steps.
* Without contact (random pusher motions): below 2e-6 everywhere.
* Closed loop, the scripted controllers reach success at the same control step on both backends
  (Push-T 57 and 50, Open Door 29 and 27, Open Drawer 31 and 29, Pick-and-Place 30 and 30).

The tolerances below are 5-10x the worst of these per case (20-100x for the contact-free runs, whose
differences are float32 rounding: a world stepped once too often, or poses taken after instead of before
the last substep as mj_step leaves them, fail those by far).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import mujoco_warp  # noqa: F401  (an ImportError here means the warp extra is missing: no skip)
import numpy as np
import pytest
import warp  # noqa: F401

import d2f_envs  # noqa: F401

# one xdist worker runs this file (pyproject's --dist loadgroup): Warp compiles its kernels once
pytestmark = pytest.mark.xdist_group("warp")
from d2f_envs.vector import BatchedFlowVectorEnv
from d2f_envs.warp_backend import WarpSimGroup

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scripted_success import make_controller  # noqa: E402  (the scripted controllers per task)

DEVICE = os.environ.get("D2F_WARP_TEST_DEVICE", "cpu")
PUSHT, DOOR = "D2F-PushT-v0", "D2F-OpenDoor-v0"

#: |warp - mujoco| bounds per case: 5-10x the worst differences measured (module docstring)
TOL_PUSHT = {"time": 1e-3, "qpos": 2e-2, "qvel": 1.0, "obs_positions": 2e-2, "obs": 0.2, "reward": 3e-2,
             "tracking_error": 2e-3}
TOL_DOOR = {"time": 1e-3, "qpos": 5e-3, "qvel": 0.1, "obs_positions": 5e-3, "obs": 0.1, "reward": 2e-3,
            "tracking_error": 1e-4}
#: no contact: float32 rounding only
TOL_FREE = {"time": 1e-3, "qpos": 1e-4, "qvel": 1e-3, "obs_positions": 1e-4, "obs": 1e-3, "reward": 1e-4,
            "tracking_error": 1e-5}


def pair(env_id, n, **kwargs):
    return (BatchedFlowVectorEnv(env_id, n, **kwargs),
            BatchedFlowVectorEnv(env_id, n, backend="warp", device=DEVICE, **kwargs))


def scripted_actions(env: BatchedFlowVectorEnv, seed: int, steps: int):
    """The scripted controllers' actions, closed loop on ``env`` (mujoco backend), and the first step at
    which each env reported success (None: not within ``steps``)."""
    env.reset(seed=seed)
    ctrls = [make_controller(e) for e in env.envs]
    actions, first = [], [None] * env.num_envs
    for t in range(steps):
        a = np.stack([np.asarray(c(), dtype=np.float32) for c in ctrls])
        actions.append(a)
        info = env.step(a)[4]
        first = [t if f is None and s else f for f, s in zip(first, info["is_success"].tolist())]
    return actions, first


def assert_close(mj: BatchedFlowVectorEnv, wa: BatchedFlowVectorEnv, out_mj, out_wa, where: str, tol: dict) -> dict:
    """Every output and each sub-env's state within TOL; returns the differences."""
    lay = mj.envs[0].obs_layout
    pos = np.r_[tuple(np.arange(sl.start, sl.stop) for name, sl in lay.items() if name != "proprio")]
    diff = {
        "time": max(abs(a.data.time - b.data.time) for a, b in zip(mj.envs, wa.envs)),  # (Warp's is float32)
        "qpos": max(np.abs(a.data.qpos - b.data.qpos).max() for a, b in zip(mj.envs, wa.envs)),
        "qvel": max(np.abs(a.data.qvel - b.data.qvel).max() for a, b in zip(mj.envs, wa.envs)),
        "obs_positions": np.abs(out_mj[0][:, pos] - out_wa[0][:, pos]).max(),
        "obs": np.abs(out_mj[0] - out_wa[0]).max(),
        "reward": np.abs(out_mj[1] - out_wa[1]).max(),
        "tracking_error": np.abs(out_mj[4]["tracking_error"] - out_wa[4]["tracking_error"]).max(),
    }
    for key, d in diff.items():
        assert d <= tol[key], f"{where}: |warp - mujoco| of {key} is {d:.3g} > {tol[key]:g}"
    assert np.array_equal(out_mj[2], out_wa[2]) and np.array_equal(out_mj[3], out_wa[3]), \
        f"{where}: terminated/truncated differ"
    for key in ("flow_index", "is_success"):
        assert np.array_equal(out_mj[4][key], out_wa[4][key]), f"{where}: info[{key!r}] differs"
    return diff


# --------------------------------------------------------------------------- trajectories and success
@pytest.mark.parametrize("env_id, robot, steps, tol", [(PUSHT, "pusher", 30, TOL_PUSHT),
                                                       (DOOR, "floating_gripper", 20, TOL_DOOR)])
def test_trajectories_close_to_the_mujoco_backend(env_id, robot, steps, tol):
    """Same seeds, same actions (the scripted controllers' on the mujoco backend, replayed open loop)."""
    mj, wa = pair(env_id, 2, robot=robot)
    assert isinstance(wa.simulation(0)[0], WarpSimGroup) and wa.vectorized  # the batched reward/obs code
    actions, _ = scripted_actions(mj, seed=0, steps=steps)
    om, im = mj.reset(seed=0)
    ow, iw = wa.reset(seed=0)
    assert np.array_equal(om, ow)  # a reset is the env's own code on its own MjData
    start = np.stack([e._points for e in mj.envs])
    qpos0 = np.stack([e.data.qpos.copy() for e in mj.envs])
    worst = {}
    for t, a in enumerate(actions):
        d = assert_close(mj, wa, mj.step(a), wa.step(a), f"{env_id} step {t}", tol)
        worst = {k: max(v, worst.get(k, 0.0)) for k, v in d.items()}
    print(f"{env_id}: worst |warp - mujoco| over {steps} steps:", {k: float(f"{v:.2g}") for k, v in worst.items()})
    # the run moved the object (contact was part of it), in both
    moved = np.linalg.norm(np.stack([e._points for e in wa.envs]) - start, axis=2).max()
    assert moved > 0.01, f"the object moved only {moved:.4f} m"
    assert np.abs(np.stack([e.data.qpos for e in wa.envs]) - qpos0).max() > 0.01
    mj.close()
    wa.close()


def test_scripted_controller_succeeds_at_the_same_step_as_on_the_mujoco_backend():
    """Reward and success semantics: the door's scripted controller, closed loop on each backend (it
    reads the env's state, so it acts on what the warp physics did), succeeds at the same step."""
    mj, wa = pair(DOOR, 2)
    _, first_mj = scripted_actions(mj, seed=0, steps=31)  # (measured: steps 29 and 27)
    _, first_wa = scripted_actions(wa, seed=0, steps=31)
    assert None not in first_mj, first_mj
    assert first_wa == first_mj, f"success at steps {first_wa} (warp) vs {first_mj} (mujoco)"


# --------------------------------------------------------------------------- vector env semantics
def test_autoreset_with_staggered_episodes():
    """NEXT_STEP autoreset: a sub-env reset instead of stepped keeps its world still while the others step."""
    mj, wa = pair(PUSHT, 2, max_episode_steps=4)
    rng = np.random.default_rng(0)
    for env in (mj, wa):
        env.reset(seed=5)
    acts = rng.uniform(-1, 1, (12, 2, 2)).astype(np.float32)
    ends = 0
    for t, a in enumerate(acts):
        if t == 2:  # env 1 starts over: its episodes end two steps after env 0's
            om = mj.reset(options={"reset_mask": np.array([False, True])})[0]
            ow = wa.reset(options={"reset_mask": np.array([False, True])})[0]
            assert np.array_equal(om[1], ow[1])
        out_mj, out_wa = mj.step(a), wa.step(a)
        assert_close(mj, wa, out_mj, out_wa, f"step {t}", TOL_FREE)
        ends += int(out_wa[3].sum())
    assert ends >= 3  # both envs' episodes ended (at different steps) and were reset


def test_action_latency_runs_and_the_unsupported_is_refused():
    """Randomize keys that leave the model alone and obs_mode="real" (each env's own tracker, on its synced
    MjData) run; what would need per-world models or was not validated is refused, saying why."""
    kwargs = {"obs_mode": "real", "randomize": {"action_latency": (1, 2), "camera_translation": (-0.01, 0.01)}}
    mj, wa = pair(PUSHT, 2, max_episode_steps=20, **kwargs)
    assert not wa.vectorized  # the tracker's observation: each env's own code
    mj.reset(seed=1)
    wa.reset(seed=1)
    assert [e.randomization["action_latency"] for e in wa.envs] == [e.randomization["action_latency"] for e in mj.envs]
    for t, a in enumerate(np.random.default_rng(1).uniform(-1, 1, (4, 2, 2))):
        assert_close(mj, wa, mj.step(a), wa.step(a), f"step {t}", TOL_FREE)
    with pytest.raises(NotImplementedError, match=r"cannot randomise \['mass'\].*one device Model"):
        BatchedFlowVectorEnv(PUSHT, 2, backend="warp", device=DEVICE, randomize={"mass": (0.5, 2.0)})
    with pytest.raises(NotImplementedError, match="deformable task"):
        BatchedFlowVectorEnv("D2F-CoverBowl-v0", 2, backend="warp", device=DEVICE)
    with pytest.raises(NotImplementedError, match="granular task.*chaotic"):
        BatchedFlowVectorEnv("D2F-SweepPasta-v0", 2, backend="warp", device=DEVICE)


def test_divergence_in_one_world_truncates_that_env_alone():
    n, k, at = 3, 1, 2
    mj, wa = pair(PUSHT, n, max_episode_steps=30)
    mj.reset(seed=7)
    wa.reset(seed=7)
    acts = np.random.default_rng(2).uniform(-1, 1, (at + 3, n, 2))
    for t, a in enumerate(acts):
        if t == at:
            sim, row = wa.simulation(k)
            sim.bind("qvel")[row, 0] = 1e11  # uploaded before the next step, as the mujoco batch's bind
        out = wa.step(a)
        ref = mj.step(a)
        if t == at:
            assert out[3].tolist() == [False, True, False] and not out[2].any()
            reason = out[4]["truncation_reason"][k]
            assert "non-finite or |q" in reason and "> 1e+10 after the step" in reason and out[4]["diverged"][k]
            for j in (0, 2):  # the others carry on as on the mujoco backend
                assert np.abs(out[0][j] - ref[0][j]).max() <= TOL_FREE["obs"]
        if t == at + 1:  # NEXT_STEP: the diverged env starts over from a finite state
            assert out[4]["flow_index"][k] == 0 and np.isfinite(out[0]).all()


def test_constraint_buffer_overflow_truncates_that_env_with_the_remedy():
    """MuJoCo Warp's constraint rows per world are fixed (njmax): an overflow would drop constraints, so
    that env is truncated instead, saying what to raise. Push-T has 3 rows at rest (the block's friction
    on the table plane); with njmax=3, the pusher's contact with the block overflows."""
    wa = BatchedFlowVectorEnv(PUSHT, 2, backend="warp", device=DEVICE, njmax=3)
    wa.reset(seed=0)
    out = wa.step(np.zeros((2, 2)))
    assert not out[3].any()  # no contact: 3 rows fit
    u = wa.envs[0]  # the pusher of env 0 onto its block: contact rows
    delta = u.data.xpos[u.binding._id][:2] - u.robot.tcp_pos(u.data)[:2]
    sim, row = wa.simulation(0)
    sim.bind("qpos")[row, 3:5] += delta  # (qpos: block x, y, yaw, then the pusher's x, y)
    with pytest.warns(UserWarning, match="buffer overflow"):
        out = wa.step(np.zeros((2, 2)))
    assert out[3].tolist() == [True, False]
    reason = out[4]["truncation_reason"][0]
    assert "overflow ['NEFC']" in reason and "njmax=3" in reason and "pass larger nconmax=/njmax=" in reason
    with pytest.raises(ValueError, match="must be >= 1"):  # nconmax=0: no collisions at all, no overflow
        BatchedFlowVectorEnv(PUSHT, 2, backend="warp", device=DEVICE, nconmax=0)


def test_make_vec_selects_the_warp_backend():
    venv = gym.make_vec(PUSHT, num_envs=2, vectorization_mode="vector_entry_point", backend="warp", device=DEVICE)
    assert isinstance(venv, BatchedFlowVectorEnv) and venv.backend == "warp"
    assert venv.simulation(1)[0].device == DEVICE
    obs, _ = venv.reset(seed=0)
    obs, rew, term, trunc, info = venv.step(venv.action_space.sample())
    assert obs.shape == venv.observation_space.shape and np.isfinite(obs).all() and np.isfinite(rew).all()
    venv.close()
