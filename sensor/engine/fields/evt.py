"""The evt.* field class (and syscall.type): the event itself, its arguments, result and time.

Argument values come from `SyscallEvent.args` (Falco's names, values as Falco renders them) and
`rawargs` (the raw integers where they differ). `evt.arg.NAME` answers what Falco's `evt.arg`
answers: the resolved form of an argument where Falco resolves one (an errno name for a failed
result, `<f>/etc/passwd` for a file descriptor, `AT_FDCWD`, a user name for a set*uid uid), else
the argument as text.

Each event type's category and flags (creates, uses or closes an fd, reads, writes, waits) come
from the one syscall table, sensor/syscalls.py, which fd.py reads too.
"""

from __future__ import annotations

import errno
import time
from typing import Any

from sensor.alert import iso_time
from sensor.engine.fields.base import Field, FieldClass
from sensor.engine.fields.fd import typechar
from sensor.event import SyscallEvent
from sensor.syscalls import CREATES_FD, INFO, READS, WAITS, WRITES

_NO_INFO = ("", 0)

# Falco's event sub-category for I/O events, by the type of the fd (sinsp_evt::get_category).
_IO_CATEGORY = {"file": "file", "directory": "file", "ipv4": "net", "ipv6": "net", "unix": "ipc",
                "pipe": "ipc", "event": "ipc", "signalfd": "ipc", "inotify": "ipc"}

_OPEN_EVENTS = frozenset({"open", "openat", "openat2", "open_by_handle_at"})
_UID_EVENTS = frozenset({"setuid", "setresuid", "setreuid", "setfsuid", "getuid", "geteuid",
                         "getresuid"})
_GID_EVENTS = frozenset({"setgid", "setresgid", "setregid", "setfsgid", "getgid", "getegid",
                         "getresgid"})
_UID_ARGS = frozenset({"uid", "ruid", "euid", "suid"})
_GID_ARGS = frozenset({"gid", "rgid", "egid", "sgid"})
# Arguments that hold a file descriptor (PT_FD in Falco's event table).
_FD_ARGS = frozenset({"fd", "dirfd", "olddirfd", "newdirfd", "linkdirfd", "olddir", "newdir",
                      "fd_in", "fd_out", "out_fd", "in_fd", "fd1", "fd2", "fdin", "fdout", "mountfd"})
AT_FDCWD = -100

_S_IXANY = 0o111
_MODE_BITS = {"S_IXUSR": 0o100, "S_IXGRP": 0o010, "S_IXOTH": 0o001}

def errno_name(res: int) -> str:
    """The errno name of a negative result (-2 → ENOENT), or the number when Linux has no name."""
    return errno.errorcode.get(-res) or str(res)


def bytes_text(data: bytes) -> str:
    """A buffer as text that encodes back to the same bytes (UTF-8, undecodable bytes escaped), the
    way the compiler's bcontains/bstartswith read a string value."""
    return data.decode("utf-8", "surrogateescape")


def arg_text(ev: SyscallEvent, name: str, value: Any) -> str | None:
    """One argument as Falco's evt.arg renders it: the resolved form where Falco has one."""
    if value is None:
        return None
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        return bytes_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if name == "res" or name in _FD_ARGS:
            if value == AT_FDCWD and name != "res":
                return "AT_FDCWD"
            if value < 0:
                return errno_name(value)
            if name != "res" or INFO.get(ev.type, _NO_INFO)[1] & CREATES_FD:
                fd = ev.proc.fds.get(value)
                if fd is not None:
                    return f"<{typechar(fd.type)}>{fd.name}"
            return str(value)
        if name in _UID_ARGS and ev.type in _UID_EVENTS:
            from sensor.engine.fields.user import account

            entry = account(ev.proc, "passwd", value)
            return entry[0] if entry else str(value)
        if name in _GID_ARGS and ev.type in _GID_EVENTS:
            from sensor.engine.fields.user import account

            entry = account(ev.proc, "group", value)
            return entry[0] if entry else str(value)
        return str(value)
    return str(value)


def _parse_mode(value: Any) -> int | None:
    """A file mode from an int, an octal string ("0755") or Falco's S_I* names ("S_IXUSR|...")."""
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value:
        return None
    if value.isdigit():
        return int(value, 8)
    bits = 0
    for token in value.split("|"):
        bits |= _MODE_BITS.get(token.strip(), 0)
    return bits


_flag_sets: dict[str, frozenset[str]] = {}
_EMPTY: frozenset[str] = frozenset()


