"""Every constructor argument of every env is checked: unknown name, wrong type, out of range.

Generic over ``d2f_envs.ENV_IDS`` and each class's ``kwarg_specs()``: the bad values are
derived from each argument's declared kind and bounds, so a new argument is covered as
soon as it is declared (and the first test fails for one that is not declared). The
checks run before anything is built (``FlowEnv.__new__``), so these tests build no model.
"""
from __future__ import annotations

import importlib
import inspect
import math

import d2f_envs  # noqa: F401  first: sets MUJOCO_GL=egl before mujoco is imported
import gymnasium as gym
import numpy as np
import pytest

from d2f_envs.kwargs import (
    Choice, EnvArgumentError, EnvArgumentTypeError, FlowSource, Integer, Number, Robot, Validated, Weights,
)

ENV_IDS = list(d2f_envs.ENV_IDS)
PUSH_T = "D2F-PushT-v0"


def env_class(env_id: str) -> type:
    module, name = d2f_envs.ENV_IDS[env_id][0].split(":")
    return getattr(importlib.import_module(module), name)


def signature_defaults(cls) -> dict:
    out = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.default is not inspect.Parameter.empty and p.name not in out:
                    out[p.name] = p.default
    return out


#: bad values of the Validated arguments (their checks live in d2f_envs.sim2real), with what
#: else they need; a new Validated argument must be added here (test_every_validated_kwarg_has_cases)
VALIDATED_CASES = {
    "real_obs": {"wrong_type": ["noise", 3], "out_of_range": [{"noise_std": -1.0}, {"dropout": 1.0}, {"noize_std": 0.1}],
                 "with": {"obs_mode": "real"}},
    "randomize": {"wrong_type": ["mass", 1.2], "out_of_range": [{"mass": (1.2, 0.8)}, {"friction": (0.0, 1.0)}],
                  "with": {}},
}


def bad_values(spec):
    """``(wrong_type, out_of_range)`` lists for one argument's spec."""
    if isinstance(spec, Integer):
        wrong = [1.5, "3", True]
        out = [v for v in (None if spec.lo is None else spec.lo - 1, None if spec.hi is None else spec.hi + 1) if v is not None]
        return wrong, out
    if isinstance(spec, Number):
        wrong = ["0.5", True, [0.5]]
        out = [math.nan, math.inf]
        if spec.lo is not None:
            out.append(spec.lo if spec.lo_open else spec.lo - 1.0)
        if spec.hi is not None:
            out.append(spec.hi if spec.hi_open else spec.hi + 1.0)
        return wrong, out
    if isinstance(spec, Choice):
        return [3, ["rgb_array"]], ["zz_no_such_choice"]
    if isinstance(spec, Robot):
        return [3, ("pusher",)], ["zz_no_such_robot"]
    if isinstance(spec, FlowSource):
        return [3, ["flow.npz"]], []  # placement is tested in test_envs.py (flow/env mismatch)
    if isinstance(spec, Weights):
        return ["tracking:1", [1.0], {spec.keys[0]: "1"}], [{"zz_no_such_term": 1.0}, {spec.keys[0]: -1.0}]
    raise AssertionError(f"no bad values for {type(spec).__name__}")


def kwarg_cases():
    for env_id in ENV_IDS:
        for name, spec in env_class(env_id).kwarg_specs().items():
            yield pytest.param(env_id, name, id=f"{env_id}-{name}")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_constructor_argument_is_declared_and_its_default_passes(env_id):
    cls = env_class(env_id)
    assert set(cls.kwarg_specs()) == set(cls.valid_kwargs())
    from d2f_envs.kwargs import check_kwargs

    check_kwargs(cls, signature_defaults(cls))  # the defaults themselves are valid


def test_every_validated_kwarg_has_cases():
    names = {n for i in ENV_IDS for n, s in env_class(i).kwarg_specs().items() if isinstance(s, Validated)}
    assert names == set(VALIDATED_CASES)


@pytest.mark.parametrize("env_id,name", list(kwarg_cases()))
def test_wrong_type_and_out_of_range_name_the_argument(env_id, name):
    cls = env_class(env_id)
    spec = cls.kwarg_specs()[name]
    if isinstance(spec, Validated):
        case = VALIDATED_CASES[name]
        wrong, out, extra = case["wrong_type"], case["out_of_range"], case["with"]
    else:
        (wrong, out), extra = bad_values(spec), {}
    assert wrong, "every argument has a wrong kind of value"
    for value in wrong:
        with pytest.raises(TypeError) as exc:
            cls(**extra, **{name: value})
        assert isinstance(exc.value, EnvArgumentTypeError), exc.value
        assert env_id in str(exc.value) and name in str(exc.value), str(exc.value)
    for value in out:
        with pytest.raises(ValueError) as exc:
            cls(**extra, **{name: value})
        assert isinstance(exc.value, EnvArgumentError), exc.value
        assert env_id in str(exc.value) and name in str(exc.value), str(exc.value)


def test_messages_say_value_and_expectation():
    with pytest.raises(EnvArgumentError) as exc:
        gym.make(PUSH_T, lookahead=-0.5)
    assert str(exc.value) == "D2F-PushT-v0: lookahead=-0.5: expected a number of seconds >= 0"
    with pytest.raises(EnvArgumentTypeError, match=r"width=12\.5: expected an integer of pixels in \[1, 8192\]"):
        gym.make(PUSH_T, width=12.5)
    with pytest.raises(EnvArgumentError, match=r"alignment='nearst'.*did you mean 'nearest'"):
        gym.make(PUSH_T, alignment="nearst")
    with pytest.raises(EnvArgumentError, match=r"unknown key 'sucess' \(did you mean 'success'\?\)"):
        gym.make(PUSH_T, reward_scales={"sucess": 1.0})
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) 'lookahed' \(did you mean 'lookahead'\?\)"):
        gym.make(PUSH_T, lookahed=0.3)


def test_checked_before_anything_is_built(monkeypatch):
    cls = env_class(PUSH_T)

    def build(self):
        raise AssertionError("the scene was built before the arguments were checked")

    monkeypatch.setattr(cls, "_build_scene", build)
    with pytest.raises(EnvArgumentError, match="coverage_threshold"):
        cls(coverage_threshold=1.5)
    with pytest.raises(EnvArgumentError, match="coverage_threshold"):
        cls(1.5)  # positional arguments are checked too


def test_yaml_and_cli_values_are_accepted():
    """What rl-zoo passes from YAML / --env-kwargs: ints for floats, numpy scalars, lists for pairs."""
    env = gym.make(PUSH_T, lookahead=1, max_lag=2, reward_sigma=np.float32(0.05), success_threshold=np.float64(0.03),
                   reset_noise_scale=0, width=np.int64(64), height=48, reward_scales={"success": 1, "action": 0},
                   coverage_threshold=1, randomize={"mass": [0.9, 1.1], "action_latency": [0, 1]}, robot="panda")
    try:
        u = env.unwrapped
        assert u.reward_fn.lookahead == 10 and u.width == 64 and u.coverage_threshold == 1.0
        assert u.robot_name == "panda"
        env.reset(seed=0)
    finally:
        env.close()
