"""2D point trackers: ``track(video, queries, progress=None) -> (tracks (T,N,2), visible (T,N))``.

* ``"lk"``: :class:`~flows.extract.trackers.lk.LucasKanadeTracker` (OpenCV, no weights);
* ``"cotracker"``: :class:`~flows.extract.trackers.cotracker.CoTrackerTracker` (CoTracker3 offline);
* ``"blob"``: :class:`~flows.extract.trackers.blob.BlobTracker` (granular objects: the pieces as blobs of
  the object's colour; no weights).
"""
from .blob import BlobTracker
from .cotracker import CoTrackerTracker
from .lk import LucasKanadeTracker

__all__ = ["BlobTracker", "CoTrackerTracker", "LucasKanadeTracker"]
