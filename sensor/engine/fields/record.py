"""What `falconet capture` writes for an event: every field of its source that has a value.

`record_fields(event)` returns a JSON-serialisable dict keyed as Falco writes field references
(DESIGN.md §6): plain fields by name, fields with an argument as `proc.aname[2]` or
`evt.arg.flags` (sensor.event.field_key). `sensor.event.RecordedEvent` answers from that dict, so a
recorded line replays under any rule set: for every field f and argument a,
`RecordedEvent(source, record_fields(ev)).value(f, a) == ev.value(f, a)`, with these exceptions,
whose argument domain is open-ended and so cannot be enumerated at capture time:

- `proc.env[NAME]`: the whole environment is recorded as `proc.env`, not each variable;
- `container.mount[PATTERN]` and `container.mount.*[PATTERN]` with a glob pattern (every mount is
  recorded by index, `container.mount.dest[0]`, and `container.mounts` lists them all).

Which arguments are recorded is declared next to each field class, in its module's `RECORD_ARGS`
(field name → function(event) → the arguments this event has values for): every ancestor level,
every argument name and position, every open fd number for fd.types, every mount index, every pod
label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from sensor.engine.fields import container, evt, fd, k8s, proc, registry
from sensor.event import field_key

ArgEnumerator = Callable[[Any], Iterable[str]]


@cache
def _record_args() -> dict[str, ArgEnumerator]:
    out: dict[str, ArgEnumerator] = {}
    for mod in (evt, proc, fd, container, k8s):
        out.update(mod.RECORD_ARGS)
    return out


def record_fields(event: Any) -> dict[str, Any]:
    """Every field of `event.source` that has a value for this event, keyed as Falco writes them."""
    enumerators = _record_args()
    out: dict[str, Any] = {}
    for f in registry(event.source).values():
        if not f.record or f.extract is None:
            continue
        if not f.arg_required:
            v = f.extract(event, None)
            if v is not None:
                out[f.name] = v
        enumerate_args = enumerators.get(f.name)
        if enumerate_args is not None:
            for arg in enumerate_args(event):
                v = f.extract(event, arg)
                if v is not None:
                    out[field_key(f.name, arg)] = v
    return out
