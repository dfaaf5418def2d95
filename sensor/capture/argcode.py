"""Falco's arguments of a syscall, built by one function per syscall generated from its table row.

`builder(sc)` turns the parameter list of the syscall table (sensor/syscalls.py) into Python source that
builds `(args, rawargs)` in one expression from the record's values, compiles it once, and returns
the function. The per-event path then runs straight-line code: no loop over parameters, no
per-parameter calls except the renderers themselves (which cache by value).

The generated function's arguments: res, a0..a5 (raw arguments), s0..s2 (strings), addr (socket
address or copied struct), p (the Process), fd (the Fd the event acts on, or None), tid.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from sensor.capture import render
from sensor.capture.procstate import resolve_path
from sensor.syscalls import Syscall

AT_FDCWD = -100
_HOW = struct.Struct("<QQQ")          # struct open_how; clone_args starts with its flags word
_IP_TYPES = frozenset({"ipv4", "ipv6"})
_FLAG_TABLES = {
    "unlinkatflags": "UNLINKAT_FLAGS", "linkatflags": "LINKAT_FLAGS", "renameflags": "RENAMEAT2_FLAGS",
    "execveatflags": "EXECVEAT_FLAGS", "memfdflags": "MEMFD_FLAGS", "mountflags": "MOUNT_FLAGS",
    "umountflags": "UMOUNT_FLAGS", "openat2resolve": "OPENAT2_RESOLVE",
}
_PROC = {
    "exe": "p.exe", "args": "' '.join(p.args)", "tid": "tid", "pid": "p.pid", "ptid": "p.ppid",
    "cwd": "p.cwd", "comm": "p.name", "uid": "(p.euid if p.euid is not None else p.uid)",
    "gid": "(p.egid if p.egid is not None else p.gid)", "vpid": "p.vpid",
}
# Syscalls whose first string is the path of the fd they create: fd.name is already resolved.
_FD_NAMED = frozenset({"open", "openat", "openat2", "creat"})

Builder = Callable[..., tuple[dict[str, Any], dict[str, Any]]]


def dirfd_base(p: Any, dirfd: int) -> str:
    """The directory a *at() path is relative to: cwd for AT_FDCWD, else the dirfd's name."""
    if dirfd == AT_FDCWD:
        return p.cwd
    f = p.fds.get(dirfd)
    return f.name if f is not None else ""


def how(addr: bytes) -> tuple[int, int, int]:
    """flags, mode, resolve of a struct open_how (clone_args: its flags word first)."""
    return _HOW.unpack_from(addr.ljust(24, b"\0"))


def _oct(v: int) -> str:
    return f"0{v:o}" if v else "0"


def _devhex(fd: Any) -> str | None:
    return f"{fd.dev:X}" if fd is not None and fd.dev is not None else None


def _sockaddr_text(raw: bytes) -> str | None:
    _family, addr, port = render.sockaddr(raw)
    if addr is None:
        return None
    return addr if port is None else f"{addr}:{port}"


_NS: dict[str, Any] = {
    "_s32": render.s32, "_resolve": resolve_path, "_base": dirfd_base, "_how": how, "_oct": _oct,
    "_devhex": _devhex, "_sockaddr_text": _sockaddr_text, "_open_flags": render.open_flags,
    "_ppm": render.open_flags_to_ppm, "_mode_flags": render.mode_flags, "_clone_flags": render.clone_flags,
    "_ptrace": render.PTRACE_REQUESTS, "_families": render.FAMILIES, "_flags": render.render_flags,
    "_IP": _IP_TYPES, "render": render,
}


def _value(src: str) -> str:
    if src == "res" or src[0] == "s" or (src[0] == "a" and src[1:].isdigit()):
        return src
    if src.startswith("how."):
        return f"_how(addr)[{('flags', 'mode', 'resolve').index(src[4:])}]"
    if src == "zero":
        return "0"
    raise ValueError(f"unknown parameter source {src!r}")


def _param(sc: Syscall, name: str, kind: str, src: str) -> tuple[str, str | None]:
    """(expression for args, expression for rawargs or None when the same)."""
    if kind == "proc":
        return _PROC[src], None
    if src == "tuple" or kind == "tuple":
        return "(fd.name if fd is not None and fd.type in _IP else None)", None
    if kind == "sockaddr":
        return "_sockaddr_text(addr)", None
    if src == "dev":
        return "_devhex(fd)", "(fd.dev if fd is not None else None)"
    if src == "ino":
        return "(fd.ino if fd is not None else None)", None
    v = _value(src)
    u32 = f"({v} & 0xFFFFFFFF)"
    if kind in ("fd", "pid", "errno"):
        return (v if src == "res" else f"_s32({v})"), None
    if kind in ("int", "uint"):
        return v, None
    if kind in ("uid", "gid"):
        # A number: the engine renders it with the process's own passwd/group (evt.arg.uid=nobody).
        return u32, None
    if kind == "oct":
        return f"_oct({u32})", u32
    if kind == "hex":
        return f"'%X' % {v}", v
    if kind == "str":
        return v, None
    if kind == "path" or kind.startswith("path@a"):
        if sc.name in _FD_NAMED and src == "s0":
            base = "p.cwd" if kind == "path" else f"_base(p, _s32({kind[5:]}))"
            return f"(fd.name if fd is not None else _resolve({base}, {v}))", v
        if kind == "path":
            return f"_resolve(p.cwd, {v})", v
        return f"_resolve(_base(p, _s32({kind[5:]})), {v})", v
    if kind == "openflags":
        return f"_open_flags({u32})", f"_ppm({u32})"
    if kind == "modeflags":
        return f"_mode_flags({u32})", u32
    if kind == "cloneflags":
        return f"_clone_flags({v})", v
    if kind == "ptrace":
        return f"_ptrace.get({u32}, 'PTRACE_UNKNOWN')", u32
    if kind == "family":
        return f"_families.get({v} & 0xFFFF, str({v} & 0xFFFF))", v
    if kind in _FLAG_TABLES:
        return f"_flags({u32}, render.{_FLAG_TABLES[kind]}, '0')", u32
    raise ValueError(f"{sc.name}.{name}: unknown parameter kind {kind!r}")


def source(sc: Syscall) -> str:
    """The Python source of the builder for one syscall."""
    args, raws = [], []
    for name, kind, src in sc.params:
        rendered, raw = _param(sc, name, kind, src)
        args.append(f"{name!r}: {rendered}")
        if raw is not None:
            raws.append(f"{name!r}: {raw}")
    return (f"def build_{sc.name}(res, a0, a1, a2, a3, a4, a5, s0, s1, s2, addr, p, fd, tid):\n"
            f"    return {{{', '.join(args)}}}, {{{', '.join(raws)}}}\n")


def builder(sc: Syscall) -> Builder:
    """The compiled (args, rawargs) builder of one syscall."""
    ns = dict(_NS)
    exec(compile(source(sc), f"<args {sc.name}>", "exec"), ns)
    return ns[f"build_{sc.name}"]
