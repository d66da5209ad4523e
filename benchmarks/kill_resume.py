"""Kill -9 a real training run at random moments, again and again; check it always resumes.

    python benchmarks/kill_resume.py                 # 20 kills (a few minutes)
    python benchmarks/kill_resume.py --kills 3 --out /tmp/k.json --workdir /tmp/k   # what tests/test_train.py runs

One short SAC run of ``train.py`` on D2F-PushT-v0 (tiny network, a checkpoint
with its replay buffer every 40 env steps, ``--keep-checkpoints 1``), as a
subprocess. The first process is killed within 3 s after its first checkpoint;
each later one is ``train.py --resume`` of the same run folder, killed with
SIGKILL at a moment drawn uniformly (seeded), in turn: within 2 s after the
process wrote its first checkpoint (training), within 50 ms after a checkpoint
write began (its temporary folder appeared: mid-save), and anywhere in the
process's life (the imports, loading the checkpoint and replay buffer, training,
writing checkpoints).
After every kill:

* the newest checkpoint (``d2f_rl.callbacks.latest_checkpoint``) loads: the
  model, its replay buffer and VecNormalize statistics, with ``num_timesteps``
  equal to the N of its ``step_<N>`` and to its ``meta.json``;
* no visible ``step_<N>`` folder is incomplete (half-written ones are hidden
  ``.step_<N>.*.tmp`` folders: counted, as "killed mid-save");
* the step count never goes back (N >= the previous kill's N);

and the next ``--resume`` starts from it (it prints ``loaded ... at N steps``).
At the end one more ``--resume`` runs to N + 40 steps and must finish there.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from common import machine, write_results  # noqa: E402

ENV_ID = "D2F-PushT-v0"
SAVE_FREQ = 40
TRAIN = ["--algo", "sac", "--env", ENV_ID, "--n-envs", "1", "--eval-freq", "0", "--save-freq", str(SAVE_FREQ),
         "--keep-checkpoints", "1", "--no-progress", "--num-threads", "1", "--seed", "3", "--no-wandb",
         "-params", "learning_starts:50", "batch_size:32", "policy_kwargs:dict(net_arch=[16, 16])", "buffer_size:5000"]
FOREVER = "100000000"  # -n for the processes that are killed: they never end by themselves


def _env() -> dict:
    # unbuffered: the "loaded ... at N steps" line must reach the log before a SIGKILL
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _steps(run_dir: Path) -> list:
    root = run_dir / "checkpoints"
    return sorted(int(p.name[5:]) for p in root.glob("step_*") if p.name[5:].isdigit()) if root.is_dir() else []


def check_run(run_dir: Path) -> dict:
    """The checks after a kill (module docstring); raises AssertionError with what is wrong."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    import d2f_envs  # noqa: F401
    from d2f_rl.callbacks import META_FILE, MODEL_FILE, REPLAY_FILE, VECNORM_FILE, latest_checkpoint, load_replay_buffer

    root = run_dir / "checkpoints"
    for p in root.iterdir():
        if p.name.startswith("step_"):
            missing = [f for f in (MODEL_FILE, META_FILE, REPLAY_FILE, VECNORM_FILE) if not (p / f).is_file()]
            assert not missing, f"visible checkpoint {p.name} is incomplete: {missing} missing"
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None, f"no loadable checkpoint in {root}: {sorted(q.name for q in root.iterdir())}"
    step = int(re.search(r"step_(\d+)", ckpt.name).group(1))
    meta = json.loads((ckpt / META_FILE).read_text())
    assert meta["num_timesteps"] == step, f"{ckpt.name}: meta.json says {meta['num_timesteps']} steps"
    model = SAC.load(ckpt / MODEL_FILE, device="cpu")
    assert model.num_timesteps == step, f"{ckpt.name}: model.zip at {model.num_timesteps} steps"
    load_replay_buffer(model, ckpt / REPLAY_FILE)
    assert model.replay_buffer.size() > 0, f"{ckpt.name}: empty replay buffer"
    venv = DummyVecEnv([lambda: gym.make(ENV_ID)])
    VecNormalize.load(str(ckpt / VECNORM_FILE), venv)
    venv.close()
    hidden = sorted(q.name for q in root.iterdir() if q.name.startswith(".") and q.name.endswith(".tmp"))
    return {"checkpoint": ckpt.name, "steps": step, "hidden_tmp": hidden}


