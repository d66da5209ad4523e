"""What the benchmark scripts share: the machine line, and writing results as JSON + markdown."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, List

import numpy as np


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import mujoco

    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, mujoco {mujoco.__version__}, numpy {np.__version__}"


def write_results(out: Path, rows: List[Dict[str, Any]], md_lines: List[str]) -> None:
    """``out`` (JSON: machine + rows) and ``out`` with ``.md`` (the table), and print the table."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    out.with_suffix(".md").write_text("\n".join(md_lines) + "\n")
    print("\n".join(md_lines))
