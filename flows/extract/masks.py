"""Object masks on the first frame and the query points sampled from them.

Maskers (registry :data:`MASKERS`), all ``masker(frame0, object_name) -> (H, W) bool``:

* ``"file"``: :class:`MaskFileMasker`, a user mask image (PNG; object = pixels
  above half the image's maximum, so 0/1, 0/255 and 0/65535 masks all work);
* ``"full-frame"``: :class:`FullFrameMasker`, the whole image (for videos that
  only show the object);
* ``"grounded-sam"``: :class:`GroundedSamMasker`, text-prompted detection with
  Grounding DINO then box-prompted segmentation with SAM 2 (transformers
  ``GroundingDinoForObjectDetection`` + ``Sam2Model``; needs ``torch`` and
  ``transformers>=4.56`` and the weights, from the hub or a local folder).

Query points: :func:`sample_query_points` with ``method="fps"``
(farthest-point sampling on the eroded mask) or ``method="features"``
(Shi-Tomasi good-features-to-track inside the eroded mask, topped up by
farthest-point sampling when the object has too little texture).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..ops import farthest_point_sampling
from .registry import MASKERS

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class MaskError(ValueError):
    """A mask is missing, unreadable, of the wrong size or empty."""


def load_mask(path: str | os.PathLike, shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Read a mask image as (H, W) bool; ``shape`` (H, W) checks its size."""
    import imageio.v2 as imageio

    where = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: no such mask file")
    try:
        img = np.asarray(imageio.imread(path))
    except Exception as exc:
        raise MaskError(f"{where}: unreadable mask image ({type(exc).__name__}: {exc})") from None
    if img.ndim == 3:
        img = img[..., 3] if img.shape[-1] == 4 and img[..., 3].min() != img[..., 3].max() else img[..., :3].max(axis=-1)
    if img.ndim != 2:
        raise MaskError(f"{where}: expected a 2D mask image, got shape {img.shape}")
    top = float(img.max()) if img.size else 0.0
    mask = img.astype(np.float64) > 0.5 * top if top > 0 else np.zeros(img.shape, dtype=bool)
    return check_mask(mask, shape, where)


