"""Weight-free tracker for granular objects (pasta, beans, pellets): the pieces as blobs of the object's colour.

A point tracker (LK, and CoTracker in good part) follows texture; the pieces of a granular object
are a few pixels across, alike, tumbling, touching each other, and under a brush or a hand for a
while, and LK loses nearly all of them (19 % of the samples visible on the rendered pasta demo,
frames with no piece left). Their colour, though, separates them from the scene. :class:`BlobTracker`:

1. **colour model** from frame 0 and the object's mask: a colour histogram (``colour_bins`` per RGB
   channel) of the mask's pixels and one of the pixels away from it (outside the mask dilated by
   2 pixels); a colour is the object's where it is more often on the object than off it (the two
   histograms normalised to the same total) and seen on it at least twice; then the colours within
   ``colour_tolerance`` bins of those are added, except the ones seen more often off the object
   (the pieces in a shadow or in a bin are a shade darker or tinted than on frame 0);
2. **segmentation** of every later frame with it (frame 0 uses the mask itself); the object's
   connected components (8-connected, at least ``min_area`` pixels) are the detections;
3. **blob tracks**: one per connected component of frame 0's mask that holds a query point, at its
   centroid (a component much larger than the median one, pieces touching, is first split into
   round(area / median area) parts by k-means on its pixels). Frame by frame each track is predicted with its velocity (constant velocity, damped
   while unmatched) and the tracks are matched one-to-one to the detections by the Hungarian
   algorithm on the distance from prediction to centroid, within ``max_jump`` pixels, a gate that
   grows by half of it per frame a track has been unmatched, up to ``reacquire`` pixels (default:
   no limit; a piece that reappears from under the brush, or drops into a bin, is picked up again).
   A track left unmatched whose prediction lies on a detection (within ``merge_radius`` pixels) is
   *merged* into it (pieces touching make one blob): it stays there, measured to be on the object,
   and is matched again when the blob splits. Any other unmatched track is *lost* for the frame:
   not visible, at its prediction; once lost for ``patience`` frames it joins the detection nearest
   its prediction within its gate (a piece lost for good is taken to be in the pile nearest where
   it was lost: for a granular object, where its pieces gather matters more than which is which);
4. **points**: a query point keeps its offset from its blob's centroid and is moved onto the
   nearest object pixel within ``snap`` pixels (so the depth sampled there is the piece's); it is
   visible when its track is matched or merged and it lies on the object.

Identity is kept as far as the blobs allow; where pieces merge, a point may come out of the merged
blob on a neighbour of its piece. For a granular object that matters little (its env's reward is a
Chamfer distance between the pieces and the flow's points, which does not use point identity).
The tracker needs the object mask of frame 0 (``extract_flow`` passes it: ``uses_mask``).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..registry import TRACKERS


def _hungarian(cost: np.ndarray):
    """(rows, cols) of a minimum-cost one-to-one assignment (SciPy's, else greedy by increasing cost)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # pragma: no cover - SciPy comes with the base install (robosuite)
        rows, cols, used_r, used_c = [], [], set(), set()
        for flat in np.argsort(cost, axis=None):
            r, c = np.unravel_index(flat, cost.shape)
            if r not in used_r and c not in used_c:
                rows.append(r), cols.append(c), used_r.add(r), used_c.add(c)
        return np.array(rows, int), np.array(cols, int)
    return linear_sum_assignment(cost)


@TRACKERS.register("blob")
class BlobTracker:
    name = "blob"
    preferred_queries = "fps"
    #: ``track`` takes the object's frame-0 mask (``mask=``)
    uses_mask = True

    def __init__(self, colour_bins: int = 16, colour_tolerance: int = 0, min_area: int = 5, max_jump: float = 12.0,
                 reacquire: float = float("inf"), merge_radius: float = 2.0, patience: int = 10,
                 snap: int = 3, damping: float = 0.7):
        self.colour_bins = int(colour_bins)
        self.colour_tolerance = int(colour_tolerance)
        self.min_area = int(min_area)
        self.max_jump = float(max_jump)
        self.reacquire = float(reacquire)
        self.merge_radius = float(merge_radius)
        self.patience = int(patience)
        self.snap = int(snap)
        self.damping = float(damping)
        if not 2 <= self.colour_bins <= 64 or 256 % self.colour_bins:
            raise ValueError(f"blob tracker: colour_bins must divide 256 and lie in 2..64, got {colour_bins}")
        if self.max_jump <= 0 or self.min_area < 1 or self.snap < 0:
            raise ValueError(f"blob tracker: max_jump must be > 0, min_area >= 1 and snap >= 0, got {max_jump}, "
                             f"{min_area}, {snap}")

    def settings(self) -> dict:
        """The tracker's parameters (recorded in the extracted flow's metadata)."""
        keys = ("colour_bins", "colour_tolerance", "min_area", "max_jump", "reacquire", "merge_radius", "patience",
                "snap", "damping")
        return {k: (getattr(self, k) if np.isfinite(getattr(self, k)) else None) for k in keys}  # JSON: no inf

    # ------------------------------------------------------------------ segmentation
    def _colour_index(self, img: np.ndarray) -> np.ndarray:
        B = self.colour_bins
        q = (img // (256 // B)).astype(np.int64)
        return (q[..., 0] * B + q[..., 1]) * B + q[..., 2]

    def colour_model(self, frame0: np.ndarray, mask0: np.ndarray) -> np.ndarray:
        """(colour_bins ** 3,) bool: the colours that are the object's (see the module docstring)."""
        import cv2

        n = self.colour_bins ** 3
        idx = self._colour_index(frame0)
        near = cv2.dilate(mask0.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        on = np.bincount(idx[mask0], minlength=n).astype(np.float64)
        off = np.bincount(idx[~near], minlength=n).astype(np.float64)
        if off.sum() > 0:
            off *= on.sum() / off.sum()
        lut = ((on > off) & (on >= 2)).reshape((self.colour_bins,) * 3)
        B = self.colour_bins
        for _ in range(self.colour_tolerance):  # grow by a bin in colour space (3x3x3), into no background colour
            pad = np.pad(lut, 1)
            lut = np.zeros_like(lut)
            for dr in range(3):
                for dg in range(3):
                    for db in range(3):
                        lut |= pad[dr:dr + B, dg:dg + B, db:db + B]
        return lut.ravel() & (on >= off)

    def segment(self, frame: np.ndarray, lut: np.ndarray) -> np.ndarray:
        """(H, W) bool: the pixels of the object's colours."""
        return lut[self._colour_index(frame)]

    def _components(self, seg: np.ndarray):
        """(label image, centroids (M, 2) x/y, areas (M,)) of the components of at least ``min_area`` pixels;
        labels 1..M index them, 0 is the rest."""
        import cv2

        n, lab, stats, cent = cv2.connectedComponentsWithStats(seg.astype(np.uint8), connectivity=8)
        keep = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= self.min_area) + 1
        remap = np.zeros(n, np.int32)
        remap[keep] = np.arange(1, keep.size + 1)
        return remap[lab], cent[keep].astype(np.float64), stats[keep, cv2.CC_STAT_AREA]

    @staticmethod
    def _split_touching(lab: np.ndarray, cent: np.ndarray, area: np.ndarray):
        """Frame 0's components with the ones much larger than the typical piece (pieces touching) split
        into round(area / median area) parts (k-means on their pixels): one blob track per piece."""
        import cv2

        if area.size == 0:
            return lab, cent, area
        typical = float(np.median(area))
        lab, cents, areas = lab.copy(), list(cent), list(area)
        for c in np.flatnonzero(area >= 1.5 * typical):
            k = int(round(area[c] / typical))
            ys, xs = np.nonzero(lab == c + 1)
            pix = np.stack([xs, ys], axis=1).astype(np.float32)
            crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 50, 0.1)
            cv2.setRNGSeed(0)
            _, part, centres = cv2.kmeans(pix, k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
            part = part.ravel()
            cents[c], areas[c] = centres[0].astype(np.float64), int((part == 0).sum())
            for j in range(1, k):
                lab[ys[part == j], xs[part == j]] = len(cents) + 1
                cents.append(centres[j].astype(np.float64))
                areas.append(int((part == j).sum()))
        return lab, np.array(cents, dtype=np.float64).reshape(-1, 2), np.array(areas)

    def _snap(self, pts: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``pts`` (N, 2) moved to the nearest object pixel within ``snap`` pixels, and whether there was one."""
        H, W = seg.shape
        r = self.snap
        d = np.arange(-r, r + 1)
        off = np.stack(np.meshgrid(d, d, indexing="xy"), axis=-1).reshape(-1, 2)  # (K, 2) x, y
        base = np.round(pts).astype(np.int64)
        cand = base[:, None] + off[None]  # (N, K, 2)
        inside = (cand[..., 0] >= 0) & (cand[..., 0] < W) & (cand[..., 1] >= 0) & (cand[..., 1] < H)
        cx, cy = np.clip(cand[..., 0], 0, W - 1), np.clip(cand[..., 1], 0, H - 1)
        on = inside & seg[cy, cx]
        dist = np.where(on, np.linalg.norm(cand - pts[:, None], axis=-1), np.inf)
        best = dist.argmin(axis=1)
        ok = np.isfinite(dist[np.arange(len(pts)), best])
        out = pts.copy()
        at_pixel = on[np.arange(len(pts)), r * (2 * r + 1) + r]  # already on the object: keep the sub-pixel spot
        move = ok & ~at_pixel
        out[move] = cand[np.flatnonzero(move), best[move]]
        return out, ok

    # ------------------------------------------------------------------ tracking
    def track(self, video: np.ndarray, queries: np.ndarray, progress: Optional[Callable[[int], None]] = None,
              mask: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        video = np.asarray(video)
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"blob tracker: expected video (T, H, W, 3), got {video.shape}")
        q = np.asarray(queries, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != 2:
            raise ValueError(f"blob tracker: expected queries (N, 2) pixel x, y, got {q.shape}")
        T, H, W = video.shape[:3]
        if mask is None:
            raise ValueError("blob tracker: needs the object's frame-0 mask (extract_flow passes it; "
                             "python -m flows extract --mask / a masker)")
        mask0 = np.asarray(mask, dtype=bool)
        if mask0.shape != (H, W):
            raise ValueError(f"blob tracker: mask {mask0.shape} does not match the video's frames {(H, W)}")
        lut = self.colour_model(video[0], mask0)
        N = q.shape[0]
        tracks = np.zeros((T, N, 2), dtype=np.float32)
        visible = np.zeros((T, N), dtype=bool)

        lab0, cent0, _ = self._split_touching(*self._components(mask0))
        # each query's blob: the component under it, else the nearest component centroid
        xi = np.clip(np.round(q[:, 0]).astype(int), 0, W - 1)
        yi = np.clip(np.round(q[:, 1]).astype(int), 0, H - 1)
        comp = lab0[yi, xi] - 1
        if cent0.shape[0] == 0:
            raise ValueError("blob tracker: the frame-0 mask has no component of at least min_area pixels")
        far = comp < 0
        if far.any():
            comp[far] = np.linalg.norm(q[far, None] - cent0[None], axis=-1).argmin(axis=1)
        used = np.unique(comp)
        blob_of = np.searchsorted(used, comp)  # query -> track index
        pos = cent0[used].copy()  # (B, 2) track centroids
        vel = np.zeros_like(pos)
        lost = np.zeros(len(pos), dtype=int)
        offset = q - pos[blob_of]
        tracks[0] = q
        visible[0] = True
        if progress:
            progress(1)
        for t in range(1, T):
            seg = self.segment(video[t], lut)
            lab, cent, _ = self._components(seg)
            pred = pos + vel
            matched = np.zeros(len(pos), dtype=bool)
            if cent.shape[0]:
                gate = np.minimum(self.max_jump * (1.0 + 0.5 * lost), max(self.reacquire, self.max_jump))
                d = np.linalg.norm(pred[:, None] - cent[None], axis=-1)
                ok = d <= gate[:, None]
                big = 1e6
                rows, cols = _hungarian(np.where(ok, d, big))
                good = ok[rows, cols]
                rows, cols = rows[good], cols[good]
                new = cent[cols]
                vel[rows] = np.where((lost[rows] == 0)[:, None], new - pos[rows], 0.0)
                pos[rows] = new
                matched[rows] = True
            # unmatched tracks within their gate of a detection (pieces touching make one blob) join it, at
            # its pixel nearest their prediction: measured to be on the object there; the others are lost
            merged = np.zeros(len(pos), dtype=bool)
            rest = np.flatnonzero(~matched)
            if rest.size and cent.shape[0]:
                ys, xs = np.nonzero(lab)
                pix = np.stack([xs, ys], axis=1).astype(np.float64)
                gate = np.minimum(self.max_jump * (1.0 + 0.5 * lost[rest]), max(self.reacquire, self.max_jump))
                for k, i in enumerate(rest):
                    dd = np.linalg.norm(pix - pred[i], axis=1)
                    j = int(dd.argmin())
                    if dd[j] <= (gate[k] if lost[i] >= self.patience else self.merge_radius):
                        merged[i] = True
                        pred[i] = pix[j] if dd[j] > 1.0 else pred[i]
            pos[~matched] = pred[~matched]
            vel[merged] = 0.0
            vel[~matched & ~merged] *= self.damping
            lost = np.where(matched | merged, 0, lost + 1)
            seen = matched | merged
            pts = pos[blob_of] + offset
            pts, on_obj = self._snap(pts, seg)
            pts[:, 0] = np.clip(pts[:, 0], 0, W - 1)
            pts[:, 1] = np.clip(pts[:, 1], 0, H - 1)
            tracks[t] = pts
            visible[t] = seen[blob_of] & on_obj
            if progress:
                progress(1)
        return tracks, visible
