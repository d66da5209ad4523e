"""The object-flow format: validation (construction and file), save/load, shipped flows."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flows
from flows import FORMAT_VERSION, FlowFormatError, ObjectFlow, shipped_flow, shipped_flow_path
from flows.format import _IN_MEMORY
from flows.shipped import DEFAULT

T, N = 5, 4


def good_arrays(T: int = T, N: int = N) -> dict:
    rng = np.random.default_rng(0)
    return {
        "points": rng.normal(size=(T, N, 3)).astype(np.float32),
        "visible": np.ones((T, N), dtype=bool),
    }


def good_kwargs(**over) -> dict:
    kw = dict(good_arrays(), fps=30.0, task="D2F-PushT-v0", object_name="thing")
    kw.update(over)
    return kw


def good_meta(**over) -> dict:
    meta = {
        "format_version": FORMAT_VERSION,
        "fps": 30.0,
        "task": "D2F-PushT-v0",
        "object_name": "thing",
        "source": {"kind": "video", "notes": "test"},
        "extra": {},
    }
    meta.update(over)
    return meta


def write_npz(path, **arrays) -> str:
    """Write a crafted flow file with plain np.savez (no validation)."""
    with open(path, "wb") as fh:  # keeps the exact name (np.savez would append .npz to a str without it)
        np.savez(fh, **arrays)
    return str(path)


def crafted(path, drop=(), meta_obj=None, **over) -> str:
    arrays = dict(good_arrays())
    arrays["meta"] = np.array(json.dumps(good_meta() if meta_obj is None else meta_obj))
    arrays.update(over)
    for key in drop:
        arrays.pop(key)
    return write_npz(path, **arrays)


def assert_names(exc: FlowFormatError, where: str, field: str) -> None:
    msg = str(exc)
    assert isinstance(exc, ValueError)
    assert where in msg, msg
    assert field in msg, msg
    assert exc.path == where
    assert field in exc.field


def one_frame_empty() -> np.ndarray:
    vis = np.ones((T, N), dtype=bool)
    vis[2] = False
    return vis


def _points_with(value) -> np.ndarray:
    pts = good_arrays()["points"].copy()
    pts[1, 2, 0] = value
    return pts


# (field named in the message, overrides of the valid arrays/arguments)
BAD_ARRAYS = {
    "points-rank2": ("points", {"points": np.zeros((T, 3), np.float32)}),
    "points-rank4": ("points", {"points": np.zeros((T, N, 3, 1), np.float32)}),
    "points-rank0": ("points", {"points": np.float32(1.0)}),
    "points-lastdim2": ("points", {"points": np.zeros((T, N, 2), np.float32)}),
    "points-lastdim4": ("points", {"points": np.zeros((T, N, 4), np.float32)}),
    "points-T0": ("points", {"points": np.zeros((0, N, 3), np.float32), "visible": np.ones((0, N), bool)}),
    "points-N0": ("points", {"points": np.zeros((T, 0, 3), np.float32), "visible": np.ones((T, 0), bool)}),
    "points-nan": ("points", {"points": _points_with(np.nan)}),
    "points-inf": ("points", {"points": _points_with(np.inf)}),
    "points-neginf": ("points", {"points": _points_with(-np.inf)}),
    "points-str-dtype": ("points", {"points": np.full((T, N, 3), "a")}),
    "points-complex": ("points", {"points": np.zeros((T, N, 3), np.complex64)}),
    "points-bool": ("points", {"points": np.zeros((T, N, 3), bool)}),
    "visible-shape-fewer-points": ("visible", {"visible": np.ones((T, N - 1), bool)}),
    "visible-shape-more-frames": ("visible", {"visible": np.ones((T + 1, N), bool)}),
    "visible-shape-3d": ("visible", {"visible": np.ones((T, N, 1), bool)}),
    "visible-uint8": ("visible", {"visible": np.ones((T, N), np.uint8)}),
    "visible-int64": ("visible", {"visible": np.ones((T, N), np.int64)}),
    "visible-float": ("visible", {"visible": np.ones((T, N), np.float32)}),
    "visible-frame-empty": ("visible", {"visible": one_frame_empty()}),
    "visible-all-empty": ("visible", {"visible": np.zeros((T, N), bool)}),
    "intrinsics-shape": ("intrinsics", {"intrinsics": np.eye(4)}),
    "intrinsics-shape-flat": ("intrinsics", {"intrinsics": np.ones(9)}),
    "intrinsics-nan": ("intrinsics", {"intrinsics": np.array([[500, 0, 320], [0, np.nan, 240], [0, 0, 1.0]])}),
    "intrinsics-inf": ("intrinsics", {"intrinsics": np.array([[np.inf, 0, 320], [0, 500, 240], [0, 0, 1.0]])}),
    "intrinsics-str": ("intrinsics", {"intrinsics": np.full((3, 3), "x")}),
    "extrinsics-shape-3x4": ("extrinsics", {"extrinsics": np.eye(4)[:3]}),
    "extrinsics-shape-3x3": ("extrinsics", {"extrinsics": np.eye(3)}),
    "extrinsics-nan": ("extrinsics", {"extrinsics": np.where(np.eye(4) > 0, np.nan, 0.0)}),
}

# bad scalar arguments of the constructor
BAD_ARGS = {
    "fps-zero": ("fps", {"fps": 0.0}),
    "fps-negative": ("fps", {"fps": -30.0}),
    "fps-nan": ("fps", {"fps": float("nan")}),
    "fps-inf": ("fps", {"fps": float("inf")}),
    "fps-str": ("fps", {"fps": "30"}),
    "fps-none": ("fps", {"fps": None}),
    "fps-bool": ("fps", {"fps": True}),
    "format-version-2": ("format_version", {"format_version": 2}),
    "format-version-str": ("format_version", {"format_version": "1"}),
    "format-version-bool": ("format_version", {"format_version": True}),
    "format-version-float": ("format_version", {"format_version": 1.5}),
    "task-not-str": ("task", {"task": 3}),
    "object-name-not-str": ("object_name", {"object_name": None}),
    "source-not-dict": ("source", {"source": "video"}),
    "extra-not-dict": ("extra", {"extra": [1, 2]}),
    "points-ragged": ("points", {"points": [[[0.0, 0.0, 0.0]], [[0.0, 0.0]]]}),
}


@pytest.mark.parametrize("field, over", list(BAD_ARRAYS.values()) + list(BAD_ARGS.values()),
                         ids=list(BAD_ARRAYS) + list(BAD_ARGS))
def test_construct_rejects(field, over):
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow(**good_kwargs(**over))
    assert_names(info.value, _IN_MEMORY, field)
    assert "<ObjectFlow>" in str(info.value)


@pytest.mark.parametrize("field, over", list(BAD_ARRAYS.values()), ids=list(BAD_ARRAYS))
def test_load_rejects_bad_arrays(tmp_path, field, over):
    path = crafted(tmp_path / "bad.npz", **over)
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert_names(info.value, path, field)


BAD_META = {
    "version-2": ("format_version", good_meta(format_version=2)),
    "version-str-1": ("format_version", good_meta(format_version="1")),
    "version-float": ("format_version", good_meta(format_version=1.0)),
    "version-true": ("format_version", good_meta(format_version=True)),
    "version-null": ("format_version", good_meta(format_version=None)),
    "version-missing": ("format_version", {k: v for k, v in good_meta().items() if k != "format_version"}),
    "fps-zero": ("fps", good_meta(fps=0)),
    "fps-negative": ("fps", good_meta(fps=-1.5)),
    "fps-nan": ("fps", good_meta(fps=float("nan"))),  # json.dumps writes NaN, json.loads reads it
    "fps-inf": ("fps", good_meta(fps=float("inf"))),
    "fps-str": ("fps", good_meta(fps="30")),
    "fps-bool": ("fps", good_meta(fps=True)),
    "fps-missing": ("fps", {k: v for k, v in good_meta().items() if k != "fps"}),
    "unknown-key": ("meta", good_meta(colour="red")),
    "task-not-str": ("task", good_meta(task=7)),
    "source-not-object": ("source", good_meta(source="video")),
    "extra-not-object": ("extra", good_meta(extra=[1])),
}


@pytest.mark.parametrize("field, meta", list(BAD_META.values()), ids=list(BAD_META))
def test_load_rejects_bad_meta(tmp_path, field, meta):
    path = crafted(tmp_path / "bad.npz", meta_obj=meta)
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert_names(info.value, path, field)


RAW_META = {
    "not-json": np.array("{format_version: 1"),
    "json-list": np.array("[1, 2]"),
    "json-string": np.array('"hello"'),
    "json-number": np.array("1"),
    "empty-string": np.array(""),
    "bytes-dtype": np.array(json.dumps(good_meta()).encode()),
    "not-0d": np.array([json.dumps(good_meta())]),
    "float": np.array(1.0),
}


@pytest.mark.parametrize("raw", list(RAW_META.values()), ids=list(RAW_META))
def test_load_rejects_meta_not_a_json_object(tmp_path, raw):
    path = crafted(tmp_path / "bad.npz", meta=raw)
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert_names(info.value, path, "meta")


@pytest.mark.parametrize("key", ["points", "visible", "meta"])
def test_load_rejects_missing_key(tmp_path, key):
    path = crafted(tmp_path / "bad.npz", drop=(key,))
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert_names(info.value, path, key)
    assert "missing" in str(info.value)


def test_load_rejects_unknown_array(tmp_path):
    path = crafted(tmp_path / "bad.npz", depth=np.zeros((2, 2)))
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert_names(info.value, path, "depth")


# ---------------------------------------------------------------- object arrays must never be unpickled
UNPICKLED: list = []


def _mark_unpickled(*args):
    UNPICKLED.append(args)
    return 0.0


class _Trap:
    def __reduce__(self):
        return (_mark_unpickled, ("trap",))


def _object_array(shape) -> np.ndarray:
    arr = np.empty(shape, dtype=object)
    arr.flat[:] = [_Trap() for _ in range(arr.size)]
    return arr


@pytest.mark.parametrize("key", ["points", "visible", "meta", "intrinsics", "extrinsics"])
def test_load_refuses_object_arrays_without_unpickling(tmp_path, key):
    shapes = {"points": (T, N, 3), "visible": (T, N), "meta": (), "intrinsics": (3, 3), "extrinsics": (4, 4)}
    path = crafted(tmp_path / "evil.npz", **{key: _object_array(shapes[key])})
    # the trap really fires when unpickled, so the check below can fail
    with np.load(path, allow_pickle=True) as npz:
        npz[key]
    assert UNPICKLED
    UNPICKLED.clear()
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert not UNPICKLED
    assert_names(info.value, path, key)


# ---------------------------------------------------------------- damaged files
@pytest.fixture
def saved(tmp_path):
    flow = ObjectFlow(**good_kwargs(), intrinsics=np.eye(3), extrinsics=np.eye(4))
    return flow, flow.save(tmp_path / "good.npz")


@pytest.mark.parametrize("keep", [0, 1, 10, 100, 0.25, 0.5, 0.75, 0.9, -22, -1],
                         ids=lambda k: f"keep-{k}")
def test_load_rejects_truncated_file(tmp_path, saved, keep):
    _, good = saved
    data = good.read_bytes()
    n = int(keep * len(data)) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    assert 0 <= n < len(data)
    path = tmp_path / "cut.npz"
    path.write_bytes(data[:n])
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert_names(info.value, str(path), info.value.field)
    assert info.value.field in ("<file>", "points", "visible", "meta", "intrinsics", "extrinsics")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_load_rejects_random_bytes(tmp_path, seed):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(seed).bytes(2000))
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert_names(info.value, str(path), "<file>")


def test_load_rejects_corrupted_member(tmp_path, saved):
    """Flip bytes inside the compressed data: zlib/CRC errors become FlowFormatError."""
    _, good = saved
    data = bytearray(good.read_bytes())
    start = data.index(b"points.npy") + 40
    for i in range(start, start + 40):
        data[i] ^= 0xFF
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(path)
    assert str(path) in str(info.value)


def test_load_rejects_npy_and_pickle(tmp_path):
    npy = tmp_path / "flow.npy"
    np.save(npy, good_arrays()["points"])
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(npy)
    assert_names(info.value, str(npy), "<file>")
    pkl = tmp_path / "flow.pkl"
    pkl.write_bytes(pickle.dumps(_Trap()))
    with pytest.raises(FlowFormatError) as info:
        ObjectFlow.load(pkl)
    assert not UNPICKLED
    assert_names(info.value, str(pkl), "<file>")


def test_load_missing_path(tmp_path):
    path = tmp_path / "nope" / "flow.npz"
    with pytest.raises(FileNotFoundError) as info:
        ObjectFlow.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        ObjectFlow.load(tmp_path)  # a folder is not a flow file


def test_error_is_picklable_and_carries_fields():
    err = FlowFormatError("a.npz", "points", "bad")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is FlowFormatError
    assert (again.path, again.field, str(again)) == ("a.npz", "points", str(err))
    assert issubclass(FlowFormatError, ValueError)


# ---------------------------------------------------------------- round trip
def full_flow(**over) -> ObjectFlow:
    K = np.array([[600.0, 0, 320], [0, 610.0, 240], [0, 0, 1]])
    E = np.eye(4)
    E[:3, 3] = [0.5, -0.2, 1.0]
    kw = good_kwargs(
        fps=15.0,
        object_name="T-block",
        source={"kind": "video", "generator": "wan", "tracker": "cotracker", "depth": "sensor", "notes": "ü"},
        extra={"nested": {"a": [1, 2.5, None, True]}, "s": "x"},
        intrinsics=K,
        extrinsics=E,
    )
    kw["visible"] = np.random.default_rng(1).random((T, N)) > 0.4
    kw["visible"][:, 0] = True
    kw.update(over)
    return ObjectFlow(**kw)


def assert_same(a: ObjectFlow, b: ObjectFlow) -> None:
    assert b.points.dtype == np.float32 and b.visible.dtype == np.bool_
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.visible, b.visible)
    assert (a.fps, a.task, a.object_name, a.source, a.extra, a.format_version) == \
        (b.fps, b.task, b.object_name, b.source, b.extra, b.format_version)
    for m, n in ((a.intrinsics, b.intrinsics), (a.extrinsics, b.extrinsics)):
        if m is None:
            assert n is None
        else:
            np.testing.assert_array_equal(m, n)


def test_round_trip_keeps_everything(tmp_path):
    flow = full_flow()
    path = flow.save(tmp_path / "f.npz")
    assert path == tmp_path / "f.npz"
    back = ObjectFlow.load(path)
    assert_same(flow, back)
    assert back.source["kind"] == "video"
    assert back.extra["nested"]["a"] == [1, 2.5, None, True]
    assert back.intrinsics[0, 0] == 600.0 and back.extrinsics[2, 3] == 1.0
    assert back.origin == str(path)


def test_round_trip_without_camera(tmp_path):
    flow = ObjectFlow(**good_kwargs())
    back = ObjectFlow.load(flow.save(tmp_path / "f.npz"))
    assert back.intrinsics is None and back.extrinsics is None
    assert_same(flow, back)


def test_float64_points_are_stored_as_float32(tmp_path):
    pts = np.random.default_rng(3).normal(size=(T, N, 3))
    flow = ObjectFlow(**good_kwargs(points=pts))
    assert flow.points.dtype == np.float32
    np.testing.assert_array_equal(flow.points, pts.astype(np.float32))
    with np.load(flow.save(tmp_path / "f.npz")) as npz:
        assert npz["points"].dtype == np.float32
        assert npz["visible"].dtype == np.bool_
        assert npz["meta"].dtype.kind == "U" and npz["meta"].ndim == 0
        assert json.loads(str(npz["meta"]))["format_version"] == FORMAT_VERSION


@settings(max_examples=15, deadline=None)
@given(t=st.integers(1, 6), n=st.integers(1, 6), fps=st.floats(0.1, 1000.0), seed=st.integers(0, 2**31))
def test_round_trip_property(tmp_path_factory, t, n, fps, seed):
    rng = np.random.default_rng(seed)
    vis = rng.random((t, n)) > 0.5
    vis[np.arange(t), rng.integers(n, size=t)] = True
    flow = ObjectFlow(points=rng.normal(size=(t, n, 3)) * 10, visible=vis, fps=fps)
    path = flow.save(tmp_path_factory.mktemp("rt") / "f.npz")
    assert_same(flow, ObjectFlow.load(path))


def test_save_adds_npz_suffix(tmp_path):
    flow = ObjectFlow(**good_kwargs())
    assert flow.save(tmp_path / "plain") == tmp_path / "plain.npz"
    assert flow.save(tmp_path / "x.flow") == tmp_path / "x.flow.npz"
    assert sorted(os.listdir(tmp_path)) == ["plain.npz", "x.flow.npz"]


def test_save_creates_parent_folders(tmp_path):
    path = ObjectFlow(**good_kwargs()).save(tmp_path / "a" / "b" / "f.npz")
    assert path.is_file()


def test_save_leaves_no_temp_file(tmp_path):
    ObjectFlow(**good_kwargs()).save(tmp_path / "f.npz")
    full_flow().save(tmp_path / "f.npz", overwrite=True)
    assert os.listdir(tmp_path) == ["f.npz"]


def test_save_refuses_to_overwrite(tmp_path):
    first = ObjectFlow(**good_kwargs())
    second = full_flow()
    path = first.save(tmp_path / "f.npz")
    before = path.read_bytes()
    with pytest.raises(FileExistsError) as info:
        second.save(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["f.npz"]
    second.save(path, overwrite=True)
    assert_same(second, ObjectFlow.load(path))
    assert os.listdir(tmp_path) == ["f.npz"]


@pytest.mark.parametrize("partial", [False, True], ids=["raise-at-once", "raise-after-writing"])
def test_failed_save_keeps_old_file_and_no_temp(tmp_path, monkeypatch, partial):
    old = ObjectFlow(**good_kwargs())
    path = old.save(tmp_path / "f.npz")
    before = path.read_bytes()

    def boom(fh, **arrays):
        if partial:
            fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        full_flow().save(path, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        full_flow().save(tmp_path / "new.npz")
    assert os.listdir(tmp_path) == ["f.npz"]
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert_same(old, ObjectFlow.load(path))


def test_save_rejects_non_json_metadata(tmp_path):
    for extra in ({"x": np.float32(1.0)}, {"x": float("nan")}, {"x": object()}):
        flow = ObjectFlow(**good_kwargs(extra=extra))
        with pytest.raises(FlowFormatError) as info:
            flow.save(tmp_path / "f.npz")
        assert_names(info.value, str(tmp_path / "f.npz"), "meta")
    assert os.listdir(tmp_path) == []


def test_saved_file_mode_is_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = ObjectFlow(**good_kwargs()).save(tmp_path / "f.npz")
        path2 = ObjectFlow(**good_kwargs()).save(tmp_path / "f.npz", overwrite=True)
    finally:
        os.umask(old)
    for p in (path, path2):
        mode = os.stat(p).st_mode & 0o777
        assert mode != 0o600
        assert mode == 0o644


# ---------------------------------------------------------------- immutability
def test_arrays_are_read_only_and_not_shared():
    pts = np.zeros((T, N, 3), np.float32)
    vis = np.ones((T, N), bool)
    K = np.eye(3)
    flow = ObjectFlow(points=pts, visible=vis, fps=10, intrinsics=K, extrinsics=np.eye(4))
    for arr in (flow.points, flow.visible, flow.intrinsics, flow.extrinsics):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        flow.points[0, 0, 0] = 1.0
    with pytest.raises(ValueError):
        flow.visible[0, 0] = False
    with pytest.raises(ValueError):
        flow.intrinsics[0, 0] = 2.0
    # the caller's arrays stay writable, and changing them does not change the flow
    assert pts.flags.writeable and vis.flags.writeable and K.flags.writeable
    pts[0, 0, 0] = 5.0
    vis[0, 0] = False
    K[0, 0] = 9.0
    assert flow.points[0, 0, 0] == 0.0 and flow.visible[0, 0] and flow.intrinsics[0, 0] == 1.0
    with pytest.raises(AttributeError):
        flow.fps = 3.0


def test_loaded_arrays_are_read_only(saved):
    _, path = saved
    flow = ObjectFlow.load(path)
    assert not flow.points.flags.writeable and not flow.visible.flags.writeable
    with pytest.raises(ValueError):
        flow.points[...] = 0


def test_properties_and_replace():
    flow = ObjectFlow(**good_kwargs(fps=4))
    assert (flow.num_frames, flow.num_points, len(flow)) == (T, N, T)
    assert flow.duration == pytest.approx((T - 1) / 4)
    assert "T=5" in repr(flow) and "N=4" in repr(flow)
    assert flow.replace(task="other").task == "other"
    with pytest.raises(FlowFormatError):
        flow.replace(fps=-1)


# ---------------------------------------------------------------- shipped flow
def test_shipped_flow_loads():
    flow = shipped_flow("D2F-PushT-v0")
    assert flow.task == "D2F-PushT-v0"
    assert flow.source["kind"] == {"demo": "simulated demonstration", "extracted": "video"}[DEFAULT["D2F-PushT-v0"]]
    assert flow.num_frames > 1 and flow.num_points >= 3
    assert flow.fps > 0 and flow.points.dtype == np.float32
    assert flow.origin == str(shipped_flow_path("D2F-PushT-v0"))
    assert flows.shipped_flow is shipped_flow


def test_shipped_flow_unknown_env():
    with pytest.raises(KeyError) as info:
        shipped_flow("D2F-Nope-v0")
    msg = str(info.value)
    assert "D2F-Nope-v0" in msg and "D2F-PushT-v0" in msg


# --------------------------------------------------------------------------- fuzzing (flows/fuzz.py)
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_fuzzed_files_are_refused_with_file_and_field(tmp_path_factory, seed):
    from flows.fuzz import check_case, make_case

    case = make_case(tmp_path_factory.mktemp("fz") / "f.npz", seed)
    outcome, detail = check_case(case)
    assert outcome != "mishandled", f"seed {seed}, {case.mutation}: {case.detail} -> {detail}"


@pytest.mark.parametrize("mutation", ["array", "meta", "bytes", "npy-not-npz", "pickled-object-array", "extra-array"])
def test_every_fuzz_mutation_is_exercised(tmp_path, mutation):
    from flows.fuzz import check_case, make_case

    outcomes = {check_case(make_case(tmp_path / f"{mutation}_{s}.npz", s, mutation))[0] for s in range(20)}
    assert "error" in outcomes and "mishandled" not in outcomes


def test_points_beyond_float32_are_refused_not_turned_into_inf(tmp_path):
    pts = np.zeros((T, N, 3))
    pts[1, 2, 0] = 1e39  # finite in float64, inf in float32 (the stored dtype)
    with pytest.raises(FlowFormatError, match="beyond float32") as info:
        ObjectFlow(**good_kwargs(points=pts))
    assert info.value.field == "points"


def test_deeply_nested_meta_is_a_format_error(tmp_path):
    flow = ObjectFlow(**good_kwargs())
    path = flow.save(tmp_path / "f.npz")
    meta = json.dumps(flow.meta()).replace('"extra": {}', '"extra": {"x": ' + "[" * 100000 + "]" * 100000 + "}")
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["meta"] = np.array(meta)
    np.savez(path, **arrays)
    with pytest.raises(FlowFormatError, match="nested too deeply") as info:
        ObjectFlow.load(path)
    assert info.value.field == "meta" and info.value.path == str(path)


@pytest.mark.parametrize("seed", [5920, 13975])  # found by benchmarks/fuzz_flows.py: a zip member named ""
def test_fuzz_regressions(tmp_path, seed):
    from flows.fuzz import check_case, make_case

    outcome, detail = check_case(make_case(tmp_path / "f.npz", seed))
    assert outcome == "error", detail