def _flag_names(ev: SyscallEvent) -> frozenset[str]:
    # Few distinct flag strings occur; split each once. Cleared when it grows past a bound.
    flags = ev.args.get("flags")
    if type(flags) is not str:
        return _EMPTY
    names = _flag_sets.get(flags)
    if names is None:
        if len(_flag_sets) >= 1024:
            _flag_sets.clear()
        names = _flag_sets[flags] = frozenset(flags.split("|"))
    return names


# --- extractors ------------------------------------------------------------------------------

def _num(ev: SyscallEvent, arg: str | None) -> int:
    return ev.num


def _rawtime(ev: SyscallEvent, arg: str | None) -> int:
    return ev.time_ns


def _rawtime_s(ev: SyscallEvent, arg: str | None) -> int:
    return ev.time_ns // 1_000_000_000


def _rawtime_ns(ev: SyscallEvent, arg: str | None) -> int:
    return ev.time_ns % 1_000_000_000


def _local(ev: SyscallEvent, fmt: str, nanos: bool) -> str:
    secs, ns = divmod(ev.time_ns, 1_000_000_000)
    text = time.strftime(fmt, time.localtime(secs))
    return f"{text}.{ns:09d}" if nanos else text


def _time(ev: SyscallEvent, arg: str | None) -> str:
    return _local(ev, "%H:%M:%S", True)


def _time_s(ev: SyscallEvent, arg: str | None) -> str:
    return _local(ev, "%H:%M:%S", False)


def _datetime(ev: SyscallEvent, arg: str | None) -> str:
    return _local(ev, "%Y-%m-%d %H:%M:%S", True)


def _datetime_s(ev: SyscallEvent, arg: str | None) -> str:
    return _local(ev, "%Y-%m-%d %H:%M:%S", False)


def _time_iso(ev: SyscallEvent, arg: str | None) -> str:
    return iso_time(ev.time_ns)


def _source(ev: SyscallEvent, arg: str | None) -> str:
    return ev.source


def _is_async(ev: SyscallEvent, arg: str | None) -> bool:
    return False


def _dir(ev: SyscallEvent, arg: str | None) -> str:
    return ev.dir


def _type(ev: SyscallEvent, arg: str | None) -> str:
    return ev.type


def _category(ev: SyscallEvent, arg: str | None) -> str | None:
    cat = INFO.get(ev.type, _NO_INFO)[0]
    if not cat:
        return None
    if cat.startswith("io_"):
        fd = ev.fd
        return _IO_CATEGORY.get(fd.type, "unknown") if fd is not None else "unknown"
    return cat


def _cpu(ev: SyscallEvent, arg: str | None) -> int:
    return ev.cpu


def _args(ev: SyscallEvent, arg: str | None) -> str:
    raw = ev.rawargs
    parts = []
    for name, value in ev.args.items():
        text = arg_text(ev, name, value)
        r = raw.get(name, value if isinstance(value, int) else None)
        if r is not None and str(r) != text:
            parts.append(f"{name}={r}({text})" if text else f"{name}={r}")
        else:
            parts.append(f"{name}={text}")
    return " ".join(parts)


def _arg(ev: SyscallEvent, arg: str | None) -> str | None:
    if arg is None:
        return None
    args = ev.args
    if arg in args:
        return arg_text(ev, arg, args[arg])
    if arg.isdigit():
        i = int(arg)
        if i < len(args):
            name = list(args)[i]
            return arg_text(ev, name, args[name])
    return None


def _rawarg(ev: SyscallEvent, arg: str | None) -> Any:
    if arg is None:
        return None
    v = ev.rawargs.get(arg)
    if v is None:
        v = ev.args.get(arg)
    if isinstance(v, bytes):
        return bytes_text(v)
    return v


def _buffer(ev: SyscallEvent, arg: str | None) -> str | None:
    data = ev.args.get("data")
    if isinstance(data, bytes):
        return bytes_text(data)
    return data


def _buflen(ev: SyscallEvent, arg: str | None) -> int | None:
    if ev.fd is None or not ev.type or INFO.get(ev.type, _NO_INFO)[0][:3] != "io_":
        return None
    res = ev.res
    return res if res is not None and res >= 0 else None


def _res(ev: SyscallEvent, arg: str | None) -> str | None:
    res = ev.res
    if res is None:
        return None
    return "SUCCESS" if res >= 0 else errno_name(res)


def _rawres(ev: SyscallEvent, arg: str | None) -> int | None:
    return ev.res


