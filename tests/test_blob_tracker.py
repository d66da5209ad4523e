"""The blob tracker for granular objects (flows/extract/trackers/blob.py, ``extract --tracker blob``)."""
from __future__ import annotations

import numpy as np
import pytest

import cv2  # noqa: F401  the extract extra (installed by the test extra): a missing cv2 fails here, never skips

from flows.extract import TRACKERS
from flows.extract.trackers.blob import BlobTracker

YELLOW = (240, 220, 90)
BROWN = (150, 120, 90)


def pieces_video(T=30, W=96, H=64):
    """Small yellow pieces (3 x 7 px) on a brown checkerboard, moving at known constant velocities; a grey
    occluder (a brush) hides piece 2 in frames 10..14. Returns (frames, frame-0 mask, centres (T, P, 2))."""
    start = np.array([[15.0, 15.0], [15.0, 45.0], [50.0, 30.0], [80.0, 50.0]])
    vel = np.array([[1.5, 0.0], [1.0, -0.3], [-0.8, -0.4], [0.0, 0.0]])
    centres = start[None] + np.arange(T)[:, None, None] * vel[None]
    yy, xx = np.mgrid[:H, :W]
    board = np.where(((xx // 8 + yy // 8) % 2)[..., None] == 0, np.array(BROWN), np.array(BROWN) - 20)
    frames = np.zeros((T, H, W, 3), np.uint8)
    mask0 = np.zeros((H, W), bool)
    for t in range(T):
        img = board.copy()
        for c in centres[t]:
            on = (np.abs(xx - c[0]) <= 3) & (np.abs(yy - c[1]) <= 1)
            img[on] = YELLOW
            if t == 0:
                mask0 |= on
        if 10 <= t <= 14:
            x = int(round(centres[t, 2, 0]))
            img[20:42, x - 5:x + 6] = (120, 120, 130)
        frames[t] = img
    return frames, mask0, centres


def test_pieces_are_followed_hidden_ones_lost_and_picked_up_again():
    frames, mask0, centres = pieces_video()
    queries = centres[0] + [1.0, 0.0]  # a point on each piece, 1 px right of its centre
    trk = TRACKERS.create("blob")
    assert isinstance(trk, BlobTracker) and trk.uses_mask
    tracks, vis = trk.track(frames, queries, mask=mask0)
    assert tracks.shape == (30, 4, 2) and vis.shape == (30, 4)
    err = np.linalg.norm(tracks - (centres + [1.0, 0.0]), axis=-1)
    assert err[vis].max() < 1.5, err[vis].max()
    assert not vis[10:15, 2].any()  # under the occluder: not visible
    assert vis[16:, 2].all() and err[16:, 2].max() < 1.5  # reacquired where it came out
    assert vis[:, [0, 1, 3]].all()


def test_the_blob_tracker_needs_the_mask_and_the_pipeline_passes_it():
    from flows.extract import extract_flow
    from flows.extract.camera import Camera

    frames, mask0, centres = pieces_video(T=6)
    with pytest.raises(ValueError, match="needs the object's frame-0 mask"):
        BlobTracker().track(frames, centres[0])
    H, W = mask0.shape
    K = np.array([[80.0, 0, (W - 1) / 2], [0, 80.0, (H - 1) / 2], [0, 0, 1]])
    cam = Camera(K=K, T_world_camera=np.eye(4), width=W, height=H)
    flow = extract_flow(frames, cam, mask=mask0, tracker="blob", depth_data=np.full((6, H, W), 0.5, np.float32),
                        progress=False, max_points=16)
    assert flow.source["tracker"] == "blob" and flow.visible.all()
    assert flow.extra["extraction"]["tracker_settings"]["reacquire"] is None  # no limit (JSON has no inf)
    with pytest.raises(ValueError, match="colour_bins must divide 256"):
        BlobTracker(colour_bins=10)
