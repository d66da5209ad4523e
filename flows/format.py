"""The one object-flow format of dream2flow-gym.

A 3D object flow is the motion of points on one object, lifted to metres in the
world (robot base) frame:

* ``points``  float32 ``(T, N, 3)``: position of point ``i`` at frame ``t``;
* ``visible`` bool ``(T, N)``: whether point ``i`` was observed at frame ``t``
  (tracker visibility AND valid depth for flows extracted from video);
* ``fps``: frames per second of the flow's time axis.

File layout (``.npz``, written by :meth:`ObjectFlow.save`, read by :meth:`ObjectFlow.load`):

============== ================ ===============================================
key            dtype / shape    meaning
============== ================ ===============================================
``points``     float32 (T,N,3)  metres, world frame
``visible``    bool (T,N)       per-frame visibility
``meta``       str (0-d)        JSON object, see below
``intrinsics`` float64 (3,3)    optional, pinhole K of the source camera (pixels)
``extrinsics`` float64 (4,4)    optional, camera-to-world transform, OpenCV camera
                                axes (x right, y down, z forward)
============== ================ ===============================================

``meta`` keys: ``format_version`` (int, currently 1), ``fps`` (float > 0),
``task`` (env id the flow was made for, may be ""), ``object_name``,
``source`` (dict: ``kind`` e.g. "simulated demonstration" or "video",
``generator``, ``tracker``, ``depth``, free-form ``notes``), and ``extra``
(any JSON the user wants to keep).

Everything that reads a flow validates it; a violation raises
:class:`FlowFormatError` naming the file, the field and what was expected.
"""
from __future__ import annotations

import json
import numbers
import os
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
_IN_MEMORY = "<ObjectFlow>"
_NPZ_KEYS = ("points", "visible", "meta", "intrinsics", "extrinsics")


class FlowFormatError(ValueError):
    """A flow (file or arrays) does not follow the object-flow format.

    The message names the file (or ``<ObjectFlow>`` for in-memory data), the
    field and what was expected; ``.path`` and ``.field`` hold them too.
    """

    def __init__(self, where: str, field_name: str, message: str):
        self.path = where
        self.field = field_name
        self.detail = message
        super().__init__(f"{where}: field '{field_name}': {message}")

    def __reduce__(self):
        # keeps the error picklable (e.g. raised inside a SubprocVecEnv worker)
        return (type(self), (self.path, self.field, self.detail))


