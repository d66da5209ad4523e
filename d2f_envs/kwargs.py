"""Declarative checks of the envs' constructor arguments: one spec per keyword, one validator.

Each env class declares ``kwarg_spec = {name: Arg}`` for the arguments its own
``__init__`` adds; :meth:`d2f_envs.base.FlowEnv.kwarg_specs` merges them along the
class hierarchy and ``FlowEnv.__new__`` checks every keyword a caller passes
before any ``__init__`` runs (a task's ``__init__`` uses its own arguments before
calling the base, so the check has to come first to be in one place).

Errors name the env id, the keyword, the value and what was expected:
:class:`EnvArgumentTypeError` (a ``TypeError``) for a value of the wrong kind,
:class:`EnvArgumentError` (a ``ValueError``) for one of the right kind but out
of range or not among the choices.

Values as rl-zoo passes them from YAML or ``--env-kwargs`` are accepted: ints
where floats are expected (``lookahead: 1``), numpy scalars, and lists where
pairs are expected (``randomize``). Booleans are never numbers here
(``True`` for a threshold is a mistake, not 1.0), and strings are never parsed.
"""
from __future__ import annotations

import difflib
import math
import os
import reprlib
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80


class EnvArgumentError(ValueError):
    """An env keyword argument of the right kind but an invalid value (out of range, not a choice)."""


class EnvArgumentTypeError(TypeError):
    """An env keyword argument of the wrong kind."""


def _say(env_id: str, name: str, value: Any, expected: str) -> str:
    return f"{env_id}: {name}={_repr.repr(value)}: expected {expected}"


def is_number(v: Any) -> bool:
    """A real number that YAML or Python could mean as one: ints and numpy scalars yes, bools no."""
    return isinstance(v, Real) and not isinstance(v, bool)


class Arg:
    """One keyword's spec; :meth:`check` raises, or returns ``None`` for a valid value."""

    none_ok: bool = False

    def expected(self) -> str:
        raise NotImplementedError

    def check(self, env_id: str, name: str, value: Any, kwargs: Mapping[str, Any], cls: type) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Number(Arg):
    """A finite real number in ``[lo, hi]`` (either end open with ``lo_open``/``hi_open``; ``None``:
    unbounded), or ``None`` if ``none_ok``. ``unit`` goes into the message."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    none_ok: bool = False
    unit: str = ""

    def range_text(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return "finite"

    def expected(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return ("None or " if self.none_ok else "") + f"a number{unit} {self.range_text()}"

    def in_range(self, v: float) -> bool:
        if self.lo is not None and not (v > self.lo if self.lo_open else v >= self.lo):
            return False
        if self.hi is not None and not (v < self.hi if self.hi_open else v <= self.hi):
            return False
        return True

    def check(self, env_id, name, value, kwargs, cls):
        if value is None and self.none_ok:
            return
        if not is_number(value):
            raise EnvArgumentTypeError(_say(env_id, name, value, self.expected()))
        if not math.isfinite(float(value)) or not self.in_range(float(value)):
            raise EnvArgumentError(_say(env_id, name, value, self.expected()))


@dataclass(frozen=True)
class Integer(Number):
    """A whole number (``int`` or a numpy integer; not a float, not a bool) in ``[lo, hi]``."""

    def expected(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return ("None or " if self.none_ok else "") + f"an integer{unit} {self.range_text()}"

    def check(self, env_id, name, value, kwargs, cls):
        if value is None and self.none_ok:
            return
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise EnvArgumentTypeError(_say(env_id, name, value, self.expected()))
        if not self.in_range(int(value)):
            raise EnvArgumentError(_say(env_id, name, value, self.expected()))


@dataclass(frozen=True)
class Choice(Arg):
    """One of ``choices`` (strings), or ``None`` if ``none_ok``; a near miss is suggested."""

    choices: Tuple[str, ...] = ()
    none_ok: bool = False

    def expected(self) -> str:
        return ("None or " if self.none_ok else "") + "one of " + ", ".join(repr(c) for c in self.choices)

    def check(self, env_id, name, value, kwargs, cls):
        if value is None and self.none_ok:
            return
        if not isinstance(value, str):
            raise EnvArgumentTypeError(_say(env_id, name, value, self.expected()))
        if value not in self.choices:
            close = difflib.get_close_matches(value, self.choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EnvArgumentError(_say(env_id, name, value, self.expected()) + hint)


@dataclass(frozen=True)
class Robot(Arg):
    """A robot name of the class's ``robots`` (or an alias of one, ``ROBOT_ALIASES``), or ``None``
    for the default."""

    none_ok: bool = True

    def expected(self) -> str:
        return "None or a robot name"

    def check(self, env_id, name, value, kwargs, cls):
        from .robots import ROBOT_ALIASES

        if value is None:
            return
        if not isinstance(value, str):
            raise EnvArgumentTypeError(_say(env_id, name, value, f"None or one of {list(cls.robots)}"))
        if ROBOT_ALIASES.get(value, value) not in cls.robots:
            close = difflib.get_close_matches(value, list(cls.robots) + list(ROBOT_ALIASES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EnvArgumentError(f"{env_id}: robot {value!r} is not supported; choose from {list(cls.robots)}{hint}")


@dataclass(frozen=True)
class FlowSource(Arg):
    """``None`` (the shipped flow), a path (``str``/``os.PathLike``) or an ``ObjectFlow``.
    A missing file is the loader's ``FileNotFoundError``, which names the path."""

    none_ok: bool = True

    def expected(self) -> str:
        return "None (the shipped flow), a path to a .npz flow or a flows.ObjectFlow"

    def check(self, env_id, name, value, kwargs, cls):
        from flows import ObjectFlow

        if value is None or isinstance(value, (str, os.PathLike, ObjectFlow)):
            return
        raise EnvArgumentTypeError(_say(env_id, name, value, self.expected()))


