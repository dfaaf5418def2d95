"""The thread.* field class: the thread that generated the event and its capabilities.

The capture tracks processes (thread groups), not each thread, so a thread's own namespace id is
known only for the main thread (thread.vtid), and the capability sets are the process's.
"""

from __future__ import annotations

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import SyscallEvent


def _tid(ev: SyscallEvent, arg: str | None) -> int:
    return ev.tid


def _vtid(ev: SyscallEvent, arg: str | None) -> int | None:
    p = ev.proc
    return p.vpid if ev.tid == p.pid else None


def _ismain(ev: SyscallEvent, arg: str | None) -> bool:
    return ev.tid == ev.proc.pid


def _cap_permitted(ev: SyscallEvent, arg: str | None) -> str | None:
    return ev.proc.cap_permitted


def _cap_effective(ev: SyscallEvent, arg: str | None) -> str | None:
    return ev.proc.cap_effective


def _cap_inheritable(ev: SyscallEvent, arg: str | None) -> str | None:
    return ev.proc.cap_inheritable


def _nametid(ev: SyscallEvent, arg: str | None) -> str:
    return f"{ev.proc.name}{ev.tid}"


CLASS = FieldClass("thread", "syscall", "The thread that generated the event.", (
    Field("thread.tid", "INT64", "Id of the thread that generated the event.", _tid),
    Field("thread.vtid", "INT64",
          "Id of the thread as its pid namespace sees it (known for the main thread).", _vtid),
    Field("thread.ismain", "BOOL", "True when the thread is the process's main thread.", _ismain),
    Field("thread.nametid", "CHARBUF", "proc.name followed by the thread id, e.g. 'bash4711'.", _nametid),
    Field("thread.cap_permitted", "CHARBUF",
          "Permitted capability set, as capability names joined by '|' (CAP_CHOWN|CAP_KILL|...).",
          _cap_permitted),
    Field("thread.cap_effective", "CHARBUF", "Effective capability set, as names joined by '|'.",
          _cap_effective),
    Field("thread.cap_inheritable", "CHARBUF", "Inheritable capability set, as names joined by '|'.",
          _cap_inheritable),
))
