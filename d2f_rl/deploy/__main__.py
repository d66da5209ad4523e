"""``python -m d2f_rl.deploy policy.onnx --sim D2F-PushT-v0 --steps 80``: run an exported policy.

Only the simulated robot ships (``--sim``); for hardware, implement
:class:`d2f_rl.deploy.RobotInterface` and call :func:`d2f_rl.deploy.run_policy` from Python.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .loop import SafetyLimits, run_policy
from .policy import OnnxPolicy, PolicyFileError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m d2f_rl.deploy",
        description="Run an exported policy (policy.onnx + policy.json) on a robot at its control rate, "
                    "with a watchdog, a TCP workspace box and an action-rate limit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("policy", type=str, help="policy.onnx (policy.json is read from beside it)")
    p.add_argument("--meta", type=str, default=None, help="policy.json, if not beside the .onnx")
    p.add_argument("--sim", type=str, nargs="?", const="", default=None,
                   help="run on the MuJoCo simulation of this env id (no value: policy.json's env)")
    p.add_argument("--steps", type=int, default=None, help="control steps; None: until the episode ends")
    p.add_argument("--seed", type=int, default=0, help="--sim: reset seed")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                   help="pace the loop at the control rate (--no-realtime: as fast as possible)")
    p.add_argument("--rate", type=float, default=None, help="control rate (Hz); None: policy.json's")
    p.add_argument("--max-action-delta", type=float, default=None,
                   help="cap on |a_t - a_{t-1}| per action entry; None: no cap")
    p.add_argument("--obs-timeout", type=float, default=0.5, help="watchdog: seconds without an observation")
    p.add_argument("--workspace-margin", type=float, default=0.05,
                   help="metres outside the workspace box before the robot is stopped")
    p.add_argument("--no-workspace", action="store_true", help="disable the TCP workspace box")
    p.add_argument("--json", type=str, default=None, help="write the result (timing, success, ...) here")
    return p


def _fmt(v: Any, unit: str = "ms") -> str:
    return "-" if v is None else f"{v:.2f} {unit}"


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    try:
        policy = OnnxPolicy(args.policy, args.meta)
    except PolicyFileError as e:
        raise SystemExit(str(e)) from None
    if args.sim is None:
        raise SystemExit("no robot: pass --sim [ENV_ID] for the MuJoCo simulation; for hardware implement "
                         "d2f_rl.deploy.RobotInterface and call d2f_rl.deploy.run_policy from Python")
    from .robot import SimulatedRobot

    robot = SimulatedRobot.from_policy(policy, env_id=args.sim or None, seed=args.seed)
    if policy.control_rate and abs(robot.control_rate - policy.control_rate) > 1e-9:
        print(f"warning: the simulation runs at {robot.control_rate:g} Hz, the policy was trained at "
              f"{policy.control_rate:g} Hz", file=sys.stderr)
    overrides = dict(max_action_delta=args.max_action_delta, obs_timeout=args.obs_timeout,
                     workspace_margin=args.workspace_margin)
    if args.no_workspace:
        overrides.update(workspace_low=None, workspace_high=None)
    limits = SafetyLimits.from_policy(policy, **overrides)
    try:
        result = run_policy(policy, robot, steps=args.steps, limits=limits, realtime=args.realtime,
                            control_rate=args.rate)
    finally:
        robot.close()

    info = robot.info
    t = result.timing
    out = {
        "policy": str(args.policy), "env": robot.env_id, "steps": result.steps, "stop_reason": result.stop_reason,
        "safety_stop": result.safety_stop, "is_success": bool(info.get("is_success", False)),
        "final_error": float(info["final_error"]) if "final_error" in info else None,
        "episode_return": robot.episode_return, "interventions": result.interventions, "timing": t,
    }
    print(f"{robot.env_id}: {policy.onnx_path} on the simulated robot, {result.steps} steps "
          f"({result.stop_reason}{', safety stop' if result.safety_stop else ''})")
    err = "-" if out["final_error"] is None else f"{out['final_error'] * 100:.2f} cm"
    print(f"success: {out['is_success']}   final error: {err}   return: {robot.episode_return:.2f}")
    print(f"timing ({'realtime' if t['realtime'] else 'as fast as possible'}, target {t['target_period_ms']:.1f} ms): "
          f"period mean {_fmt(t['period_mean_ms'])}, max {_fmt(t['period_max_ms'])}, "
          f"jitter std {_fmt(t['jitter_std_ms'])} / max {_fmt(t['jitter_max_ms'])}, "
          f"compute mean {_fmt(t['compute_mean_ms'])}, max {_fmt(t['compute_max_ms'])}, overruns {t['overruns']}")
    print(f"safety interventions: {result.interventions}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"json: {args.json}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
