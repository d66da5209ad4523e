"""Soak every (task, robot): many random and adversarial steps, counting crashes, NaNs and caught divergences.

    python benchmarks/soak.py                       # 100000 steps per (task, robot)
    python benchmarks/soak.py --steps 5000 --env D2F-PushT-v0 --out /tmp/soak.json

Each pair runs its registered episodes (TimeLimit included) with three action
sources in turn, one episode each: uniform random actions, maximum magnitude
(one random corner of the action box held for the whole episode) and
bang-bang (every entry flips sign every step). It reports:

* crashes: exceptions out of ``reset``/``step`` (target 0);
* non-finite observations or rewards (target 0);
* divergences: episodes truncated with ``info["truncation_reason"]`` (caught, not errors).
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

SOURCES = ("random", "max-magnitude", "bang-bang")


def soak_pair(env_id: str, robot: str, steps: int, seed: int = 0, progress=None) -> dict:
    import gymnasium as gym

    env = gym.make(env_id, robot=robot)
    rng = np.random.default_rng(seed)
    shape = env.action_space.shape
    out = {"env": env_id, "robot": robot, "steps": 0, "episodes": 0, "crashes": 0, "nonfinite": 0,
           "divergences": 0, "reasons": [], "errors": []}
    episode = 0
    t0 = time.perf_counter()
    while out["steps"] < steps:
        source = SOURCES[episode % len(SOURCES)]
        corner = rng.choice([-1.0, 1.0], size=shape).astype(np.float32)
        k = 0
        try:
            obs, _ = env.reset(seed=seed + episode)
            while True:
                if source == "random":
                    a = rng.uniform(-1, 1, size=shape).astype(np.float32)
                elif source == "max-magnitude":
                    a = corner
                else:
                    a = corner * (1.0 if k % 2 == 0 else -1.0)
                obs, r, term, trunc, info = env.step(a)
                k += 1
                out["steps"] += 1
                if not (np.isfinite(obs).all() and np.isfinite(r)):
                    out["nonfinite"] += 1
                if "truncation_reason" in info:
                    out["divergences"] += 1
                    if len(out["reasons"]) < 5:
                        out["reasons"].append(f"{source}: {info['truncation_reason']}")
                if term or trunc or out["steps"] >= steps:
                    break
        except Exception:  # noqa: BLE001  a crash is what the soak counts
            out["crashes"] += 1
            if len(out["errors"]) < 3:
                out["errors"].append(traceback.format_exc(limit=3))
        episode += 1
        if progress is not None:
            progress.update(k)
    out["episodes"] = episode
    out["wall_s"] = time.perf_counter() - t0
    env.close()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000, help="env steps per (task, robot)")
    ap.add_argument("--env", action="append", help="only this env id (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "soak.json")
    args = ap.parse_args(argv)

    import gymnasium as gym
    from tqdm import tqdm

    import d2f_envs

    pairs = []
    for env_id in args.env or list(d2f_envs.ENV_IDS):
        module, name = gym.spec(env_id).entry_point.split(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        pairs += [(env_id, robot) for robot in cls.robots]
    rows = []
    with tqdm(total=args.steps * len(pairs), desc="soak", unit="step") as bar:
        for env_id, robot in pairs:
            bar.set_postfix_str(f"{env_id} {robot}")
            rows.append(soak_pair(env_id, robot, args.steps, args.seed, bar))

    md = [f"Machine: {machine()}.", "", f"Soak: {args.steps} steps per (task, robot), actions cycling {', '.join(SOURCES)} per episode. "
          f"Command: `python benchmarks/soak.py" + (f" --steps {args.steps}" if args.steps != 100_000 else "") + "`",
          "", "| env | robot | steps | episodes | crashes | non-finite obs/reward | divergences caught | wall |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['env']} | {r['robot']} | {r['steps']} | {r['episodes']} | {r['crashes']} | {r['nonfinite']} | "
                  f"{r['divergences']} | {r['wall_s']:.0f} s |")
    tot = {k: sum(r[k] for r in rows) for k in ("steps", "crashes", "nonfinite", "divergences")}
    md.append(f"| **all** | | {tot['steps']} | | **{tot['crashes']}** | **{tot['nonfinite']}** | {tot['divergences']} | |")
    write_results(args.out, rows, md)
    if tot["crashes"] or tot["nonfinite"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
