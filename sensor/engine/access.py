"""How a compiled matcher reads fields from each kind of event.

A generated matcher reads field N as `_xN(_s, _aN)`, where `_s` is `e.fields` for a recorded event
and `e` itself otherwise. The accessor of the event's class binds `_xN` and `_aN`:

- live events (SyscallEvent, AuditEvent): the field's extractor and its argument, so a read is one
  direct call of the extractor;
- recorded events: `dict.get` and the key the recording uses (`proc.aname[2]`), a call in C;
- any other event: its `value(field, arg)` method.

A context field (evt.hostname) is the same for every event a ruleset sees: whatever the event's
class, its read answers the ruleset's value, given to `bindings`.

The matcher's code is generated and compiled once; binding it to a kind of event only fills a
namespace, so it cannot fail and costs no generation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from sensor.engine.fields.base import Field
from sensor.event import AuditEvent, RecordedEvent, SyscallEvent, field_key


class FieldRead(Protocol):
    """One distinct field a matcher reads: read N is `_xN(_s, _aN)` (read-only, so frozen
    dataclasses such as codegen's FieldUse fit)."""

    @property
    def n(self) -> int: ...
    @property
    def field(self) -> Field: ...
    @property
    def arg(self) -> str | None: ...


class Access(Protocol):
    recorded: bool     # `_s` is the event's recorded dict rather than the event

    def reader(self, read: FieldRead) -> tuple[Callable[[Any, Any], Any], Any]: ...


def bindings(access: Access, reads: Iterable[FieldRead], context: Mapping[str, Any]) -> dict[str, Any]:
    """The names a matcher's reads need, for one kind of event and one ruleset's context values."""
    out: dict[str, Any] = {"_recorded": access.recorded}
    for r in reads:
        fn: Callable[[Any, Any], Any]
        if r.field.context:
            fn, arg = _context_value, context.get(r.field.name)
        else:
            fn, arg = access.reader(r)
        out[f"_x{r.n}"] = fn
        out[f"_a{r.n}"] = arg
    return out


class ExtractorAccess:
    """Events whose fields the registry's extractors compute (live syscall and audit events)."""

    recorded = False

    def reader(self, read: FieldRead) -> tuple[Callable[[Any, Any], Any], Any]:
        return (read.field.extract or _no_value), read.arg


class RecordedAccess:
    """Events replayed from their recorded dict of Falco field names."""

    recorded = True

    def reader(self, read: FieldRead) -> tuple[Callable[[Any, Any], Any], Any]:
        key = field_key(read.field.name, read.arg)
        if read.field.arg == "index" and read.arg is not None:
            return _IndexedRecord(read.field.name, read.arg), key
        return dict.get, key


class ValueAccess:
    """Any other event: read through its `value(field, arg)`."""

    recorded = False

    def reader(self, read: FieldRead) -> tuple[Callable[[Any, Any], Any], Any]:
        name = read.field.name

        def value(e: Any, arg: Any) -> Any:
            return e.value(name, arg)

        return value, read.arg


class _IndexedRecord:
    """`proc.aname[2]` from a recording that may hold only the whole ancestor list: the recorded
    key when present, else what RecordedEvent.value answers from the list."""

    __slots__ = ("arg", "name")

    def __init__(self, name: str, arg: str) -> None:
        self.name = name
        self.arg = arg

    def __call__(self, fields: dict[str, Any], key: str) -> Any:
        v = fields.get(key)
        if v is None:
            holder = RecordedEvent.__new__(RecordedEvent)
            holder.fields = fields
            v = holder.value(self.name, self.arg)
        return v


def _no_value(_e: Any, _arg: Any) -> None:
    return None


def _context_value(_e: Any, value: Any) -> Any:
    return value


_ACCESS: dict[type, Access] = {RecordedEvent: RecordedAccess(), SyscallEvent: ExtractorAccess(),
                               AuditEvent: ExtractorAccess()}
_VALUE = ValueAccess()


def access_for(cls: type) -> Access:
    """The accessor for events of class `cls`."""
    return _ACCESS.get(cls, _VALUE)
