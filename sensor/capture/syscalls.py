"""The syscalls the capture traces and how the probe reads each one.

The table itself is sensor/syscalls.py, shared with the engine's fields; this module adds what only
the capture needs: the row of the probe's `specs` map for a syscall (`kernel_spec`), the base set
attached whatever the rules say, and the choice of syscalls for a set of event types (`select`).
"""

from __future__ import annotations

from sensor.capture.layout import KF_ALL, pack
from sensor.syscalls import (
    ADDR_FIXED,
    ADDR_LEN_PTR,
    ADDR_LEN_VALUE,
    ADDR_MSGHDR,
    ADDR_NONE,
    BY_NR,
    CAPTURED,
    FD_ARG0,
    FD_NONE,
    FD_RES,
    Syscall,
)

SYSCALLS: tuple[Syscall, ...] = CAPTURED
BY_NAME: dict[str, Syscall] = {s.name: s for s in CAPTURED}

__all__ = ["ADDR_FIXED", "ADDR_LEN_PTR", "ADDR_LEN_VALUE", "ADDR_MSGHDR", "ADDR_NONE", "BASE", "BY_NAME",
           "BY_NR", "FD_ARG0", "FD_NONE", "FD_RES", "SYSCALLS", "Syscall", "kernel_spec",
           "select"]


def kernel_spec(sc: Syscall, enabled: bool, raw: bool, track_fds: bool = True,
                filter_row: dict[str, int] | None = None) -> bytes:
    """The syscall's row of the probe's `specs` map (layout.SPEC). `track_fds`: remember the fds it
    creates in known_fds, which only the close filter reads. `filter_row`: the kernel filter's
    fields (kfilter.Tables.specs), none for a syscall whose every event is wanted."""
    strs = list(sc.strings) + [-1] * (3 - len(sc.strings))
    arg, alen, mode = sc.addr
    dirfd = sc.dirfd_of(0)
    row = {"kf_mode": KF_ALL, "state": int(sc.name in BASE)}
    row.update(filter_row or {})
    return pack(
        "spec", enabled=int(enabled), str=bytes(x & 0xFF for x in strs), addr=arg & 0xFF, addrlen=alen & 0xFF,
        addrmode=mode, sockfd=sc.sockfd, filefd=sc.filefd, creates_fd=int(sc.creates_fd and track_fds),
        closes_fd=int(sc.closes_fd), open=int(sc.name in OPENS), flags_arg=sc.open_flags_arg & 0xFF,
        raw=int(raw), str_if_failed=int(sc.strings_if_failed), dirfd0=dirfd & 0xFF, fd_path=int(sc.fd_path),
        sock_args=int(sc.name == "socket"), **row)


# Syscalls that open a path and create an fd for it: the decoder makes fd.name from the path.
OPENS: frozenset[str] = frozenset({"open", "openat", "openat2", "creat"})


# Needed for process and fd state whatever the rules say: cwd (chdir, fchdir), session and
# process group (setsid, setpgid) and fd copies. Process creation, exec and exit come from the
# sched tracepoints, which are always attached; the effective ids and the name come with every
# record. close is not here: it is the commonest syscall after open and no rule of Falco's names
# it, and its only use would be to forget descriptors. A descriptor number reused by an open the
# kernel filtered is caught where it is used instead: the events that name an existing fd carry
# the kernel's view of it, and a table entry that does not match is replaced (decoder.py).
BASE: frozenset[str] = frozenset({"dup", "dup2", "dup3", "chdir", "fchdir", "setsid", "setpgid"})

# Falco's older name for umount2.
ALIASES: dict[str, str] = {"umount": "umount2"}

# Event types the capture produces without a syscall of that name.
SYNTHETIC: frozenset[str] = frozenset({"container", "procexit"})


def select(event_types: frozenset[str] | set[str] | None) -> tuple[list[Syscall], list[str]]:
    """The syscalls to attach for these event types (None: every known one), plus the base set.

    Returns (syscalls, unknown names). Names that are not syscalls (`container`, `procexit`,
    `switch`) are not errors: the capture synthesises `container`, and others never occur.
    """
    if event_types is None:
        return list(SYSCALLS), []
    wanted = set(BASE)
    unknown = []
    for name in event_types:
        name = ALIASES.get(name, name)
        if name in BY_NAME:
            wanted.add(name)
        elif name not in SYNTHETIC:
            unknown.append(name)
    return [s for s in SYSCALLS if s.name in wanted], sorted(unknown)
