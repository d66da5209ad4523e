"""Training callbacks: atomic checkpoints and flow-tracking evaluation with best-model saving.

Folder layout inside a run folder (``logs/<algo>/<env_id>_<n>``)::

    checkpoints/step_000050000/   model.zip, replay_buffer.pkl (SAC), vecnormalize.pkl, meta.json
    best_model/                   model.zip, vecnormalize.pkl, meta.json (the best evaluation so far)
    evaluations.csv, evaluations.npz

Every checkpoint folder is written under a temporary name and renamed into
place in one ``os.replace``, so a process killed mid-save leaves the previous
checkpoint complete and loadable.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from .rollout import model_policy, run_episode, summarize
from .utils import atomic_dir, atomic_file, resolve_dir

MODEL_FILE = "model.zip"
REPLAY_FILE = "replay_buffer.pkl"
VECNORM_FILE = "vecnormalize.pkl"
META_FILE = "meta.json"
CHECKPOINTS = "checkpoints"
BEST = "best_model"


# --------------------------------------------------------------------------- saving
def save_model_files(model: BaseAlgorithm, folder: Path, replay_buffer: bool = False, extra: Optional[dict] = None) -> None:
    """Write ``model.zip`` (+ replay buffer, + VecNormalize stats) into an existing folder."""
    with open(folder / MODEL_FILE, "wb") as f:
        model.save(f)
    if replay_buffer and getattr(model, "replay_buffer", None) is not None:
        with open(folder / REPLAY_FILE, "wb") as f:
            save_replay_buffer(model.replay_buffer, f)
    vn = model.get_vec_normalize_env()
    if vn is not None:
        vn.save(str(folder / VECNORM_FILE))
    meta = {"num_timesteps": int(model.num_timesteps), "time": time.time(), **(extra or {})}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))


_BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def save_replay_buffer(buffer, file) -> None:
    """Pickle a replay buffer, only its filled part (SB3 pickles the whole preallocated arrays)."""
    import copy
    import pickle

    if not buffer.full:
        buffer = copy.copy(buffer)
        for name in _BUFFER_ARRAYS:
            arr = getattr(buffer, name, None)
            if isinstance(arr, np.ndarray):
                setattr(buffer, name, arr[: buffer.pos])
    pickle.dump(buffer, file, protocol=pickle.HIGHEST_PROTOCOL)


def load_replay_buffer(model: BaseAlgorithm, path: Path) -> None:
    """Load a buffer written by :func:`save_replay_buffer` into ``model`` (re-padding it to full size)."""
    import pickle

    with open(path, "rb") as f:
        buffer = pickle.load(f)
    for name in _BUFFER_ARRAYS:
        arr = getattr(buffer, name, None)
        if isinstance(arr, np.ndarray) and arr.shape[0] < buffer.buffer_size:
            full = np.zeros((buffer.buffer_size,) + arr.shape[1:], dtype=arr.dtype)
            full[: arr.shape[0]] = arr
            setattr(buffer, name, full)
    buffer.device = model.device
    model.replay_buffer = buffer


def save_checkpoint(model: BaseAlgorithm, run_dir: Path, keep: int = 2, replay_buffer: bool = True) -> Path:
    """Atomically write ``checkpoints/step_<N>`` and prune all but the newest ``keep``."""
    target = Path(run_dir) / CHECKPOINTS / f"step_{model.num_timesteps:09d}"
    with atomic_dir(target) as tmp:
        save_model_files(model, tmp, replay_buffer=replay_buffer)
    for ckpt in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        name = f"step_{_checkpoint_step(ckpt):09d}"
        for old in (ckpt.parent / name, ckpt.parent / f".{name}.old"):  # and a copy that would take its place
            if not old.exists():
                continue
            # out of sight first (one rename), then deleted: a kill during the deletion leaves a
            # hidden folder, never a half-deleted step_<N> that looks like a checkpoint
            gone = old.parent / f".{old.name}.{os.getpid()}.deleting"
            try:
                os.replace(old, gone)
            except OSError:
                continue
            shutil.rmtree(gone, ignore_errors=True)
    return target


def _checkpoint_step(path: Path) -> Optional[int]:
    """N of ``step_<N>``, or of ``.step_<N>.old`` (atomic_dir's copy of a folder being replaced:
    complete, and the only copy if the process died between its two renames); else None."""
    name = path.name
    if name.startswith(".") and name.endswith(".old"):
        name = name[1:-4]
    if name.startswith("step_") and name[5:].isdigit():
        return int(name[5:])
    return None


def list_checkpoints(run_dir: Path) -> List[Path]:
    """Complete checkpoint folders, oldest first (temporary and half-deleted folders are ignored).

    Complete means ``meta.json`` is there: save_model_files writes it last, and atomic_dir only
    renames a finished folder into place.
    """
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found: Dict[int, Path] = {}
    for p in root.iterdir():
        step = _checkpoint_step(p)
        if step is None or not p.is_dir() or not (p / MODEL_FILE).is_file() or not (p / META_FILE).is_file():
            continue
        if step not in found or found[step].name.startswith("."):  # step_<N> over its .old copy
            found[step] = p
    return [found[k] for k in sorted(found)]


def remove_stale_checkpoint_files(run_dir: Path) -> List[str]:
    """Delete what a killed process left half-written in ``checkpoints/`` (``.step_<N>.*.tmp``
    folders of atomic_dir, ``.deleting`` folders of the pruning); returns their names.

    Called when a run resumes (this process is then the run's only writer): a SAC checkpoint
    killed mid-save would otherwise keep a partial replay buffer on disk for good. The ``.old``
    copy atomic_dir keeps while replacing a folder is complete and is left alone.
    """
    root = Path(run_dir) / CHECKPOINTS
    gone = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".deleting")):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def best_model_dir(run_dir: Path) -> Optional[Path]:
    d = resolve_dir(Path(run_dir) / BEST)
    return d if d is not None and (d / MODEL_FILE).is_file() else None


# --------------------------------------------------------------------------- callbacks
class AtomicCheckpointCallback(BaseCallback):
    """Every ``save_freq`` env steps (all envs together), save an atomic checkpoint."""

    def __init__(self, run_dir: Path, save_freq: int, keep: int = 2, replay_buffer: bool = True, verbose: int = 0):
        super().__init__(verbose)
        self.run_dir = Path(run_dir)
        self.save_freq = int(save_freq)
        self.keep = keep
        self.replay_buffer = replay_buffer
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.save_freq > 0 and self.num_timesteps - self._last >= self.save_freq:
            self._last = self.num_timesteps
            path = save_checkpoint(self.model, self.run_dir, self.keep, self.replay_buffer)
            if self.verbose >= 1:
                print(f"checkpoint: {path}")
        return True


EVAL_FIELDS = [
    "timesteps", "wall_time_s", "success_rate", "mean_final_error", "mean_tracking_error",
    "mean_return", "std_return", "mean_length", "mean_coverage",
]


class FlowEvalCallback(BaseCallback):
    """Periodic evaluation on a separate env: success rate, final and tracking error.

    Every ``eval_freq`` env steps, runs ``n_eval_episodes`` episodes (fixed
    seeds ``eval_seed + i``, so evaluations compare like with like) with the
    training env's current observation-normalisation statistics, then

    * logs ``eval/success_rate``, ``eval/final_error``, ``eval/tracking_error``,
      ``eval/mean_reward``, ``eval/coverage`` to TensorBoard;
    * appends a row to ``evaluations.csv`` and rewrites ``evaluations.npz``;
    * saves ``best_model/`` (model + VecNormalize stats, atomically) when the
      success rate improves (ties: lower mean final error).
    """

    def __init__(
        self,
        eval_env,
        run_dir: Path,
        eval_freq: int,
        n_eval_episodes: int = 10,
        eval_seed: int = 10_000,
        deterministic: bool = True,
        start_time: Optional[float] = None,
        verbose: int = 1,
    ):
        super().__init__(verbose)
        self.eval_env = eval_env
        self.run_dir = Path(run_dir)
        self.eval_freq = int(eval_freq)
        self.n_eval_episodes = int(n_eval_episodes)
        self.eval_seed = int(eval_seed)
        self.deterministic = deterministic
        rows = read_evaluations(self.run_dir)  # a resumed run's clock continues from its last evaluation
        self.start_time = start_time or (time.time() - (rows[-1]["wall_time_s"] if rows else 0.0))
        self._last = 0
        self.best_key = self._load_best_key()
        self.last_summary: Optional[Dict[str, float]] = None

    def _load_best_key(self):
        best = best_model_dir(self.run_dir)
        if best is not None:
            meta = json.loads((best / META_FILE).read_text())
            return (meta.get("success_rate", -1.0), -meta.get("mean_final_error", np.inf))
        return (-1.0, -np.inf)

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.num_timesteps - self._last >= self.eval_freq:
            self._last = self.num_timesteps
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        # make the curve end where training ended
        if self.eval_freq > 0 and self.num_timesteps > self._last:
            self._last = self.num_timesteps
            self.evaluate()

    def evaluate(self) -> Dict[str, float]:
        policy = model_policy(self.model, self.model.get_vec_normalize_env(), self.deterministic)
        episodes = [run_episode(self.eval_env, policy, seed=self.eval_seed + i) for i in range(self.n_eval_episodes)]
        s = summarize(episodes)
        s["timesteps"] = int(self.num_timesteps)
        s["wall_time_s"] = time.time() - self.start_time
        self.last_summary = s
        log = self.logger
        log.record("eval/success_rate", s["success_rate"])
        log.record("eval/final_error", s["mean_final_error"])
        log.record("eval/tracking_error", s["mean_tracking_error"])
        log.record("eval/mean_reward", s["mean_return"])
        log.record("eval/mean_ep_length", s["mean_length"])
        log.record("eval/coverage", s["mean_coverage"])
        log.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        log.dump(self.num_timesteps)
        self._append(s)
        key = (s["success_rate"], -s["mean_final_error"])
        improved = key > self.best_key
        if improved:
            self.best_key = key
            with atomic_dir(self.run_dir / BEST) as tmp:
                save_model_files(self.model, tmp, replay_buffer=False, extra={k: s[k] for k in EVAL_FIELDS})
        if self.verbose >= 1:
            print(
                f"eval @ {s['timesteps']} steps ({s['wall_time_s']:.0f}s): success {s['success_rate']:.2f}  "
                f"final_error {s['mean_final_error'] * 100:.1f} cm  tracking_error {s['mean_tracking_error'] * 100:.1f} cm  "
                f"return {s['mean_return']:.1f}" + ("  [new best]" if improved else ""),
                flush=True,
            )
        return s

    def _append(self, s: Dict[str, float]) -> None:
        csv_path = self.run_dir / "evaluations.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=EVAL_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: s[k] for k in EVAL_FIELDS})
        rows = read_evaluations(self.run_dir)
        with atomic_file(self.run_dir / "evaluations.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{k: np.array([r[k] for r in rows]) for k in EVAL_FIELDS})


def read_evaluations(run_dir: Path) -> List[Dict[str, float]]:
    path = Path(run_dir) / "evaluations.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
