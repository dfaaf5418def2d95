"""The fs.path.* field class: the filesystem paths a syscall operates on.

Unlike fd.*, these cover syscalls that act on paths without an fd (unlink, rename, mkdir, chmod,
symlink, mount, ...). As in Falco they have a value only when the syscall succeeded. `name`,
`source` and `target` are absolute (a relative path is joined to the process's cwd and
normalised); the `*raw` fields are the path exactly as the process passed it.
"""

from __future__ import annotations

import posixpath

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import SyscallEvent

# Event type -> argument holding the path it operates on ("<fd>": the event's fd.name).
_PATH_ARG = {
    "mkdir": "path", "mkdirat": "path", "rmdir": "path", "unlink": "path", "unlinkat": "name",
    "open": "name", "openat": "name", "openat2": "name", "chmod": "filename", "fchmodat": "filename",
    "fchmod": "<fd>", "chown": "path", "lchown": "path", "fchown": "<fd>", "fchownat": "pathname",
    "quotactl": "special", "umount": "name", "umount2": "name",
}
# Event type -> (source argument, target argument).
_SOURCE_TARGET = {
    "rename": ("oldpath", "newpath"), "renameat": ("oldpath", "newpath"),
    "renameat2": ("oldpath", "newpath"), "link": ("newpath", "oldpath"), "linkat": ("newpath", "oldpath"),
    "symlink": ("linkpath", "target"), "symlinkat": ("linkpath", "target"), "mount": ("dev", "dir"),
}


def _succeeded(ev: SyscallEvent) -> bool:
    res = ev.res
    return res is not None and res >= 0


def _value(ev: SyscallEvent, argname: str | None, raw: bool) -> str | None:
    if argname is None or not _succeeded(ev):
        return None
    if argname == "<fd>":
        fd = ev.fd
        return fd.name if fd is not None else None
    v = ev.rawargs.get(argname) if raw else None
    if not isinstance(v, str):
        v = ev.args.get(argname)
    if not isinstance(v, str) or not v:
        return None
    if raw or v.startswith("/"):
        return v
    return posixpath.normpath(posixpath.join(ev.proc.cwd or "/", v))


def _name(ev: SyscallEvent, arg: str | None) -> str | None:
    return _value(ev, _PATH_ARG.get(ev.type), False)


def _nameraw(ev: SyscallEvent, arg: str | None) -> str | None:
    return _value(ev, _PATH_ARG.get(ev.type), True)


def _source(ev: SyscallEvent, arg: str | None) -> str | None:
    pair = _SOURCE_TARGET.get(ev.type)
    return _value(ev, pair[0], False) if pair else None


def _sourceraw(ev: SyscallEvent, arg: str | None) -> str | None:
    pair = _SOURCE_TARGET.get(ev.type)
    return _value(ev, pair[0], True) if pair else None


def _target(ev: SyscallEvent, arg: str | None) -> str | None:
    pair = _SOURCE_TARGET.get(ev.type)
    return _value(ev, pair[1], False) if pair else None


def _targetraw(ev: SyscallEvent, arg: str | None) -> str | None:
    pair = _SOURCE_TARGET.get(ev.type)
    return _value(ev, pair[1], True) if pair else None


CLASS = FieldClass("fs.path", "syscall",
                   "Paths of filesystem syscalls (open, unlink, rename, mkdir, chmod, symlink, mount, ...), "
                   "set when the syscall succeeded.", (
    Field("fs.path.name", "CHARBUF", "Absolute path the syscall operated on.", _name),
    Field("fs.path.nameraw", "CHARBUF", "Path the syscall operated on, as the process passed it.", _nameraw),
    Field("fs.path.source", "CHARBUF",
          "Absolute source path of a two-path syscall (rename's old path, link's and symlink's new link, "
          "mount's device).", _source),
    Field("fs.path.sourceraw", "CHARBUF", "Source path as the process passed it.", _sourceraw),
    Field("fs.path.target", "CHARBUF",
          "Absolute target path of a two-path syscall (rename's new path, what a link points to, "
          "mount's directory).", _target),
    Field("fs.path.targetraw", "CHARBUF", "Target path as the process passed it.", _targetraw),
))
