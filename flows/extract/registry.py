"""Registries of extraction stages, chosen by name.

Each registry maps a name to a factory (usually a class) that builds a stage
from keyword arguments::

    from flows.extract import TRACKERS

    @TRACKERS.register("my-tracker")
    class MyTracker:
        preferred_queries = "fps"          # or "features"
        def track(self, video, queries, progress=None): ...

Stage interfaces (duck-typed):

* tracker: ``track(video (T,H,W,3) uint8, queries (N,2) pixel x,y at frame 0,
  progress=None) -> (tracks (T,N,2) float32, visible (T,N) bool)``; a tracker with
  ``uses_mask = True`` is also given the object's frame-0 mask, ``mask=`` (H,W) bool;
* depth estimator: ``estimate(video, *, depth_data=None, mask=None, progress=None)
  -> depth (T,H,W) float32 metres`` (NaN where invalid);
* masker: ``__call__(frame0 (H,W,3) uint8, object_name) -> mask (H,W) bool``.

``progress`` is ``None`` or a callable taking the number of frames just done.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional


class Registry:
    """Name -> factory, with a clear error listing the known names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: Dict[str, Callable[..., Any]] = {}

    def register(self, name: str, factory: Optional[Callable[..., Any]] = None, *, overwrite: bool = False):
        """Register ``factory`` under ``name``; usable as a decorator when ``factory`` is omitted."""

        def add(f: Callable[..., Any]):
            if name in self._factories and not overwrite and self._factories[name] is not f:
                raise KeyError(f"a {self.kind} named {name!r} is already registered; pass overwrite=True")
            self._factories[name] = f
            return f

        return add if factory is None else add(factory)

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._factories[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {self.names()}") from None

    def create(self, name_or_instance: Any, **kwargs: Any) -> Any:
        """Build the stage ``name`` with ``kwargs``; an object that is not a string is returned as is."""
        if not isinstance(name_or_instance, str):
            if kwargs:
                raise TypeError(f"{self.kind} options {sorted(kwargs)} given with a ready-made {self.kind} instance")
            return name_or_instance
        return self.get(name_or_instance)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


TRACKERS = Registry("tracker")
DEPTH_ESTIMATORS = Registry("depth estimator")
MASKERS = Registry("masker")


def stage_name(stage: Any) -> str:
    """A readable name of a stage instance for the flow's metadata."""
    return getattr(stage, "name", None) or type(stage).__name__