@dataclass(frozen=True)
class Weights(Arg):
    """``None`` or a dict whose keys are among ``keys`` and whose values satisfy ``value``."""

    keys: Tuple[str, ...] = ()
    value: Number = Number()
    none_ok: bool = True

    def expected(self) -> str:
        return f"None or a dict with keys among {list(self.keys)} and values {self.value.expected()[2:]}"

    def check(self, env_id, name, value, kwargs, cls):
        if value is None:
            return
        if not isinstance(value, Mapping):
            raise EnvArgumentTypeError(_say(env_id, name, value, self.expected()))
        for key, v in value.items():
            if key not in self.keys:
                close = difflib.get_close_matches(str(key), self.keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise EnvArgumentError(f"{env_id}: {name}: unknown key {key!r}{hint}; expected {self.expected()}")
            self.value.check(env_id, f"{name}[{key!r}]", v, kwargs, cls)


@dataclass(frozen=True)
class Validated(Arg):
    """Checked by ``validate(value, kwargs)``, a validator shared with code outside the envs
    (``d2f_envs.sim2real``'s): its ``TypeError``/``ValueError`` comes back with the env id in front."""

    validate: Callable[[Any, Mapping[str, Any]], Any] = lambda v, kw: None
    description: str = ""
    none_ok: bool = True

    def expected(self) -> str:
        return self.description

    def check(self, env_id, name, value, kwargs, cls):
        try:
            self.validate(value, kwargs)
        except TypeError as exc:
            raise EnvArgumentTypeError(f"{env_id}: {exc}") from exc
        except ValueError as exc:
            raise EnvArgumentError(f"{env_id}: {exc}") from exc


def reject_unknown_kwargs(cls: type, unknown: Mapping[str, Any], valid: Sequence[str]) -> None:
    """``TypeError`` naming each unknown keyword, with the closest valid name."""
    if not unknown:
        return
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    label = getattr(cls, "env_id", "") or cls.__name__
    raise TypeError(f"{label} ({cls.__name__}) got unknown keyword argument(s) {', '.join(parts)}; valid: {sorted(valid)}")


def check_kwargs(cls: type, kwargs: Mapping[str, Any]) -> None:
    """Check every keyword in ``kwargs`` against ``cls.kwarg_specs()``; unknown names first."""
    specs = cls.kwarg_specs()
    reject_unknown_kwargs(cls, {k: v for k, v in kwargs.items() if k not in specs}, list(specs))
    env_id = getattr(cls, "env_id", "") or cls.__name__
    for name, value in kwargs.items():
        specs[name].check(env_id, name, value, kwargs, cls)
