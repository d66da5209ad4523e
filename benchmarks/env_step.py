"""Env step throughput of every dream2flow-gym env, against raw MuJoCo and gym-pusht.

For each registered env id (``d2f_envs.ENV_IDS``) and each robot the env class
supports, with uniformly random actions:

(a) ``env.unwrapped.step`` steps/s, and ``env.step`` through ``gym.make``'s wrappers;
(b) raw ``mujoco.mj_step(model, data, nstep=n_substeps)`` calls/s on the same
    compiled model, replaying the ctrl the env wrote, so the physics visits the
    very same states (the physical limit of the env);
(c) overhead = env step time / raw step time (1.0 = no Python cost at all);
(d) the share of the step time spent in the reward (``_get_rew``: alignment,
    errors, task success such as Push-T's coverage, terms), in the observation
    (``_get_obs``) and in the point binding (``binding.points``), timed with
    ``perf_counter`` in a separate instrumented pass over the same states;
(e) gym-pusht's ``gym_pusht/PushT-v0`` (``obs_type="state"``, 10 Hz control,
    10 pymunk substeps) side by side, when it is installed.

Every number is the median over ``--repeats`` repeats. Results go to ``--out``
(JSON) and a markdown table next to it (same name, ``.md``).

    python benchmarks/env_step.py             # full run (~1-2 min)
    python benchmarks/env_step.py --quick     # smoke run (seconds)
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

import d2f_envs  # noqa: E402

# the clock of the steps/s passes: CPU time of this process by default, which does not count the
# time the scheduler gives to other processes (the machine may be shared); --clock wall for
# perf_counter. The instrumented (shares) pass always uses perf_counter for both sides of its ratios.
CLOCKS = {"process": time.process_time, "wall": time.perf_counter}
perf = CLOCKS["process"]
wall = time.perf_counter


# --------------------------------------------------------------------------- machine
def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "platform": platform.platform(),
    }


def env_class(env_id: str) -> type:
    module, cls = d2f_envs.ENV_IDS[env_id][0].split(":")
    return getattr(import_module(module), cls)


def median(xs: List[float]) -> float:
    return float(statistics.median(xs))


# --------------------------------------------------------------------------- d2f envs
def run_episodes(step: Callable, reset: Callable, actions: np.ndarray, ep_len: int,
                 on_step: Optional[Callable] = None, clock: Optional[Callable] = None) -> float:
    """Seconds spent inside ``step`` over ``len(actions)`` steps; resets (untimed) every
    ``ep_len`` steps or when an episode ends."""
    perf = clock or globals()["perf"]
    total = 0.0
    i, n = 0, len(actions)
    while i < n:
        reset()
        k = min(ep_len, n - i)
        t0 = perf()
        for j in range(i, i + k):
            _, _, term, trunc, _ = step(actions[j])
            if on_step is not None:
                on_step()
            if term or trunc:
                k = j + 1 - i
                break
        total += perf() - t0
        i += k
    return total


def bench_d2f(env_id: str, robot: str, steps: int, repeats: int, seed: int = 0,
              pusht: Optional["GymPushT"] = None) -> Dict[str, Any]:
    """One env/robot. Each repeat times, back to back on the same actions and states: the
    unwrapped env, the ``gym.make`` env, raw ``mj_step`` and an instrumented env pass, so that
    load from other processes hits all of them alike; ratios are medians of per-repeat ratios."""
    ep_len = d2f_envs.ENV_IDS[env_id][1]
    wrapped = gym.make(env_id, robot=robot)
    env = wrapped.unwrapped
    m, d = env.model, env.data
    rng = np.random.default_rng(seed)
    lo, hi = env.action_space.low, env.action_space.high
    actions = rng.uniform(lo, hi, size=(steps,) + env.action_space.shape).astype(env.action_space.dtype)

    counter = [0]

    def reset_u():  # episode k always starts from seed + k: every pass visits the same states
        env.reset(seed=seed + counter[0])
        counter[0] += 1

    def reset_w():
        wrapped.reset(seed=seed + counter[0])
        counter[0] += 1

    def passes(step, reset, clock=None):
        counter[0] = 0
        gc.collect()
        return run_episodes(step, reset, actions, ep_len, clock=clock) / steps

    # ---- record the physics the env runs (this pass is also the warm-up): start state of each
    #      episode and the ctrl the controller wrote each step
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    nstate = mujoco.mj_stateSize(m, spec)
    episodes: List[Dict[str, np.ndarray]] = []
    ctrl_log: List[np.ndarray] = []
    orig_apply = env.controller.apply

    def apply_and_log(model, data, action):  # ctrl is final once the controller has applied the action
        orig_apply(model, data, action)
        ctrl_log.append(data.ctrl.copy())

    env.controller.apply = apply_and_log
    counter[0] = 0
    try:
        i = 0
        while i < steps:
            reset_u()
            start = np.empty(nstate)
            mujoco.mj_getState(m, d, start, spec)
            ctrl_log.clear()
            for j in range(i, min(i + ep_len, steps)):
                _, _, term, trunc, _ = env.step(actions[j])
                if term or trunc:
                    break
            episodes.append({"start": start, "ctrl": np.array(ctrl_log)})
            i += len(ctrl_log)
    finally:
        del env.controller.apply

    nsub = env.n_substeps
    mj_step, set_state, forward = mujoco.mj_step, mujoco.mj_setState, mujoco.mj_forward
    ctrl = d.ctrl

    def raw_pass():
        gc.collect()
        total = 0.0
        for ep in episodes:
            set_state(m, d, ep["start"], spec)
            forward(m, d)
            rows = list(ep["ctrl"])
            t0 = perf()
            for c in rows:
                ctrl[:] = c
                mj_step(m, d, nstep=nsub)
            total += perf() - t0
        return total / steps

    # ---- instrumentation for the shares (installed only during the instrumented pass)
    acc = {"rew": 0.0, "obs": 0.0, "points": 0.0}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = wall()
            out = fn(*args, **kwargs)
            acc[name] += wall() - t0
            return out
        return wrapper

    def reset_instr():  # reset() also calls _get_obs / binding.points: keep it out of the shares
        saved = dict(acc)
        reset_u()
        acc.update(saved)

    def instrumented_pass():
        env._get_rew = timed("rew", type(env)._get_rew.__get__(env))
        env._get_obs = timed("obs", type(env)._get_obs.__get__(env))
        env.binding.points = timed("points", type(env.binding).points.__get__(env.binding))
        try:
            for k in acc:
                acc[k] = 0.0
            t = passes(env.step, reset_instr, clock=wall) * steps
            return {k: acc[k] / t for k in acc}
        finally:
            del env._get_rew, env._get_obs, env.binding.points

    t_env, t_wrap, t_raw, t_pusht, shares = [], [], [], [], []
    for _ in range(repeats):
        if pusht is not None:
            t_pusht.append(pusht.pass_pair())
        t_env.append(passes(env.step, reset_u))
        t_raw.append(raw_pass())
        t_wrap.append(passes(wrapped.step, reset_w))
        shares.append(instrumented_pass())

    wrapped.close()
    env_t, wrap_t, raw_t = median(t_env), median(t_wrap), median(t_raw)
    return {
        "env_id": env_id,
        "robot": robot,
        "n_substeps": nsub,
        "timestep": float(m.opt.timestep),
        "steps": steps,
        "repeats": repeats,
        "env_steps_per_s": 1.0 / env_t,
        "wrapped_steps_per_s": 1.0 / wrap_t,
        "raw_steps_per_s": 1.0 / raw_t,
        "overhead": median([e / r for e, r in zip(t_env, t_raw)]),
        "wrapped_overhead": median([w / r for w, r in zip(t_wrap, t_raw)]),
        "env_us_per_step": env_t * 1e6,
        "raw_us_per_step": raw_t * 1e6,
        "python_us_per_step": median([(e - r) * 1e6 for e, r in zip(t_env, t_raw)]),
        "reward_share": median([s["rew"] for s in shares]),
        "obs_share": median([s["obs"] for s in shares]),
        "binding_share": median([s["points"] for s in shares]),
        "vs_gym_pusht": median([p / e for p, e in zip(t_pusht, t_env)]) if t_pusht else None,
        "env_steps_per_s_all": [1.0 / t for t in t_env],
        "raw_steps_per_s_all": [1.0 / t for t in t_raw],
    }


# --------------------------------------------------------------------------- gym-pusht
class GymPushT:
    """gym-pusht's ``gym_pusht/PushT-v0`` (``obs_type="state"``), timed the same way as the d2f envs.

    Its passes are interleaved with each d2f env's repeats (``bench_d2f(..., pusht=...)``) so the
    ratio is taken under the same machine load."""

    def __init__(self, steps: int, seed: int = 0):
        import gym_pusht  # noqa: F401  (raises ImportError when not installed)

        self.wrapped = gym.make("gym_pusht/PushT-v0", obs_type="state")
        self.env = env = self.wrapped.unwrapped
        self.ep_len = self.wrapped.spec.max_episode_steps or 300
        self.steps, self.seed = steps, seed
        sp = env.action_space
        rng = np.random.default_rng(seed)
        self.actions = rng.uniform(sp.low, sp.high, size=(steps,) + sp.shape).astype(sp.dtype)
        self.t_env: List[float] = []
        self.t_wrap: List[float] = []
        self._k = 0
        self.run(self.env)  # warm-up
        self.t_env.clear()

    def _reset(self, env):
        env.reset(seed=self.seed + self._k)
        self._k += 1

    def run(self, env) -> float:
        self._k = 0
        gc.collect()
        t = run_episodes(env.step, lambda: self._reset(env), self.actions, self.ep_len) / self.steps
        (self.t_env if env is self.env else self.t_wrap).append(t)
        return t

    def pass_pair(self) -> float:
        self.run(self.wrapped)
        return self.run(self.env)

    def summary(self) -> Dict[str, Any]:
        from importlib.metadata import version

        env = self.env
        return {
            "available": True,
            "version": version("gym-pusht"),
            "pymunk": version("pymunk"),
            "control_hz": getattr(env, "control_hz", None),
            "substeps": int(round(1 / (env.dt * env.control_hz))),
            "env_steps_per_s": 1.0 / median(self.t_env),
            "wrapped_steps_per_s": 1.0 / median(self.t_wrap),
            "env_us_per_step": median(self.t_env) * 1e6,
            "env_steps_per_s_all": [1.0 / t for t in self.t_env],
        }

    def close(self):
        self.wrapped.close()


# --------------------------------------------------------------------------- report
def markdown(results: Dict[str, Any]) -> str:
    mi = results["machine"]
    lines = [
        f"Machine: {mi['cpu']}, {mi['cores']} cores ({mi['usable_cores']} usable); Python {mi['python']}, "
        f"mujoco {mi['mujoco']}, numpy {mi['numpy']}, gymnasium {mi['gymnasium']}.",
        f"Medians over {results['repeats']} repeats of {results['steps']} steps with random actions"
        + (" (--quick)" if results["quick"] else "")
        + f"; steps/s timed with {'process CPU time' if results['clock'] == 'process' else 'wall-clock'}.",
        "",
        "| env | robot | env.unwrapped.step /s | gym.make step /s | raw mj_step(nstep) /s | overhead (env/raw time) "
        "| reward share | obs share | binding share | vs gym-pusht |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gp = results.get("gym_pusht", {})
    for r in results["envs"]:
        if "skipped" in r:
            lines.append(f"| {r['env_id']} | {r['robot']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        vs = f"{r['vs_gym_pusht']:.2f}x" if r.get("vs_gym_pusht") else "n/a"
        lines.append(
            f"| {r['env_id']} | {r['robot']} | {r['env_steps_per_s']:.0f} | {r['wrapped_steps_per_s']:.0f} "
            f"| {r['raw_steps_per_s']:.0f} | {r['overhead']:.2f}x | {100 * r['reward_share']:.1f}% "
            f"| {100 * r['obs_share']:.1f}% | {100 * r['binding_share']:.1f}% | {vs} |"
        )
    if gp.get("available"):
        lines.append(
            f"| gym_pusht/PushT-v0 (state, {gp['control_hz']} Hz, {gp['substeps']} substeps) | (pymunk) "
            f"| {gp['env_steps_per_s']:.0f} | {gp['wrapped_steps_per_s']:.0f} | | | | | | 1.00x |"
        )
    else:
        lines.append("")
        lines.append(f"gym-pusht: {gp.get('note', 'not run')}")
    lines += [
        "",
        "overhead: env step time / raw `mj_step(model, data, nstep=n_substeps)` time on the same model, "
        "replaying the env's ctrl from the same start states (1.00x = no Python cost). "
        "Shares: fraction of the instrumented step time in `_get_rew`, `_get_obs` and `binding.points`. "
        "vs gym-pusht: gym-pusht's step time / the env's, median of per-repeat ratios (passes interleaved).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "env_step.json"),
                    help="JSON results path; the markdown table is written next to it (.md)")
    ap.add_argument("--steps", type=int, default=None, help="steps per repeat (default 2000, --quick 200)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats, median reported (default 7, --quick 3)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    ap.add_argument("--env", action="append", default=None, help="only these env ids (repeatable)")
    ap.add_argument("--robot", action="append", default=None, help="only these robots (repeatable)")
    ap.add_argument("--no-gym-pusht", action="store_true", help="skip the gym-pusht comparison")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="process",
                    help="timer of the steps/s passes: process CPU time (default; robust to other "
                         "processes' load) or wall (perf_counter)")
    args = ap.parse_args(argv)
    global perf
    perf = CLOCKS[args.clock]
    steps = args.steps or (200 if args.quick else 2000)
    repeats = args.repeats or (3 if args.quick else 7)

    results: Dict[str, Any] = {
        "machine": machine_info(), "steps": steps, "repeats": repeats, "quick": bool(args.quick),
        "clock": args.clock, "envs": [],
    }
    print(f"machine: {results['machine']}", flush=True)
    pusht = None
    if args.no_gym_pusht:
        results["gym_pusht"] = {"available": False, "note": "skipped (--no-gym-pusht)"}
    else:
        try:
            pusht = GymPushT(steps)
        except Exception as e:  # noqa: BLE001
            note = (f"gym-pusht is not available ({type(e).__name__}: {e}); `pip install gym-pusht` "
                    "(pulls pymunk, shapely, pygame) to compare")
            print(f"NOTE: {note}", flush=True)
            results["gym_pusht"] = {"available": False, "note": note}
    for env_id in args.env or list(d2f_envs.ENV_IDS):
        for robot in env_class(env_id).robots:
            if args.robot and robot not in args.robot:
                continue
            print(f"-- {env_id} robot={robot}", flush=True)
            try:
                gym.make(env_id, robot=robot).close()
            except Exception as e:  # noqa: BLE001
                note = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                print(f"   NOTE: skipped, robot {robot!r} does not build ({note})", flush=True)
                results["envs"].append({"env_id": env_id, "robot": robot, "skipped": note})
                continue
            r = bench_d2f(env_id, robot, steps, repeats, pusht=pusht)
            vs = f", {r['vs_gym_pusht']:.2f}x gym-pusht" if r["vs_gym_pusht"] else ""
            print(f"   env {r['env_steps_per_s']:.0f}/s, wrapped {r['wrapped_steps_per_s']:.0f}/s, raw "
                  f"{r['raw_steps_per_s']:.0f}/s, overhead {r['overhead']:.2f}x, reward "
                  f"{100 * r['reward_share']:.1f}%{vs}", flush=True)
            results["envs"].append(r)
    if pusht is not None:
        if not pusht.t_env:  # no d2f env ran: time it on its own
            for _ in range(repeats):
                pusht.pass_pair()
        results["gym_pusht"] = pusht.summary()
        pusht.close()
        print(f"-- gym_pusht/PushT-v0: {results['gym_pusht']['env_steps_per_s']:.0f}/s", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    md = markdown(results)
    out.with_suffix(".md").write_text(md)
    print()
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return results


if __name__ == "__main__":
    main()
