"""Soak every (task, robot): many random and adversarial steps, counting crashes, NaNs and caught divergences.

    python benchmarks/soak.py                                   # 100000 steps per (task, robot), all 16 pairs
    python benchmarks/soak.py --pair D2F-CoverBowl-v0:panda_gripper   # one pair (repeatable)
    python benchmarks/soak.py --report                          # only rebuild soak.json/.md from the parts

Each pair runs its registered episodes (TimeLimit included) with three action
sources in turn, one episode each: uniform random actions, maximum magnitude
(one random corner of the action box held for the whole episode) and
bang-bang (a random corner whose sign flips every step). It reports:

* crashes: exceptions out of ``reset``/``step`` (target 0);
* non-finite observations or rewards (target 0);
* divergences: episodes truncated with ``info["truncation_reason"]`` (caught, not errors).

A full run is about an hour of one core, mostly the cloth, so each pair's counts are
written (atomically) to ``--parts/<env>__<robot>.json`` every ``--flush`` seconds and
when it ends; a rerun continues every unfinished pair from its last written episode
(episode k's actions come from the generator seeded by ``(seed, k)``, so a pair killed
and resumed steps exactly as an uninterrupted one would). Pairs can therefore run in
separate processes; the report is rebuilt from all parts at the end of each run and
states the steps actually done, never the target.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

SOURCES = ("random", "max-magnitude", "bang-bang")
RESULTS = Path(__file__).resolve().parent / "results"


def _new_state(env_id: str, robot: str, seed: int) -> dict:
    return {"env": env_id, "robot": robot, "seed": seed, "steps": 0, "episodes": 0, "crashes": 0,
            "nonfinite": 0, "divergences": 0, "steps_by_source": {s: 0 for s in SOURCES},
            "divergences_by_source": {s: 0 for s in SOURCES}, "reasons": [], "errors": [], "wall_s": 0.0,
            "done": False}


def _write_atomic(path: Path, obj: dict) -> None:
    # a killed soak must never leave a half-written part that the next run would trust
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def soak_pair(env_id: str, robot: str, steps: int, seed: int = 0, progress=None,
              part: Path | None = None, flush_s: float = 30.0) -> dict:
    """Step one (task, robot) until ``steps`` env steps are done; resume from ``part`` if it holds a run."""
    import gymnasium as gym

    out = _new_state(env_id, robot, seed)
    if part is not None and part.exists():
        prev = json.loads(part.read_text())
        if prev.get("seed") == seed:
            out.update(prev)
    out["target_steps"] = steps
    if out["steps"] >= steps:
        out["done"] = True
        if progress is not None:
            progress.update(min(out["steps"], steps))
        return out
    if progress is not None:
        progress.update(out["steps"])
    out["done"] = False

    env = gym.make(env_id, robot=robot)
    shape = env.action_space.shape
    last_flush = time.perf_counter()
    while out["steps"] < steps:
        episode = out["episodes"]
        source = SOURCES[episode % len(SOURCES)]
        rng = np.random.default_rng([seed, episode])
        corner = rng.choice([-1.0, 1.0], size=shape).astype(np.float32)
        k = 0
        t0 = time.perf_counter()
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
                if not (np.isfinite(obs).all() and np.isfinite(r)):
                    out["nonfinite"] += 1
                if "truncation_reason" in info:
                    out["divergences"] += 1
                    out["divergences_by_source"][source] += 1
                    if len(out["reasons"]) < 5:
                        out["reasons"].append(f"{source}: {info['truncation_reason']}")
                if term or trunc or out["steps"] + k >= steps:
                    break
        except Exception:  # noqa: BLE001  a crash is what the soak counts
            out["crashes"] += 1
            if len(out["errors"]) < 3:
                out["errors"].append(traceback.format_exc(limit=3))
        out["steps"] += k
        out["steps_by_source"][source] += k
        out["episodes"] = episode + 1
        out["wall_s"] += time.perf_counter() - t0
        if progress is not None:
            progress.update(k)
        if part is not None and time.perf_counter() - last_flush > flush_s:
            _write_atomic(part, out)
            last_flush = time.perf_counter()
    out["done"] = True
    env.close()
    if part is not None:
        _write_atomic(part, out)
    return out


def all_pairs():
    import gymnasium as gym

    import d2f_envs

    pairs = []
    for env_id in d2f_envs.ENV_IDS:
        module, name = gym.spec(env_id).entry_point.split(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        pairs += [(env_id, robot) for robot in cls.robots]
    return pairs


def part_path(parts: Path, env_id: str, robot: str) -> Path:
    return parts / f"{env_id}__{robot}.json"


def report(parts: Path, out: Path, steps: int) -> dict:
    """soak.json/.md from every part on disk; unfinished or missing pairs are listed as such."""
    rows = []
    missing = []
    for env_id, robot in all_pairs():
        p = part_path(parts, env_id, robot)
        if p.exists():
            rows.append(json.loads(p.read_text()))
        else:
            missing.append(f"{env_id}:{robot}")
    cmd = "python benchmarks/soak.py" + (f" --steps {steps}" if steps != 100_000 else "")
    md = [f"Machine: {machine()}.", "",
          f"Soak: target {steps:,} env steps per (task, robot), the action source cycling {', '.join(SOURCES)} "
          f"per episode. Command: `{cmd}` (pairs may run in separate processes with `--pair ENV:ROBOT`; "
          "each pair resumes from its part file). wall: seconds of stepping, on a machine shared with other "
          "jobs, so it measures the load as much as the env (benchmarks/env_step.py measures speed).", "",
          "| env | robot | steps | random / max-magnitude / bang-bang steps | episodes | crashes | non-finite obs/reward "
          "| divergences caught | finished | wall |",
          "|---|---|---:|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        by = " / ".join(f"{r['steps_by_source'][s]:,}" for s in SOURCES)
        md.append(f"| {r['env']} | {r['robot']} | {r['steps']:,} | {by} | {r['episodes']:,} | {r['crashes']} | "
                  f"{r['nonfinite']} | {r['divergences']} | {'yes' if r['done'] else 'no'} | {r['wall_s']:.0f} s |")
    tot = {k: sum(r[k] for r in rows) for k in ("steps", "crashes", "nonfinite", "divergences")}
    adv = sum(r["steps_by_source"][s] for r in rows for s in SOURCES[1:])
    md.append(f"| **all** | | **{tot['steps']:,}** | adversarial {adv:,} | | **{tot['crashes']}** | "
              f"**{tot['nonfinite']}** | {tot['divergences']} | {sum(r['done'] for r in rows)}/{len(rows) + len(missing)} | |")
    if missing:
        md += ["", f"Not run: {', '.join(missing)}."]
    reasons = [f"{r['env']} {r['robot']}: {x}" for r in rows for x in r["reasons"]]
    if reasons:
        md += ["", "Divergence reasons (first few per pair):", ""] + [f"* {x}" for x in reasons]
    write_results(out, rows, md)
    return {**tot, "missing": missing, "unfinished": [f"{r['env']}:{r['robot']}" for r in rows if not r["done"]]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000, help="env steps per (task, robot)")
    ap.add_argument("--env", action="append", help="only this env id's robots (repeatable)")
    ap.add_argument("--pair", action="append", help="only ENV:ROBOT (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    ap.add_argument("--parts", type=Path, default=RESULTS / "soak_parts",
                    help="per-pair progress files (resumed from)")
    ap.add_argument("--flush", type=float, default=30.0, help="seconds between progress writes")
    ap.add_argument("--report", action="store_true", help="only rebuild the report from the parts")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    args.parts.mkdir(parents=True, exist_ok=True)
    if not args.report:
        pairs = all_pairs()
        if args.env:
            pairs = [p for p in pairs if p[0] in args.env]
        if args.pair:
            want = [tuple(x.split(":", 1)) for x in args.pair]
            unknown = [":".join(w) for w in want if w not in pairs]
            if unknown:
                raise SystemExit(f"soak.py: unknown --pair {unknown}; pairs are {[':'.join(p) for p in pairs]}")
            pairs = [p for p in pairs if p in want]
        with tqdm(total=args.steps * len(pairs), desc="soak", unit="step", mininterval=10) as bar:
            for env_id, robot in pairs:
                bar.set_postfix_str(f"{env_id} {robot}")
                soak_pair(env_id, robot, args.steps, args.seed, bar, part_path(args.parts, env_id, robot), args.flush)
    tot = report(args.parts, args.out, args.steps)
    if tot["crashes"] or tot["nonfinite"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
