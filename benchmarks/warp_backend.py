"""Throughput of the batched vector env's ``backend="warp"`` (MuJoCo Warp) at 1, 16, 256 and 1024 envs.

For D2F-PushT-v0 (pusher), env steps per second (all envs together, wall clock) of

* ``warp``: ``BatchedFlowVectorEnv(..., backend="warp")`` (controllers, state sync with ``mj_forward`` per
  env, the vectorised reward and observation: the whole ``step``);
* ``raw warp``: ``mujoco_warp.step`` alone, ``n_substeps`` per control step on all worlds (the physics limit
  of the device; includes nothing else);
* ``mujoco``: the same vector env with ``backend="mujoco"`` (``mujoco.batch`` on the CPU cores), same actions;

and where the warp env's step time goes (``profile=True`` phases). The first step (kernel compilation on
a cold Warp cache, first-step checks) is timed separately and excluded.

The device is Warp's: ``--device cuda:0`` / ``cpu``, default CUDA if available. **The numbers depend on it
entirely; the results file names it.** On the CPU device Warp runs its kernels on one core, so CPU numbers
say nothing about a GPU's.

    python benchmarks/warp_backend.py                          # 1, 16, 256, 1024 envs, 5 timed steps each
    python benchmarks/warp_backend.py --device cpu --steps 2   # short CPU run

Results: ``benchmarks/results/warp_backend.json`` / ``.md``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import d2f_envs  # noqa: E402, F401
from benchmarks.common import machine, write_results  # noqa: E402
from d2f_envs.vector import BatchedFlowVectorEnv  # noqa: E402

PHASES = ("controller", "physics", "sync", "binding", "task_success", "reward", "obs")


def device_line(wp, device: str) -> str:
    d = wp.get_device(device)
    if d.is_cuda:
        return f"Warp device {device}: {d.name}, {d.total_memory / 2**30:.0f} GiB (CUDA)"
    return f"Warp device {device}: the CPU ({machine().split(';')[0]}; Warp runs CPU kernels on one thread)"


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def time_env(env: BatchedFlowVectorEnv, actions: np.ndarray) -> Dict[str, float]:
    env.reset(seed=0)
    t0 = time.perf_counter()
    env.step(actions[0])  # compilation (cold cache), first-step checks
    first = time.perf_counter() - t0
    env.timings.clear()
    t0 = time.perf_counter()
    for a in actions[1:]:
        env.step(a)
    wall = time.perf_counter() - t0
    n = env.num_envs * (len(actions) - 1)
    return {"steps_per_s": n / wall, "first_step_s": first,
            "shares": {k: v / wall for k, v in env.timings.items()}}


def raw_warp(env: BatchedFlowVectorEnv, steps: int) -> float:
    """World steps/s of mujoco_warp.step alone (n_substeps per control step), on the env's own Data."""
    g = env.simulation(0)[0]
    wp, mjw = g._wp, g._mjw
    with wp.ScopedDevice(g.device):
        mjw.step(g.m, g.d)
        wp.synchronize_device(g.device)
        t0 = time.perf_counter()
        for _ in range(steps * env.n_substeps):
            mjw.step(g.m, g.d)
        wp.synchronize_device(g.device)
    return env.num_envs * steps / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="Warp device (cuda:0, cpu); default: CUDA if available")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 16, 256, 1024])
    p.add_argument("--steps", type=int, default=5, help="timed control steps per size (after one untimed)")
    p.add_argument("--env", default="D2F-PushT-v0")
    p.add_argument("--robot", default="pusher")
    p.add_argument("--no-mujoco", action="store_true", help="skip the mujoco-backend comparison")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "warp_backend.json")
    args = p.parse_args(argv)

    from d2f_envs.warp_backend import import_warp, resolve_device

    wp, _ = import_warp()
    device = resolve_device(wp, args.device)
    dev_line = device_line(wp, device)
    print(dev_line, flush=True)
    load_start = load()
    rows: List[Dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for n in args.num_envs:
        t0 = time.perf_counter()
        env = BatchedFlowVectorEnv(args.env, n, robot=args.robot, backend="warp", device=device, profile=True)
        make_s = time.perf_counter() - t0
        actions = rng.uniform(-1, 1, (args.steps + 1,) + env.action_space.shape).astype(np.float32)
        w = time_env(env, actions)
        raw = raw_warp(env, args.steps)
        env.close()
        row = {"env": args.env, "robot": args.robot, "num_envs": n, "device": device,
               "warp_steps_per_s": w["steps_per_s"], "raw_warp_steps_per_s": raw,
               "warp_first_step_s": w["first_step_s"], "make_s": make_s, "warp_phase_shares": w["shares"],
               "timed_steps": args.steps}
        if not args.no_mujoco:
            mj = BatchedFlowVectorEnv(args.env, n, robot=args.robot)
            row["mujoco_steps_per_s"] = time_env(mj, actions)["steps_per_s"]
            mj.close()
        rows.append(row)
        print(f"n={n}: warp {row['warp_steps_per_s']:.1f} env steps/s, raw warp {raw:.1f}, "
              f"mujoco {row.get('mujoco_steps_per_s', float('nan')):.0f}; first step {w['first_step_s']:.1f} s",
              flush=True)
    load_end = load()
    md = [f"Machine: {machine()}; load average (1, 5, 15 min) {load_start} at start, {load_end} at end.",
          f"**{dev_line}.**",
          f"{args.env} ({args.robot}); env steps/s (all envs together, wall clock) over {args.steps} control "
          "steps with random actions after one untimed step (compilation on a cold cache, first-step checks).",
          "",
          "| envs | warp backend | raw mujoco_warp.step | mujoco backend (CPU) | warp first step (s) | "
          + " | ".join(PHASES) + " |",
          "|---:|---:|---:|---:|---:|" + "---:|" * len(PHASES)]
    for r in rows:
        sh = r["warp_phase_shares"]
        mjs = f"{r['mujoco_steps_per_s']:.0f}" if "mujoco_steps_per_s" in r else ""
        md.append(f"| {r['num_envs']} | {r['warp_steps_per_s']:.1f} | {r['raw_warp_steps_per_s']:.1f} | {mjs} | "
                  f"{r['warp_first_step_s']:.1f} | " + " | ".join(f"{sh.get(k, 0.0):.0%}" for k in PHASES) + " |")
    md += ["", "Phases of the warp env's step: controller = actions -> ctrl per env (the env's controller); "
           "physics = host state upload, n_substeps mujoco_warp.step on all worlds, state download; sync = "
           "each env's MjData <- its world + mj_forward (MuJoCo C) + divergence check; binding, task_success, "
           "reward, obs = the same vectorised code as the mujoco backend."]
    write_results(args.out, [dict(r, load_start=load_start, load_end=load_end, device_line=dev_line) for r in rows], md)


if __name__ == "__main__":
    main()