def _check_matrix(value: Any, name: str, shape: tuple, where: str) -> Optional[np.ndarray]:
    if value is None:
        return None
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise FlowFormatError(where, name, f"expected a numeric {shape} matrix ({exc})") from None
    if raw.dtype.kind not in "fiu":
        raise FlowFormatError(where, name, f"expected a real numeric {shape} matrix, got dtype {raw.dtype}")
    arr = np.array(raw, dtype=np.float64)  # always a copy: the flow owns its arrays
    if arr.shape != shape:
        raise FlowFormatError(where, name, f"expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise FlowFormatError(where, name, "contains NaN or inf")
    arr.flags.writeable = False
    return arr


def _as_array(value: Any, name: str, where: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists, ...
        raise FlowFormatError(where, name, f"expected an array ({exc})") from None


@dataclass(frozen=True, eq=False)
class ObjectFlow:
    """3D object flow: ``points[t, i]`` (metres, world frame) with ``visible[t, i]``.

    Construct directly from arrays (validated) or with :meth:`load`. Instances
    are immutable; helpers return new flows (:meth:`resample`, :meth:`subsample`,
    :meth:`transform`, :meth:`slice`).
    """

    points: np.ndarray
    visible: np.ndarray
    fps: float
    task: str = ""
    object_name: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    intrinsics: Optional[np.ndarray] = None
    extrinsics: Optional[np.ndarray] = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # where the flow came from, for error messages only
    origin: str = field(default=_IN_MEMORY, compare=False, repr=False)

    def __post_init__(self) -> None:
        where = self.origin
        version = self.format_version
        if not isinstance(version, numbers.Integral) or isinstance(version, (bool, np.bool_)) \
                or version not in SUPPORTED_VERSIONS:
            raise FlowFormatError(
                where, "format_version",
                f"unknown format version {self.format_version!r}; this library reads {SUPPORTED_VERSIONS}",
            )
        pts = _as_array(self.points, "points", where)
        if pts.dtype.kind not in "fiu":
            raise FlowFormatError(where, "points", f"expected a float array, got dtype {pts.dtype}")
        if pts.ndim != 3 or pts.shape[-1] != 3:
            raise FlowFormatError(where, "points", f"expected shape (T, N, 3), got {pts.shape}")
        T, N = pts.shape[:2]
        if T == 0 or N == 0:
            raise FlowFormatError(where, "points", f"expected T >= 1 frames and N >= 1 points, got T={T}, N={N}")
        if not np.all(np.isfinite(pts)):
            bad = np.argwhere(~np.isfinite(pts))[0]
            raise FlowFormatError(where, "points", f"contains NaN or inf (first at frame {bad[0]}, point {bad[1]})")
        with np.errstate(over="ignore"):  # points are stored as float32: a larger value would become inf
            pts32 = np.array(pts, dtype=np.float32, order="C")
        if not np.all(np.isfinite(pts32)):
            bad = np.argwhere(~np.isfinite(pts32))[0]
            raise FlowFormatError(
                where, "points",
                f"value {pts[tuple(bad)]!r} beyond float32's range (first at frame {bad[0]}, point {bad[1]})",
            )
        vis = _as_array(self.visible, "visible", where)
        if vis.dtype != np.bool_:
            raise FlowFormatError(where, "visible", f"expected a bool array, got dtype {vis.dtype}")
        if vis.shape != (T, N):
            raise FlowFormatError(where, "visible", f"expected shape (T, N) = {(T, N)} matching points, got {vis.shape}")
        empty = np.flatnonzero(~vis.any(axis=1))
        if empty.size:
            raise FlowFormatError(
                where, "visible",
                f"every frame needs at least one visible point; frame(s) {empty[:5].tolist()} have none",
            )
        if not isinstance(self.fps, numbers.Real) or isinstance(self.fps, (bool, np.bool_)):
            raise FlowFormatError(where, "fps", f"expected a number > 0, got {self.fps!r}")
        fps = float(self.fps)
        if not np.isfinite(fps) or fps <= 0:
            raise FlowFormatError(where, "fps", f"expected a finite number > 0, got {self.fps!r}")
        for name in ("task", "object_name"):
            if not isinstance(getattr(self, name), str):
                raise FlowFormatError(where, name, f"expected a string, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.source, Mapping):
            raise FlowFormatError(where, "source", f"expected a JSON object (dict), got {type(self.source).__name__}")
        if not isinstance(self.extra, Mapping):
            raise FlowFormatError(where, "extra", f"expected a JSON object (dict), got {type(self.extra).__name__}")
        K = _check_matrix(self.intrinsics, "intrinsics", (3, 3), where)
        E = _check_matrix(self.extrinsics, "extrinsics", (4, 4), where)
        pts = pts32  # np.array copied it: the flow never shares (or freezes) the caller's arrays
        vis = np.array(vis, dtype=np.bool_, order="C")
        pts.flags.writeable = False
        vis.flags.writeable = False
        set_ = object.__setattr__
        set_(self, "points", pts)
        set_(self, "visible", vis)
        set_(self, "fps", fps)
        set_(self, "format_version", int(version))
        set_(self, "intrinsics", K)
        set_(self, "extrinsics", E)
        set_(self, "source", dict(self.source))
        set_(self, "extra", dict(self.extra))

    # ------------------------------------------------------------------ shape
    @property
    def num_frames(self) -> int:
        return self.points.shape[0]

    @property
    def num_points(self) -> int:
        return self.points.shape[1]

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.num_frames - 1) / self.fps

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (
            f"ObjectFlow(T={self.num_frames}, N={self.num_points}, fps={self.fps:g}, task={self.task!r}, "
            f"object={self.object_name!r}, source={self.source.get('kind', '?')!r})"
        )

    def replace(self, **changes: Any) -> "ObjectFlow":
        """A copy with some fields changed (validated again)."""
        changes.setdefault("origin", _IN_MEMORY)
        return replace(self, **changes)

    # ------------------------------------------------------------------ metadata
    def meta(self) -> dict:
        return {
            "format_version": self.format_version,
            "fps": self.fps,
            "task": self.task,
            "object_name": self.object_name,
            "source": dict(self.source),
            "extra": dict(self.extra),
        }

    # ------------------------------------------------------------------ file I/O
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the flow to ``path`` (``.npz``) atomically.

        The file is written to a temporary name in the same folder and renamed
        into place, so a crash never leaves a half-written flow. An existing
        file is refused unless ``overwrite=True``.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            meta = json.dumps(self.meta(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FlowFormatError(str(path), "meta", f"metadata must be JSON serialisable ({exc})") from None
        arrays = {"points": self.points, "visible": self.visible, "meta": np.array(meta)}
        if self.intrinsics is not None:
            arrays["intrinsics"] = self.intrinsics
        if self.extrinsics is not None:
            arrays["extrinsics"] = self.extrinsics
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
            if overwrite:
                os.replace(tmp, path)
            else:
                # atomic no-clobber: a file created since the check above is never replaced
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it") from None
                except OSError:  # no hard links on this filesystem
                    if path.exists():
                        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it") from None
                    os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ObjectFlow":
        """Read and validate a flow written by :meth:`save`."""
        where = str(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: no such flow file")
        arrays = {}
        key = "<file>"
        try:
            # allow_pickle=False: object arrays are refused, never unpickled
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError(f"a single {type(loaded).__name__}, not an .npz archive")
            with loaded as npz:
                names = list(npz.files)
                unknown = sorted(set(names) - set(_NPZ_KEYS))
                if unknown:
                    # a damaged archive can name a member "" : the field is then the file itself
                    raise FlowFormatError(where, unknown[0] or "<file>",
                                          f"unknown array {unknown[0]!r} in the file (expected only {list(_NPZ_KEYS)})")
                for key in names:
                    arrays[key] = npz[key]
        except FlowFormatError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            raise FlowFormatError(where, key, f"not a readable .npz flow file ({type(exc).__name__}: {exc})") from None
        except Exception as exc:  # zlib.error, struct.error ... from a corrupted archive
            raise FlowFormatError(where, key, f"corrupted .npz flow file ({type(exc).__name__}: {exc})") from None
        for key in ("points", "visible", "meta"):
            if key not in arrays:
                raise FlowFormatError(where, key, f"missing; the file has {sorted(arrays)}")
        raw_meta = arrays["meta"]
        if raw_meta.dtype.kind != "U" or raw_meta.ndim != 0:
            raise FlowFormatError(where, "meta", f"expected a 0-d JSON string, got dtype {raw_meta.dtype} shape {raw_meta.shape}")
        try:
            meta = json.loads(str(raw_meta))
        except json.JSONDecodeError as exc:
            raise FlowFormatError(where, "meta", f"not valid JSON ({exc})") from None
        except RecursionError:
            raise FlowFormatError(where, "meta", "JSON nested too deeply to read") from None
        if not isinstance(meta, dict):
            raise FlowFormatError(where, "meta", f"expected a JSON object, got {type(meta).__name__}")
        if "format_version" not in meta:
            raise FlowFormatError(where, "meta.format_version", "missing")
        version = meta["format_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
            raise FlowFormatError(
                where, "meta.format_version",
                f"unknown format version {version!r}; this library reads {SUPPORTED_VERSIONS}",
            )
        if "fps" not in meta:
            raise FlowFormatError(where, "meta.fps", "missing")
        fps = meta["fps"]
        if not isinstance(fps, (int, float)) or isinstance(fps, bool):
            raise FlowFormatError(where, "meta.fps", f"expected a number > 0, got {fps!r}")
        unknown = set(meta) - {"format_version", "fps", "task", "object_name", "source", "extra"}
        if unknown:
            raise FlowFormatError(where, "meta", f"unknown keys {sorted(unknown)}")
        return cls(
            points=arrays["points"],
            visible=arrays["visible"],
            fps=fps,
            task=meta.get("task", ""),
            object_name=meta.get("object_name", ""),
            source=meta.get("source", {}),
            intrinsics=arrays.get("intrinsics"),
            extrinsics=arrays.get("extrinsics"),
            extra=meta.get("extra", {}),
            format_version=version,
            origin=where,
        )

    # ------------------------------------------------------------------ helpers (flows/ops.py)
    def resample(self, fps: float) -> "ObjectFlow":
        """Linear resampling in time to ``fps`` (e.g. an env's control rate)."""
        from .ops import resample

        return resample(self, fps)

    def subsample(self, num_points: int, seed: int = 0) -> "ObjectFlow":
        """Keep ``num_points`` points chosen by farthest-point sampling on frame 0."""
        from .ops import subsample_points

        return subsample_points(self, num_points, seed=seed)

    def transform(self, transform: np.ndarray) -> "ObjectFlow":
        """Apply a rigid 4x4 transform (e.g. camera world -> robot base) to every point."""
        from .ops import rigid_transform

        return rigid_transform(self, transform)

    def slice(self, start: float = 0.0, stop: Optional[float] = None) -> "ObjectFlow":
        """Frames between ``start`` and ``stop`` seconds (inclusive of both ends)."""
        from .ops import slice_time

        return slice_time(self, start, stop)
