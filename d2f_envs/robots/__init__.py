"""Robot adapters, one file per robot, and the one robot registry.

``make_robot(name)`` builds an adapter by name; entries are lazy
``"module:Class"`` strings so importing the package loads no robot model.
"""
from __future__ import annotations

import importlib
from typing import Dict

from .base import RobotAdapter

ROBOTS: Dict[str, str] = {
    "pusher": "d2f_envs.robots.pusher:PusherRobot",
    "panda": "d2f_envs.robots.panda:PandaRobot",
    "panda_gripper": "d2f_envs.robots.panda:PandaGripperRobot",
    "spot_arm": "d2f_envs.robots.spot_arm:SpotArmRobot",
    "gr1": "d2f_envs.robots.gr1:GR1Robot",
    "floating_gripper": "d2f_envs.robots.floating_gripper:FloatingGripperRobot",
    "brush": "d2f_envs.robots.brush:BrushRobot",
    "panda_brush": "d2f_envs.robots.brush:PandaBrushRobot",
}


#: other names users reach for (the paper's tables say "Spot"); resolved by every task
ROBOT_ALIASES: Dict[str, str] = {
    "spot": "spot_arm",
}


def make_robot(name: str) -> RobotAdapter:
    try:
        entry = ROBOTS[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; known: {sorted(ROBOTS)}") from None
    module, cls = entry.split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["ROBOTS", "ROBOT_ALIASES", "RobotAdapter", "make_robot"]
