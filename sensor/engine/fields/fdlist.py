"""The fdlist.* field class: the file descriptors a poll/ppoll event waits on.

The `fds` argument is read as Falco renders it ("3:p1 4:p4": number, ':', poll flags) or as a list
of numbers; each number is looked up in the process's fd table. Values are comma-separated
strings, as in Falco.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import Fd, SyscallEvent

_POLL_EVENTS = frozenset({"poll", "ppoll"})
_IP_TYPES = frozenset({"ipv4", "ipv6"})


def _numbers(ev: SyscallEvent) -> list[int] | None:
    if ev.type not in _POLL_EVENTS:
        return None
    fds = ev.args.get("fds")
    if isinstance(fds, str):
        items: list[Any] = [t.split(":", 1)[0] for t in fds.split()]
    elif isinstance(fds, (list, tuple)):
        items = list(fds)
    else:
        return None
    out = []
    for item in items:
        if isinstance(item, int):
            out.append(item)
        elif isinstance(item, str) and item.lstrip("-").isdigit():
            out.append(int(item))
    return out


def _join(ev: SyscallEvent, pick: Callable[[Fd], Any]) -> str | None:
    nums = _numbers(ev)
    if nums is None:
        return None
    fds = ev.proc.fds
    values = []
    for n in nums:
        fd = fds.get(n)
        if fd is not None:
            v = pick(fd)
            if v is not None and v != "":
                values.append(str(v))
    return ",".join(values) if values else None


def _nums(ev: SyscallEvent, arg: str | None) -> str | None:
    nums = _numbers(ev)
    return None if nums is None else ",".join(str(n) for n in nums)


def _names(ev: SyscallEvent, arg: str | None) -> str | None:
    return _join(ev, lambda fd: fd.name)


def _cips(ev: SyscallEvent, arg: str | None) -> str | None:
    return _join(ev, lambda fd: fd.cip if fd.type in _IP_TYPES else None)


def _sips(ev: SyscallEvent, arg: str | None) -> str | None:
    return _join(ev, lambda fd: fd.sip if fd.type in _IP_TYPES else None)


def _cports(ev: SyscallEvent, arg: str | None) -> str | None:
    return _join(ev, lambda fd: fd.cport if fd.type in _IP_TYPES else None)


def _sports(ev: SyscallEvent, arg: str | None) -> str | None:
    return _join(ev, lambda fd: fd.sport if fd.type in _IP_TYPES else None)


CLASS = FieldClass("fdlist", "syscall", "The file descriptors of poll events.", (
    Field("fdlist.nums", "CHARBUF", "For poll events, the fd numbers in the 'fds' argument, comma-separated.",
          _nums),
    Field("fdlist.names", "CHARBUF", "For poll events, the names of the fds, comma-separated.", _names),
    Field("fdlist.cips", "CHARBUF", "For poll events, the client IP addresses of the socket fds.", _cips),
    Field("fdlist.sips", "CHARBUF", "For poll events, the server IP addresses of the socket fds.", _sips),
    Field("fdlist.cports", "CHARBUF", "For poll events, the client ports of the socket fds.", _cports),
    Field("fdlist.sports", "CHARBUF", "For poll events, the server ports of the socket fds.", _sports),
))
