"""Dream a task video: start image + instruction -> video, with an image-to-video diffusion model.

The optional first stage of Dream2Flow (arXiv 2512.24766)::

    start image + instruction --(video model, this module)--> video.mp4
        --(python -m flows extract)--> 3D object flow --> dense reward in the envs

Command line (``python -m flows dream``)::

    python -m flows dream --image start.png --prompt "push the T-block into the target" -o video.mp4 \\
        [--model Lightricks/LTX-Video | --model /path/to/pipeline-folder] [--num-frames 97] [--fps 25] \\
        [--steps 50] [--guidance 3] [--seed 0] [--height 480 --width 640] [--negative-prompt TEXT] \\
        [--device cuda] [--dtype bfloat16] [--no-hand-prompt] [--overwrite]
    python -m flows extract video.mp4 --object "T-block" --camera camera.json --depth depth0.npz \\
        --depth-model depth-anything --generator "diffusers:Lightricks/LTX-Video seed=0" -o flow.npz

(``dream`` prints that ``--generator`` string; it is also the sidecar's ``generator`` field.)

From Python::

    from flows.extract.video_model import dream_video
    result = dream_video("start.png", "push the T-block into the target", "video.mp4", model="Lightricks/LTX-Video")
    result.frames  # (T, H, W, 3) uint8, H x W = the start image's size

Models: any ``diffusers`` image-to-video pipeline, as a Hugging Face hub id
or a local folder (``save_pretrained`` / ``huggingface-cli download --local-dir``).
The pipeline class is read from the model's ``model_index.json``; a
text-to-video class whose weights also do image-to-video is swapped for its
image-to-video sibling (:data:`IMAGE_TO_VIDEO_CLASSES`: ``LTXPipeline`` ->
``LTXImageToVideoPipeline``, ``WanPipeline`` -> ``WanImageToVideoPipeline``
for Wan2.2-TI2V-5B); ``pipeline=`` / ``--pipeline`` forces a class. Meant
for LTX-Video (``Lightricks/LTX-Video``, the default: 2B, fast), Wan2.1 I2V
(``Wan-AI/Wan2.1-I2V-14B-480P-Diffusers``), Wan2.2 TI2V
(``Wan-AI/Wan2.2-TI2V-5B-Diffusers``) and CogVideoX I2V
(``THUDM/CogVideoX-5b-I2V``); the tests run the same code on a tiny random
``LTXImageToVideoPipeline`` (real weights are not downloadable offline).
Offline (``HF_HUB_OFFLINE=1``) only the local cache and local folders are used.

Geometry: the extraction stage projects the video with the start image's
camera (``camera.json``), so by default the frames are written at the start
image's size. The model runs at a size of the same aspect ratio with about
the pipeline's default pixel count (sides multiples of 32; ``height`` /
``width`` override it; CogVideoX 1.0 I2V only runs at its 480x720) and the
frames are resized back (``keep_size=False`` / ``--native-size`` keeps the
model's size). The start image is stretched to
the generation size by the pipeline, so stretching back keeps pixels aligned.

Prompting: the paper found that videos of a human hand doing the task move
objects more plausibly than videos of a robot, and the flow is lifted with a
fixed camera, so by default :data:`HAND_PROMPT` and
:data:`STATIC_CAMERA_PROMPT` are appended to the instruction and, when no
negative prompt is given, :data:`HAND_NEGATIVE_PROMPT` is used
(``hand_prompt=False`` / ``--no-hand-prompt`` and ``static_camera_prompt=False``
/ ``--no-static-camera-prompt`` turn them off).

A sidecar JSON next to the video (``video.mp4`` -> ``video.mp4.json``,
:func:`sidecar_path`) records the prompt, model, pipeline class, seed and
settings; its ``generator`` field is the string to pass to
``python -m flows extract --generator``.

Generators are chosen by name from :data:`VIDEO_GENERATORS` (``"diffusers"``);
register others (e.g. a hosted API) with the interface
``generate(image (H,W,3) uint8, prompt, *, negative_prompt=None, num_frames=None,
height=None, width=None, steps=None, guidance=None, fps=None, seed=0,
progress=True) -> (frames (T,h,w,3) uint8, settings dict)`` and a ``name``.

Needs ``torch`` and ``diffusers`` (``pip install 'dream2flow-gym[dream]'``),
imported only when a model is loaded; ``accelerate`` only for ``offload``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .registry import Registry, stage_name
from .video import _to_rgb_uint8, write_video

DEFAULT_MODEL = "Lightricks/LTX-Video"
HAND_PROMPT = ("A single human hand enters the scene and does the task with its fingers; "
               "no robot, robot arm or gripper is in the frame.")
STATIC_CAMERA_PROMPT = "The camera is fixed and does not move."
HAND_NEGATIVE_PROMPT = ("robot, robot arm, gripper, camera motion, zoom, pan, cut, "
                        "morphing objects, blurry, distorted, low quality")
INSTALL_HINT = "pip install 'dream2flow-gym[dream]'"

# text-to-video pipeline classes whose weights also run as image-to-video
IMAGE_TO_VIDEO_CLASSES: Dict[str, str] = {
    "LTXPipeline": "LTXImageToVideoPipeline",
    "WanPipeline": "WanImageToVideoPipeline",  # Wan2.2-TI2V-5B (text + image to video)
}
# output frame rate when the pipeline has no ``frame_rate`` argument (the models' training rates)
DEFAULT_FPS_BY_FAMILY = {"Wan": 16.0, "CogVideoX": 8.0, "HunyuanVideo": 15.0, "LTX": 25.0}
FALLBACK_FPS = 16.0
SIZE_MULTIPLE = 32  # LTX needs multiples of 32; Wan, CogVideoX and HunyuanVideo 16
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

VIDEO_GENERATORS = Registry("video generator")


class DreamError(ValueError):
    """A dream input or model that cannot be used (bad image, not an image-to-video model, ...)."""


# ---------------------------------------------------------------------- helpers
def build_prompt(instruction: str, hand_prompt: bool = True, static_camera_prompt: bool = True) -> str:
    """The instruction with the default suffixes (a human hand, no robot; a fixed camera)."""
    text = " ".join(str(instruction).split())
    if not text:
        raise DreamError("the prompt (task instruction) is empty")
    if text[-1] not in ".!?":
        text += "."
    parts = [text] + ([HAND_PROMPT] if hand_prompt else []) + ([STATIC_CAMERA_PROMPT] if static_camera_prompt else [])
    return " ".join(parts)


def sidecar_path(output: str | os.PathLike) -> Path:
    """The JSON written next to a video: ``video.mp4`` -> ``video.mp4.json`` (a frame folder ``frames`` -> ``frames.json``)."""
    return Path(str(output) + ".json")


def load_image(image: Any) -> Tuple[np.ndarray, Optional[str]]:
    """(H, W, 3) uint8 RGB from a path or an array, and the path (``None`` for an array)."""
    if isinstance(image, (str, os.PathLike)):
        where = str(image)
        if not os.path.isfile(image):
            raise FileNotFoundError(f"{where}: no such image file (the start image, --image)")
        import imageio.v2 as imageio

        try:
            img = imageio.imread(image)
        except Exception as exc:
            raise DreamError(f"{where}: unreadable image ({type(exc).__name__}: {exc})") from None
        img = np.asarray(img)
        if img.ndim == 4:  # an animated image: its first frame
            img = img[0]
        return _to_rgb_uint8(img, where), where
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise DreamError(f"<image array>: expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    return img, None


def _round_to(x: float, m: int) -> int:
    return max(m, int(round(x / m)) * m)


def generation_size(image_hw: Tuple[int, int], area: int, multiple: int = SIZE_MULTIPLE,
                    height: Optional[int] = None, width: Optional[int] = None) -> Tuple[int, int]:
    """(height, width) to generate at: the image's aspect ratio with about ``area`` pixels, sides multiples of
    ``multiple``; a given ``height`` / ``width`` is kept and the missing one follows the aspect ratio."""
    H, W = image_hw
    aspect = W / H
    if height is not None and width is not None:
        return int(height), int(width)
    if height is not None:
        return int(height), _round_to(height * aspect, multiple)
    if width is not None:
        return _round_to(width / aspect, multiple), int(width)
    h = math.sqrt(area / aspect)
    return _round_to(h, multiple), _round_to(h * aspect, multiple)


def _resize_frames(frames: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    from PIL import Image

    H, W = hw
    if frames.shape[1:3] == (H, W):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((W, H), Image.BICUBIC)) for f in frames])


def _to_uint8_frames(video: Any) -> np.ndarray:
    """A pipeline's ``frames[0]`` (np float in [0, 1], torch tensor or a list of PIL images) -> (T, H, W, 3) uint8."""
    if isinstance(video, (list, tuple)):
        return np.stack([np.asarray(f.convert("RGB") if hasattr(f, "convert") else f) for f in video]).astype(np.uint8)
    if hasattr(video, "detach"):  # torch tensor (T, C, H, W) in [0, 1]
        video = video.detach().float().cpu().numpy()
        if video.ndim == 4 and video.shape[1] in (1, 3) and video.shape[-1] not in (1, 3):
            video = video.transpose(0, 2, 3, 1)
    v = np.asarray(video)
    if v.dtype != np.uint8:
        v = np.clip(np.rint(v.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if v.ndim != 4 or v.shape[-1] not in (1, 3):
        raise DreamError(f"the pipeline returned frames of shape {v.shape}; expected (T, H, W, 3)")
    return np.repeat(v, 3, axis=-1) if v.shape[-1] == 1 else v


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


@contextlib.contextmanager
def _loading_bars(enabled: bool):
    """diffusers' and transformers' loading progress bars on or (temporarily) off."""
    libs = []
    if not enabled:
        for name in ("diffusers.utils.logging", "transformers.utils.logging"):
            try:
                lib = importlib.import_module(name)
            except ImportError:
                continue
            if lib.is_progress_bar_enabled():
                lib.disable_progress_bar()
                libs.append(lib)
    try:
        yield
    finally:
        for lib in libs:
            lib.enable_progress_bar()


# ---------------------------------------------------------------------- diffusers
@VIDEO_GENERATORS.register("diffusers")
class DiffusersVideoGenerator:
    """An image-to-video ``diffusers`` pipeline from a hub id or a local folder.

    ``model``: hub id (``org/name``) or a folder with ``model_index.json``.
    ``pipeline``: a diffusers class name that overrides the one in ``model_index.json``.
    ``device``: ``None``/``"auto"`` (cuda, else mps, else cpu) or a torch device string.
    ``dtype``: ``"auto"`` (bfloat16 on cuda, float16 on mps, float32 on cpu), ``"float32"``,
    ``"float16"`` or ``"bfloat16"``. ``offload``: model CPU offload (needs ``accelerate``)
    for GPUs too small for the whole pipeline. ``local_files_only``: never download
    (also with ``HF_HUB_OFFLINE=1``). ``progress``: diffusers' loading bars.
    """

    name = "diffusers"

    def __init__(self, model: str = DEFAULT_MODEL, pipeline: Optional[str] = None, device: Optional[str] = None,
                 dtype: str = "auto", offload: bool = False, revision: Optional[str] = None,
                 local_files_only: bool = False, progress: bool = True):
        if dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise DreamError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
        self.model_id = str(model)
        self.pipeline_class = pipeline
        self.device = None if device in (None, "", "auto") else str(device)
        self.dtype = dtype
        self.offload = bool(offload)
        self.revision = revision
        self.local_files_only = bool(local_files_only)
        self.progress = bool(progress)
        self._pipe = None
        self._torch = None
        self.class_name: Optional[str] = None

    # -------------------------------------------------------------- loading
    def _import(self):
        try:
            import torch
            import diffusers
        except ImportError as exc:
            raise ImportError(f"the dream stage needs torch and diffusers ({exc}); {INSTALL_HINT}") from exc
        self._torch = torch
        return torch, diffusers

    def _local_folder(self) -> Optional[Path]:
        p = Path(self.model_id).expanduser()
        if p.exists():
            if not p.is_dir():
                raise DreamError(f"{self.model_id}: not a folder; --model takes a diffusers pipeline folder "
                                 "(save_pretrained) or a Hugging Face hub id")
            return p
        if not _HUB_ID.match(self.model_id):
            raise FileNotFoundError(f"{self.model_id}: no such model folder (and not a hub id of the form org/name)")
        return None

    def model_index(self) -> Tuple[dict, Optional[Path]]:
        """The model's ``model_index.json`` (read from the folder, or fetched from the hub) and the local folder."""
        folder = self._local_folder()
        if folder is not None:
            f = folder / "model_index.json"
            if not f.is_file():
                raise DreamError(f"{folder}: not a diffusers pipeline folder (no model_index.json); save one with "
                                 "pipe.save_pretrained(folder) or download it with huggingface-cli download")
        else:
            f = self._download_index()
        try:
            return json.loads(Path(f).read_text()), folder
        except (OSError, ValueError) as exc:
            raise DreamError(f"{f}: unreadable model_index.json ({exc})") from None

    def _download_index(self) -> str:
        try:
            from huggingface_hub import hf_hub_download
            from huggingface_hub import errors as hub_errors
        except ImportError as exc:
            raise ImportError(f"the dream stage needs huggingface_hub for hub ids ({exc}); {INSTALL_HINT}") from exc
        mid = self.model_id
        offline = self.local_files_only or _offline()
        try:
            return hf_hub_download(mid, "model_index.json", revision=self.revision, local_files_only=offline)
        except hub_errors.LocalEntryNotFoundError:
            why = "offline mode: HF_HUB_OFFLINE=1" if offline else "no connection to huggingface.co"
            raise OSError(
                f"{mid}: the model weights cannot be downloaded ({why}) and are not in the local Hugging Face cache; "
                f"download them where there is internet (huggingface-cli download {mid} --local-dir DIR), "
                "copy DIR here and pass the local folder: --model DIR") from None
        except (hub_errors.RepositoryNotFoundError, hub_errors.GatedRepoError) as exc:
            raise OSError(f"{mid}: no such model on the Hugging Face hub, or it is private/gated (log in with "
                          f"huggingface-cli login); or pass a local folder with --model ({type(exc).__name__})") from None
        except hub_errors.RevisionNotFoundError:
            raise OSError(f"{mid}: no revision {self.revision!r} on the hub") from None
        except hub_errors.EntryNotFoundError:
            raise DreamError(f"{mid}: not a diffusers pipeline (no model_index.json in the repository)") from None
        except (OSError, ValueError) as exc:  # HFValidationError, network errors
            raise OSError(f"{mid}: cannot fetch model_index.json from the hub ({type(exc).__name__}: {exc}); "
                          "pass a local folder with --model") from None

    def resolve_class(self, diffusers, index: dict):
        """The image-to-video pipeline class for ``index`` (``model_index.json``)."""
        found = index.get("_class_name")
        name = self.pipeline_class or IMAGE_TO_VIDEO_CLASSES.get(found, found)
        if not name:
            raise DreamError(f"{self.model_id}: model_index.json has no _class_name")
        cls = getattr(diffusers, name, None)
        if cls is None or not hasattr(cls, "from_pretrained"):
            raise DreamError(f"{self.model_id}: pipeline class {name!r} is not in diffusers {diffusers.__version__}; "
                             f"upgrade diffusers ({INSTALL_HINT} -U) or pass --pipeline")
        if "image" not in inspect.signature(cls.__call__).parameters:
            raise DreamError(f"{self.model_id}: {name} does not take a start image (not an image-to-video pipeline); "
                             "use an image-to-video model (e.g. Lightricks/LTX-Video, "
                             "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers) or pass --pipeline")
        return cls

    def _torch_dtype(self, torch, device: str):
        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.startswith("mps"):
            return torch.float16
        return torch.float32

    def load(self):
        """Load the pipeline once (on :attr:`device`, in :attr:`dtype`)."""
        if self._pipe is not None:
            return self._pipe
        torch, diffusers = self._import()
        if self.device is None:
            mps = getattr(torch.backends, "mps", None)
            self.device = "cuda" if torch.cuda.is_available() else "mps" if mps and mps.is_available() else "cpu"
        if self.offload:
            try:
                import accelerate  # noqa: F401
            except ImportError as exc:
                raise ImportError(f"--offload (model CPU offload) needs accelerate ({exc}): pip install accelerate") from exc
        index, folder = self.model_index()
        cls = self.resolve_class(diffusers, index)
        self.class_name = cls.__name__
        dtype = self._torch_dtype(torch, self.device)
        from diffusers.pipelines import pipeline_utils

        # diffusers >= 0.40 calls it dtype (torch_dtype is deprecated there), older ones torch_dtype
        kwargs: Dict[str, Any] = {"dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype": dtype}
        if folder is None:
            kwargs.update(revision=self.revision, local_files_only=self.local_files_only or _offline())
        if importlib.util.find_spec("accelerate") is None:  # what diffusers falls back to, without its warning
            kwargs["low_cpu_mem_usage"] = False
        with _loading_bars(self.progress):
            try:
                pipe = cls.from_pretrained(str(folder) if folder is not None else self.model_id, **kwargs)
            except (OSError, ValueError, TypeError) as exc:
                raise OSError(f"{self.model_id}: cannot load the {cls.__name__} pipeline "
                              f"({type(exc).__name__}: {exc})") from exc
        if index.get("_class_name") == "WanPipeline" and cls.__name__ == "WanImageToVideoPipeline" \
                and not getattr(pipe.config, "expand_timesteps", False):
            raise DreamError(f"{self.model_id}: a text-to-video Wan model (WanPipeline without expand_timesteps); "
                             "use an image-to-video one (Wan2.1-I2V, Wan2.2-TI2V-5B)")
        if self.offload:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe = pipe.to(self.device)
        self.torch_dtype = str(dtype).replace("torch.", "")
        self._pipe = pipe
        return pipe

    # -------------------------------------------------------------- generation
    def _defaults(self, pipe) -> Dict[str, Any]:
        params = inspect.signature(pipe.__call__).parameters

        def default(name):
            p = params.get(name)
            return None if p is None or p.default is inspect.Parameter.empty else p.default

        return {k: default(k) for k in ("height", "width", "num_frames", "num_inference_steps", "guidance_scale",
                                        "frame_rate", "max_sequence_length")} | {"_params": set(params)}

    def default_size(self, pipe, d: Dict[str, Any]) -> Tuple[int, int, bool]:
        """The pipeline's default (height, width) and whether it is the only size it runs at (CogVideoX 1.0
        I2V: learned positional embeddings)."""
        h = d["height"] or getattr(pipe, "default_height", None)
        w = d["width"] or getattr(pipe, "default_width", None)
        cfg = getattr(getattr(pipe, "transformer", None), "config", None)
        fixed = bool(getattr(cfg, "use_learned_positional_embeddings", False))
        if not (h and w):  # CogVideoX: the transformer's sample size in latents
            s = getattr(pipe, "vae_scale_factor_spatial", 8)
            if cfg is not None and getattr(cfg, "sample_height", None) and getattr(cfg, "sample_width", None):
                h, w = cfg.sample_height * s, cfg.sample_width * s
            else:
                h, w = 480, 720
        return int(h), int(w), fixed

    def default_fps(self, d: Dict[str, Any]) -> float:
        if d["frame_rate"]:
            return float(d["frame_rate"])
        for family, fps in DEFAULT_FPS_BY_FAMILY.items():
            if (self.class_name or "").startswith(family):
                return fps
        return FALLBACK_FPS

    def generate(self, image: np.ndarray, prompt: str, *, negative_prompt: Optional[str] = None,
                 num_frames: Optional[int] = None, height: Optional[int] = None, width: Optional[int] = None,
                 steps: Optional[int] = None, guidance: Optional[float] = None, fps: Optional[float] = None,
                 seed: int = 0, progress: bool = True) -> Tuple[np.ndarray, Dict[str, Any]]:
        """Frames (T, h, w, 3) uint8 at the generation size, and the settings used."""
        pipe = self.load()
        torch = self._torch
        d = self._defaults(pipe)
        image = np.asarray(image)
        dh, dw, fixed = self.default_size(pipe, d)
        if fixed and height is None and width is None:
            gh, gw = dh, dw
        else:
            gh, gw = generation_size(image.shape[:2], dh * dw, height=height, width=width)
        fps = float(fps) if fps is not None else self.default_fps(d)
        from PIL import Image

        kwargs: Dict[str, Any] = dict(
            image=Image.fromarray(image), prompt=prompt, height=gh, width=gw, output_type="np",
            generator=torch.Generator(device="cpu").manual_seed(int(seed)),
        )
        if negative_prompt is not None:
            kwargs["negative_prompt"] = negative_prompt
        for key, value in (("num_frames", num_frames), ("num_inference_steps", steps), ("guidance_scale", guidance)):
            if value is not None:
                kwargs[key] = value
        if "frame_rate" in d["_params"]:
            kwargs["frame_rate"] = int(round(fps))
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=not progress)
        with torch.inference_mode():
            out = pipe(**kwargs)
        frames = _to_uint8_frames(out.frames[0])
        settings = {
            "pipeline": type(pipe).__name__,
            "num_frames": num_frames if num_frames is not None else d["num_frames"],
            "steps": steps if steps is not None else d["num_inference_steps"],
            "guidance": guidance if guidance is not None else d["guidance_scale"],
            "generation_size": [gw, gh],
            "fps": fps,
            "device": str(self.device),
            "dtype": getattr(self, "torch_dtype", self.dtype),
            "offload": self.offload,
        }
        return frames, settings


# ---------------------------------------------------------------------- the stage
@dataclass
class DreamResult:
    """What :func:`dream_video` wrote: the video, its sidecar JSON, the frames and the metadata."""

    video: Path
    sidecar: Path
    frames: np.ndarray
    fps: float
    metadata: Dict[str, Any] = field(default_factory=dict)


def dream_video(
    image: Any,
    prompt: str,
    output: str | os.PathLike,
    *,
    generator: Any = "diffusers",
    model: Optional[str] = None,
    negative_prompt: Optional[str] = None,
    hand_prompt: bool = True,
    static_camera_prompt: bool = True,
    num_frames: Optional[int] = None,
    fps: Optional[float] = None,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    seed: int = 0,
    height: Optional[int] = None,
    width: Optional[int] = None,
    keep_size: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    generator_options: Optional[Dict[str, Any]] = None,
) -> DreamResult:
    """Generate a video of ``prompt`` from the start ``image`` and write it (mp4/gif, or a PNG folder for a
    path without suffix) plus its sidecar JSON (:func:`sidecar_path`).

    ``generator``: a name in :data:`VIDEO_GENERATORS` (built with ``model`` and ``generator_options``)
    or a generator object. ``None`` settings use the pipeline's defaults. An existing output or sidecar
    is never replaced unless ``overwrite``. See the module docstring for the prompt suffixes and sizes.
    """
    out = Path(output)
    side = sidecar_path(out)
    if not overwrite:
        for p in (out, side):
            if p.exists():
                raise FileExistsError(f"{p}: exists; pass --overwrite (overwrite=True) to replace it")
    for name, value in (("num_frames", num_frames), ("steps", steps), ("height", height), ("width", width)):
        if value is not None and int(value) < 1:
            raise DreamError(f"{name} must be >= 1, got {value}")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise DreamError(f"fps must be > 0, got {fps}")
    img, image_path = load_image(image)
    if keep_size:
        _check_even(out, img.shape[:2])
    full_prompt = build_prompt(prompt, hand_prompt=hand_prompt, static_camera_prompt=static_camera_prompt)
    negative = negative_prompt if negative_prompt is not None else (HAND_NEGATIVE_PROMPT if hand_prompt else None)

    options = dict(generator_options or {})
    if isinstance(generator, str) and model is not None:
        options["model"] = model
    gen = VIDEO_GENERATORS.create(generator, **options)
    t0 = time.perf_counter()
    if callable(getattr(gen, "load", None)):
        gen.load()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames, settings = gen.generate(img, full_prompt, negative_prompt=negative, num_frames=num_frames,
                                    height=height, width=width, steps=steps, guidance=guidance, fps=fps,
                                    seed=seed, progress=progress)
    elapsed = time.perf_counter() - t0
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
        raise DreamError(f"generator {stage_name(gen)!r} returned frames of shape {frames.shape}")
    if num_frames is not None and len(frames) != num_frames:
        print(f"dream: warning: asked for {num_frames} frames, the model made {len(frames)} (its frame count "
              "rule, e.g. 8k+1 for LTX-Video and CogVideoX, 4k+1 for Wan)", file=sys.stderr)
    if keep_size:
        frames = _resize_frames(frames, img.shape[:2])
    _check_even(out, frames.shape[1:3])
    fps_out = float(settings.get("fps") or fps or FALLBACK_FPS)

    model_id = getattr(gen, "model_id", model) or ""
    label = f"{stage_name(gen)}:{model_id}" if model_id else stage_name(gen)
    meta: Dict[str, Any] = {
        "kind": "dream2flow-gym dream video",
        "generator": f"{label} seed={seed}",
        "model": model_id,
        "instruction": prompt,
        "prompt": full_prompt,
        "negative_prompt": negative,
        "hand_prompt": bool(hand_prompt),
        "static_camera_prompt": bool(static_camera_prompt),
        "seed": int(seed),
        "image": image_path or "<array>",
        "image_size": [int(img.shape[1]), int(img.shape[0])],
        "image_sha256": hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest(),
        "video": out.name,
        "frames": int(len(frames)),
        "output_size": [int(frames.shape[2]), int(frames.shape[1])],
        "fps": fps_out,
        "settings": {"requested": {"num_frames": num_frames, "fps": fps, "steps": steps, "guidance": guidance,
                                   "height": height, "width": width, "keep_size": keep_size}, **settings},
        "load_s": round(load_s, 3),
        "elapsed_s": round(elapsed, 3),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == "" and out.is_dir():  # --overwrite of a frame folder: no stale frames of a longer video
        for f in out.iterdir():
            if re.fullmatch(r"\d{5}\.png", f.name):
                f.unlink()
    path = write_video(out, frames, fps=fps_out)
    if path.is_file() and path.stat().st_size == 0:
        raise DreamError(f"{path}: the video writer wrote nothing (ffmpeg failed; see its messages above)")
    side.write_text(json.dumps(meta, indent=2) + "\n")
    return DreamResult(video=path, sidecar=side, frames=frames, fps=fps_out, metadata=meta)


def _check_even(out: Path, hw: Tuple[int, int]) -> None:
    """mp4 (H.264, yuv420p) needs even sides; gif and PNG folders take any size."""
    if out.suffix.lower() not in ("", ".gif") and (hw[0] % 2 or hw[1] % 2):
        raise DreamError(f"{out}: the video would be {hw[1]}x{hw[0]} (WxH) and {out.suffix} (H.264) needs even "
                         "sides; write a .gif or a PNG folder (no suffix), or crop the start image (and its camera)")


def _versions() -> Dict[str, str]:
    out = {}
    for mod in ("diffusers", "transformers", "torch"):
        m = sys.modules.get(mod)
        if m is not None and getattr(m, "__version__", None):
            out[mod] = str(m.__version__)
    return out
