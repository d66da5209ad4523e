"""rl-baselines3-zoo's file layout next to ours, so ``rl_zoo3.enjoy`` and ``record_video`` read our runs.

rl-zoo looks for, inside ``<log-folder>/<algo>/<env_id>_<n>/``::

    <env_id>.zip                 the final model
    best_model.zip               the best evaluated model (``--load-best``)
    <env_id>/config.yml          hyperparameters (``normalize``, ``env_wrapper``, ...)
    <env_id>/args.yml            the flags, of which enjoy reads ``env_kwargs``
    <env_id>/vecnormalize.pkl    observation normalisation statistics

Our own files (``final_model.zip``, ``best_model/``, ``config.yml`` ...) stay the
source of truth; these are hard links to them where the file system allows
(copies otherwise), rewritten atomically at the end of every (re)start. So

    python -m rl_zoo3.enjoy --algo ppo --env D2F-PushT-v0 -f logs --exp-id 1 --gym-packages d2f_envs

plays a run trained with ``python train.py``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict

from .utils import atomic_file, resolve_dir, write_yaml


def _mirror(src: Path, dst: Path) -> None:
    """``dst`` becomes the same content as ``src`` (a hard link if possible), atomically."""
    with atomic_file(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or links not supported
            shutil.copyfile(src, tmp)


def write_zoo_layout(run_dir: Path, env_id: str, hyperparams: Dict[str, Any], args: Dict[str, Any]) -> None:
    """Write rl-zoo's view of the run in ``run_dir`` (see the module docstring)."""
    run_dir = Path(run_dir)
    stats = run_dir / env_id
    write_yaml(stats / "config.yml", hyperparams)
    # enjoy reads args["env_kwargs"]; keep the config's merged env kwargs (what training used)
    write_yaml(stats / "args.yml", {**args, "env_kwargs": hyperparams.get("env_kwargs") or None})
    if (run_dir / "final_model.zip").is_file():
        _mirror(run_dir / "final_model.zip", run_dir / f"{env_id}.zip")
    if (run_dir / "vecnormalize.pkl").is_file():
        _mirror(run_dir / "vecnormalize.pkl", stats / "vecnormalize.pkl")
    best = resolve_dir(run_dir / "best_model")
    if best is not None and (best / "model.zip").is_file():
        _mirror(best / "model.zip", run_dir / "best_model.zip")
