"""Run an exported policy (``policy.onnx`` + ``policy.json``) on a robot, with onnxruntime and numpy only.

Importing this package imports neither torch, SB3 nor d2f_envs (only numpy; onnxruntime when a
policy is loaded), so it runs on a robot computer that has none of them::

    from d2f_rl.deploy import OnnxPolicy, SafetyLimits, run_policy

    policy = OnnxPolicy("logs/sac/D2F-PushT-v0_1/policy.onnx")      # reads policy.json beside it
    robot = MyRobot()                                               # your RobotInterface
    result = run_policy(policy, robot, steps=300,
                        limits=SafetyLimits.from_policy(policy, max_action_delta=0.5, obs_timeout=0.3))
    print(result.stop_reason, result.timing)

* :class:`OnnxPolicy`: obs -> action, normalisation and action bounds inside the graph
* :class:`RobotInterface`: the protocol to implement for hardware (``observe``, ``act``, ``stop``,
  ``control_rate``; optional ``tcp_position``, ``done``)
* :class:`SimulatedRobot`: the MuJoCo env as the robot (imports d2f_envs when constructed);
  :class:`ReplayRobot`: a test double that replays recorded observations
* :func:`run_policy`: the loop at the control rate with a watchdog, a TCP workspace box and an
  action-rate limit; returns timing statistics

CLI: ``python -m d2f_rl.deploy policy.onnx --sim D2F-PushT-v0 --steps 80``.
"""
from .loop import DeployResult, SafetyLimits, run_policy, timing_stats
from .policy import OnnxPolicy, PolicyFileError, load_policy
from .robot import ReplayRobot, RobotInterface, SimulatedRobot

__all__ = [
    "DeployResult", "OnnxPolicy", "PolicyFileError", "ReplayRobot", "RobotInterface", "SafetyLimits",
    "SimulatedRobot", "load_policy", "run_policy", "timing_stats",
]
