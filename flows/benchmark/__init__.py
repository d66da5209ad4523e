"""Benchmark flow extractors against the same rewards: ``python -m flows.benchmark --help``.

Does my extractor make robots succeed more often? Per task, the benchmark renders the scripted
demonstration (cached), runs each extractor on its video, scores the flow against the simulator's
ground truth (3D end-point error, TAP-Vid 2D metrics, time per frame), and rewards the zero-shot
planner (optionally an RL run) with it on the same seeds for every extractor; robustness curves show
how success falls as the ground-truth flow is corrupted in controlled ways.

* :mod:`.protocol`: the one interface an extractor implements (``ExtractorInput -> ObjectFlow``);
* :mod:`.extractors`: the registry (built-ins, ``module:Name``, external commands);
* :mod:`.demos`: rendered demos, cached; :mod:`.truth`: ground truth of an extractor's points;
* :mod:`.metrics`: accuracy; :mod:`.corruptions`: controlled flow errors;
* :mod:`.downstream`: planner / RL success judged against the task;
* :mod:`.runner`: the loop with failure isolation; :mod:`.report`: leaderboard, CSV, plots;
  :mod:`.cli`: the command line.

Imports neither torch nor the envs at import time (the envs are imported where they are used).
"""
from .corruptions import CORRUPTIONS, corrupt
from .extractors import EXTRACTORS, BuiltinOptions, CommandExtractor, PipelineExtractor, register_extractor, resolve_extractor
from .metrics import accuracy_3d, flow_accuracy, tapvid_metrics
from .protocol import DemoFiles, Extractor, ExtractorFailed, ExtractorInput, ExtractorUnavailable, check_output

__all__ = [
    "CORRUPTIONS", "BuiltinOptions", "CommandExtractor", "DemoFiles", "EXTRACTORS", "Extractor", "ExtractorFailed",
    "ExtractorInput", "ExtractorUnavailable", "PipelineExtractor", "accuracy_3d", "check_output", "corrupt",
    "flow_accuracy", "register_extractor", "resolve_extractor", "tapvid_metrics",
]
