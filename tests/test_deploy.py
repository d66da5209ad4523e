"""d2f_rl.deploy's loop: each safety limit acting, the watchdog, timing; no training needed.

The robot is :class:`ReplayRobot`, the shipped test double that replays crafted observations
(there is no hardware here); policies are plain callables so each limit's effect is exact.
Observations use Push-T's layout: 81 entries, the TCP position at [0:3] (pusher proprio).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from d2f_rl.deploy import ReplayRobot, RobotInterface, SafetyLimits, run_policy

ROOT = Path(__file__).resolve().parents[1]
N_OBS = 81
TCP = slice(0, 3)
BOX = dict(workspace_low=[-0.3, -0.3, 0.0], workspace_high=[0.3, 0.3, 0.3])


def observations(tcps):
    out = []
    for i, tcp in enumerate(tcps):
        o = np.full(N_OBS, 0.01 * i, dtype=np.float32)
        o[TCP] = tcp
        out.append(o)
    return out


def constant(action):
    return lambda obs: np.array(action, dtype=np.float32)


def test_import_needs_no_torch():
    code = (
        "import sys\n"
        "for m in ('torch', 'stable_baselines3', 'd2f_envs', 'gymnasium', 'mujoco'):\n"
        "    sys.modules[m] = None\n"
        "import d2f_rl.deploy, d2f_rl.deploy.__main__\n"
        "print('IMPORT_OK')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "IMPORT_OK" in proc.stdout, proc.stderr


def test_replay_robot_is_a_robot_interface():
    robot = ReplayRobot(observations([(0, 0, 0.02)] * 3))
    assert isinstance(robot, RobotInterface)
    result = run_policy(constant([0.5, -0.5]), robot, realtime=False)
    assert result.stop_reason == "done" and result.steps == 3 and not result.safety_stop
    assert len(robot.actions) == 3 and len(robot.stop_times) == 1  # stopped once at the end
    assert np.allclose(robot.actions, [[0.5, -0.5]] * 3)


def test_action_rate_limit():
    obs = observations([(0, 0, 0.02)] * 8)
    flip = {"sign": 1.0}

    def bang_bang(o):
        flip["sign"] *= -1.0
        return np.array([flip["sign"], 1.0], dtype=np.float32)

    free = ReplayRobot(obs)
    run_policy(bang_bang, free, realtime=False)
    assert np.abs(np.diff(np.array(free.actions)[:, 0])).max() == pytest.approx(2.0)  # unlimited: full swings

    robot = ReplayRobot(obs)
    result = run_policy(bang_bang, robot, realtime=False, limits=SafetyLimits(max_action_delta=0.25))
    sent = np.array(robot.actions)
    steps = np.abs(np.diff(np.vstack([np.zeros(2), sent]), axis=0))  # from rest (a_{-1} = 0)
    assert steps.max() <= 0.25 + 1e-6
    assert sent[:, 1].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0])  # ramps up to 1
    assert result.interventions["action_rate"] == 8


def test_workspace_box_blocks_outward_motion_then_stops():
    tcps = [
        (0.0, 0.0, 0.02),    # inside: untouched
        (0.31, 0.0, 0.02),   # past +x (within the margin): +x pushes are zeroed, y is free
        (0.31, -0.31, 0.02),  # past +x and -y: +x zeroed; the -y push is zeroed
        (0.40, 0.0, 0.02),   # 0.10 m past +x > margin 0.05: stop
        (0.0, 0.0, 0.02),
    ]
    pushes = [np.array(a, dtype=np.float32) for a in ([1, 1], [1, 1], [1, -1], [1, 1], [1, 1])]
    it = iter(pushes)
    robot = ReplayRobot(observations(tcps))
    limits = SafetyLimits(**BOX, workspace_margin=0.05, tcp_slice=TCP, dofs=("x", "y"))
    result = run_policy(lambda o: next(it), robot, realtime=False, limits=limits)
    assert [a.tolist() for a in robot.actions] == [[1, 1], [0, 1], [0, 0]]
    assert result.safety_stop and result.stop_reason.startswith("workspace:") and result.steps == 3
    assert result.interventions["workspace"] == 2
    assert len(robot.stop_times) == 1 and robot.stop_times[0] >= robot.action_times[-1]

    # pulling back inward from outside is allowed
    robot = ReplayRobot(observations([(0.31, 0.0, 0.02)]))
    run_policy(constant([-1, 0.5]), robot, realtime=False, limits=limits)
    assert robot.actions[0].tolist() == [-1.0, 0.5]


def test_workspace_uses_robot_tcp_position_when_available():
    # the observation's TCP entries say "inside", the robot's own tcp_position() says "far out": the robot wins
    obs = observations([(0.0, 0.0, 0.02)] * 2)
    robot = ReplayRobot(obs, tcp_positions=[(0.0, 0.0, 0.02), (0.0, 0.0, 0.5)])
    result = run_policy(constant([1, 1]), robot, realtime=False,
                        limits=SafetyLimits(**BOX, tcp_slice=TCP, dofs=("x", "y")))
    assert result.stop_reason.startswith("workspace:") and len(robot.actions) == 1


def test_workspace_needs_a_tcp_source():
    with pytest.raises(ValueError, match="TCP position"):
        run_policy(constant([0, 0]), ReplayRobot(observations([(0, 0, 0)])), realtime=False,
                   limits=SafetyLimits(**BOX, dofs=("x", "y")))


def test_watchdog_stops_a_stalled_sensor():
    robot = ReplayRobot(observations([(0, 0, 0.02)] * 10), stall_at=3, stall_seconds=20.0)
    t0 = time.perf_counter()
    result = run_policy(constant([0.1, 0.1]), robot, realtime=False, limits=SafetyLimits(obs_timeout=0.2))
    elapsed = time.perf_counter() - t0
    assert result.safety_stop and result.stop_reason.startswith("watchdog: no observation")
    assert result.steps == 3 and len(robot.actions) == 3
    assert len(robot.stop_times) == 1
    # stopped about obs_timeout after the last action, not after the 20 s stall
    assert 0.15 <= robot.stop_times[0] - robot.action_times[-1] < 2.0 and elapsed < 5.0


def test_watchdog_stops_on_non_finite_observation():
    obs = observations([(0, 0, 0.02)] * 6)
    obs[4][40] = np.nan
    robot = ReplayRobot(obs)
    result = run_policy(constant([0.1, 0.1]), robot, realtime=False)
    assert result.stop_reason == "watchdog: non-finite observation" and result.safety_stop
    assert len(robot.actions) == 4 and len(robot.stop_times) == 1


def test_realtime_pacing_and_overruns():
    robot = ReplayRobot(observations([(0, 0, 0.02)] * 8), control_rate=50.0)
    result = run_policy(constant([0, 0]), robot, realtime=True)
    t = result.timing
    assert t["steps"] == 8 and t["target_period_ms"] == pytest.approx(20.0)
    assert t["period_mean_ms"] >= 19.9 and t["jitter_max_ms"] is not None
    # an absolute schedule: step k starts no earlier than k periods after step 0 (a late step does not
    # shift the later ones), whatever the machine's load
    starts = np.array(result.step_starts) - result.step_starts[0]
    assert (starts >= np.arange(8) * 0.020 - 1e-4).all()  # 1e-4: step 0 starts a few µs after the origin
    assert t["period_mean_ms"] == pytest.approx((starts[-1] / 7) * 1e3)

    def slow(obs):  # a policy slower than the 20 ms period
        time.sleep(0.03)
        return np.zeros(2, dtype=np.float32)

    robot = ReplayRobot(observations([(0, 0, 0.02)] * 4), control_rate=50.0)
    result = run_policy(slow, robot, realtime=True)
    assert result.timing["overruns"] == 4 and result.timing["period_mean_ms"] >= 29.0


def test_stop_called_when_the_policy_raises():
    def broken(obs):
        raise RuntimeError("policy crashed")

    robot = ReplayRobot(observations([(0, 0, 0.02)] * 3))
    with pytest.raises(RuntimeError, match="policy crashed"):
        run_policy(broken, robot, realtime=False)
    assert len(robot.stop_times) == 1 and robot.actions == []
