"""Alert rendering: Falco's text line and Falco's JSON alert (DESIGN.md §3).

The compiled output templates (`%field` tokens → renderers) live here too; they are built once per
rule at load time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sensor.event import Alert


@dataclass(frozen=True, slots=True)
class JsonOptions:
    """falco.yaml's json_include_* switches."""

    include_output: bool = True
    include_tags: bool = True
    include_output_fields: bool = True
    include_message: bool = False
    time_iso_8601: bool = False


def iso_time(time_ns: int) -> str:
    """UTC time with nanoseconds and a Z, as Falco's JSON `time`."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def text_time(time_ns: int, iso_8601: bool = False) -> str:
    """The time prefix of a text alert: local HH:MM:SS.nnnnnnnnn, or ISO 8601 UTC."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    if iso_8601:
        return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}+0000"
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{nanos:09d}"


def alert_text(alert: Alert, iso_8601: bool = False) -> str:
    """Falco's text line: `TIME: Priority output`."""
    return f"{text_time(alert.time_ns, iso_8601)}: {alert.priority} {alert.output}"


def alert_dict(alert: Alert, opts: JsonOptions = JsonOptions()) -> dict[str, Any]:
    """Falco's JSON alert as a dict, keys in Falco's (sorted) order, plus Falcosidekick's uuid."""
    out: dict[str, Any] = {"hostname": alert.hostname}
    if opts.include_message:
        out["message"] = alert.output
    if opts.include_output:
        out["output"] = alert_text(alert, opts.time_iso_8601)
    if opts.include_output_fields:
        out["output_fields"] = alert.output_fields
    out["priority"] = alert.priority
    out["rule"] = alert.rule
    out["source"] = alert.source
    if opts.include_tags:
        out["tags"] = sorted(alert.tags)
    out["time"] = iso_time(alert.time_ns)
    out["uuid"] = alert.uuid
    return out


def alert_json(alert: Alert, opts: JsonOptions = JsonOptions()) -> str:
    """One JSON alert, one line."""
    return json.dumps(alert_dict(alert, opts), separators=(",", ":"), ensure_ascii=False, default=str)


# -- output templates -----------------------------------------------------------------------------

class OutputError(ValueError):
    """An output string names a field that does not exist (LOAD_ERR_COMPILE_OUTPUT)."""


_FIELD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


@dataclass(frozen=True, slots=True)
class OutputField:
    key: str              # as printed in output_fields: proc.aname[2], evt.arg.flags
    field: str
    arg: str | None
    type: str


def parse_output(text: str, resolve: Any) -> list[str | OutputField]:
    """Split an output string into literal text and fields. `%name` takes the longest known field
    (`%proc.nameand` is proc.name then "and"); `%name[arg]` passes an argument.

    `resolve(name)` returns (Field, dot_arg) or None, as sensor.engine.fields.resolve does.
    """
    parts: list[str | OutputField] = []
    lit: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "%":
            lit.append(c)
            i += 1
            continue
        j = i + 1
        while j < n and text[j] in _FIELD_CHARS:
            j += 1
        run = text[i + 1:j]
        found = None
        end = len(run)
        while end > 0:
            cand = run[:end].rstrip(".")
            if "." in cand:
                found = resolve(cand)
                if found is not None:
                    break
            end -= 1
        if found is None:
            if not run:
                lit.append(c)
                i += 1
                continue
            raise OutputError(f"invalid formatting token %{run}: no such field")
        f, arg = found
        k = i + 1 + len(run[:end].rstrip("."))
        if k < n and text[k] == "[" and f.arg is not None and arg is None:
            close = text.find("]", k)
            if close < 0:
                raise OutputError(f"unterminated '[' after %{f.name}")
            arg = text[k + 1:close]
            k = close + 1
        if arg is None and f.arg_required:
            raise OutputError(f"field %{f.name} requires an argument")
        if lit:
            parts.append("".join(lit))
            lit = []
        key = f.name if arg is None else (f"{f.name}.{arg}" if f.dot_arg and not arg.isdigit() and
                                          f.name in ("evt.arg", "evt.rawarg") else f"{f.name}[{arg}]")
        parts.append(OutputField(key, f.name, arg, f.type))
        i = k
    if lit:
        parts.append("".join(lit))
    return parts


def render_value(value: Any, field: OutputField | None = None) -> str:
    """A value as Falco prints it in a text output."""
    if value is None:
        return "<NA>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(render_value(v) for v in value) + ")"
    if field is not None and field.field == "evt.time" and isinstance(value, int):
        return text_time(value)
    return str(value)


class Output:
    """A rule's compiled output: renders the text and the typed output_fields of an event.

    `extra` fields (append_output's extra_fields) go into output_fields only; `static` values are
    constants added to output_fields.
    """

    __slots__ = ("extra", "fields", "parts", "static")

    def __init__(self, parts: list[str | OutputField], extra: list[OutputField] | None = None,
                 static: dict[str, Any] | None = None) -> None:
        self.parts = parts
        self.extra = extra or []
        self.fields = [p for p in parts if isinstance(p, OutputField)] + self.extra
        self.static = static or {}

    def render(self, event: Any, static: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        values: dict[str, Any] = {}
        for f in self.fields:
            if f.key not in values:
                values[f.key] = _jsonable(event.value(f.field, f.arg))
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                out.append(render_value(values[p.key], p))
        if self.static:
            values.update(self.static)
        if static:
            values.update(static)
        return "".join(out), values


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v
