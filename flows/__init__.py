"""dream2flow-gym flows: the 3D object-flow format and the tools that make flows.

Imports without torch. ``from flows import ObjectFlow, FlowFormatError``.
"""
from .format import FORMAT_VERSION, FlowFormatError, ObjectFlow
from .ops import farthest_point_sampling, fit_rigid_transform
from .shipped import shipped_flow, shipped_flow_path

__all__ = [
    "FORMAT_VERSION",
    "FlowFormatError",
    "ObjectFlow",
    "farthest_point_sampling",
    "fit_rigid_transform",
    "shipped_flow",
    "shipped_flow_path",
]
