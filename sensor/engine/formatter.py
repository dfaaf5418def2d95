"""Rule output templates: `%field` tokens → renderers, built once per rule at load time.

Rendering an alert as Falco's text line or JSON alert is sensor/alert.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sensor.alert import text_time


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

    def render(self, event: Any, context: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """The text and output_fields for `event`; `context` answers context fields (evt.hostname)."""
        values: dict[str, Any] = {}
        for f in self.fields:
            if f.key not in values:
                if context is not None and f.field in context:
                    values[f.key] = context[f.field]
                else:
                    values[f.key] = _jsonable(event.value(f.field, f.arg))
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                out.append(render_value(values[p.key], p))
        if self.static:
            values.update(self.static)
        return "".join(out), values


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")     # the Alert escapes what is not UTF-8
    return v