def check_mask(mask: np.ndarray, shape: Optional[Sequence[int]], where: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MaskError(f"{where}: expected an (H, W) mask, got shape {mask.shape}")
    if shape is not None and tuple(mask.shape) != tuple(shape[:2]):
        raise MaskError(f"{where}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) does not match the video's "
                        f"{shape[1]}x{shape[0]}")
    mask = mask.astype(bool)
    if not mask.any():
        raise MaskError(f"{where}: the mask is empty (no object pixel)")
    return mask


@MASKERS.register("file")
class MaskFileMasker:
    """The object mask from a user image file (ignores the object name)."""

    name = "file"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __call__(self, frame0: np.ndarray, object_name: str = "") -> np.ndarray:
        return load_mask(self.path, np.asarray(frame0).shape[:2])


@MASKERS.register("full-frame")
class FullFrameMasker:
    """Every pixel is the object."""

    name = "full-frame"

    def __call__(self, frame0: np.ndarray, object_name: str = "") -> np.ndarray:
        return np.ones(np.asarray(frame0).shape[:2], dtype=bool)


@MASKERS.register("grounded-sam")
class GroundedSamMasker:
    """Grounding DINO (text -> box) + SAM 2 (box -> mask), both through ``transformers``.

    ``detector`` / ``segmenter``: hub ids or local folders (as written by
    ``save_pretrained``). The highest-scoring box for ``object_name`` prompts
    SAM 2, whose mask is returned. SAM 2's image pre/post-processing is done
    here (resize to 1024x1024, ImageNet normalisation; low-resolution mask
    logits resized bilinearly to the image and thresholded at 0) because
    transformers' ``Sam2Processor`` needs torchvision.
    """

    name = "grounded-sam"

    def __init__(
        self,
        detector: str = "IDEA-Research/grounding-dino-tiny",
        segmenter: str = "facebook/sam2.1-hiera-small",
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        device: Optional[str] = None,
        sam_size: Optional[int] = None,
    ):
        self.detector_id = str(detector)
        self.segmenter_id = str(segmenter)
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.device = device
        self.sam_size = sam_size
        self._det = None
        self._det_proc = None
        self._sam = None

    # -------------------------------------------------------------- loading
    def _import(self):
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"the grounded-sam masker needs torch and transformers>=4.56 ({exc}); "
                "pip install torch 'transformers>=4.56', or give a mask file (--mask)"
            ) from exc
        self._torch = torch
        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def _load_detector(self):
        if self._det is not None:
            return
        self._import()
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        try:
            self._det_proc = AutoProcessor.from_pretrained(self.detector_id, use_fast=False)
            self._det = GroundingDinoForObjectDetection.from_pretrained(self.detector_id).to(self.device).eval()
        except (OSError, ValueError) as exc:  # ValueError: HFValidationError for a bad id / missing folder
            raise OSError(f"{self.detector_id}: cannot load the Grounding DINO detector ({exc})") from exc

    def _load_segmenter(self):
        if self._sam is not None:
            return
        self._import()
        try:
            from transformers import Sam2Model
        except ImportError as exc:
            raise ImportError(f"the grounded-sam masker needs transformers>=4.56 for SAM 2 ({exc})") from exc
        try:
            self._sam = Sam2Model.from_pretrained(self.segmenter_id).to(self.device).eval()
        except (OSError, ValueError) as exc:  # ValueError: HFValidationError for a bad id / missing folder
            raise OSError(f"{self.segmenter_id}: cannot load the SAM 2 segmenter ({exc})") from exc
        if self.sam_size is None:  # the prompt encoder's input resolution (1024 for the released models)
            self.sam_size = int(getattr(self._sam.config.prompt_encoder_config, "image_size", 1024))

    # -------------------------------------------------------------- stages
    def detect(self, frame0: np.ndarray, object_name: str) -> tuple[np.ndarray, float]:
        """Best box ``[x0, y0, x1, y1]`` (pixels) for ``object_name`` and its score."""
        self._load_detector()
        torch = self._torch
        text = object_name.strip().lower()
        text = text if text.endswith(".") else text + "."
        H, W = frame0.shape[:2]
        inputs = self._det_proc(images=frame0, text=text, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self._det(**inputs)
        try:
            res = self._det_proc.post_process_grounded_object_detection(
                out, inputs["input_ids"], threshold=self.box_threshold,
                text_threshold=self.text_threshold, target_sizes=[(H, W)],
            )[0]
        except TypeError:  # older transformers: box_threshold=
            res = self._det_proc.post_process_grounded_object_detection(
                out, inputs["input_ids"], box_threshold=self.box_threshold,
                text_threshold=self.text_threshold, target_sizes=[(H, W)],
            )[0]
        scores = res["scores"].detach().cpu().numpy()
        if scores.size == 0:
            raise MaskError(f"grounded-sam: no '{object_name}' found in frame 0 (box threshold {self.box_threshold}); "
                            "lower it or give a mask file")
        best = int(np.argmax(scores))
        box = res["boxes"][best].detach().cpu().numpy().astype(np.float64)
        box = np.clip(box, [0, 0, 0, 0], [W - 1, H - 1, W - 1, H - 1])
        return box, float(scores[best])

    def sam_inputs(self, frame0: np.ndarray, box: np.ndarray):
        """SAM 2 pixel_values (1,3,S,S) and input_boxes (1,1,4) for one RGB frame and one pixel box."""
        import cv2

        torch = self._torch
        S = int(self.sam_size)
        H, W = frame0.shape[:2]
        img = cv2.resize(frame0, (S, S), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        img = (img - IMAGENET_MEAN) / IMAGENET_STD
        pixel_values = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
        b = np.asarray(box, dtype=np.float32) * np.array([S / W, S / H, S / W, S / H], dtype=np.float32)
        return pixel_values.to(self.device), torch.from_numpy(b)[None, None].to(self.device)

    def segment(self, frame0: np.ndarray, box: np.ndarray) -> np.ndarray:
        """SAM 2 mask (H, W) bool for a pixel box."""
        self._load_segmenter()
        torch = self._torch
        H, W = frame0.shape[:2]
        pixel_values, input_boxes = self.sam_inputs(frame0, box)
        with torch.no_grad():
            out = self._sam(pixel_values=pixel_values, input_boxes=input_boxes, multimask_output=False)
        logits = out.pred_masks[0, 0]  # (num_masks, h, w)
        best = int(torch.argmax(out.iou_scores[0, 0])) if out.iou_scores is not None else 0
        up = torch.nn.functional.interpolate(logits[best][None, None].float(), (H, W), mode="bilinear", align_corners=False)
        return (up[0, 0] > 0).cpu().numpy()

    def __call__(self, frame0: np.ndarray, object_name: str = "") -> np.ndarray:
        if not object_name:
            raise MaskError("grounded-sam: needs an object name (the text prompt)")
        frame0 = np.ascontiguousarray(np.asarray(frame0, dtype=np.uint8))
        box, _ = self.detect(frame0, object_name)
        mask = self.segment(frame0, box)
        if not mask.any():
            raise MaskError(f"grounded-sam: SAM 2 returned an empty mask for '{object_name}'")
        return mask


# ---------------------------------------------------------------------- query points
def erode_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Erode by ``pixels``; falls back to less erosion when the object would vanish."""
    import cv2

    mask = np.asarray(mask, dtype=bool)
    for p in range(int(pixels), 0, -1):
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * p + 1, 2 * p + 1))
        er = cv2.erode(mask.astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        if er.sum() >= 16:
            return er
    return mask


def sample_query_points(
    mask: np.ndarray,
    max_points: int = 1024,
    method: str = "fps",
    frame: Optional[np.ndarray] = None,
    erode: int = 3,
    seed: int = 0,
) -> np.ndarray:
    """Query pixels ``(N, 2)`` float32 (x, y), ``N <= max_points``, inside the eroded ``mask``.

    ``method="fps"``: farthest-point sampling over the mask's pixels.
    ``method="features"``: Shi-Tomasi corners of ``frame`` (needed) inside the
    mask, the strongest first, topped up with farthest-point samples when
    fewer than ``max_points // 4`` corners are found.
    """
    if max_points <= 0:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    mask = erode_mask(mask, erode)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise MaskError("the object mask is empty")
    pix = np.stack([xs, ys], axis=1).astype(np.float64)
    if method == "fps":
        if pix.shape[0] > 200_000:  # thin out huge masks first; FPS is O(M k)
            rng = np.random.default_rng(seed)
            pix = pix[rng.choice(pix.shape[0], 200_000, replace=False)]
        return pix[farthest_point_sampling(pix, max_points, seed=seed)].astype(np.float32)
    if method != "features":
        raise ValueError(f"unknown query method {method!r}; use 'fps' or 'features'")
    if frame is None:
        raise ValueError("query method 'features' needs the frame")
    import cv2

    gray = cv2.cvtColor(np.asarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    area = float(mask.sum())
    min_dist = max(1.0, 0.5 * np.sqrt(area / max_points))
    corners = cv2.goodFeaturesToTrack(gray, maxCorners=int(max_points), qualityLevel=0.01, minDistance=min_dist,
                                      mask=mask.astype(np.uint8) * 255, blockSize=7)
    pts = np.zeros((0, 2)) if corners is None else corners.reshape(-1, 2).astype(np.float64)
    if pts.shape[0] < max(1, max_points // 4):
        fill = farthest_point_sampling(pix, max(1, max_points - pts.shape[0]), seed=seed)
        pts = np.concatenate([pts, pix[fill]])
    return pts[:max_points].astype(np.float32)
