"""Success of the privileged scripted flow-following controllers, and of random actions, per task and robot.

    python benchmarks/scripted_success.py                  # 20 seeds per (task, robot)
    python benchmarks/scripted_success.py --seeds 5 --out /tmp/s.json
    python benchmarks/scripted_success.py --env D2F-OpenDoor-v0 --robot gr1   # one row; the others are kept
    python benchmarks/scripted_success.py --flow extracted --out /tmp/extracted.json   # another shipped flow

The scripted controllers (d2f_envs/scripted.py for Push-T, d2f_envs/scripted_articulated.py
for the drawer and door, d2f_envs/scripted_pick_place.py for pick-and-place, d2f_envs/scripted_cloth.py
for the cloth) read the simulator state: they show that each task is solvable with its robot
and that the reward ranks flow-following above random motion. They are not learned policies.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402


def make_controller(env):
    u = env.unwrapped
    if u.env_id == "D2F-SweepPasta-v0":  # d2f_envs/scripted_sweep.py: strokes towards the flow's end
        from d2f_envs.scripted_sweep import FlowFollowingSweeper

        return FlowFollowingSweeper(env)
    if u.env_id == "D2F-PushT-v0":
        from d2f_envs.scripted import FlowFollowingPusher

        return FlowFollowingPusher(env)
    if u.env_id == "D2F-PickPlace-v0":
        from d2f_envs.scripted_pick_place import FlowFollowingPicker

        return FlowFollowingPicker(env)
    if u.env_id == "D2F-CoverBowl-v0":
        from d2f_envs.scripted_cloth import FlowFollowingClothGripper

        return FlowFollowingClothGripper(env)
    from d2f_envs.scripted_articulated import FlowFollowingGripper

    return FlowFollowingGripper(env)


def episode(env, policy, seed):
    """(return, success, final error) of one episode; ``policy=None``: seeded random actions."""
    from d2f_envs.rollout import random_policy, run_episode

    out = run_episode(env, policy if policy is not None else random_policy(env.action_space, seed), seed=seed)
    return out["return"], out["is_success"], out["final_error"]


def robots_of(env_id):
    """The robots the env id's class lists."""
    import gymnasium as gym

    module, name = gym.spec(env_id).entry_point.split(":")
    return getattr(importlib.import_module(module), name).robots


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="episodes (seeds 0..n-1) per task and robot")
    ap.add_argument("--out", default="benchmarks/results/scripted_success.json")
    ap.add_argument("--env", action="append", default=None, help="only these env ids (repeatable)")
    ap.add_argument("--robot", action="append", default=None, help="only these robots (repeatable)")
    ap.add_argument("--flow", default="default", choices=["default", "demo", "extracted"],
                    help="which shipped flow the envs follow (flows/shipped.py; default: the envs' own)")
    args = ap.parse_args(argv)
    import gymnasium as gym

    import d2f_envs
    from flows import FlowFormatError
    from flows.shipped import DEFAULT, shipped_flow_path

    rows = []
    for env_id in d2f_envs.ENV_IDS:
        if args.env and env_id not in args.env:
            continue
        for robot in robots_of(env_id):
            if args.robot and robot not in args.robot:
                continue
            flow = shipped_flow_path(env_id, args.flow)
            which = args.flow if args.flow != "default" else DEFAULT[env_id]
            try:
                env = gym.make(env_id, robot=robot, flow=str(flow))
            except FlowFormatError as exc:  # e.g. the env's point subsample leaves a frame with no visible point
                rows.append({"env": env_id, "robot": robot, "episodes": 0, "flow": which, "flow_file": flow.name,
                             "unusable": str(exc)})
                print(json.dumps(rows[-1]))
                continue
            ctrl = make_controller(env)
            t0 = time.perf_counter()
            scripted = [episode(env, ctrl, s) for s in range(args.seeds)]
            wall = time.perf_counter() - t0
            rand = [episode(env, None, s) for s in range(args.seeds)]
            row = {
                "env": env_id, "robot": robot, "episodes": args.seeds,
                "flow": which, "flow_file": flow.name,
                "scripted_success": float(np.mean([s for _, s, _ in scripted])),
                "scripted_return": float(np.mean([r for r, _, _ in scripted])),
                "scripted_final_error_m": float(np.median([e for _, _, e in scripted])),
                "random_success": float(np.mean([s for _, s, _ in rand])),
                "random_return": float(np.mean([r for r, _, _ in rand])),
                "seconds_per_scripted_episode": wall / args.seeds,
            }
            rows.append(row)
            print(json.dumps(row))
            env.close()
    out = Path(args.out)
    if out.is_file():  # keep the rows of earlier runs that this one did not redo, in the registry's order
        redone = {(r["env"], r["robot"]) for r in rows}
        kept = [r for r in json.loads(out.read_text())["rows"] if (r["env"], r["robot"]) not in redone]
        rank = {key: i for i, key in enumerate((e, r) for e in d2f_envs.ENV_IDS for r in robots_of(e))}
        rows = sorted(kept + rows, key=lambda r: rank.get((r["env"], r["robot"]), len(rank)))
    lines = [
        f"Machine: {machine()}. Seeds 0..{args.seeds - 1} per row (`python benchmarks/scripted_success.py --seeds "
        f"{args.seeds}" + "".join(f" --env {e}" for e in args.env or []) + "".join(f" --robot {r}" for r in args.robot or [])
        + (f" --flow {args.flow}" if args.flow != "default" else "") + "`). Flow: the shipped flow "
        "each env followed (flows/data/<task>/: `extracted` = made by the extraction pipeline from the rendered "
        "demonstration, `demo` = recorded in simulation).",
        "",
        "| env | robot | flow | scripted success | scripted return | median final error | random success | random return |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "unusable" in r:
            lines.append(f"| {r['env']} | {r['robot']} | {r['flow']} | unusable | | | | |")
            continue
        lines.append(
            f"| {r['env']} | {r['robot']} | {r.get('flow', 'demo')} | {100 * r['scripted_success']:.0f} % | "
            f"{r['scripted_return']:.1f} | "
            f"{100 * r['scripted_final_error_m']:.2f} cm | {100 * r['random_success']:.0f} % | {r['random_return']:.1f} |"
        )
    unusable = sorted({f"{r['env']} ({r['flow']}): {r['unusable']}" for r in rows if "unusable" in r})
    if unusable:
        lines += ["", "Unusable: the env refuses the flow: " + "; ".join(unusable)]
    write_results(out, rows, lines)


if __name__ == "__main__":
    main()
