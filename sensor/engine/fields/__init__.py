"""The field registry: every field a condition or output can name, per event source.

One module per Falco field class. Importing this package binds each source's extractors to its
structured event class (sensor.event.SyscallEvent, AuditEvent), so `event.value(field, arg)` works
for live events the same way it does for recorded ones.
"""

from __future__ import annotations

import importlib
from functools import cache

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import AuditEvent, SyscallEvent

# Field class modules, in the order `--list` prints them.
_MODULES = ("evt", "proc", "thread", "fd", "fdlist", "user", "group", "container", "k8s", "fs",
            "ka", "jevt")
SOURCES = ("syscall", "k8s_audit")


@cache
def classes() -> tuple[FieldClass, ...]:
    out: list[FieldClass] = []
    for name in _MODULES:
        mod = importlib.import_module(f"sensor.engine.fields.{name}")
        cls = getattr(mod, "CLASSES", None) or (mod.CLASS,)
        out.extend(cls)
    return tuple(out)


@cache
def registry(source: str) -> dict[str, Field]:
    """Every field of one source by name."""
    return {f.name: f for c in classes() if c.source == source for f in c.fields}


def resolve(source: str, name: str) -> tuple[Field, str | None] | None:
    """Find the field a dotted name refers to: an exact name, or a field taking a dot argument.

    `evt.arg.flags` → (evt.arg, "flags"). Returns None for an unknown field.
    """
    reg = registry(source)
    f = reg.get(name)
    if f is not None:
        return f, None
    head, _, _ = name.rpartition(".")
    while head:
        f = reg.get(head)
        if f is not None and f.dot_arg:
            return f, name[len(head) + 1:]
        head, _, _ = head.rpartition(".")
    return None


def _bind() -> None:
    for source, event_cls in (("syscall", SyscallEvent), ("k8s_audit", AuditEvent)):
        event_cls.extractors = {n: f.extract for n, f in registry(source).items() if f.extract}


_bind()

__all__ = ["SOURCES", "Field", "FieldClass", "classes", "registry", "resolve"]
