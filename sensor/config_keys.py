"""The vocabulary of configuration that every part's settings module uses: a `Key`, the value
formats several keys share (durations, sizes, priorities), and `Origins`, where each value was set.

Light on purpose (the standard library and sensor.alert only): sensor/config.py assembles its
schema from the settings modules, which import this one, so nothing here may import a part.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sensor.alert import Priority


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: dotted path, type, default and what it does.

    `type` is one of str, int, float, bool, list, dict. A `dict` or `list` key is a leaf whose
    contents its owner validates (e.g. `static_fields`, `response.actions`); `items` checks the
    type of every element of a list. `choices` restricts a str key (matched in any case, kept in
    the spelling declared); `nullable` allows an explicit null. `parse` turns a value into its
    canonical form (a priority in any case into Falco's name) and `check` validates further (a
    duration, a size): both raise ValueError with the reason.
    """

    path: str
    type: type
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    items: builtins.type | None = None
    check: Callable[[Any], Any] | None = None
    parse: Callable[[Any], Any] | None = None


def priority_name(value: Any) -> str:
    """A priority in any case (`debug`, `WARNING`, `info`) as Falco names it (sensor.alert.Priority)."""
    return Priority.parse(value).label


# -- value formats shared by several keys: durations ("500ms", "15m", "1h30m") and sizes ("256MiB") --

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4,
               "tb": 1000**4, "tib": 1024**4}


def parse_duration(value: Any) -> float:
    """Seconds of a duration: a number (seconds) or text like `500ms`, `30s`, `15m`, `1h30m`, `1d`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 15m or 1h, got {value!r}")
    text = value.strip()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        try:
            return parse_duration(float(text))
        except ValueError:
            pass
        raise ValueError(f"expected a duration like 500ms, 30s, 15m or 1h, got {value!r}")
    return total


def parse_size(value: Any) -> int:
    """Bytes of a size: an integer (bytes) or text like `512KiB`, `256MiB`, `1GB`, `64M`."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    m = _SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected a size like 64MiB or 1GB (or a number of bytes), got {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])


# -- where values were set ---------------------------------------------------------------------------

_FILE_LINE = re.compile(r"[^:]+:\d+(\s|$)")


class Origins:
    """Where each value was set: `file:line`, `-o key=value` or `default`, by dotted path.

    Every key has one, and so has every item of a list (`rules_files[1]`) and every key inside a
    mapping value (`response.actions[0].match.rules[1]`). Settings keep the Origins of the Config
    they were built from (a field with compare=False: moving a key to another line changes nothing
    the sensor does), so that a part can name the line of a value it finds unusable later (a file
    in a directory it cannot write).
    """

    __slots__ = ("_where",)

    def __init__(self, where: Mapping[str, str] | None = None) -> None:
        self._where: Mapping[str, str] = where if where is not None else {}

    def __call__(self, dotted: str) -> str:
        """Where a value was set. A path inside a value that was not recorded (a key the item does
        not have) answers with its nearest recorded parent."""
        path = dotted
        while path:
            hit = self._where.get(path)
            if hit is not None:
                return hit
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return "default"

    @staticmethod
    def in_file(where: str) -> bool:
        """Whether a location is a `file:line` (not an `-o` override or the default)."""
        return _FILE_LINE.match(where) is not None

    def __repr__(self) -> str:
        return f"Origins({len(self._where)} paths)"
