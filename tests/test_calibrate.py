"""Camera-to-robot calibration (flows.extract.calibrate, ``python -m flows calibrate``).

A known camera looks at the table from 1 m; markers spread over the workspace are projected with
0.3 px of noise. What a user relies on: the fit recovers the pose to a few mm, a camera.json that is
1 cm off is reported as not calibrated (exit 2) and a good one as OK (exit 0), a depth frame's
disagreement shows in mm, and broken pair files name the file, the line and the column.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from flows.__main__ import main
from flows.extract.calibrate import CalibrationError, check_extrinsics, load_correspondences, solve_extrinsics
from flows.extract.camera import Camera


def look_at(eye, target):
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)  # OpenCV axes: x right, y down, z forward
    T[:3, 3] = eye
    return T


CAMERA = Camera(K=[[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]],
                T_world_camera=look_at(np.array([0.9, 0.3, 0.8]), [0.2, 0.0, 0.0]), width=640, height=480)


@pytest.fixture
def pairs():
    rng = np.random.default_rng(0)
    points = rng.uniform([-0.1, -0.3, 0.0], [0.5, 0.3, 0.3], size=(12, 3))  # the arm's workspace, several heights
    uv, _ = CAMERA.project(points)
    return points, uv + rng.normal(0, 0.3, uv.shape)


def write_csv(path, points, pixels):
    rows = ["x,y,z,u,v"] + [",".join(f"{v:.6f}" for v in (*p, *q)) for p, q in zip(points, pixels)]
    path.write_text("\n".join(rows) + "\n")
    return path


def offset(camera, dx):
    T = camera.T_world_camera.copy()
    T[:3, 3] += dx
    return Camera(K=camera.K, T_world_camera=T, width=camera.width, height=camera.height)


def test_solve_recovers_the_camera_pose(pairs):
    start = offset(CAMERA, [0.05, -0.05, 0.03])  # a rough guess: only its K is used
    fitted, check = solve_extrinsics(start, *pairs)
    assert np.linalg.norm(fitted.T_world_camera[:3, 3] - CAMERA.T_world_camera[:3, 3]) < 0.003
    dR = fitted.T_world_camera[:3, :3].T @ CAMERA.T_world_camera[:3, :3]
    assert np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1))) < 0.3
    assert check.median_px < 0.6 and check.ok()


def test_check_flags_a_centimetre_of_pose_error(pairs):
    assert check_extrinsics(CAMERA, *pairs).ok()
    bad = check_extrinsics(offset(CAMERA, [0.01, 0.0, 0.0]), *pairs)
    assert bad.median_px > 3 and not bad.ok()


def test_depth_check_reports_the_depth_frames_disagreement(pairs):
    points, pixels = pairs
    _, z = CAMERA.project(points)
    depth = np.zeros((480, 640))  # 0: no reading, except at the markers' pixels
    px = np.rint(pixels).astype(int)
    depth[px[:, 1], px[:, 0]] = z + 0.02  # the depth camera reads 2 cm too far
    check = check_extrinsics(CAMERA, points, pixels, depth)
    assert check.median_depth_error_m == pytest.approx(0.02, abs=1e-6) and not check.ok()


def test_cli_check_and_solve(pairs, tmp_path, capsys):
    csv = write_csv(tmp_path / "pairs.csv", *pairs)
    good, bad = tmp_path / "camera.json", tmp_path / "bad.json"
    CAMERA.save(good)
    offset(CAMERA, [0.0, 0.01, 0.0]).save(bad)
    assert main(["calibrate", str(csv), "--camera", str(good)]) == 0
    assert "OK: median" in capsys.readouterr().out
    assert main(["calibrate", str(csv), "--camera", str(bad)]) == 2
    assert "NOT CALIBRATED" in capsys.readouterr().out
    out = tmp_path / "calibrated.json"
    assert main(["calibrate", str(csv), "--camera", str(bad), "--solve", "-o", str(out)]) == 0
    assert "OK: median" in capsys.readouterr().out
    fitted = Camera.load(out)
    assert np.abs(fitted.T_world_camera[:3, 3] - CAMERA.T_world_camera[:3, 3]).max() < 0.003
    assert json.loads(bad.read_text())["T_world_camera"] == offset(CAMERA, [0.0, 0.01, 0.0]).T_world_camera.tolist()
    # the fitted file is never replaced silently
    assert main(["calibrate", str(csv), "--camera", str(bad), "--solve", "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize("text, field", [
    ("x,y,z,u\n", "header"),
    ("x,y,z,u,v\n0,0,0,1,oops\n", "v (line 2)"),
    ("x,y,z,u,v\n0,0,nan,1,1\n", "z (line 2)"),
    ("x,y,z,u,v\n" + "0.1,0.2,0.0,10,10\n" * 3, "rows"),
])
def test_bad_pair_files_name_the_file_and_field(tmp_path, text, field):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    with pytest.raises(CalibrationError) as err:
        load_correspondences(path)
    assert err.value.field == field and str(path) in str(err.value)


def test_collinear_markers_are_refused(tmp_path):
    t = np.linspace(0, 1, 8)[:, None]
    points = np.array([0.0, -0.2, 0.05]) + t * np.array([0.4, 0.3, 0.1])
    uv, _ = CAMERA.project(points)
    with pytest.raises(CalibrationError, match="on a line"):
        solve_extrinsics(CAMERA, points, uv)
