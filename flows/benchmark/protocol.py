"""The one interface a flow extractor implements for the benchmark.

An extractor is any callable ``extractor(inputs: ExtractorInput) -> ObjectFlow``: a function, or
an object with ``__call__`` (a class named on the command line is instantiated with no
arguments). An optional ``name`` attribute labels it in the leaderboard::

    import numpy as np
    from flows import ObjectFlow
    from flows.benchmark import ExtractorInput

    class MyExtractor:
        name = "my-tracker+my-depth"

        def __call__(self, inputs: ExtractorInput) -> ObjectFlow:
            tracks, visible = my_tracker(inputs.frames, inputs.mask)        # (T, N, 2), (T, N)
            depth = my_depth_model(inputs.frames)                          # (T, H, W) metres
            points = my_lift(tracks, depth, inputs.camera)                 # (T, N, 3) world frame
            return ObjectFlow(points=points, visible=visible, fps=inputs.fps, task=inputs.task,
                              object_name=inputs.object_name)

    python -m flows.benchmark --extractor my_package.module:MyExtractor

What the flow must be (:func:`check_output`; anything else makes the extractor's row "failed"
with the reason): an :class:`~flows.ObjectFlow` (which already refuses NaN/inf, wrong shapes and
frames without a visible point) with exactly one frame per video frame, in the world frame of
``inputs.camera`` (``T_world_camera``), made for ``inputs.task`` (or no task).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ..format import ObjectFlow


class ExtractorFailed(RuntimeError):
    """An extractor could not produce a valid flow for one task; the message says why (one line)."""


class ExtractorUnavailable(ExtractorFailed):
    """An extractor cannot run on this machine at all (missing weights, package or checkpoint)."""


@dataclass(frozen=True)
class DemoFiles:
    """The files of a rendered demonstration, for extractors that read files (or run a command)."""

    folder: Path
    video: Path  # video.mp4
    camera: Path  # camera.json (flows.extract.camera format, OpenCV axes)
    depth: Path  # depth.npz: key "depth", (T, H, W) float32 metres, NaN/0 where nothing is rendered
    mask: Path  # mask.png: the object's pixels at frame 0 (255 = object)


@dataclass(frozen=True, eq=False)
class ExtractorInput:
    """What every extractor gets for one task: the video and what a robot's RGB-D camera would give.

    ``frames`` are the decoded ``files.video`` (the same lossy mp4 every extractor reads), so an
    extractor that reads the files and one that uses the arrays see the same pixels.
    """

    task: str  # env id, e.g. "D2F-PushT-v0"
    object_name: str  # e.g. "T-block"
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float
    camera: Any  # flows.extract.camera.Camera: K, T_world_camera (camera-to-world), width, height
    depth: Optional[np.ndarray]  # (T, H, W) float32 metres (NaN: invalid): the measured depth, optional to use
    mask: Optional[np.ndarray]  # (H, W) bool: the object at frame 0, optional to use
    files: DemoFiles
    #: benchmark-only: a 2D "tracker" that returns the simulator's true tracks of any frame-0 query
    #: pixels (``track(video, queries) -> (tracks, visible)``); used by the built-in ``oracle`` row
    #: (the upper bound). A real extractor must not use it.
    ground_truth_tracker: Any = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


#: an extractor: ``extractor(inputs) -> ObjectFlow`` (see the module docstring)
Extractor = Callable[[ExtractorInput], ObjectFlow]


def extractor_name(extractor: Any, default: str) -> str:
    """The leaderboard label of ``extractor``: its ``name`` attribute, else ``default`` (the spec)."""
    name = getattr(extractor, "name", None)
    return name if isinstance(name, str) and name else default


def check_output(flow: Union[ObjectFlow, Any], inputs: ExtractorInput, label: str) -> ObjectFlow:
    """``flow`` if it is a valid answer to ``inputs``; else :class:`ExtractorFailed` saying what is wrong."""
    if not isinstance(flow, ObjectFlow):
        raise ExtractorFailed(f"{label}: returned {type(flow).__name__}, expected flows.ObjectFlow "
                              "(wrap points (T, N, 3) and visible (T, N) in ObjectFlow(...))")
    T = inputs.num_frames
    if flow.num_frames != T:
        raise ExtractorFailed(f"{label}: returned {flow.num_frames} frames, the video has {T} "
                              "(one flow frame per video frame)")
    if flow.task and flow.task != inputs.task:
        raise ExtractorFailed(f"{label}: returned a flow for task {flow.task!r}, expected {inputs.task!r}")
    # ObjectFlow already refuses NaN/inf; points far outside any scene mean a unit or frame mix-up
    far = float(np.abs(flow.points).max())
    if far > 100.0:
        raise ExtractorFailed(f"{label}: points up to {far:.3g} m from the world origin; expected metres in the "
                              "world frame of inputs.camera (T_world_camera)")
    return flow


def describe_error(exc: BaseException) -> str:
    """One line for the leaderboard: the exception's type and message (whitespace folded)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError's str() adds quotes
    msg = " ".join(str(text).split())
    if isinstance(exc, ExtractorFailed):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
