"""Extractors by name: the built-in ones, a user's ``module:attr``, or an external command.

Every extractor reaches the runner the same way: :func:`resolve_extractor` turns a spec into
``(label, extractor)`` and the runner calls ``extractor(inputs)`` (see :mod:`.protocol`). Specs:

* a name registered in :data:`EXTRACTORS` (built-ins below, or yours: ``register_extractor``);
* ``TRACKER+DEPTH`` for any tracker in ``flows.extract.TRACKERS`` and depth stage in
  ``DEPTH_ESTIMATORS`` (``lk+measured``; ``ground-truth`` as the tracker is the oracle's);
* ``package.module:Name``: a class (instantiated with no arguments) or a function;
* an external command (:class:`CommandExtractor`, ``--extractor-cmd``).

Built-ins (the pipeline of ``python -m flows extract`` with the render's frame-0 mask):

=========================  ==============================================================
``oracle``                 the simulator's true 2D tracks + measured depth: the upper bound of
                           any tracker with this depth (its errors are the lifting's alone)
``lk+measured``            pyramidal Lucas-Kanade (no weights) + measured depth
``lk+depth-anything``      LK + Depth Anything V2 calibrated to frame 0's measured depth
                           (needs local weights: ``--depth-anything-model PATH``)
``cotracker+measured``     CoTracker3 + measured depth (needs ``--cotracker-checkpoint PATH``)
=========================  ==============================================================

A built-in whose weights are not on this machine is refused when it is built
(:class:`~.protocol.ExtractorUnavailable`, saying which flag to pass), so it shows as failed in the
leaderboard instead of stopping the run or waiting on a download.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

from ..extract.registry import DEPTH_ESTIMATORS, TRACKERS, Registry
from ..format import ObjectFlow
from .protocol import Extractor, ExtractorFailed, ExtractorInput, ExtractorUnavailable, extractor_name

#: name -> factory(options: BuiltinOptions) -> Extractor
EXTRACTORS = Registry("flow extractor")
GROUND_TRUTH_TRACKER = "ground-truth"
DEFAULT_DEPTH_ANYTHING = "depth-anything/Depth-Anything-V2-Small-hf"


@dataclass(frozen=True)
class BuiltinOptions:
    """What the command line can tell the built-in extractors (a user's extractor gets none of it)."""

    max_points: int = 1024
    seed: int = 0
    depth_anything_model: str = DEFAULT_DEPTH_ANYTHING
    depth_calibration: str = "scale"
    cotracker_checkpoint: Optional[str] = None
    cotracker_hub_repo: Optional[str] = None


def register_extractor(name: str, factory: Optional[Callable[[BuiltinOptions], Extractor]] = None, **kwargs: Any):
    """Register ``factory(options) -> extractor`` under ``name`` (usable as a decorator)."""
    return EXTRACTORS.register(name, factory, **kwargs)


# ---------------------------------------------------------------------- the extraction pipeline
def _check_depth_anything(model: str) -> None:
    """Refuse at once when Depth Anything cannot load: transformers' own attempt to download absent
    weights retries for minutes without a network before failing."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExtractorUnavailable(f"depth-anything needs {' and '.join(missing)}: pip install torch transformers")
    if os.path.isdir(model):
        return
    if os.path.exists(model) or model.startswith((".", "/", "~")):
        raise ExtractorUnavailable(f"weights not found: {model} is not a folder (pass --depth-anything-model PATH, "
                                   "a folder written by save_pretrained)")
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(model, "config.json"), str):
        raise ExtractorUnavailable(f"weights not found: {model} is not in the Hugging Face cache and no download is "
                                   "attempted; pass --depth-anything-model PATH (a local folder)")


def _check_cotracker(checkpoint: Optional[str], hub_repo: Optional[str]) -> None:
    if hub_repo is not None:
        if not os.path.isdir(hub_repo):
            raise ExtractorUnavailable(f"{hub_repo}: no such CoTracker checkout (--cotracker-hub-repo)")
        return
    if checkpoint is None or not os.path.isfile(checkpoint):
        what = "no checkpoint given" if checkpoint is None else f"{checkpoint}: no such file"
        raise ExtractorUnavailable(f"weights not found ({what}): pass --cotracker-checkpoint PATH "
                                   "(e.g. scaled_offline.pth)")
    if importlib.util.find_spec("cotracker") is None:
        raise ExtractorUnavailable("CoTracker is not installed (not on PyPI): pip install -e a checkout of "
                                   "https://github.com/facebookresearch/co-tracker, or pass --cotracker-hub-repo DIR")


class PipelineExtractor:
    """``flows.extract.extract_flow`` with a tracker and a depth stage by name, on the demo's files.

    ``ground-truth`` as the tracker uses ``inputs.ground_truth_tracker`` (the oracle row).
    """

    def __init__(self, tracker: str, depth: str, options: BuiltinOptions = BuiltinOptions(), name: str = ""):
        if tracker != GROUND_TRUTH_TRACKER and tracker not in TRACKERS:
            raise KeyError(f"unknown tracker {tracker!r}; registered: {TRACKERS.names()} (or {GROUND_TRUTH_TRACKER})")
        if depth not in DEPTH_ESTIMATORS:
            raise KeyError(f"unknown depth stage {depth!r}; registered: {DEPTH_ESTIMATORS.names()}")
        self.tracker_options: dict = {}
        self.depth_options: dict = {}
        if depth == "depth-anything":
            _check_depth_anything(options.depth_anything_model)
            self.depth_options = {"model": options.depth_anything_model, "calibration": options.depth_calibration}
        if tracker == "cotracker":
            _check_cotracker(options.cotracker_checkpoint, options.cotracker_hub_repo)
            self.tracker_options = {k: v for k, v in (("checkpoint", options.cotracker_checkpoint),
                                                      ("hub_repo", options.cotracker_hub_repo)) if v is not None}
        self.tracker, self.depth, self.options = tracker, depth, options
        self.name = name or f"{tracker}+{depth}"

    def __call__(self, inputs: ExtractorInput) -> ObjectFlow:
        from ..extract.pipeline import extract_flow

        tracker: Any = self.tracker
        if tracker == GROUND_TRUTH_TRACKER:
            if inputs.ground_truth_tracker is None:
                raise ExtractorFailed(f"{self.name}: these inputs carry no ground-truth tracker (a rendered demo does)")
            tracker = inputs.ground_truth_tracker
        return extract_flow(
            inputs.frames, inputs.camera, mask=inputs.mask, tracker=tracker, depth=self.depth, depth_data=inputs.depth,
            object_name=inputs.object_name, max_points=self.options.max_points, fps=inputs.fps, progress=False,
            task=inputs.task, tracker_options=self.tracker_options, depth_options=self.depth_options,
            seed=self.options.seed, notes="flows.benchmark",
        )


for _name, _tracker, _depth, _label in (
        ("oracle", GROUND_TRUTH_TRACKER, "measured", "oracle"),
        ("lk+measured", "lk", "measured", ""),
        ("lk+depth-anything", "lk", "depth-anything", ""),
        ("cotracker+measured", "cotracker", "measured", "")):
    EXTRACTORS.register(_name, lambda options, t=_tracker, d=_depth, n=_label: PipelineExtractor(t, d, options, n))


# ---------------------------------------------------------------------- external commands
#: the placeholders of a command template
COMMAND_FIELDS = ("video", "camera", "depth", "mask", "out", "object", "task", "fps")


class CommandExtractor:
    """An extractor that runs a shell command writing a flow ``.npz`` to ``{out}``.

    The template's ``{video} {camera} {depth} {mask} {out} {object} {task} {fps}`` are replaced
    (shell-quoted) with the demo's files, the output path, the object's name, the env id and the
    frame rate. A ``NAME=`` prefix names the row (else ``cmd:PROGRAM``). A non-zero exit, no
    output, or an invalid flow fails the row with the command's last line of stderr.
    """

    def __init__(self, template: str, timeout: float = 1800.0):
        m = re.match(r"^([A-Za-z0-9_.+-]+)=(\S.*)$", template.strip())
        self.template = m.group(2) if m else template.strip()
        try:
            self.template.format(**{k: k for k in COMMAND_FIELDS})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"--extractor-cmd {template!r}: bad placeholder {exc}; use {{"
                             + "}, {".join(COMMAND_FIELDS) + "}") from None
        if "{out}" not in self.template:
            raise ValueError(f"--extractor-cmd {template!r}: has no {{out}}, the path the flow must be written to")
        words = shlex.split(self.template)
        program = os.path.basename(words[0]) if words else "?"
        if program.startswith("python") and len(words) > 2 and words[1] == "-m":
            program = words[2]
        self.name = m.group(1) if m else f"cmd:{program}"
        self.timeout = float(timeout)

    def __call__(self, inputs: ExtractorInput) -> ObjectFlow:
        f = inputs.files
        with tempfile.TemporaryDirectory(prefix="flow-benchmark-") as tmp:
            out = Path(tmp) / "flow.npz"
            values = {"video": f.video, "camera": f.camera, "depth": f.depth, "mask": f.mask, "out": out,
                      "object": inputs.object_name, "task": inputs.task, "fps": f"{inputs.fps:g}"}
            cmd = self.template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
            try:
                res = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                raise ExtractorFailed(f"{self.name}: the command ran past {self.timeout:g} s") from None
            if res.returncode != 0:
                tail = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()[-1]
                raise ExtractorFailed(f"{self.name}: the command exited with status {res.returncode}: {tail}")
            if not out.is_file():
                raise ExtractorFailed(f"{self.name}: the command exited 0 but wrote no flow to {{out}}")
            return ObjectFlow.load(out)


# ---------------------------------------------------------------------- resolution
def _import_object(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"extractor {spec!r}: cannot import {module!r} ({exc})") from exc
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"extractor {spec!r}: module {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def resolve_extractor(spec: str, options: BuiltinOptions = BuiltinOptions()) -> Tuple[str, Extractor]:
    """``(label, extractor)`` for a spec (see the module docstring); errors say what is known."""
    if spec in EXTRACTORS:
        ext = EXTRACTORS.get(spec)(options)
        return extractor_name(ext, spec), ext
    if "+" in spec and ":" not in spec:
        tracker, _, depth = spec.partition("+")
        ext = PipelineExtractor(tracker, depth, options)
        return ext.name, ext
    if ":" in spec:
        obj = _import_object(spec)
        ext = obj() if inspect.isclass(obj) else obj
        if not callable(ext):
            raise TypeError(f"extractor {spec!r}: {type(ext).__name__} is not callable (expected "
                            "extractor(inputs) -> ObjectFlow)")
        return extractor_name(ext, spec), ext
    raise KeyError(f"unknown extractor {spec!r}; registered: {EXTRACTORS.names()}, or TRACKER+DEPTH "
                   f"(trackers {TRACKERS.names()}, depth {DEPTH_ESTIMATORS.names()}), or package.module:Name")


def resolve_command(template: str, timeout: float = 1800.0) -> Tuple[str, Extractor]:
    ext = CommandExtractor(template, timeout)
    return ext.name, ext
