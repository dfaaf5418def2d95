"""The field registry's building blocks: one `Field` per Falco field, grouped in classes by source.

A field class module (evt.py, proc.py, ka.py, ...) defines `CLASS = FieldClass(...)` whose `fields`
are `Field`s with Falco's name, type and description, and an extractor `fn(event, arg) -> value`
that reads the structured event (sensor.event.SyscallEvent / AuditEvent) and returns the typed value,
or None when the event has none. Recorded events answer from their dict and never call extractors.

Types are Falco's (what `falco --list` prints): CHARBUF, INT64, UINT64, UINT32, UINT16, INT32, BOOL,
IPADDR, IPNET, PORT, ABSTIME, RELTIME, DOUBLE, BYTEBUF, PID, UID, GID, FD, ERRNO, FLAGS32, MODE,
L4PROTO, SOCKFAMILY, SYSCALLID. A multi-valued field (`is_list`) returns a list (or tuple) of values
of that type; `in`/`intersects` and comparisons then follow Falco's list semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NUMERIC_TYPES = frozenset({"INT64", "UINT64", "UINT32", "UINT16", "INT32", "INT16", "UINT8", "INT8",
                           "PID", "UID", "GID", "FD", "ERRNO", "FLAGS32", "FLAGS16", "FLAGS8", "MODE",
                           "PORT", "ABSTIME", "RELTIME", "SYSCALLID", "SIGTYPE"})
STRING_TYPES = frozenset({"CHARBUF", "FSPATH", "FSRELPATH", "BYTEBUF", "L4PROTO", "SOCKFAMILY"})
IP_TYPES = frozenset({"IPADDR", "IPNET"})


@dataclass(frozen=True, slots=True)
class Field:
    """One field: name, type, description, extractor, and what argument it takes.

    `arg`: None (no argument), "index" (`proc.aname[2]`: a non-negative integer), "key"
    (`ka.uri.param[command]`, `evt.arg.flags`, `jevt.value[/a/b]`: any text). `arg_required`:
    the field is meaningless without its argument. `dot_arg`: the argument may follow a dot
    (`evt.arg.flags`) as well as brackets.

    Several values: `is_list` marks Falco's list fields (EPF_IS_LIST, e.g.
    ka.req.pod.containers.image): `in`/`pmatch` hold when every value does, `intersects` when any
    does. `multi` marks fields that extract several values compared one by one, true when any
    value matches (fd.ip, fd.net: client or server side). An index field read without its index
    (`proc.aname`) is multi automatically. Extractors return a list or tuple then, never an empty
    one (None instead).
    """

    name: str
    type: str
    desc: str
    extract: Callable[[Any, str | None], Any] | None = None
    arg: str | None = None
    arg_required: bool = False
    dot_arg: bool = False
    is_list: bool = False
    multi: bool = False
    record: bool = True          # written by `falconet capture` (False: derived from another field)
    # The same for every event a ruleset sees (evt.hostname): the ruleset supplies it, no event
    # is read, so two rulesets (a reload that failed half-way) never see each other's value.
    context: bool = False


@dataclass(frozen=True, slots=True)
class FieldClass:
    """A group of fields with a common prefix, for one event source (Falco's field classes)."""

    name: str
    source: str
    desc: str
    fields: tuple[Field, ...]