def _failed(ev: SyscallEvent, arg: str | None) -> bool | None:
    res = ev.res
    return None if res is None else res < 0


def _is_io(ev: SyscallEvent, arg: str | None) -> bool:
    return bool(INFO.get(ev.type, _NO_INFO)[1] & (READS | WRITES))


def _is_io_read(ev: SyscallEvent, arg: str | None) -> bool:
    return bool(INFO.get(ev.type, _NO_INFO)[1] & READS)


def _is_io_write(ev: SyscallEvent, arg: str | None) -> bool:
    return bool(INFO.get(ev.type, _NO_INFO)[1] & WRITES)


def _io_dir(ev: SyscallEvent, arg: str | None) -> str | None:
    flags = INFO.get(ev.type, _NO_INFO)[1]
    if flags & WRITES:
        return "write"
    if flags & READS:
        return "read"
    return None


def _is_wait(ev: SyscallEvent, arg: str | None) -> bool:
    return bool(INFO.get(ev.type, _NO_INFO)[1] & WAITS)


def _is_syslog(ev: SyscallEvent, arg: str | None) -> bool:
    fd = ev.fd
    return bool(INFO.get(ev.type, _NO_INFO)[1] & WRITES) and fd is not None \
        and fd.name in ("/dev/log", "/var/run/syslog")


def _count(ev: SyscallEvent, arg: str | None) -> int:
    return 1


def _is_open_read(ev: SyscallEvent, arg: str | None) -> bool:
    if ev.type not in _OPEN_EVENTS:
        return False
    names = _flag_names(ev)
    return "O_RDONLY" in names or "O_RDWR" in names


def _is_open_write(ev: SyscallEvent, arg: str | None) -> bool:
    if ev.type not in _OPEN_EVENTS:
        return False
    names = _flag_names(ev)
    return "O_WRONLY" in names or "O_RDWR" in names


def _is_open_create(ev: SyscallEvent, arg: str | None) -> bool:
    # Falco: the driver saw the file created (O_F_CREATED), or an O_TMPFILE open succeeded.
    if ev.type not in _OPEN_EVENTS:
        return False
    names = _flag_names(ev)
    if "O_F_CREATED" in names:
        return True
    return "O_TMPFILE" in names and ev.res is not None and ev.res >= 0


def _is_open_exec(ev: SyscallEvent, arg: str | None) -> bool:
    # Falco: a file created (O_CREAT or O_TMPFILE) with any execute bit in its mode.
    if ev.type == "creat":
        mode = _parse_mode(ev.rawargs.get("mode", ev.args.get("mode")))
        return bool(mode and mode & _S_IXANY)
    if ev.type not in _OPEN_EVENTS or ev.type == "open_by_handle_at":
        return False
    names = _flag_names(ev)
    if "O_CREAT" not in names and "O_TMPFILE" not in names:
        return False
    mode = _parse_mode(ev.args.get("mode"))
    if mode is None:
        mode = _parse_mode(ev.rawargs.get("mode"))
    return bool(mode and mode & _S_IXANY)


def _arg_names(ev: SyscallEvent) -> list[str]:
    return list(ev.args)


def _arg_positions(ev: SyscallEvent) -> list[str]:
    return [str(i) for i in range(len(ev.args))]


def _rawarg_names(ev: SyscallEvent) -> list[str]:
    return list(dict.fromkeys([*ev.args, *ev.rawargs]))


def _arg_keys(ev: SyscallEvent) -> list[str]:
    return _arg_names(ev) + _arg_positions(ev)


# Which arguments `falconet capture` records for the fields that take one (see record.py).
RECORD_ARGS = {"evt.arg": _arg_keys, "evt.rawarg": _rawarg_names}

