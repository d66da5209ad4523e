"""Vector-env throughput: the batched env (d2f_envs/vector.py) against Gymnasium's and SB3's vector envs.

For Push-T with the pusher (and with the Panda arm, whose differential IK stays per env),
at 1, 4, 16 and 64 envs, env steps per second (all envs together, wall clock) of:

* ``batched``: :class:`~d2f_envs.vector.BatchedFlowVectorEnv` (one ``mujoco.batch`` step per
  control step on all cores, reward and observation vectorised over envs);
* ``batched_pipelined``: the same with ``groups=min(4, n)``: one group's physics in a worker
  thread while Python handles the other groups (pays only with a core to spare);
* ``sync`` / ``async``: Gymnasium's ``SyncVectorEnv`` / ``AsyncVectorEnv`` over ``gym.make`` envs;
* ``sb3_dummy`` / ``sb3_subproc``: SB3's ``DummyVecEnv`` / ``SubprocVecEnv`` (fork) over the same;
* ``single``: one ``gym.make`` env stepped in a loop (the single-env throughput the targets refer to);
* CPU time per env step (``time.process_time``: all threads of this process; the subprocess-based
  envs' workers are not in it) of the batched env and the single env: the load-insensitive comparison;
* ``raw_batch``: ``Batch.step(nstep=n_substeps)`` alone on the same model with all envs' ctrl fixed,
  and ``raw_mj_step``: ``mj_step(nstep=n_substeps)`` on one MjData: the physical limits.

Each repeat times every implementation back to back on the same random actions, so load from
other processes hits all alike; numbers are medians over repeats, ratios are medians of the
per-repeat ratios. It also reports where the batched env's step time goes (``profile=True``
phases: reward = binding + task success + alignment/terms) and the reward's share of the
single env's step (``_get_rew`` timed around the call).

    python benchmarks/vector_env.py            # full run (a few minutes)
    python benchmarks/vector_env.py --quick    # smoke run

Results: ``benchmarks/results/vector_env.json`` / ``.md`` and ``docs/vector_env.png``.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from mujoco.batch import Batch  # noqa: E402

import d2f_envs  # noqa: E402
from benchmarks.common import machine, write_results  # noqa: E402
from d2f_envs.vector import BatchedFlowVectorEnv  # noqa: E402

clock = time.perf_counter  # wall clock: threads and subprocesses do the work
#: BatchedFlowVectorEnv(profile=True)'s phases (physics_wait only when pipelined)
PHASES = ("controller", "physics", "physics_wait", "sync", "binding", "task_success", "reward", "obs")


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------- the vector envs
def make_impl(name: str, env_id: str, robot: str, n: int):
    """``(step(actions), close())`` of a reset vector env of ``n`` envs."""
    mk = lambda: gym.make(env_id, robot=robot)  # noqa: E731
    if name == "batched":
        env = BatchedFlowVectorEnv(env_id, n, robot=robot)
    elif name == "batched_pipelined":  # groups of envs: one group's physics overlaps Python on the others
        env = BatchedFlowVectorEnv(env_id, n, robot=robot, groups=min(4, n))
    elif name == "sync":
        env = gym.vector.SyncVectorEnv([mk for _ in range(n)])
    elif name == "async":
        env = gym.vector.AsyncVectorEnv([mk for _ in range(n)], context="fork")
    elif name in ("sb3_dummy", "sb3_subproc"):
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

        env = DummyVecEnv([mk] * n) if name == "sb3_dummy" else SubprocVecEnv([mk] * n, start_method="fork")
        env.seed(0)
        env.reset()
        return (lambda a: env.step(a)), env.close
    else:
        raise ValueError(name)
    env.reset(seed=0)
    return (lambda a: env.step(a)), env.close


def time_steps(step: Callable, actions: np.ndarray) -> Tuple[float, float]:
    """(wall seconds, this process's CPU seconds, all its threads) over ``actions``."""
    gc.collect()
    c0, t0 = time.process_time(), clock()
    for a in actions:
        step(a)
    return clock() - t0, time.process_time() - c0


def single_env_rate(env_id: str, robot: str, actions: np.ndarray, reward_share: bool = True) -> Dict[str, float]:
    """Steps/s of one gym.make env (time limit resets untimed), and the share of _get_rew in its step."""
    env = gym.make(env_id, robot=robot)
    u = env.unwrapped
    env.reset(seed=0)
    rew_t = [0.0]
    orig = u._get_rew

    def timed_rew(action):
        t = clock()
        out = orig(action)
        rew_t[0] += clock() - t
        return out

    total = cpu = 0.0
    for instrumented in ((False, True) if reward_share else (False,)):
        u._get_rew = timed_rew if instrumented else orig
        t_inst = 0.0
        for a in actions:
            c0, t0 = time.process_time(), clock()
            _, _, term, trunc, _ = env.step(a)
            dt = clock() - t0
            if instrumented:
                t_inst += dt
            else:
                total += dt
                cpu += time.process_time() - c0
            if term or trunc:
                env.reset()
    env.close()
    return {"steps_per_s": len(actions) / total, "cpu_us_per_step": cpu / len(actions) * 1e6,
            "reward_share": rew_t[0] / t_inst if reward_share else float("nan")}


def raw_rates(env_id: str, robot: str, n: int, vsteps: int) -> Dict[str, float]:
    env = gym.make(env_id, robot=robot).unwrapped
    env.reset(seed=0)
    m, ns = env.model, env.n_substeps
    d = mujoco.MjData(m)
    mujoco.mj_copyData(d, m, env.data)
    t0 = clock()
    for _ in range(vsteps * max(1, min(n, 8))):
        mujoco.mj_step(m, d, nstep=ns)
    raw = vsteps * max(1, min(n, 8)) / (clock() - t0)
    b = Batch(m, nsim=n, nthread=0, persistent=True)
    for name in ("qpos", "qvel", "ctrl", "mocap_pos", "mocap_quat"):
        if getattr(env.data, name).size:
            b.bind(name)[:] = getattr(env.data, name)
    t0 = clock()
    for _ in range(vsteps):
        b.step(nstep=ns)
    return {"raw_mj_step": raw, "raw_batch": n * vsteps / (clock() - t0)}


# --------------------------------------------------------------------------- main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1, 4 envs, 1 repeat, few steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--env-steps", type=int, default=3200, help="env steps (all envs together) per timing")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--robots", nargs="+", default=["pusher", "panda"])
    p.add_argument("--impls", nargs="+",
                   default=["batched", "batched_pipelined", "sync", "async", "sb3_dummy", "sb3_subproc"])
    p.add_argument("--sequential-from", type=int, default=64,
                   help="from this many envs on, make/time/close one vector env at a time (memory)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vector_env.json")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "vector_env.png")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.env_steps, args.num_envs = 1, 160, [1, 4]
    env_id = "D2F-PushT-v0"
    load_start = load()
    rows: List[Dict[str, Any]] = []
    profiles: Dict[str, Dict[str, float]] = {}
    for robot in args.robots:
        rng = np.random.default_rng(0)
        single_actions = rng.uniform(-1, 1, (args.env_steps, 2)).astype(np.float32)
        singles = [single_env_rate(env_id, robot, single_actions) for _ in range(args.repeats)]
        single = statistics.median(s["steps_per_s"] for s in singles)
        single_rew = statistics.median(s["reward_share"] for s in singles)
        for n in args.num_envs:
            vsteps = max(args.env_steps // n, 10)
            actions = rng.uniform(-1, 1, (vsteps, n, 2)).astype(np.float32)
            # all vector envs alive at once, so that each repeat times them back to back; from
            # --sequential-from envs on (memory: six 64-env Panda vector envs at once got a worker OOM-killed on
            # the 2-core VM) each is made, timed for all repeats and closed in turn
            sequential = n >= args.sequential_from
            impls = {name: (None if sequential else make_impl(name, env_id, robot, n)) for name in args.impls}
            rates: Dict[str, List[float]] = {name: [] for name in impls}
            cpus: Dict[str, List[float]] = {name: [] for name in impls}  # CPU us per env step (in-process ones)
            single_rates: List[float] = []  # the single env, timed in the same repeats (the ratios' baseline)
            single_cpu: List[float] = []
            raws: List[Dict[str, float]] = []
            def time_impl(name, step):
                step(actions[0])  # warm-up (first-step checks, page faults)
                wall, cpu = time_steps(step, actions)
                rates[name].append(n * vsteps / wall)
                cpus[name].append(cpu / (n * vsteps) * 1e6)

            if sequential:
                for name in impls:
                    step, close = make_impl(name, env_id, robot, n)
                    for _ in range(args.repeats):
                        time_impl(name, step)
                    close()
            for _ in range(args.repeats):
                if not sequential:
                    for name, (step, _) in impls.items():
                        time_impl(name, step)
                s1 = single_env_rate(env_id, robot, actions.reshape(-1, 2)[:args.env_steps], reward_share=False)
                single_rates.append(s1["steps_per_s"])
                single_cpu.append(s1["cpu_us_per_step"])
                raws.append(raw_rates(env_id, robot, n, vsteps))
            if not sequential:
                for _, close in impls.values():
                    close()
            # where the batched env's step goes (a separate, profiled pass)
            prof_env = BatchedFlowVectorEnv(env_id, n, robot=robot, profile=True)
            prof_env.reset(seed=0)
            t0 = clock()
            for a in actions:
                prof_env.step(a)
            wall = clock() - t0
            shares = {k: v / wall for k, v in prof_env.timings.items()}
            shares["reward_total"] = sum(shares.get(k, 0.0) for k in ("binding", "task_success", "reward"))
            profiles[f"{robot}@{n}"] = shares
            row = {"env": env_id, "robot": robot, "num_envs": n, "single_env_steps_per_s": single,
                   "single_env_reward_share": single_rew,
                   "raw_mj_step_per_s": statistics.median(r["raw_mj_step"] for r in raws),
                   "raw_batch_steps_per_s": statistics.median(r["raw_batch"] for r in raws),
                   "batched_phase_shares": shares}
            for name, xs in rates.items():
                row[f"{name}_steps_per_s"] = statistics.median(xs)
            row["single_env_steps_per_s_same_repeats"] = statistics.median(single_rates)
            row["single_env_cpu_us_per_step"] = statistics.median(single_cpu)
            for name in ("batched", "batched_pipelined", "sync", "sb3_dummy"):  # subprocess CPU is not counted
                if name in cpus:
                    row[f"{name}_cpu_us_per_env_step"] = statistics.median(cpus[name])
            if "batched" in cpus:  # load-insensitive: > 1 means the batched env spends less CPU per env step
                row["single_cpu_over_batched_cpu"] = statistics.median(s_ / b for s_, b in zip(single_cpu, cpus["batched"]))
            if "batched" in rates:
                row["batched_vs_single"] = statistics.median(b / s_ for b, s_ in zip(rates["batched"], single_rates))
                for other in ("async", "sync", "sb3_subproc", "sb3_dummy"):
                    if other in rates:
                        row[f"batched_vs_{other}"] = statistics.median(
                            b / o for b, o in zip(rates["batched"], rates[other]))
            rows.append(row)
            print(f"{robot} n={n}: " + ", ".join(f"{k} {row[k + '_steps_per_s']:.0f}" for k in rates), flush=True)

    load_end = load()
    md = [f"Machine: {machine()}; load average (1, 5, 15 min) {load_start} at start, {load_end} at end.",
          f"Env steps/s (all envs together, wall clock), medians over {args.repeats} repeats of "
          f"~{args.env_steps} env steps with random actions; D2F-PushT-v0.",
          "",
          "| robot | envs | batched | batched pipelined | sync | async | sb3 dummy | sb3 subproc | single env | "
          "raw Batch | batched / single | batched / async | CPU us/env step batched, single | "
          "reward share (batched) | reward share (single) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = lambda k: f"{r[k]:.0f}" if k in r else ""  # noqa: E731
        md.append(f"| {r['robot']} | {r['num_envs']} | {g('batched_steps_per_s')} | "
                  f"{g('batched_pipelined_steps_per_s')} | {g('sync_steps_per_s')} | "
                  f"{g('async_steps_per_s')} | {g('sb3_dummy_steps_per_s')} | {g('sb3_subproc_steps_per_s')} | "
                  f"{r['single_env_steps_per_s_same_repeats']:.0f} | {r['raw_batch_steps_per_s']:.0f} | "
                  f"{r.get('batched_vs_single', float('nan')):.2f}x | {r.get('batched_vs_async', float('nan')):.2f}x | "
                  f"{r.get('batched_cpu_us_per_env_step', float('nan')):.0f}, {r['single_env_cpu_us_per_step']:.0f} | "
                  f"{r['batched_phase_shares']['reward_total']:.0%} | {r['single_env_reward_share']:.0%} |")
    md += ["", "Batched env step time by phase (profiled pass; controller = actions -> ctrl incl. arm IK, "
           "sync = Batch.get_data into each env's MjData + divergence check, task_success = the task's own "
           "criterion per env (Push-T: coverage), reward = time alignment + terms; the reward share above is "
           "binding + task_success + reward):", "",
           "| robot@envs | " + " | ".join(PHASES) + " |",
           "|---|" + "---:|" * len(PHASES)]
    for key, sh in profiles.items():
        md.append(f"| {key} | " + " | ".join(f"{sh.get(k, 0.0):.0%}" for k in PHASES) + " |")
    write_results(args.out, [dict(r, load_start=load_start, load_end=load_end) for r in rows], md)

    # ---- plot: throughput vs number of envs, one panel per robot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    robots = list(dict.fromkeys(r["robot"] for r in rows))
    fig, axes = plt.subplots(1, len(robots), figsize=(5.5 * len(robots), 4), squeeze=False)
    for ax, robot in zip(axes[0], robots):
        rr = [r for r in rows if r["robot"] == robot]
        ns = [r["num_envs"] for r in rr]
        for name in args.impls + ["raw_batch"]:
            key = f"{name}_steps_per_s"
            if key in rr[0]:
                ax.plot(ns, [r[key] for r in rr], marker="o", label=name,
                        linestyle="--" if name == "raw_batch" else "-")
        ax.plot(ns, [r["single_env_steps_per_s_same_repeats"] for r in rr], color="gray", linestyle=":",
                label="single env")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("number of envs")
        ax.set_ylabel("env steps / s (all envs)")
        ax.set_title(f"D2F-PushT-v0, {robot}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{machine().split(';')[0]}; load {load_start}", fontsize=8)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
