"""Files that hold keys, tokens or state, written so that no other local user can swap or read them.

The sensor runs as root and writes into directories such as state_dir or `falconet certs --dir`.
If another user owns such a directory, or may write to it, they can plant a symlink or a file
under the name we are about to write, and our root-owned secret ends up theirs (or our write
lands in a file they chose). So:

- the directory is opened once (O_DIRECTORY, O_NOFOLLOW) and checked on that descriptor: it must
  belong to us or to root and be writable by nobody else; every later step names files relative to
  that descriptor, so the directory cannot be swapped between the check and the write;
- each of its parents must belong to us or to root too (another owner could rename the directory
  away and put one of theirs in its place); a parent every user may write without the sticky bit is
  logged, not refused, because Kubernetes makes a pod's emptyDir volumes 0777;
- a new file is first written under a fresh random name created with O_CREAT|O_EXCL|O_NOFOLLOW
  (never an existing file, never through a link), given its mode with fchmod (the umask cannot
  widen or narrow it), synced, and then renamed over the real name, which replaces a link rather
  than following it;
- reading a secret back checks that the file is ours and that nobody else may read it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from sensor.errors import UnavailableError

log = logging.getLogger("falconet")


class UnsafePathError(UnavailableError):
    """A directory or file that another user could tamper with; the message says who and how."""


def _describe_owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def _check_dir(fd: int, path: Path) -> None:
    st = os.fstat(fd)
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise UnsafePathError(
            f"{path} belongs to {_describe_owner(st.st_uid)}, who could replace the files written "
            "there", hint="use a directory owned by you or by root")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(
            f"{path} is writable by {'others' if st.st_mode & stat.S_IWOTH else 'its group'} "
            f"(mode {stat.S_IMODE(st.st_mode):04o}), who could replace the files written there",
            hint=f"chmod go-w {path}, or use a private directory")


def _check_parents(path: Path) -> None:
    me = os.geteuid()
    for parent in path.absolute().parents:
        try:
            link = os.lstat(parent)
            st = os.stat(parent)
        except FileNotFoundError:
            continue                      # made below, by us
        owner = link.st_uid if stat.S_ISLNK(link.st_mode) else st.st_uid
        if owner not in (me, 0):
            raise UnsafePathError(
                f"{path}: its parent {parent} belongs to {_describe_owner(owner)}, who could replace it",
                hint="use a directory under ones only root or this user owns")
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            log.warning("%s: its parent %s is writable by every user (mode %04o, no sticky bit); prefer "
                        "a directory under ones only root or the sensor's user may change", path, parent,
                        stat.S_IMODE(st.st_mode))


def open_dir(path: Path, create_mode: int | None = 0o700) -> int:
    """A descriptor of directory `path`, checked as the module doc says; created with
    `create_mode` when missing (its parents as usual), unless `create_mode` is None.
    UnsafePathError when it may not be used, OSError when it cannot."""
    path = Path(path)
    _check_parents(path)                  # before anything is made under a parent we may not use
    if create_mode is not None and not os.path.lexists(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, create_mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if os.path.islink(path):
            raise UnsafePathError(f"{path} is a symbolic link; refusing to write through it",
                                  hint=f"use the directory it points to ({os.path.realpath(path)})") from e
        raise
    try:
        _check_dir(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_file(path: Path, data: bytes, mode: int = 0o600, *, dir_fd: int | None = None) -> None:
    """Replace `path` with `data` atomically (readers see the old file or the new one, whole),
    with exactly `mode`, in a directory checked as the module doc says (created 0700 if missing).
    `dir_fd`: a directory already opened with `open_dir`, which `path`'s name is relative to."""
    path = Path(path)
    own_fd = dir_fd is None
    dfd = open_dir(path.parent) if dir_fd is None else dir_fd
    tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dfd)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp = ""
        os.fsync(dfd)
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
        if own_fd:
            os.close(dfd)


def read_secret(path: Path, *, dir_fd: int | None = None) -> bytes | None:
    """The contents of a secret file we wrote, or None when it does not exist. UnsafePathError
    when it is a link, belongs to another user, or others may read or write it."""
    path = Path(path)
    try:
        fd = os.open(path.name if dir_fd is not None else path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if os.path.islink(path):
            raise UnsafePathError(f"{path} is a symbolic link; refusing to read a secret through it") from e
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise UnsafePathError(f"{path} belongs to {_describe_owner(st.st_uid)}, not to this user; "
                                  "it may have been planted", hint=f"remove {path} and start again")
        if st.st_mode & 0o077:
            raise UnsafePathError(f"{path} may be read or written by others (mode "
                                  f"{stat.S_IMODE(st.st_mode):04o})", hint=f"chmod 600 {path}, or remove it")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
