"""Hyperparameter files, run folders and atomic file writes (no training logic here).

Hyperparameter semantics follow rl-baselines3-zoo's ``ExperimentManager`` so the
same YAML files work with ``python -m rl_zoo3.train``.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import importlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import yaml

from . import HYPERPARAMS_DIR

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- CLI helpers
def parse_literal(value: str) -> Any:
    """A command-line value as a Python literal (``'"panda"'`` -> ``"panda"``, ``0.5``, ``dict(...)``).

    rl-zoo's ``StoreDict`` calls ``eval``; we accept Python literals plus ``dict(...)``
    calls, and fall back to the raw string (so ``robot:panda`` also works).
    """
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass
    if re.fullmatch(r"\s*dict\(.*\)\s*", value, flags=re.S):
        return eval(value, {"__builtins__": {}}, {"dict": dict})  # noqa: S307 (rl-zoo compatible)
    return value


class StoreDict(argparse.Action):
    """``--env-kwargs key:value [key:value ...]`` -> ``{"key": value}`` (rl-zoo's syntax)."""

    def __call__(self, parser, namespace, values, option_string=None):
        out: Dict[str, Any] = {}
        for item in values:
            if ":" not in item:
                parser.error(f"{option_string}: expected key:value, got {item!r}")
            key, value = item.split(":", 1)
            out[key] = parse_literal(value)
        setattr(namespace, self.dest, out)


# --------------------------------------------------------------------------- hyperparameters
def default_conf_file(algo: str) -> Path:
    return HYPERPARAMS_DIR / f"{algo}.yml"


def read_hyperparams(algo: str, env_id: str, conf_file: Optional[PathLike] = None, quiet: bool = False) -> Dict[str, Any]:
    """The (unprocessed) hyperparameters for ``env_id`` from a YAML file keyed by env id.

    Falls back to the file's ``default`` entry, like rl-zoo.
    """
    path = Path(conf_file) if conf_file else default_conf_file(algo)
    with open(path) as f:
        table = yaml.safe_load(f) or {}
    if env_id in table:
        hp = table[env_id]
    elif "default" in table:
        if not quiet:
            print(f"No hyperparameters for {env_id} in {path}: using its 'default' entry")
        hp = table["default"]
    else:
        raise ValueError(f"hyperparameters for {algo} on {env_id} not found in {path}")
    return dict(hp)


def get_class_by_name(name: str) -> Any:
    module_name, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def resolve_policy(name: str) -> Any:
    """``policy:`` of a YAML entry given as ``package.module.Class``: the class, or a clear error."""
    try:
        return get_class_by_name(name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"policy {name!r}: cannot import it ({exc}); give an SB3 alias (MlpPolicy) "
                         "or a dotted class path") from None


def get_wrapper_class(spec: Any) -> Optional[Callable]:
    """rl-zoo's ``env_wrapper``: a class path, or a list of paths / ``{path: kwargs}`` dicts, applied in order."""
    if not spec:
        return None
    items = spec if isinstance(spec, list) else [spec]
    wrappers: List[Tuple[Callable, Dict[str, Any]]] = []
    for item in items:
        if isinstance(item, dict):
            ((name, kwargs),) = item.items()
        else:
            name, kwargs = item, {}
        wrappers.append((get_class_by_name(name), dict(kwargs or {})))

    def wrap(env):
        for cls, kwargs in wrappers:
            env = cls(env, **kwargs)
        return env

    return wrap


def _schedule(value: Any) -> Any:
    from stable_baselines3.common.utils import ConstantSchedule, LinearSchedule

    if isinstance(value, str):
        kind, initial = value.split("_")
        if kind != "lin":
            raise ValueError(f"unknown schedule {value!r} (use lin_<initial value>)")
        return LinearSchedule(float(initial), 0.0, 1.0)
    if isinstance(value, (int, float)) and value >= 0:
        return ConstantSchedule(float(value))
    return value  # negative: disabled (e.g. clip_range_vf)


def preprocess_hyperparams(hp: Dict[str, Any]) -> Dict[str, Any]:
    """Split a hyperparameter entry into what the trainer needs.

    Returns a dict with ``model_kwargs`` (for the SB3 constructor), ``n_envs``,
    ``n_timesteps``, ``normalize`` (None or VecNormalize kwargs), ``env_wrapper``
    (callable or None), ``env_kwargs``.
    """
    hp = dict(hp)
    out: Dict[str, Any] = {
        "n_envs": int(hp.pop("n_envs", 1)),
        "n_timesteps": int(float(hp.pop("n_timesteps"))),
        "env_kwargs": dict(hp.pop("env_kwargs", None) or {}),
        "env_wrapper": get_wrapper_class(hp.pop("env_wrapper", None)),
    }
    normalize = hp.pop("normalize", False)
    if isinstance(normalize, str):
        normalize = eval(normalize, {"__builtins__": {}}, {"dict": dict, "True": True, "False": False})  # noqa: S307
    if normalize is True:
        normalize = {}
    if isinstance(normalize, dict):
        normalize = dict(normalize)
        if "gamma" in hp:
            normalize["gamma"] = hp["gamma"]
        out["normalize"] = normalize
    else:
        out["normalize"] = None
    if isinstance(hp.get("policy"), str) and "." in hp["policy"]:
        # a dotted class path (d2f_rl.policies.AsymmetricActorCriticPolicy); SB3 itself knows only
        # its aliases (MlpPolicy, ...), which stay strings
        hp["policy"] = resolve_policy(hp["policy"])
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        if key in hp:
            hp[key] = _schedule(hp[key])
    if isinstance(hp.get("train_freq"), list):
        hp["train_freq"] = tuple(hp["train_freq"])
    for key in ("policy_kwargs", "replay_buffer_kwargs"):
        if isinstance(hp.get(key), str):
            hp[key] = eval(hp[key], {"__builtins__": {}}, _policy_kwargs_namespace())  # noqa: S307
    for key in ("frame_stack", "callback", "vec_env_wrapper", "monitor_kwargs"):
        if key in hp:
            raise ValueError(f"hyperparameter {key!r} is not supported by d2f_rl.train (use rl_zoo3.train)")
    out["model_kwargs"] = hp
    return out


def _policy_kwargs_namespace() -> Dict[str, Any]:
    import torch.nn as nn

    return {"dict": dict, "nn": nn, "True": True, "False": False, "None": None}


# --------------------------------------------------------------------------- run folders
def _run_ids(algo_dir: Path, env_id: str) -> List[int]:
    ids = []
    for path in glob.glob(os.path.join(glob.escape(str(algo_dir)), glob.escape(env_id) + "_[0-9]*")):
        suffix = path[len(str(algo_dir)) + 1 + len(env_id) + 1:]
        if suffix.isdigit():
            ids.append(int(suffix))
    return sorted(ids)


def new_run_dir(log_folder: PathLike, algo: str, env_id: str) -> Path:
    """Create ``<log_folder>/<algo>/<env_id>_<n>`` with the next free ``n`` (never reuses one)."""
    algo_dir = Path(log_folder) / algo
    algo_dir.mkdir(parents=True, exist_ok=True)
    n = (_run_ids(algo_dir, env_id) or [0])[-1] + 1
    while True:
        run = algo_dir / f"{env_id}_{n}"
        try:
            run.mkdir()  # atomic: two concurrent runs cannot get the same folder
            return run
        except FileExistsError:
            n += 1


def estimate_run_bytes(hyperparams: Dict[str, Any], obs_dim: int, act_dim: int, keep_checkpoints: int = 2) -> int:
    """A generous estimate of the disk a run needs: replay buffer copies (off-policy) and model files."""
    buffer = int(float(hyperparams.get("buffer_size", 0) or 0))
    # float32 obs and next_obs, action, reward, done, timeout per transition
    per_transition = 4 * (2 * obs_dim + act_dim + 2) + 2
    replay = buffer * per_transition * (keep_checkpoints + 1)  # checkpoints + the one being written
    return replay + 50 * 2**20  # models, logs, evaluations


def check_log_folder(log_folder: PathLike, need_bytes: int) -> None:
    """Fail before training if runs cannot be written under ``log_folder`` (read-only, not a folder, disk full)."""
    folder = Path(log_folder)
    if folder.exists() and not folder.is_dir():
        raise SystemExit(f"-f {folder}: is a file, not a folder for runs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_probe_"):
            pass
    except OSError as exc:
        raise SystemExit(f"-f {folder}: cannot write run folders there ({exc.strerror or exc})") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise SystemExit(
            f"-f {folder}: {free / 2**20:.0f} MiB free, this run needs about {need_bytes / 2**20:.0f} MiB "
            "(checkpoints with the replay buffer); free space, lower buffer_size, or use --no-save-replay-buffer"
        )


def latest_run_dir(log_folder: PathLike, algo: str, env_id: str) -> Optional[Path]:
    algo_dir = Path(log_folder) / algo
    ids = _run_ids(algo_dir, env_id)
    return algo_dir / f"{env_id}_{ids[-1]}" if ids else None


def is_run_dir(path: PathLike) -> bool:
    return (Path(path) / "args.yml").is_file()


# --------------------------------------------------------------------------- atomic writes
def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path`` (``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it becomes ``path`` as a unit.

    A new ``path`` appears by one ``os.replace`` of the finished folder. An
    existing ``path`` is first renamed to ``.<name>.old`` and removed after the
    swap, so a crash in between leaves the old folder (see :func:`resolve_dir`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.parent / f".{path.name}.old"
    try:
        yield tmp
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        if path.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_dir(path: PathLike) -> Optional[Path]:
    """``path`` if it exists, else the ``.old`` copy :func:`atomic_dir` may have left, else None."""
    path = Path(path)
    if path.is_dir():
        return path
    old = path.parent / f".{path.name}.old"
    return old if old.is_dir() else None


def write_yaml(path: PathLike, data: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=True))


def read_yaml(path: PathLike) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)
