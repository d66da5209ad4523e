"""Extraction of 3D object flow from video (flows/extract, python -m flows extract / show)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cv2  # noqa: E402  (the extract extra; installed by the test extra)

from flows import ObjectFlow  # noqa: E402
from flows.extract import (  # noqa: E402
    DEPTH_ESTIMATORS, TRACKERS, Camera, CameraError, DepthError, LucasKanadeTracker, VideoError, apply_calibration,
    extract_flow, fit_calibration, lift_tracks, load_depth, read_video, sample_query_points, write_video,
)

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- synthetic data
def texture(size: int, seed: int, cell: int = 4) -> np.ndarray:
    """Smooth random RGB texture (size, size, 3) uint8: noise upsampled and blurred (good for LK)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size // cell + 1, size // cell + 1, 3)).astype(np.uint8)
    big = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(big, (0, 0), 1.0)


def affine(angle_deg: float, scale: float, center_src, center_dst) -> np.ndarray:
    """2x3 matrix: rotate+scale about ``center_src`` and move it to ``center_dst``."""
    A = cv2.getRotationMatrix2D(tuple(float(c) for c in center_src), angle_deg, scale)
    A[:, 2] += np.asarray(center_dst, float) - np.asarray(center_src, float)
    return A


def apply_affine(A: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ A[:, :2].T + A[:, 2]


def moving_texture_video(T=16, W=128, H=96, seed=0, shift=(2.0, 0.8), spin=1.0):
    """A textured image translated and rotated a little each frame; affine maps frame-0 pixels -> frame t."""
    tex = texture(256, seed)
    c = np.array([128.0, 128.0])
    A0 = affine(0.0, 1.0, c, (W / 2, H / 2))
    frames, maps = [], []
    for t in range(T):
        At = affine(spin * t, 1.0, c, (W / 2 + shift[0] * t, H / 2 + shift[1] * t))
        frames.append(cv2.warpAffine(tex, At, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        # frame-0 pixel -> texture -> frame t
        A0i = cv2.invertAffineTransform(A0)
        maps.append(np.vstack([At, [0, 0, 1]]) @ np.vstack([A0i, [0, 0, 1]]))
    return np.stack(frames), [m[:2] for m in maps]


def look_at_camera(W, H, f, eye, target, up=(0.0, 0.0, 1.0)) -> Camera:
    """Camera at ``eye`` looking at ``target`` (world z up), OpenCV axes."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    return Camera(K=K, T_world_camera=T, width=W, height=H)


class PlaneScene:
    """A textured square plate moving in front of a static textured background plane.

    The plate is fronto-parallel to the camera at depth ``z[t]``, rotated by
    ``angle[t]`` about the optical axis and translated by ``xy[t]`` (camera
    frame, metres). Its image is therefore a similarity warp of its texture,
    rendered exactly with ``cv2.warpAffine``; the depth map is ``z[t]`` on the
    plate and ``z_bg`` elsewhere.
    """

    def __init__(self, T=16, W=160, H=120, f=150.0, side=0.16, z_bg=0.9, seed=0):
        self.T, self.W, self.H, self.f = T, W, H, f
        self.camera = look_at_camera(W, H, f, eye=(0.6, -0.2, 0.8), target=(0.0, 0.1, 0.05))
        self.tex_px = 200
        self.m_per_tex = side / self.tex_px
        self.tex = texture(self.tex_px, seed + 1, cell=5)
        self.bg = texture(max(W, H) * 2, seed + 2, cell=6)[:H, :W]
        s = np.linspace(0.0, 1.0, T)
        self.xy = np.stack([-0.03 + 0.08 * s, -0.01 + 0.03 * s], axis=1)  # metres, camera frame
        self.z = 0.55 - 0.07 * s
        self.angle = np.deg2rad(25.0) * s
        self.z_bg = z_bg

    def tex_to_cam(self, t: int, ij: np.ndarray) -> np.ndarray:
        """Texture pixel coords (N, 2) -> camera-frame points (N, 3) at frame t."""
        ab = (ij - (self.tex_px - 1) / 2) * self.m_per_tex
        c, s = np.cos(self.angle[t]), np.sin(self.angle[t])
        R = np.array([[c, -s], [s, c]])
        xy = ab @ R.T + self.xy[t]
        return np.concatenate([xy, np.full((len(ij), 1), self.z[t])], axis=1)

    def tex_to_pixel_affine(self, t: int) -> np.ndarray:
        K = self.camera.K
        g = self.f / self.z[t]
        c, s = np.cos(self.angle[t]), np.sin(self.angle[t])
        R = np.array([[c, -s], [s, c]]) * self.m_per_tex * g
        off = -R @ np.full(2, (self.tex_px - 1) / 2) + g * self.xy[t] + K[:2, 2]
        return np.concatenate([R, off[:, None]], axis=1)

    def render(self):
        frames, depth = [], []
        for t in range(self.T):
            A = self.tex_to_pixel_affine(t)
            obj = cv2.warpAffine(self.tex, A, (self.W, self.H), flags=cv2.INTER_LINEAR)
            cover = cv2.warpAffine(np.full(self.tex.shape[:2], 255, np.uint8), A, (self.W, self.H),
                                   flags=cv2.INTER_LINEAR) > 254
            img = np.where(cover[..., None], obj, self.bg)
            d = np.where(cover, self.z[t], self.z_bg).astype(np.float32)
            frames.append(img)
            depth.append(d)
        self.mask0 = cv2.warpAffine(np.full(self.tex.shape[:2], 255, np.uint8), self.tex_to_pixel_affine(0),
                                    (self.W, self.H), flags=cv2.INTER_NEAREST) > 0
        return np.stack(frames), np.stack(depth)

    def ground_truth(self, points0_world: np.ndarray) -> np.ndarray:
        """Where the plate points seen at ``points0_world`` (frame 0, world) are at every frame: (T, N, 3)."""
        Tcw = np.linalg.inv(self.camera.T_world_camera)
        pc = points0_world @ Tcw[:3, :3].T + Tcw[:3, 3]
        c, s = np.cos(self.angle[0]), np.sin(self.angle[0])
        ab = (pc[:, :2] - self.xy[0]) @ np.array([[c, -s], [s, c]])  # R^T
        ij = ab / self.m_per_tex + (self.tex_px - 1) / 2
        Twc = self.camera.T_world_camera
        return np.stack([self.tex_to_cam(t, ij) @ Twc[:3, :3].T + Twc[:3, 3] for t in range(self.T)])


def write_inputs(tmp: Path, scene: PlaneScene, video_name="video.mp4"):
    frames, depth = scene.render()
    video = write_video(tmp / video_name, frames, fps=10)
    np.savez_compressed(tmp / "depth.npz", depth=(depth * 1000).astype(np.uint16), unit="mm")
    cv2.imwrite(str(tmp / "mask.png"), scene.mask0.astype(np.uint8) * 255)
    scene.camera.save(tmp / "camera.json")
    return video, frames, depth


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "flows", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------- tracking
def test_lk_tracks_moving_texture_within_a_pixel():
    frames, maps = moving_texture_video(T=16)
    H, W = frames.shape[1:3]
    mask = np.zeros((H, W), bool)
    mask[10:-10, 10:-10] = True
    q = sample_query_points(mask, 300, method="features", frame=frames[0])
    assert 50 <= len(q) <= 300 and mask[q[:, 1].astype(int), q[:, 0].astype(int)].all()
    tracks, vis = LucasKanadeTracker().track(frames, q)
    assert tracks.shape == (16, len(q), 2) and vis.shape == (16, len(q)) and vis.dtype == bool
    gt = np.stack([apply_affine(m, q) for m in maps])
    err = np.linalg.norm(tracks - gt, axis=-1)
    assert vis[0].all()
    assert np.median(err[vis]) < 0.3, np.median(err[vis])
    assert np.median(err[-1][vis[-1]]) < 1.0
    assert vis[-1].mean() > 0.5


def test_lk_points_leaving_the_image_become_invisible_and_stay_lost():
    frames, maps = moving_texture_video(T=20, shift=(4.0, 0.0), spin=0.0)  # 76 px to the right in 19 frames
    H, W = frames.shape[1:3]
    mask = np.ones((H, W), bool)
    q = sample_query_points(mask, 400, method="fps")
    tracks, vis = LucasKanadeTracker().track(frames, q)
    gt = np.stack([apply_affine(m, q) for m in maps])
    outside = (gt[..., 0] > W - 1) | (gt[..., 0] < 0)
    assert outside[-1].sum() > 100
    assert not (vis & outside).any()  # never visible outside the image
    # once lost, never visible again
    lost_before = np.logical_and.accumulate(vis, axis=0)
    assert np.array_equal(vis, lost_before)
    inside_all = ~outside.any(axis=0) & (gt[-1, :, 0] < W - 15)
    err = np.linalg.norm(tracks - gt, axis=-1)
    assert np.median(err[-1][vis[-1]]) < 1.0
    assert vis[-1][inside_all].mean() > 0.8


def test_lk_keyframes_stop_the_frame_to_frame_drift():
    """Chaining LK frame to frame adds a sub-pixel error per step on a fine speckle (2-pixel cells,
    the scale of the rendered demos' textures) moving 0.4-0.6 pixel per frame; refining from a
    keyframe every 10 frames adds it once per keyframe."""
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 256, size=(128, 128, 3)).astype(np.uint8)
    tex = cv2.resize(cells, (256, 256), interpolation=cv2.INTER_NEAREST)
    shift = np.array([0.61, -0.23])
    frames = np.stack([cv2.warpAffine(tex, np.array([[1.0, 0, shift[0] * t - 64], [0, 1.0, shift[1] * t - 80]]),
                                      (128, 96), flags=cv2.INTER_LINEAR) for t in range(60)])
    mask = np.zeros((96, 128), bool)
    mask[20:-20, 20:-40] = True
    q = sample_query_points(mask, 100, method="features", frame=frames[0])
    truth = q[None] + np.arange(60)[:, None, None] * shift
    final = {}
    for k in (1, 10):
        tracks, vis = LucasKanadeTracker(keyframe_interval=k).track(frames, q)
        assert vis[-1].mean() > 0.95
        final[k] = np.median(np.linalg.norm(tracks[-1] - truth[-1], axis=-1)[vis[-1]])
    assert final[10] < 0.15 and final[1] > 2 * final[10], final
    assert LucasKanadeTracker().keyframe_interval == 10  # the default
    with pytest.raises(ValueError, match="keyframe_interval >= 1"):
        LucasKanadeTracker(keyframe_interval=0)


def test_registries_hold_the_stages_and_accept_new_ones():
    assert {"lk", "cotracker"} <= set(TRACKERS.names())
    assert {"measured", "depth-anything"} <= set(DEPTH_ESTIMATORS.names())
    with pytest.raises(KeyError, match="unknown tracker 'nope'.*lk"):
        TRACKERS.create("nope")

    class Still:
        name = "still"
        preferred_queries = "fps"

        def track(self, video, queries, progress=None):
            T = len(video)
            return np.repeat(queries[None], T, 0), np.ones((T, len(queries)), bool)

    TRACKERS.register("still", Still)
    try:
        assert isinstance(TRACKERS.create("still"), Still)
    finally:
        TRACKERS.unregister("still")


# ---------------------------------------------------------------------- lifting, calibration
def test_lifting_a_known_depth_map_gives_known_world_points():
    W, H = 64, 48
    cam = look_at_camera(W, H, 80.0, eye=(0.5, 0.3, 0.7), target=(0.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    # a tilted plane in the camera frame: z = 0.6 + 0.002 x_px + 0.001 y_px (smooth, no edges)
    ys, xs = np.mgrid[0:H, 0:W]
    depth = (0.6 + 0.002 * xs + 0.001 * ys).astype(np.float64)
    T, N = 3, 50
    tracks = np.stack([np.stack([rng.uniform(2, W - 3, N), rng.uniform(2, H - 3, N)], 1) for _ in range(T)])
    vis = np.ones((T, N), bool)
    vis[1, :5] = False
    dmaps = np.stack([depth] * T).astype(np.float32)
    dmaps[2, :, : W // 4] = np.nan  # invalid depth on the left quarter of frame 2
    pts, v, stats = lift_tracks(tracks, vis, dmaps, cam, outlier_window=0)
    z_true = 0.6 + 0.002 * tracks[..., 0] + 0.001 * tracks[..., 1]  # exact: depth is linear in x, y
    K = cam.K
    p_cam = np.stack([(tracks[..., 0] - K[0, 2]) / K[0, 0] * z_true, (tracks[..., 1] - K[1, 2]) / K[1, 1] * z_true,
                      z_true], -1)
    R, t = cam.T_world_camera[:3, :3], cam.T_world_camera[:3, 3]
    p_world = p_cam @ R.T + t
    left = tracks[2, :, 0] < W // 4 + 1
    assert not v[1, :5].any() and not v[2, left].any()
    assert v[0].all() and v[2, ~left].all()
    np.testing.assert_allclose(pts[v], p_world[v], atol=1e-5)
    # invisible samples are interpolated in time, never NaN
    assert np.all(np.isfinite(pts))
    # and round trip through the camera projection
    uv, z = cam.project(pts[0])
    np.testing.assert_allclose(uv, tracks[0], atol=1e-4)
    np.testing.assert_allclose(z, z_true[0], atol=1e-6)


def test_lifting_flags_depth_jumps_as_outliers():
    cam = look_at_camera(32, 32, 40.0, eye=(0, 0, 1.0), target=(0, 0, 0), up=(0, 1, 0))
    T = 9
    depth = np.full((T, 32, 32), 0.8, np.float32)
    depth[4, 10:20, 10:20] = 1.5  # a track that slides onto the background for one frame
    tracks = np.full((T, 2, 2), 15.0, np.float32)
    tracks[:, 1] = 5.0
    _, v, _ = lift_tracks(tracks, np.ones((T, 2), bool), depth, cam)
    assert not v[4, 0] and v[:4, 0].all() and v[5:, 0].all() and v[:, 1].all()
    # a track that slides onto the background for good is lost from the jump on
    depth[4:, 10:20, 10:20] = 1.5
    pts, v, stats = lift_tracks(tracks, np.ones((T, 2), bool), depth, cam)
    assert v[:4, 0].all() and not v[4:, 0].any() and v[:, 1].all()
    assert stats["depth_jumps"] > 0
    np.testing.assert_allclose(pts[4:, 0], np.repeat(pts[3:4, 0], T - 4, 0))  # held at the last visible position
    _, v, _ = lift_tracks(tracks, np.ones((T, 2), bool), depth, cam, jump_rel=None, outlier_window=0)
    assert v.all()


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_calibration_recovers_a_known_scale_and_shift(space):
    rng = np.random.default_rng(1)
    ref = rng.uniform(0.4, 1.2, size=(40, 50))
    mask = np.zeros_like(ref, bool)
    mask[5:35, 10:40] = True
    target = ref if space == "depth" else 1.0 / ref
    est_scale = target / 2.5  # the model's output is the target divided by 2.5
    p = fit_calibration(est_scale, ref, mask, mode="scale", space=space)
    assert p["scale"] == pytest.approx(2.5, rel=1e-9) and p["shift"] == 0.0
    np.testing.assert_allclose(apply_calibration(est_scale, p), ref, rtol=1e-6)
    est_affine = (target - 0.3) / 2.5  # target = 2.5 * est + 0.3
    p2 = fit_calibration(est_affine, ref, mask, mode="scale-shift", space=space)
    assert p2["scale"] == pytest.approx(2.5, rel=1e-6) and p2["shift"] == pytest.approx(0.3, abs=1e-6)
    np.testing.assert_allclose(apply_calibration(est_affine, p2), ref, rtol=1e-5)
    # outside-mask garbage and invalid reference pixels do not matter
    ref_bad = ref.copy()
    ref_bad[~mask] = 5.0
    ref_bad[6, 12] = np.nan
    assert fit_calibration(est_scale, ref_bad, mask)["scale"] == pytest.approx(2.5, rel=1e-9) or space == "disparity"


# ---------------------------------------------------------------------- end to end
def test_extract_flow_on_a_synthetic_plane_is_within_a_centimetre(tmp_path):
    scene = PlaneScene(T=16)
    frames, depth = scene.render()
    flow = extract_flow(frames, scene.camera, mask=scene.mask0, depth_data=depth, object_name="plate",
                        fps=10, progress=False, max_points=256)
    assert isinstance(flow, ObjectFlow) and flow.num_frames == 16 and 50 <= flow.num_points <= 256
    gt = scene.ground_truth(flow.points[0].astype(np.float64))
    err = np.linalg.norm(flow.points - gt, axis=-1)
    assert np.median(err[flow.visible]) < 0.003, np.median(err[flow.visible])
    assert np.percentile(err[flow.visible], 99) < 0.02  # no track lifted onto the background
    assert flow.visible.mean() > 0.8
    assert flow.source["kind"] == "video" and flow.source["tracker"] == "lk" and flow.source["depth"] == "measured"
    np.testing.assert_allclose(flow.extrinsics, scene.camera.T_world_camera)


def test_rigid_motion_model_keeps_only_points_on_the_plate(tmp_path):
    """``motion="rigid"`` (``--motion rigid``): visible points are the ones moving with the plate; the
    rest are filled in from its fitted pose; the flow's metadata says so."""
    from flows.__main__ import main

    scene = PlaneScene(T=16)
    video, frames, depth = write_inputs(tmp_path, scene)
    out = tmp_path / "rigid.npz"
    assert main(["extract", str(video), "--object", "plate", "--camera", str(tmp_path / "camera.json"), "--depth",
                 str(tmp_path / "depth.npz"), "--mask", str(tmp_path / "mask.png"), "--motion", "rigid",
                 "--rigid-threshold", "0.005", "--max-points", "256", "--no-progress", "-o", str(out)]) == 0
    flow = ObjectFlow.load(out)
    assert flow.source["motion"] == "rigid"
    motion = flow.extra["extraction"]["motion"]
    assert motion["model"] == "rigid" and motion["threshold_m"] == 0.005 and motion["unchecked_frames"] == 0
    assert flow.extra["extraction"]["tracker_settings"]["win_size"] == 9
    gt = scene.ground_truth(flow.points[0].astype(np.float64))
    err = np.linalg.norm(flow.points - gt, axis=-1)
    assert err[flow.visible].max() < 0.008  # threshold + the fit's own error
    assert flow.visible.mean() > 0.7
    if (~flow.visible).any():  # filled from the pose, not held or interpolated
        assert np.percentile(err[~flow.visible], 90) < 0.005
    with pytest.raises(ValueError, match="unknown motion model 'affine'"):
        extract_flow(frames, scene.camera, mask=scene.mask0, depth_data=depth, progress=False, motion="affine")


def test_deformable_motion_model_fills_lost_points_from_their_neighbours(tmp_path):
    """``--motion deformable``: visibility is the tracker's (filled samples stay not visible), lost points move
    with their neighbours (on a moving plate, as with the rigid model), the metadata says so."""
    from flows.__main__ import main

    scene = PlaneScene(T=16)
    video, frames, depth = write_inputs(tmp_path, scene)
    args = ["extract", str(video), "--object", "plate", "--camera", str(tmp_path / "camera.json"), "--depth",
            str(tmp_path / "depth.npz"), "--mask", str(tmp_path / "mask.png"), "--max-points", "256", "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "none.npz")]) == 0
    assert main(args + ["--motion", "deformable", "--neighbours", "6", "-o", str(tmp_path / "def.npz")]) == 0
    plain, flow = ObjectFlow.load(tmp_path / "none.npz"), ObjectFlow.load(tmp_path / "def.npz")
    assert not (flow.visible & ~plain.visible).any() and flow.visible.mean() > 0.9 * plain.visible.mean()
    np.testing.assert_array_equal(flow.points[flow.visible], plain.points[flow.visible])  # measured: as lifted
    assert flow.source["motion"] == "deformable"
    motion = flow.extra["extraction"]["motion"]
    assert motion["model"] == "deformable" and motion["neighbours"] == 6
    assert motion["filled"] == pytest.approx((~flow.visible).mean()) and motion["stretch_m"] == 0.005
    gt = scene.ground_truth(flow.points[0].astype(np.float64))
    lost = ~flow.visible
    assert lost.any()
    err = np.linalg.norm(flow.points - gt, axis=-1)
    held = np.linalg.norm(plain.points - gt, axis=-1)
    assert np.median(err[lost]) < 0.005 and np.median(err[lost]) < 0.5 * np.median(held[lost])


def test_cli_extract_and_show(tmp_path):
    scene = PlaneScene(T=16)
    video, frames, depth = write_inputs(tmp_path, scene)
    out = tmp_path / "flow.npz"
    args = ["extract", video, "--object", "plate", "--camera", tmp_path / "camera.json", "--depth",
            tmp_path / "depth.npz", "--mask", tmp_path / "mask.png", "--tracker", "lk", "--depth-model", "measured",
            "--max-points", "256", "--task", "D2F-Test-v0", "-o", out]
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    flow = ObjectFlow.load(out)
    assert flow.num_frames == 16 and flow.fps == pytest.approx(10.0) and flow.task == "D2F-Test-v0"
    assert flow.object_name == "plate" and flow.source["tracker"] == "lk"
    gt = scene.ground_truth(flow.points[0].astype(np.float64))
    err = np.linalg.norm(flow.points - gt, axis=-1)
    assert np.median(err[flow.visible]) < 0.01, np.median(err[flow.visible])
    # refuses to overwrite
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode != 0 and "exists" in res.stderr and "--overwrite" in res.stderr
    from flows.__main__ import main  # the same entry point, in-process (faster)

    assert main([str(a) for a in args] + ["--overwrite", "--no-progress", "--max-points", "64"]) == 0
    assert ObjectFlow.load(out).num_points <= 64
    # show: 3D plot and video overlay
    assert main(["show", str(out), "-o", str(tmp_path / "flow.png")]) == 0
    assert (tmp_path / "flow.png").stat().st_size > 1000
    assert main(["show", str(out), "--video", str(video), "-o", str(tmp_path / "overlay.mp4")]) == 0
    over, _ = read_video(tmp_path / "overlay.mp4")
    assert over.shape == frames.shape


# ---------------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_file_and_the_field(tmp_path, capsys):
    scene = PlaneScene(T=6, W=64, H=48)
    video, frames, depth = write_inputs(tmp_path, scene)
    cam = tmp_path / "camera.json"
    base = dict(camera=cam, mask=tmp_path / "mask.png", object_name="plate", progress=False)
    # missing video
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        extract_flow(tmp_path / "nope.mp4", depth_data=tmp_path / "depth.npz", **base)
    # unreadable video
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(VideoError, match="broken.mp4"):
        extract_flow(bad, depth_data=tmp_path / "depth.npz", **base)
    # frame count mismatch between video and depth
    np.savez(tmp_path / "short.npz", depth=depth[:4])
    with pytest.raises(DepthError, match=r"short\.npz.*'depth'.*4 frames.*6"):
        extract_flow(video, depth_data=tmp_path / "short.npz", **base)
    np.savez(tmp_path / "nokey.npz", z=depth)
    with pytest.raises(DepthError, match=r"nokey\.npz.*'depth'.*missing"):
        load_depth(tmp_path / "nokey.npz")
    np.savez(tmp_path / "unit.npz", depth=depth, unit="furlong")
    with pytest.raises(DepthError, match=r"unit\.npz.*'unit'"):
        load_depth(tmp_path / "unit.npz")
    # camera.json without K / fx
    data = json.loads(cam.read_text())
    del data["K"]
    (tmp_path / "noK.json").write_text(json.dumps(data))
    with pytest.raises(CameraError, match=r"noK\.json.*'K'.*fx"):
        Camera.load(tmp_path / "noK.json")
    data.update(fx=80.0, fy=80.0, cx=31.5)  # cy missing
    (tmp_path / "nocy.json").write_text(json.dumps(data))
    with pytest.raises(CameraError, match=r"nocy\.json.*'K'.*cy"):
        Camera.load(tmp_path / "nocy.json")
    data["cy"] = 23.5
    (tmp_path / "fxfy.json").write_text(json.dumps(data))
    assert Camera.load(tmp_path / "fxfy.json").K[1, 2] == 23.5
    data["T_world_camera"] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    (tmp_path / "badT.json").write_text(json.dumps(data))
    with pytest.raises(CameraError, match=r"badT\.json.*'T_world_camera'.*4x4"):
        Camera.load(tmp_path / "badT.json")
    # camera image size differs from the video's
    data = json.loads(cam.read_text())
    data["width"] = 65
    (tmp_path / "wide.json").write_text(json.dumps(data))
    with pytest.raises(CameraError, match=r"wide\.json.*'width'"):
        extract_flow(video, depth_data=tmp_path / "depth.npz", **{**base, "camera": tmp_path / "wide.json"})
    # the CLI reports the same errors in one line, exit code 1
    res = run_cli("extract", video, "--object", "plate", "--camera", tmp_path / "noK.json", "--depth",
                  tmp_path / "depth.npz", "--mask", tmp_path / "mask.png", "-o", tmp_path / "f.npz", cwd=tmp_path)
    assert res.returncode == 1 and "noK.json" in res.stderr and "'K'" in res.stderr
    assert "Traceback" not in res.stderr
    from flows.__main__ import main

    code = main(["extract", str(tmp_path / "missing.mp4"), "--object", "plate", "--camera", str(cam), "--depth",
                 str(tmp_path / "depth.npz"), "--mask", str(tmp_path / "mask.png"), "-o", str(tmp_path / "f.npz")])
    assert code == 1 and "missing.mp4" in capsys.readouterr().err


# ---------------------------------------------------------------------- model-backed stages (torch)
@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest (and steadiest on a busy CI box) on one thread."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FakeCoTrackerPredictor:
    """Test double with CoTracker3's predictor call signature; checks the input conventions.

    Each query moves by (+1, +0.5) px per frame; query 0 is occluded from frame 2 on.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, video, queries=None, segm_mask=None, grid_size=0, grid_query_frame=0, backward_tracking=False):
        import torch

        self.calls.append((video, queries))
        assert isinstance(video, torch.Tensor) and video.dtype == torch.float32 and video.ndim == 5
        B, T, C, H, W = video.shape
        assert B == 1 and C == 3
        assert queries.shape[0] == 1 and queries.shape[2] == 3 and queries.dtype == torch.float32
        N = queries.shape[1]
        step = torch.arange(T, dtype=torch.float32)[:, None, None] * torch.tensor([1.0, 0.5])
        tracks = queries[0, :, 1:][None] + step  # (T, N, 2)
        vis = torch.ones(T, N, dtype=torch.bool)
        vis[2:, 0] = False
        return tracks[None], vis[None]


def test_cotracker_adapter_conventions_with_a_test_double():
    import torch
    from flows.extract import CoTrackerTracker

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, size=(5, 24, 32, 3), dtype=np.uint8)
    q = np.array([[3.0, 4.0], [10.5, 7.25], [30.0, 20.0]], np.float32)
    fake = FakeCoTrackerPredictor()
    done = []
    tracks, vis = CoTrackerTracker(model=fake, device="cpu").track(video, q, progress=done.append)
    v, qq = fake.calls[0]
    assert v.shape == (1, 5, 3, 24, 32)
    assert torch.equal(v[0, 2, :, 5, 7], torch.from_numpy(video[2, 5, 7].astype(np.float32)))  # 0..255, channels first
    assert qq.shape == (1, 3, 3) and torch.all(qq[0, :, 0] == 0)  # rows (t=0, x, y)
    np.testing.assert_array_equal(qq[0, :, 1:].numpy(), q)
    assert tracks.shape == (5, 3, 2) and tracks.dtype == np.float32 and vis.shape == (5, 3) and vis.dtype == bool
    np.testing.assert_allclose(tracks[4], q + [4.0, 2.0])
    assert vis[:2].all() and not vis[2:, 0].any() and vis[:, 1:].all()
    assert sum(done) == 5


def test_cotracker_missing_package_says_how_to_install(tmp_path, monkeypatch):
    import torch  # noqa: F401
    from flows.extract import CoTrackerTracker

    ckpt = tmp_path / "scaled_offline.pth"
    ckpt.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "cotracker", None)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", None)
    with pytest.raises(ImportError, match=r"not on PyPI.*git clone https://github.com/facebookresearch/co-tracker"):
        CoTrackerTracker(checkpoint=str(ckpt)).track(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((1, 2), np.float32))


def tiny_depth_anything(path: Path, kind: str = "metric") -> Path:
    """A ~137k-parameter random Depth Anything V2 saved with save_pretrained (no download)."""
    import torch
    import transformers
    torch.manual_seed(0)
    backbone = transformers.Dinov2Config(
        image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
    )
    cfg = transformers.DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type=kind, max_depth=2,
    )
    model = transformers.DepthAnythingForDepthEstimation(cfg)
    assert sum(p.numel() for p in model.parameters()) < 200_000
    model.save_pretrained(path)
    return path


def test_depth_anything_tiny_model_round_trips_and_is_calibrated(tmp_path, one_torch_thread):
    from flows.extract import DepthAnythingDepth
    from flows.extract.depth.depth_anything import preprocess

    x = preprocess(np.zeros((2, 48, 64, 3), np.uint8), input_size=56)
    assert x.shape == (2, 3, 56, 70) and x.shape[2] % 14 == 0 and x.shape[3] % 14 == 0
    video = np.random.default_rng(0).integers(0, 256, size=(3, 48, 64, 3), dtype=np.uint8)
    # metric model: (T, H, W) metres; scale calibration to a reference of frame 0 over the mask
    est = DepthAnythingDepth(model=str(tiny_depth_anything(tmp_path / "metric", "metric")), input_size=56)
    raw = est.predict(video)
    assert est.kind == "metric" and raw.shape == (3, 48, 64) and np.all(np.isfinite(raw)) and np.all(raw > 0)
    assert est.estimate(video, depth_data=None).shape == (3, 48, 64)
    ref = np.full((48, 64), 0.7, np.float32)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    depth = est.estimate(video, depth_data=ref, mask=mask)
    s = est.last_calibration["scale"]
    assert est.last_calibration["space"] == "depth"
    np.testing.assert_allclose(s, (raw[0][mask] @ ref[mask]) / (raw[0][mask] @ raw[0][mask]), rtol=1e-4)
    np.testing.assert_allclose(depth, s * raw, rtol=1e-5)
    # relative model: disparity, needs a reference; registered by name
    rel = DEPTH_ESTIMATORS.create("depth-anything", model=str(tiny_depth_anything(tmp_path / "rel", "relative")),
                                  input_size=56, calibration="scale-shift")
    assert rel.predict(video[:1]).shape == (1, 48, 64) and rel.kind == "relative"
    with pytest.raises(ValueError, match="reference depth"):
        rel.estimate(video)


def tiny_sam2(path: Path) -> Path:
    """A ~124k-parameter random SAM 2 (256x256 input) saved with save_pretrained (no download)."""
    import torch  # noqa: F401
    import transformers
    assert hasattr(transformers, "Sam2Model"), "the test extra needs transformers >= 4.56 (SAM 2)"
    from transformers import (Sam2Config, Sam2HieraDetConfig, Sam2MaskDecoderConfig, Sam2Model,
                              Sam2PromptEncoderConfig, Sam2VisionConfig)

    S = 256
    hiera = Sam2HieraDetConfig(
        hidden_size=8, num_attention_heads=1, image_size=[S, S], blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[8, 4, 4, 4], global_attention_blocks=[3], window_positional_embedding_background_size=[4, 4],
    )
    vision = Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=[64, 32, 16, 8],
                              backbone_feature_sizes=[[S // 4] * 2, [S // 8] * 2, [S // 16] * 2], fpn_hidden_size=32)
    cfg = Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=S, patch_size=16, mask_input_channels=4),
        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
    Sam2Model(cfg).save_pretrained(path)
    return path


def test_grounded_sam_segmenter_runs_a_tiny_sam2_from_a_local_folder(tmp_path, one_torch_thread):
    from flows.extract import MASKERS, GroundedSamMasker

    seg = str(tiny_sam2(tmp_path / "sam2"))

    class BoxDetectorStub(GroundedSamMasker):
        """Grounding DINO replaced by a fixed box (no tiny Grounding DINO + tokenizer is built here)."""

        def detect(self, frame0, object_name):
            assert object_name == "mug"
            return np.array([10.0, 8.0, 40.0, 30.0]), 0.9

    img = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    masker = BoxDetectorStub(detector=str(tmp_path / "no-detector"), segmenter=seg, device="cpu")
    masker._load_segmenter()
    pixel_values, boxes = masker.sam_inputs(img, np.array([10.0, 8.0, 40.0, 30.0]))
    assert masker.sam_size == 256 and tuple(pixel_values.shape) == (1, 3, 256, 256)
    np.testing.assert_allclose(boxes.numpy(), [[[40.0, 8 * 256 / 48, 160.0, 30 * 256 / 48]]], rtol=1e-6)
    mask = masker(img, "mug")
    assert mask.shape == (48, 64) and mask.dtype == bool
    assert isinstance(MASKERS.create("grounded-sam", segmenter=seg), GroundedSamMasker)
    # the real detector path gives a clear error when the weights are not there
    with pytest.raises(OSError, match="no-detector.*Grounding DINO"):
        GroundedSamMasker(detector=str(tmp_path / "no-detector"), segmenter=seg, device="cpu").detect(img, "mug")


def test_weight_free_extraction_runs_without_torch(tmp_path):
    """flows.extract imports, and LK + measured depth run, with torch blocked."""
    code = f"""
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "transformers") or name.startswith(("torch.", "transformers.")):
            raise ImportError("blocked in this test")
sys.meta_path.insert(0, _NoTorch())
sys.path.insert(0, {str(ROOT / 'tests')!r})
from test_extract import PlaneScene
from flows.extract import extract_flow
scene = PlaneScene(T=6, W=64, H=48)
frames, depth = scene.render()
flow = extract_flow(frames, scene.camera, mask=scene.mask0, depth_data=depth, progress=False, max_points=32)
assert flow.num_frames == 6
assert "torch" not in sys.modules and "transformers" not in sys.modules
print("OK")
"""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stderr


def test_write_video_refuses_odd_sized_mp4_instead_of_an_empty_file(tmp_path):
    frames = np.zeros((3, 15, 20, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="even width and height, got 20x15"):
        write_video(tmp_path / "odd.mp4", frames)
    assert not (tmp_path / "odd.mp4").exists() or (tmp_path / "odd.mp4").stat().st_size == 0
    assert read_video(write_video(tmp_path / "odd_frames", frames))[0].shape == (3, 15, 20, 3)  # PNG folder: fine
