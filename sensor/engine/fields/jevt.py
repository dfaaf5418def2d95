"""The json.* and jevt.* fields of Kubernetes audit events (Falco's json plugin; jevt.* are the
aliases the audit rules use).

`jevt.value[/a/b]` reads a JSON pointer (RFC 6901: `~1` is `/`, `~0` is `~`; array indexes are
numbers): a string value as itself, anything else as compact JSON. `jevt.obj` is the whole event as
indented JSON, and `jevt.rawtime` the event time in nanoseconds as a string, both as the plugin
renders them.
"""

from __future__ import annotations

import json
from typing import Any

from sensor.engine.fields.base import Field, FieldClass
from sensor.engine.fields.ka import text


def pointer(obj: Any, ptr: str) -> Any:
    """The value a JSON pointer names in `obj`, or None when there is none."""
    if ptr.startswith("/"):
        ptr = ptr[1:]
    for raw in ptr.split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(obj, dict):
            if key not in obj:
                return None
            obj = obj[key]
        elif isinstance(obj, list):
            if not key.isdigit() or int(key) >= len(obj):
                return None
            obj = obj[int(key)]
        else:
            return None
    return obj


def _value(ev: Any, arg: str | None) -> Any:
    if not arg:
        return None
    return text(pointer(ev.obj, arg))


def _obj(ev: Any, arg: str | None) -> Any:
    return json.dumps(ev.obj, indent=2, ensure_ascii=False)


def _rawtime(ev: Any, arg: str | None) -> Any:
    return str(ev.time_ns)


def _fields(prefix: str, alias: bool) -> tuple[Field, ...]:
    note = " Alias of json.%s, kept for the audit rules." if alias else ""
    return (
        Field(f"{prefix}.value", "CHARBUF", "A value of the event's JSON named by a JSON pointer "
              "(RFC 6901), as in jevt.value[/user/username]." + (note % "value" if alias else ""),
              _value, arg="key", arg_required=True),
        Field(f"{prefix}.obj", "CHARBUF", "The whole event as indented JSON text."
              + (note % "obj" if alias else ""), _obj),
        Field(f"{prefix}.rawtime", "CHARBUF", "The event time in nanoseconds since the epoch, as text "
              "(the same as evt.rawtime)." + (note % "rawtime" if alias else ""), _rawtime),
    )


JSON = FieldClass("json", "k8s_audit", "Values of the audit event's JSON (Falco's json plugin).",
                  _fields("json", alias=False))
JEVT = FieldClass("jevt", "k8s_audit", "Aliases of the json.* fields that the k8s audit rules use.",
                  _fields("jevt", alias=True))

CLASSES = (JEVT, JSON)
