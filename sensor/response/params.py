"""The typed `with:` parameters an action declares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Param:
    """One `with:` key of an action: its type, default (or required) and an optional check.

    `check(value)` returns the normalised value or raises ValueError with what is wrong.
    """

    type: type
    default: Any = _MISSING
    description: str = ""
    check: Callable[[Any], Any] | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING


def positive(value: Any) -> Any:
    """Check for numbers that must be greater than zero (timeouts)."""
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return value


def non_negative(value: Any) -> Any:
    """Check for counts that may be zero (retries, grace periods)."""
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value!r}")
    return value


def coerce(param: Param, value: Any) -> Any:
    """The value checked against the parameter's type and check; ValueError says what is wrong."""
    if param.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if param.type is str and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)      # as sensor.config does for str keys: `signal: 9`
    ok = isinstance(value, param.type) and not (param.type in (int, float) and isinstance(value, bool))
    if not ok:
        raise ValueError(f"must be {_TYPE_NAMES.get(param.type, param.type.__name__)}, "
                         f"got {type(value).__name__} {value!r}")
    return param.check(value) if param.check else value
