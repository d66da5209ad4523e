"""What a results folder records about how it was made: command, versions, machine, code revision."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

PACKAGES = ("dream2flow-gym", "numpy", "mujoco", "gymnasium", "opencv-python-headless", "opencv-python", "torch",
            "transformers", "stable-baselines3", "matplotlib", "imageio", "imageio-ffmpeg")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def machine_line() -> str:
    """One line naming the machine and the versions that decide the numbers."""
    import mujoco
    import numpy as np

    return (f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, mujoco {mujoco.__version__}, "
            f"numpy {np.__version__}")


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_revision() -> Dict[str, Any]:
    """The commit of the checkout ``flows`` is imported from, and whether it has uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    if head.returncode != 0:
        return {}
    return {"commit": head.stdout.strip(), "uncommitted_changes": bool(dirty.stdout.strip())}


def command_line() -> str:
    """The command as the user typed it (``python -m flows.benchmark ...``)."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
    if argv and os.path.basename(argv[0]).startswith("python"):
        argv[0] = "python"
    return " ".join(shlex.quote(a) for a in argv)


def provenance() -> Dict[str, Any]:
    return {"command": command_line(), "cwd": os.getcwd(), "machine": machine_line(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "load_average_1min": load_average(), "versions": versions(),
            "code": git_revision()}