CLASS = FieldClass("evt", "syscall", "The syscall event itself: type, direction, arguments, result, time.", (
    Field("evt.num", "UINT64", "Sequence number of the event in this capture.", _num),
    Field("evt.time", "CHARBUF", "Event time of day in local time, with nanoseconds (HH:MM:SS.nnnnnnnnn).",
          _time),
    Field("evt.time.s", "CHARBUF", "Event time of day in local time, whole seconds (HH:MM:SS).", _time_s),
    Field("evt.time.iso8601", "CHARBUF",
          "Event time in ISO 8601 format, UTC, with nanoseconds (2024-05-01T10:00:00.123456789Z).",
          _time_iso),
    Field("evt.datetime", "CHARBUF", "Event date and local time with nanoseconds.", _datetime),
    Field("evt.datetime.s", "CHARBUF", "Event date and local time, whole seconds.", _datetime_s),
    Field("evt.rawtime", "ABSTIME", "Event time in nanoseconds since the epoch.", _rawtime),
    Field("evt.rawtime.s", "ABSTIME", "Whole seconds of the event time since the epoch.", _rawtime_s),
    Field("evt.rawtime.ns", "ABSTIME", "Nanosecond part of the event time.", _rawtime_ns),
    Field("evt.source", "CHARBUF", "Name of the source that produced the event (syscall).", _source),
    Field("evt.is_async", "BOOL", "True for asynchronous (meta) events; syscall events are not.", _is_async),
    Field("evt.hostname", "CHARBUF",
          "Name of the host the sensor runs on (the `hostname` setting, FALCONET_HOSTNAME, or the "
          "machine's name), as the alerts carry it.", None, record=False, context=True),
    Field("evt.dir", "CHARBUF", "Direction of the event: '>' for a syscall's entry, '<' for its exit.", _dir),
    Field("evt.type", "CHARBUF", "Name of the event, e.g. 'openat' or 'execve'.", _type),
    Field("syscall.type", "CHARBUF", "Name of the system call this event records.", _type),
    Field("evt.category", "CHARBUF",
          "Category of the event: file, net, IPC, memory, process, signal, user, time, sleep, wait, "
          "other; I/O events take the category of their fd (file, net, ipc, unknown).", _category),
    Field("evt.cpu", "INT16", "Number of the CPU the event happened on.", _cpu),
    Field("evt.args", "CHARBUF",
          "Every argument of the event in one string, 'name=value' separated by spaces; a value "
          "Falco resolves is followed by its resolved form in parentheses.", _args),
    Field("evt.info", "CHARBUF", "Same as evt.args.", _args),
    Field("evt.arg", "CHARBUF",
          "One argument by name (evt.arg.flags, evt.arg[flags]) or position (evt.arg[0]), as text in "
          "its resolved form: errno names for failures, <f>/path for fds, user names for uids.",
          _arg, arg="key", arg_required=True, dot_arg=True),
    Field("evt.rawarg", "INT64",
          "One argument by name as captured, without rendering (e.g. the numeric flags); falls back "
          "to the rendered value when no raw one was captured.",
          _rawarg, arg="key", arg_required=True, dot_arg=True),
    Field("evt.buffer", "BYTEBUF",
          "The data buffer of I/O events (read, write, sendto, ...), as UTF-8 text with undecodable "
          "bytes escaped, so `bcontains` sees the raw bytes.", _buffer),
    Field("evt.buflen", "UINT64", "Length of the data an I/O event moved (its non-negative result).",
          _buflen),
    Field("evt.res", "CHARBUF",
          "Result of the event as text: SUCCESS, or the errno name (ENOENT) when it failed.", _res),
    Field("evt.rawres", "INT64", "Result of the event as a number (negative errno on failure).", _rawres),
    Field("evt.failed", "BOOL", "True when the event returned an error.", _failed),
    Field("evt.is_io", "BOOL", "True for events that read from or write to an fd.", _is_io),
    Field("evt.is_io_read", "BOOL", "True for events that read from an fd.", _is_io_read),
    Field("evt.is_io_write", "BOOL", "True for events that write to an fd.", _is_io_write),
    Field("evt.io_dir", "CHARBUF", "'read' or 'write' for I/O events.", _io_dir),
    Field("evt.is_wait", "BOOL", "True for events that make the thread wait (poll, nanosleep, ...).",
          _is_wait),
    Field("evt.is_syslog", "BOOL", "True for writes to the syslog socket (/dev/log).", _is_syslog),
    Field("evt.count", "UINT32", "Always 1; useful to count events.", _count),
    Field("evt.is_open_read", "BOOL",
          "True for open, openat, openat2 and open_by_handle_at events that opened the path for reading.",
          _is_open_read),
    Field("evt.is_open_write", "BOOL",
          "True for open, openat, openat2 and open_by_handle_at events that opened the path for writing.",
          _is_open_write),
    Field("evt.is_open_exec", "BOOL",
          "True for open-family and creat events that created a file with an execute permission bit.",
          _is_open_exec),
    Field("evt.is_open_create", "BOOL",
          "True for open-family events that created a file (O_F_CREATED, or a successful O_TMPFILE).",
          _is_open_create),
))
