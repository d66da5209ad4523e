"""The Python floor of a single env step: each part of ``FlowEnv.step`` timed alone, against raw physics.

For Push-T with the pusher (the lightest physics: the largest overhead), process CPU time per call,
medians over repeats, after stepping the env with random actions so the state is a running one:

* ``raw mj_step(nstep)``: the physics of one control step (the 1.00x of benchmarks/env_step.py);
* ``null step``: ``mj_step(nstep)`` plus what any Gymnasium step returns (a qpos copy as the
  observation, a reward, flags, an info dict): the floor of a Python env around this physics;
* the env's parts: ``controller.apply``, ``binding.points``, ``_get_rew`` (time alignment over the
  remaining flow frames, Push-T's coverage, terms), ``_get_obs``, ``_check_divergence``;
* ``env.step``: all of it.

Each part is called in a tight loop on one state, so its data stays in cache; inside ``env.step``
(after ``mj_step`` has gone through MuJoCo's arena) the same parts cost more, which the
instrumented shares of benchmarks/env_step.py show.

    python benchmarks/step_floor.py [--robot pusher] [--calls 3000] [--repeats 5]

Results: ``benchmarks/results/step_floor.json`` / ``.md``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

import d2f_envs  # noqa: E402,F401
from benchmarks.common import machine, write_results  # noqa: E402


def per_call(f, n: int) -> float:
    t = time.process_time()
    for i in range(n):
        f(i)
    return (time.process_time() - t) / n * 1e6


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="D2F-PushT-v0")
    p.add_argument("--robot", default="pusher")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "step_floor.json")
    args = p.parse_args(argv)
    env = gym.make(args.env, robot=args.robot).unwrapped
    m, d, nsub = env.model, env.data, env.n_substeps
    acts = np.random.default_rng(0).uniform(-1, 1, (args.calls,) + env.action_space.shape)
    parts = {
        "env.step": lambda i: env.step(acts[i]),
        "raw mj_step(nstep)": lambda i: mujoco.mj_step(m, d, nstep=nsub),
        "null step (mj_step + qpos copy, reward, flags, info)":
            lambda i: (mujoco.mj_step(m, d, nstep=nsub), (d.qpos.copy(), 0.0, False, False, {})),
        "controller.apply": lambda i: env.controller.apply(m, d, acts[i]),
        "binding.points": lambda i: env.binding.points(d),
        "_get_rew": lambda i: env._get_rew(acts[i]),
        "_get_obs": lambda i: env._get_obs(),
        "_check_divergence": lambda i: env._check_divergence(),
    }
    times = {k: [] for k in parts}
    for rep in range(args.repeats):
        env.reset(seed=rep)
        for i in range(80):  # a running state: the pusher moving, the block possibly in contact
            env.step(acts[i])
        for name, f in parts.items():
            times[name].append(per_call(f, args.calls))
    # the same parts inside env.step: each wrapped with a CPU-time accumulator, the rest is mj_step + glue
    inside = inside_step(args, acts)
    raw = statistics.median(times["raw mj_step(nstep)"])
    rows = [{"part": k, "us_per_call": statistics.median(v), "x_raw": statistics.median(v) / raw} for k, v in times.items()]
    md = [f"Machine: {machine()}.",
          f"{args.env} robot={args.robot}: process CPU time per call, medians over {args.repeats} repeats of "
          f"{args.calls} calls (each part alone, in a tight loop).", "",
          "| part | us per call | / raw mj_step(nstep) |", "|---|---:|---:|"]
    md += [f"| {r['part']} | {r['us_per_call']:.1f} | {r['x_raw']:.2f}x |" for r in rows]
    md += ["", f"The same parts inside `env.step` (each wrapped with a CPU-time accumulator; {args.calls} steps "
           f"per repeat, resets every 80 steps untimed; medians over repeats); rest = `mj_step(nstep)` + step glue:",
           "", "| part | us per step | / raw mj_step(nstep) |", "|---|---:|---:|"]
    md += [f"| {k} | {v:.1f} | {v / raw:.2f}x |" for k, v in inside.items()]
    rows.append({"inside_env_step_us": inside})
    write_results(args.out, rows, md)


def inside_step(args, acts) -> dict:
    env = gym.make(args.env, robot=args.robot).unwrapped
    acc: dict = {}

    def wrap(obj, name, label):
        f = getattr(obj, name)

        def timed(*a, **k):
            t = time.process_time()
            r = f(*a, **k)
            acc[label] = acc.get(label, 0.0) + time.process_time() - t
            return r
        setattr(obj, name, timed)

    wrap(env.controller, "apply", "controller.apply")
    wrap(env.binding, "points", "binding.points")
    wrap(env, "_get_rew", "_get_rew")
    wrap(env, "_get_obs", "_get_obs")
    wrap(env, "_check_divergence", "_check_divergence")
    out: dict = {}
    for rep in range(args.repeats):
        env.reset(seed=rep)
        acc.clear()
        total = 0.0
        for i in range(args.calls):
            t = time.process_time()
            env.step(acts[i])
            total += time.process_time() - t
            if i % 80 == 79:  # untimed, and its own _get_obs call not counted
                saved = dict(acc)
                env.reset()
                acc.clear()
                acc.update(saved)
        per = {k: v / args.calls * 1e6 for k, v in acc.items()}
        per["rest (mj_step + glue)"] = total / args.calls * 1e6 - sum(per.values())
        per["env.step"] = total / args.calls * 1e6
        for k, v in per.items():
            out.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in out.items()}


if __name__ == "__main__":
    main()