def kill_resume(kills: int, seed: int, workdir: Path, log=print) -> dict:
    rng = np.random.default_rng(seed)
    logs = workdir / "logs"
    run_dir = logs / "sac" / f"{ENV_ID}_1"
    rows = []
    last_steps = -1
    life = None  # seconds from a process's start to its first new checkpoint (measured on the first)
    t_all = time.perf_counter()
    for k in range(kills):
        if k == 0:
            cmd = [sys.executable, "train.py", *TRAIN, "-n", FOREVER, "-f", str(logs)]
        else:
            cmd = [sys.executable, "train.py", "--resume", "-f", str(run_dir), "-n", FOREVER, "--no-progress",
                   "--num-threads", "1", "--no-wandb"]
        out = workdir / f"proc_{k}.log"
        ckpt_root = run_dir / "checkpoints"
        hidden_before = {p.name for p in ckpt_root.iterdir()} if ckpt_root.is_dir() else set()
        t0 = time.perf_counter()
        with open(out, "w") as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT)
        try:
            if k == 0:
                # the first process must leave a checkpoint: --resume needs one
                while not _steps(run_dir):
                    if proc.poll() is not None:
                        raise AssertionError(f"train.py ended ({proc.returncode}): {out.read_text()[-2000:]}")
                    if time.perf_counter() - t0 > 300:
                        raise AssertionError("no checkpoint after 300 s")
                    time.sleep(0.02)
                life = time.perf_counter() - t0
                delay = life + rng.uniform(0.0, 3.0)
            elif k % 3 == 2:
                # during a checkpoint write: as soon as atomic_dir's temporary folder appears, then
                # up to 50 ms later (a tiny model's checkpoint takes a few tens of ms to write)
                root = run_dir / "checkpoints"
                before = {p.name for p in root.iterdir()}
                while not any(p.name.endswith(".tmp") and p.name not in before for p in root.iterdir()):
                    if proc.poll() is not None:
                        raise AssertionError(f"train.py ended ({proc.returncode}): {out.read_text()[-2000:]}")
                    if time.perf_counter() - t0 > 300:
                        raise AssertionError("the resumed run wrote no checkpoint in 300 s")
                    time.sleep(0.001)
                delay = time.perf_counter() - t0 + rng.uniform(0.0, 0.05)
            elif k % 3 == 1:
                # in training: within 2 s after the resumed run wrote its first checkpoint (-v 1 prints
                # "checkpoint: ..."), when it writes one every few tenths of a second
                while "checkpoint: " not in out.read_text():
                    if proc.poll() is not None:
                        raise AssertionError(f"train.py ended ({proc.returncode}): {out.read_text()[-2000:]}")
                    if time.perf_counter() - t0 > 300:
                        raise AssertionError("the resumed run wrote no checkpoint in 300 s")
                    time.sleep(0.02)
                delay = time.perf_counter() - t0 + rng.uniform(0.0, 2.0)
            else:
                # anywhere in the process's life: imports, loading the checkpoint, training, saving
                delay = rng.uniform(0.0, life + 3.0)
            while time.perf_counter() - t0 < delay:
                if proc.poll() is not None:
                    raise AssertionError(f"train.py ended ({proc.returncode}): {out.read_text()[-2000:]}")
                time.sleep(0.005)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        at = time.perf_counter() - t0
        text = out.read_text()
        loaded = re.search(r"loaded \S+ at (\d+) steps", text)
        row = {"kill": k, "at_s": round(at, 3), "resumed_from": int(loaded.group(1)) if loaded else None}
        try:
            row.update(check_run(run_dir))
            # this process's own half-written folders (a resume removes older ones, unless killed first)
            row["half_written_hidden"] = len(set(row.pop("hidden_tmp")) - hidden_before)
            assert row["steps"] >= last_steps, f"step count went back: {row['steps']} < {last_steps}"
            if k > 0 and loaded:
                assert row["resumed_from"] == last_steps, f"resumed from {row['resumed_from']}, newest was {last_steps}"
            row["ok"] = True
            last_steps = row["steps"]
        except AssertionError as exc:
            row.update(ok=False, error=str(exc))
        rows.append(row)
        log(f"kill {k + 1}/{kills} at {at:.2f} s: " + (f"newest {row['checkpoint']} loads"
            + (", the first run" if k == 0 else f", resumed from {row['resumed_from']}" if row["resumed_from"] is not None
               else ", killed before it loaded the checkpoint")
            + (f", {row['half_written_hidden']} half-written folder(s) hidden" if row["half_written_hidden"] else "")
            if row["ok"] else f"FAILED: {row['error']}"))
        if not row["ok"]:
            break
    final = None
    if rows and all(r["ok"] for r in rows):
        target = last_steps + SAVE_FREQ
        proc = subprocess.run([sys.executable, "train.py", "--resume", "-f", str(run_dir), "-n", str(target),
                               "--no-progress", "--num-threads", "1", "--no-wandb"],
                              cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
        from stable_baselines3 import SAC

        ok = proc.returncode == 0 and (run_dir / "final_model.zip").is_file()
        steps = SAC.load(run_dir / "final_model.zip", device="cpu").num_timesteps if ok else None
        stale = list((run_dir / "checkpoints").glob(".*.tmp"))
        final = {"target": target, "steps": steps, "ok": ok and steps == target and not stale,
                 "stale_tmp_left": len(stale), "output": "" if ok else (proc.stdout + proc.stderr)[-2000:]}
        log(f"final --resume to {target}: " + ("finished at the target" if final["ok"] else f"FAILED {final}"))
    return {"kills": kills, "survived": sum(r["ok"] for r in rows), "mid_save": sum(bool(r.get("half_written_hidden"))
            for r in rows), "before_loading": sum(r["resumed_from"] is None and r["kill"] > 0 for r in rows),
            "final": final, "rows": rows, "wall_s": time.perf_counter() - t_all}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="run folder root (default: a temporary folder, removed)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kill_resume.json")
    args = ap.parse_args(argv)

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="kill_resume_")
        args.workdir = Path(tmp)
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        res = kill_resume(args.kills, args.seed, args.workdir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    cmd = "python benchmarks/kill_resume.py" + (f" --kills {args.kills}" if args.kills != 20 else "") + \
        (f" --seed {args.seed}" if args.seed else "")
    final = res["final"]
    md = [f"Machine: {machine()}.", "",
          f"`{cmd}`: a SAC run of train.py on {ENV_ID} (checkpoint every {SAVE_FREQ} steps), SIGKILLed {res['kills']} "
          f"times at seeded random moments, each time resumed with `--resume`.", "",
          "| kills | survived (newest checkpoint loads, step count kept, --resume continues) | killed mid-save | "
          "killed before the checkpoint was loaded | final --resume reaches its target | wall |",
          "|---:|---:|---:|---:|---|---:|",
          f"| {res['kills']} | {res['survived']} | {res['mid_save']} | {res['before_loading']} | "
          f"{'yes' if final and final['ok'] else 'no'}"
          + (f" ({final['steps']} steps)" if final else "") + f" | {res['wall_s']:.0f} s |", "",
          "| kill | at (s after start) | resumed from | newest checkpoint after the kill | half-written folders hidden | ok |",
          "|---:|---:|---:|---|---:|---|"]
    for r in res["rows"]:
        md.append(f"| {r['kill'] + 1} | {r['at_s']:.2f} | {r['resumed_from'] if r['resumed_from'] is not None else '-'} | "
                  f"{r.get('checkpoint', '-')} | {r.get('half_written_hidden', '-')} | {'yes' if r['ok'] else r['error']} |")
    rows = [{k: v for k, v in res.items() if k != "rows"}] + res["rows"]
    write_results(args.out, rows, md)
    if res["survived"] != res["kills"] or not (final and final["ok"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
