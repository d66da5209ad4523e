"""Malformed flow files for fuzzing :meth:`ObjectFlow.load` (tests and ``benchmarks/fuzz_flows.py``).

:func:`make_case` writes one file derived from a valid flow by one seeded
mutation (a wrong array, a wrong ``meta`` entry, or damaged bytes) and says
what it did; :func:`check_case` loads it and classifies the outcome:

* ``"error"``: :class:`FlowFormatError` naming the file and a field (right);
* ``"intact"``: it loaded, and equals the original flow (the mutation was harmless,
  e.g. a flipped timestamp byte in the zip header) (right);
* ``"valid-load"``: it loaded a different, but valid, flow from a mutation that
  produces a valid file by construction (e.g. a legal dtype) (right);
* ``"mishandled"``: any other exception type, or a silent load of changed data
  from a mutation that should have been refused (wrong: the count the fuzz
  benchmark reports, target 0).

    from flows.fuzz import make_case, check_case
    case = make_case(tmp_dir / "f.npz", seed=123)
    outcome, detail = check_case(case)
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

from .format import FlowFormatError, ObjectFlow


@dataclass
class FuzzCase:
    path: Path
    mutation: str  # name of the mutation (a key of MUTATIONS)
    detail: str  # what exactly it did
    original: ObjectFlow  # the valid flow it was derived from
    must_fail: bool  # a correct reader refuses this file


def base_flow(rng: np.random.Generator) -> ObjectFlow:
    """A small valid flow with every optional field set."""
    t, n = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    vis = rng.random((t, n)) > 0.3
    vis[np.arange(t), rng.integers(n, size=t)] = True
    K = np.array([[500.0, 0, 160], [0, 500, 120], [0, 0, 1]])
    return ObjectFlow(points=rng.normal(size=(t, n, 3)), visible=vis, fps=float(rng.uniform(1, 60)),
                      task="D2F-PushT-v0", object_name="T-block", source={"kind": "fuzz"},
                      intrinsics=K, extrinsics=np.eye(4), extra={"seed": int(rng.integers(1 << 30))})


def _arrays(flow: ObjectFlow) -> Dict[str, np.ndarray]:
    return {"points": flow.points, "visible": flow.visible, "meta": np.array(json.dumps(flow.meta())),
            "intrinsics": flow.intrinsics, "extrinsics": flow.extrinsics}


def _write(path: Path, arrays: Dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


# --------------------------------------------------------------------------- array mutations
_BAD_DTYPES = ("complex64", "U3", "S2", "datetime64[s]", "timedelta64[s]", "V4")
_SHAPES = ((), (0,), (3,), (0, 3), (2, 3), (1, 1, 2), (2, 0, 3), (0, 2, 3), (1, 2, 4), (1, 1, 1, 3))


def _mutate_array(rng, arrays, flow) -> Tuple[str, bool]:
    key = str(rng.choice(["points", "visible", "intrinsics", "extrinsics"]))
    kind = str(rng.choice(["shape", "dtype", "nonfinite", "huge", "drop"]))
    a = arrays[key]
    if kind == "drop":
        del arrays[key]
        return f"{key} removed", key in ("points", "visible")
    if kind == "shape":
        shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
        arrays[key] = np.zeros(shape, dtype=a.dtype)
        return f"{key} reshaped to {shape}", tuple(shape) != a.shape
    if kind == "dtype":
        dt = _BAD_DTYPES[int(rng.integers(len(_BAD_DTYPES)))]
        arrays[key] = np.zeros(a.shape, dtype=dt)
        return f"{key} as {dt}", True
    if kind == "nonfinite":
        if key == "visible":
            arrays[key] = np.zeros(a.shape, dtype=bool)  # no visible point at all
            return "visible all False", True
        b = np.array(a, dtype=np.float64)
        b.flat[int(rng.integers(b.size))] = float(rng.choice([np.nan, np.inf, -np.inf]))
        arrays[key] = b
        return f"{key} with a NaN/inf", True
    # huge: beyond float32 (points are stored as float32, so they must be refused, not become inf)
    if key == "visible":
        arrays[key] = a.astype(np.int64) * 7  # not a bool array
        return "visible as int64", True
    b = np.array(a, dtype=np.float64)
    b.flat[int(rng.integers(b.size))] = float(rng.choice([1e39, -1e300, 1e308]))
    arrays[key] = b
    return f"{key} with a value beyond float32", key == "points"


# --------------------------------------------------------------------------- meta mutations
_BAD_VALUES = (None, True, -1, 0, 0.0, float("nan"), float("inf"), "30", [], {}, [1, 2], 1e400)


def _mutate_meta(rng, arrays, flow) -> Tuple[str, bool]:
    meta = flow.meta()
    kind = str(rng.choice(["value", "drop", "unknown", "text", "nesting", "not-object", "array"]))
    if kind == "value":
        key = str(rng.choice(["format_version", "fps", "task", "object_name", "source", "extra"]))
        value = _BAD_VALUES[int(rng.integers(len(_BAD_VALUES)))]
        meta[key] = value
        ok = (key in ("source", "extra") and isinstance(value, dict)) or \
             (key in ("task", "object_name") and isinstance(value, str)) or \
             (key == "fps" and isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > 0)
        text = json.dumps(meta)  # NaN / Infinity as JSON extensions: a reader must refuse them as numbers
        arrays["meta"] = np.array(text)
        return f"meta[{key!r}] = {value!r}", not ok
    if kind == "drop":
        key = str(rng.choice(["format_version", "fps", "task", "source"]))
        del meta[key]
        arrays["meta"] = np.array(json.dumps(meta))
        return f"meta without {key!r}", key in ("format_version", "fps")
    if kind == "unknown":
        meta["colour"] = "red"
        arrays["meta"] = np.array(json.dumps(meta))
        return "meta with an unknown key", True
    if kind == "text":
        text = json.dumps(meta)
        cut = int(rng.integers(0, len(text)))
        text = text[:cut] + str(rng.choice(["", "}", "{", "\x00", "]]"]))
        arrays["meta"] = np.array(text)
        return f"meta text cut at {cut}", not _valid_meta(text)
    if kind == "nesting":
        depth = int(rng.choice([50, 5000, 100000]))
        meta["extra"] = {"deep": None}
        text = json.dumps(meta).replace('"deep": null', '"deep": ' + "[" * depth + "]" * depth)
        arrays["meta"] = np.array(text)
        return f"meta nested {depth} deep", depth > 1000
    if kind == "not-object":
        arrays["meta"] = np.array(json.dumps([meta]))
        return "meta is a JSON list", True
    arrays["meta"] = np.array([json.dumps(meta)] * 2)
    return "meta as a 1-d array", True


def _valid_meta(text: str) -> bool:
    """The cut text happens to be a valid meta (e.g. ``{"format_version": 1, "fps": 30.0}``)."""
    try:
        meta = json.loads(text)
    except ValueError:
        return False
    if not isinstance(meta, dict) or not set(meta) <= {"format_version", "fps", "task", "object_name", "source", "extra"}:
        return False
    fps = meta.get("fps")
    return (meta.get("format_version") == 1 and type(meta.get("format_version")) is int
            and isinstance(fps, (int, float)) and not isinstance(fps, bool) and np.isfinite(fps) and fps > 0
            and all(isinstance(meta.get(k, ""), str) for k in ("task", "object_name"))
            and all(isinstance(meta.get(k, {}), dict) for k in ("source", "extra")))


# --------------------------------------------------------------------------- byte mutations
def _mutate_bytes(rng, data: bytes) -> Tuple[bytes, str]:
    kind = str(rng.choice(["truncate", "flip", "zero-run", "empty", "garbage", "prefix"]))
    b = bytearray(data)
    if kind == "truncate":
        cut = int(rng.integers(0, len(b)))
        return bytes(b[:cut]), f"truncated to {cut} of {len(b)} bytes"
    if kind == "flip":
        n = int(rng.integers(1, 4))
        pos = rng.integers(0, len(b), size=n)
        for p in pos:
            b[int(p)] ^= 1 << int(rng.integers(8))
        return bytes(b), f"{n} bit flip(s) at {sorted(int(p) for p in pos)}"
    if kind == "zero-run":
        p = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 64))
        b[p:p + n] = bytes(len(b[p:p + n]))
        return bytes(b), f"{n} zero bytes at {p}"
    if kind == "empty":
        return b"", "empty file"
    if kind == "garbage":
        return rng.bytes(int(rng.integers(1, 2048))), "random bytes"
    return b"PK\x03\x04" + bytes(b[4:]), "zip magic only"


def _npy_not_npz(rng, flow) -> bytes:
    buf = io.BytesIO()
    np.save(buf, flow.points)
    return buf.getvalue()


def _pickled(rng, flow) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        obj = io.BytesIO()
        np.save(obj, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        z.writestr("points.npy", obj.getvalue())
        for k in ("visible", "meta"):
            a = io.BytesIO()
            np.save(a, _arrays(flow)[k])
            z.writestr(f"{k}.npy", a.getvalue())
    return buf.getvalue()


MUTATIONS: Dict[str, Callable] = {
    "array": _mutate_array,
    "meta": _mutate_meta,
    "bytes": _mutate_bytes,
    "npy-not-npz": _npy_not_npz,
    "pickled-object-array": _pickled,
    "extra-array": None,
}


def make_case(path: Path, seed: int, mutation: str = "") -> FuzzCase:
    """Write one mutated flow file at ``path`` (seeded; ``mutation`` picks one of :data:`MUTATIONS`)."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    flow = base_flow(rng)
    mutation = mutation or str(rng.choice(list(MUTATIONS)))
    arrays = {k: v for k, v in _arrays(flow).items()}
    if mutation in ("array", "meta"):
        detail, must_fail = MUTATIONS[mutation](rng, arrays, flow)
        _write(path, arrays)
    elif mutation == "bytes":
        _write(path, arrays)
        data, detail = _mutate_bytes(rng, path.read_bytes())
        path.write_bytes(data)
        must_fail = True  # unless the result is byte-for-byte harmless (see check_case: "intact")
    elif mutation == "extra-array":
        arrays["colour"] = np.zeros(3)
        _write(path, arrays)
        detail, must_fail = "an unknown array 'colour'", True
    else:
        path.write_bytes(MUTATIONS[mutation](rng, flow))
        detail, must_fail = mutation, True
    return FuzzCase(path, mutation, detail, flow, must_fail)


