"""Read a video as ``(T, H, W, 3)`` uint8 RGB frames: mp4 (or any ffmpeg format), gif, or a folder of images.

A folder is read in natural order of its file names (``frame_2.png`` before
``frame_10.png``); ``.png``, ``.jpg`` and ``.jpeg`` files are used. Grey frames
become RGB; an alpha channel is dropped. Errors name the file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class VideoError(ValueError):
    """A video exists but cannot be read (corrupt, empty, inconsistent frame sizes)."""


def _natural_key(name: str):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


def _to_rgb_uint8(frame: np.ndarray, where: str) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=-1)
    if f.ndim != 3 or f.shape[-1] not in (1, 3, 4):
        raise VideoError(f"{where}: expected an image of shape (H, W[, 1|3|4]), got {f.shape}")
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    f = f[..., :3]
    if f.dtype == np.uint16:
        f = (f // 257).astype(np.uint8)
    elif f.dtype.kind == "f":
        f = np.clip(np.rint(f * 255.0 if f.max() <= 1.0 else f), 0, 255).astype(np.uint8)
    elif f.dtype != np.uint8:
        f = np.clip(f, 0, 255).astype(np.uint8)
    return f


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural_key(p.name))


def read_video(path: str | os.PathLike, max_frames: Optional[int] = None) -> Tuple[np.ndarray, Optional[float]]:
    """Frames ``(T, H, W, 3)`` uint8 and the file's fps (``None`` when unknown, e.g. a folder)."""
    import imageio.v2 as imageio

    where = str(path)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{where}: no such video file or frame folder")
    fps: Optional[float] = None
    frames = []
    if p.is_dir():
        files = list_frame_files(p)
        if not files:
            raise VideoError(f"{where}: folder has no {'/'.join(IMAGE_SUFFIXES)} frames")
        for f in files[:max_frames]:
            try:
                frames.append(_to_rgb_uint8(imageio.imread(f), str(f)))
            except VideoError:
                raise
            except Exception as exc:
                raise VideoError(f"{f}: unreadable frame ({type(exc).__name__}: {exc})") from None
    else:
        try:
            reader = imageio.get_reader(p) if p.suffix.lower() != ".gif" else None
        except Exception as exc:
            raise VideoError(f"{where}: unreadable video ({type(exc).__name__}: {exc})") from None
        try:
            if reader is None:  # gif: read all frames at once (palette handled by pillow)
                import imageio.v3 as iio

                data = iio.imread(p, index=None)
                if data.ndim == 3 and data.shape[-1] not in (3, 4):  # a single grey frame
                    data = data[None]
                if data.ndim == 3 and data.shape[-1] in (3, 4):  # a single colour frame
                    data = data[None]
                frames = [_to_rgb_uint8(f, where) for f in data[:max_frames]]
                try:
                    dur = iio.immeta(p).get("duration")
                    fps = 1000.0 / float(dur) if dur else None
                except Exception:
                    fps = None
            else:
                with reader:
                    meta = reader.get_meta_data() or {}
                    fps = meta.get("fps")
                    for i, f in enumerate(reader):
                        if max_frames is not None and i >= max_frames:
                            break
                        frames.append(_to_rgb_uint8(f, where))
        except VideoError:
            raise
        except Exception as exc:
            raise VideoError(f"{where}: unreadable video ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise VideoError(f"{where}: the video has no frames")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise VideoError(f"{where}: frames have different sizes {sorted(shapes)}")
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else None
    return np.stack(frames), fps


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 30.0) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames to mp4/gif (by suffix) or, for a path without suffix, a PNG folder."""
    import imageio.v2 as imageio

    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    if path.suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            imageio.imwrite(path / f"{i:05d}.png", f)
    elif path.suffix.lower() == ".gif":
        imageio.mimwrite(path, list(frames), duration=1000.0 / fps, loop=0)
    else:
        h, w = frames.shape[1:3]
        if h % 2 or w % 2:  # H.264 in yuv420p needs even sides; ffmpeg would leave an empty file
            raise ValueError(f"{path}: an mp4 needs an even width and height, got {w}x{h} "
                             "(write a PNG folder (no suffix) or a .gif, or crop/pad the frames)")
        imageio.mimwrite(path, list(frames), fps=fps, quality=9, macro_block_size=1)
        if not path.is_file() or path.stat().st_size == 0:
            raise OSError(f"{path}: ffmpeg wrote no video")
    return path
