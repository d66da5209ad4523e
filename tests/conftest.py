"""Fixtures shared by the test files."""
from __future__ import annotations

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import gymnasium as gym
import pytest


@pytest.fixture
def make():
    """``make(env_id, **kw)`` -> ``gym.make`` env, closed after the test (a task's own test file may
    override it with one bound to its env id)."""
    envs = []

    def _make(env_id, **kw):
        env = gym.make(env_id, **kw)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()