def _same(a: ObjectFlow, b: ObjectFlow) -> bool:
    def eq(x, y):
        return (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))

    return (np.array_equal(a.points, b.points) and np.array_equal(a.visible, b.visible) and a.meta() == b.meta()
            and eq(a.intrinsics, b.intrinsics) and eq(a.extrinsics, b.extrinsics))


def check_case(case: FuzzCase) -> Tuple[str, str]:
    """Load ``case.path`` and classify the outcome (see the module docstring)."""
    try:
        flow = ObjectFlow.load(case.path)
    except FlowFormatError as exc:
        if exc.path != str(case.path) or not exc.field:
            return "mishandled", f"FlowFormatError without the file or field: {exc}"
        return "error", str(exc)
    except Exception as exc:  # noqa: BLE001  any other type is what the fuzz looks for
        return "mishandled", f"{type(exc).__name__}: {exc}"
    if _same(flow, case.original):
        return "intact", "loaded, equal to the original"
    if case.must_fail:
        return "mishandled", f"silently loaded a changed flow ({case.detail})"
    if not (np.isfinite(flow.points).all() and flow.visible.any(axis=1).all()):
        return "mishandled", "loaded an invalid flow"
    return "valid-load", "loaded a different valid flow"


def run_fuzz(folder: Path, seeds: List[int]) -> Dict[str, object]:
    """Make and check one case per seed in ``folder``; counts per outcome and the mishandled cases."""
    counts: Dict[str, int] = {}
    bad = []
    for seed in seeds:
        case = make_case(Path(folder) / f"case_{seed}.npz", seed)
        outcome, detail = check_case(case)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "mishandled":
            bad.append({"seed": seed, "mutation": case.mutation, "detail": case.detail, "outcome": detail})
        case.path.unlink(missing_ok=True)
    return {"counts": counts, "mishandled": bad}
