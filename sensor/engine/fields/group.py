"""The group.* field class: the group the process runs as.

The name comes from the group file the process sees (its container's for a container process),
through the same cached lookup as user.name (sensor.engine.fields.user.account).
"""

from __future__ import annotations

from sensor.engine.fields.base import Field, FieldClass
from sensor.engine.fields.user import account
from sensor.event import Process, SyscallEvent


def effective_gid(p: Process) -> int:
    return p.egid if p.egid is not None else p.gid


def _gid(ev: SyscallEvent, arg: str | None) -> int:
    return effective_gid(ev.proc)


def _name(ev: SyscallEvent, arg: str | None) -> str | None:
    e = account(ev.proc, "group", effective_gid(ev.proc))
    return e[0] if e else None


CLASS = FieldClass("group", "syscall", "The group the process runs as.", (
    Field("group.gid", "UINT32", "Effective group id of the process.", _gid),
    Field("group.name", "CHARBUF",
          "Name of the group, from the group file the process sees (its container's for a container "
          "process).", _name),
))
