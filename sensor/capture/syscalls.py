"""Every syscall the capture knows: its x86_64 number, its tracepoint, what the kernel must read at
exit, and its parameters under Falco's names (falcosecurity/libs driver/event_table.c, exit events
with the enter parameters merged, as Falco 0.41+ delivers them).

This one table feeds both sides: `kernel_spec()` becomes a row of the probe's `specs` map, and the
decoder renders `params` into `SyscallEvent.args`.

A parameter is (name, kind, source). Sources: "res" (the return value), "a0".."a5" (the raw
arguments), "s0".."s2" (the strings the kernel read), "addr" (the socket address or struct the
kernel copied), "tuple" (the socket's addresses read from the kernel). Kinds name a renderer in
sensor/capture/render.py; "path@aN" is a path resolved against the directory fd in argument N.
"""

from __future__ import annotations

from dataclasses import dataclass

# probe.bpf.c ADDR_* and FD_* values
ADDR_NONE, ADDR_LEN_VALUE, ADDR_LEN_PTR, ADDR_MSGHDR, ADDR_FIXED = 0, 1, 2, 3, 4
FD_NONE, FD_ARG0, FD_RES = 0, 1, 2

Param = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str                       # Falco's evt.type
    nr: int                         # x86_64 syscall number
    tracepoint: str                 # sys_enter_<tracepoint> / sys_exit_<tracepoint>
    params: tuple[Param, ...]
    strings: tuple[int, ...] = ()   # argument indices read as strings into slots s0, s1, s2
    addr: tuple[int, int, int] = (-1, -1, ADDR_NONE)   # (argument, length argument or bytes, mode)
    sockfd: int = FD_NONE
    filefd: int = FD_NONE
    creates_fd: bool = False
    closes_fd: bool = False
    open_flags_arg: int = -1        # >= 0: an open whose path the in-kernel filter may judge
    strings_if_failed: bool = False  # execve: the path is gone with the old address space

    def kernel_spec(self, enabled: bool, raw: bool, track_fds: bool = True) -> bytes:
        """This syscall's row of the probe's `specs` map (struct spec). `track_fds`: remember the
        fds it creates in known_fds, which only the close filter reads."""
        strs = list(self.strings) + [-1] * (3 - len(self.strings))
        arg, alen, mode = self.addr
        return bytes([
            int(enabled), *(s & 0xFF for s in strs), arg & 0xFF, alen & 0xFF, mode, self.sockfd,
            self.filefd, int(self.creates_fd and track_fds), int(self.closes_fd), int(self.open_flags_arg >= 0),
            self.open_flags_arg & 0xFF, int(raw), int(self.strings_if_failed), 0,
        ])


SPEC_SIZE = 16

_OPEN_TAIL: tuple[Param, ...] = (("dev", "hex", "dev"), ("ino", "uint", "ino"))
_PROC: tuple[Param, ...] = (
    ("exe", "proc", "exe"), ("args", "proc", "args"), ("tid", "proc", "tid"), ("pid", "proc", "pid"),
    ("ptid", "proc", "ptid"), ("cwd", "proc", "cwd"), ("comm", "proc", "comm"),
    ("uid", "proc", "uid"), ("gid", "proc", "gid"), ("vpid", "proc", "vpid"),
)

SYSCALLS: tuple[Syscall, ...] = (
    # files
    Syscall("open", 2, "open",
            (("fd", "fd", "res"), ("name", "path", "s0"), ("flags", "openflags", "a1"),
             ("mode", "oct", "a2"), *_OPEN_TAIL),
            strings=(0,), filefd=FD_RES, creates_fd=True, open_flags_arg=1),
    Syscall("openat", 257, "openat",
            (("fd", "fd", "res"), ("dirfd", "fd", "a0"), ("name", "path@a0", "s0"),
             ("flags", "openflags", "a2"), ("mode", "oct", "a3"), *_OPEN_TAIL),
            strings=(1,), filefd=FD_RES, creates_fd=True, open_flags_arg=2),
    Syscall("openat2", 437, "openat2",
            (("fd", "fd", "res"), ("dirfd", "fd", "a0"), ("name", "path@a0", "s0"),
             ("flags", "openflags", "how.flags"), ("mode", "oct", "how.mode"),
             ("resolve", "openat2resolve", "how.resolve"), *_OPEN_TAIL),
            strings=(1,), addr=(2, 24, ADDR_FIXED), filefd=FD_RES, creates_fd=True, open_flags_arg=2),
    Syscall("creat", 85, "creat",
            (("fd", "fd", "res"), ("name", "path", "s0"), ("mode", "oct", "a1"), *_OPEN_TAIL),
            strings=(0,), filefd=FD_RES, creates_fd=True),
    Syscall("close", 3, "close", (("res", "errno", "res"), ("fd", "fd", "a0")), closes_fd=True),
    Syscall("dup", 32, "dup", (("res", "fd", "res"), ("oldfd", "fd", "a0")), filefd=FD_ARG0,
            creates_fd=True),
    Syscall("dup2", 33, "dup2",
            (("res", "fd", "res"), ("oldfd", "fd", "a0"), ("newfd", "fd", "a1")), filefd=FD_ARG0,
            creates_fd=True),
    Syscall("dup3", 292, "dup3",
            (("res", "fd", "res"), ("oldfd", "fd", "a0"), ("newfd", "fd", "a1"),
             ("flags", "openflags", "a2")), filefd=FD_ARG0, creates_fd=True),
    Syscall("chdir", 80, "chdir", (("res", "errno", "res"), ("path", "str", "s0")), strings=(0,)),
    Syscall("fchdir", 81, "fchdir", (("res", "errno", "res"), ("fd", "fd", "a0")), filefd=FD_ARG0),
    Syscall("unlink", 87, "unlink", (("res", "errno", "res"), ("path", "path", "s0")), strings=(0,)),
    Syscall("unlinkat", 263, "unlinkat",
            (("res", "errno", "res"), ("dirfd", "fd", "a0"), ("name", "path@a0", "s0"),
             ("flags", "unlinkatflags", "a2")), strings=(1,)),
    Syscall("rename", 82, "rename",
            (("res", "errno", "res"), ("oldpath", "path", "s0"), ("newpath", "path", "s1")),
            strings=(0, 1)),
    Syscall("renameat", 264, "renameat",
            (("res", "errno", "res"), ("olddirfd", "fd", "a0"), ("oldpath", "path@a0", "s0"),
             ("newdirfd", "fd", "a2"), ("newpath", "path@a2", "s1")), strings=(1, 3)),
    Syscall("renameat2", 316, "renameat2",
            (("res", "errno", "res"), ("olddirfd", "fd", "a0"), ("oldpath", "path@a0", "s0"),
             ("newdirfd", "fd", "a2"), ("newpath", "path@a2", "s1"), ("flags", "renameflags", "a4")),
            strings=(1, 3)),
    Syscall("mkdir", 83, "mkdir",
            (("res", "errno", "res"), ("path", "path", "s0"), ("mode", "hex", "a1")), strings=(0,)),
    Syscall("mkdirat", 258, "mkdirat",
            (("res", "errno", "res"), ("dirfd", "fd", "a0"), ("path", "path@a0", "s0"),
             ("mode", "hex", "a2")), strings=(1,)),
    Syscall("rmdir", 84, "rmdir", (("res", "errno", "res"), ("path", "path", "s0")), strings=(0,)),
    Syscall("chmod", 90, "chmod",
            (("res", "errno", "res"), ("filename", "path", "s0"), ("mode", "modeflags", "a1")),
            strings=(0,)),
    Syscall("fchmod", 91, "fchmod",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("mode", "modeflags", "a1")), filefd=FD_ARG0),
    Syscall("fchmodat", 268, "fchmodat",
            (("res", "errno", "res"), ("dirfd", "fd", "a0"), ("filename", "path@a0", "s0"),
             ("mode", "modeflags", "a2")), strings=(1,)),
    Syscall("link", 86, "link",
            (("res", "errno", "res"), ("oldpath", "path", "s0"), ("newpath", "path", "s1")),
            strings=(0, 1)),
    Syscall("linkat", 265, "linkat",
            (("res", "errno", "res"), ("olddir", "fd", "a0"), ("oldpath", "path@a0", "s0"),
             ("newdir", "fd", "a2"), ("newpath", "path@a2", "s1"), ("flags", "linkatflags", "a4")),
            strings=(1, 3)),
    Syscall("symlink", 88, "symlink",
            (("res", "errno", "res"), ("target", "str", "s0"), ("linkpath", "path", "s1")),
            strings=(0, 1)),
    Syscall("symlinkat", 266, "symlinkat",
            (("res", "errno", "res"), ("target", "str", "s0"), ("linkdirfd", "fd", "a1"),
             ("linkpath", "path@a1", "s1")), strings=(0, 2)),
    Syscall("mount", 165, "mount",
            (("res", "errno", "res"), ("dev", "str", "s0"), ("dir", "path", "s1"),
             ("type", "str", "s2"), ("flags", "mountflags", "a3")), strings=(0, 1, 2)),
    Syscall("umount2", 166, "umount",
            (("res", "errno", "res"), ("name", "path", "s0"), ("flags", "umountflags", "a1")),
            strings=(0,)),
    Syscall("memfd_create", 319, "memfd_create",
            (("fd", "fd", "res"), ("name", "str", "s0"), ("flags", "memfdflags", "a1")),
            strings=(0,), creates_fd=True),
    # processes
    Syscall("execve", 59, "execve", (("res", "errno", "res"), *_PROC, ("filename", "path", "s0")),
            strings=(0,), strings_if_failed=True),
    Syscall("execveat", 322, "execveat",
            (("res", "errno", "res"), *_PROC, ("dirfd", "fd", "a0"), ("pathname", "path@a0", "s0"),
             ("flags", "execveatflags", "a4")), strings=(1,), strings_if_failed=True),
    Syscall("clone", 56, "clone", (("res", "pid", "res"), *_PROC, ("flags", "cloneflags", "a0"))),
    Syscall("clone3", 435, "clone3", (("res", "pid", "res"), *_PROC, ("flags", "cloneflags", "how.flags")),
            addr=(0, 8, ADDR_FIXED)),
    Syscall("fork", 57, "fork", (("res", "pid", "res"), *_PROC)),
    Syscall("vfork", 58, "vfork", (("res", "pid", "res"), *_PROC)),
    Syscall("ptrace", 101, "ptrace",
            (("res", "errno", "res"), ("addr", "hex", "a2"), ("data", "hex", "a3"),
             ("request", "ptrace", "a0"), ("pid", "pid", "a1"))),
    Syscall("setuid", 105, "setuid", (("res", "errno", "res"), ("uid", "uid", "a0"))),
    Syscall("setgid", 106, "setgid", (("res", "errno", "res"), ("gid", "gid", "a0"))),
    Syscall("setresuid", 117, "setresuid",
            (("res", "errno", "res"), ("ruid", "uid", "a0"), ("euid", "uid", "a1"),
             ("suid", "uid", "a2"))),
    Syscall("setresgid", 119, "setresgid",
            (("res", "errno", "res"), ("rgid", "gid", "a0"), ("egid", "gid", "a1"),
             ("sgid", "gid", "a2"))),
    Syscall("setsid", 112, "setsid", (("res", "pid", "res"),)),
    Syscall("setpgid", 109, "setpgid",
            (("res", "errno", "res"), ("pid", "pid", "a0"), ("pgid", "pid", "a1"))),
    Syscall("setns", 308, "setns",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("nstype", "cloneflags", "a1")), filefd=FD_ARG0),
    Syscall("unshare", 272, "unshare", (("res", "errno", "res"), ("flags", "cloneflags", "a0"))),
    Syscall("init_module", 175, "init_module",
            (("res", "errno", "res"), ("length", "uint", "a1"), ("uargs", "str", "s0")),
            strings=(2,)),
    Syscall("finit_module", 313, "finit_module",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("uargs", "str", "s0"), ("flags", "int", "a2")),
            strings=(1,), filefd=FD_ARG0),
    Syscall("bpf", 321, "bpf", (("fd", "fd", "res"), ("cmd", "int", "a0")), creates_fd=True),
    Syscall("userfaultfd", 323, "userfaultfd",
            (("res", "fd", "res"), ("flags", "openflags", "a0")), creates_fd=True),
    # network
    Syscall("socket", 41, "socket",
            (("fd", "fd", "res"), ("domain", "family", "a0"), ("type", "uint", "a1"),
             ("proto", "uint", "a2")), sockfd=FD_RES, creates_fd=True),
    Syscall("connect", 42, "connect",
            (("res", "errno", "res"), ("tuple", "tuple", "tuple"), ("fd", "fd", "a0"),
             ("addr", "sockaddr", "addr")), addr=(1, 2, ADDR_LEN_VALUE), sockfd=FD_ARG0),
    Syscall("accept", 43, "accept",
            (("fd", "fd", "res"), ("tuple", "tuple", "tuple"), ("queuepct", "uint", "zero")),
            addr=(1, 2, ADDR_LEN_PTR), sockfd=FD_RES, creates_fd=True),
    Syscall("accept4", 288, "accept4",
            (("fd", "fd", "res"), ("tuple", "tuple", "tuple"), ("queuepct", "uint", "zero"),
             ("flags", "int", "a3")), addr=(1, 2, ADDR_LEN_PTR), sockfd=FD_RES, creates_fd=True),
    Syscall("bind", 49, "bind",
            (("res", "errno", "res"), ("addr", "sockaddr", "addr"), ("fd", "fd", "a0")),
            addr=(1, 2, ADDR_LEN_VALUE), sockfd=FD_ARG0),
    Syscall("listen", 50, "listen",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("backlog", "int", "a1")), sockfd=FD_ARG0),
    Syscall("sendto", 44, "sendto",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("size", "uint", "a2"),
             ("tuple", "tuple", "tuple")), addr=(4, 5, ADDR_LEN_VALUE), sockfd=FD_ARG0),
    Syscall("sendmsg", 46, "sendmsg",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("tuple", "tuple", "tuple")),
            addr=(1, -1, ADDR_MSGHDR), sockfd=FD_ARG0),
    Syscall("recvfrom", 45, "recvfrom",
            (("res", "errno", "res"), ("tuple", "tuple", "tuple"), ("fd", "fd", "a0"),
             ("size", "uint", "a2")), addr=(4, 5, ADDR_LEN_PTR), sockfd=FD_ARG0),
    Syscall("recvmsg", 47, "recvmsg",
            (("res", "errno", "res"), ("tuple", "tuple", "tuple"), ("fd", "fd", "a0")),
            addr=(1, -1, ADDR_MSGHDR), sockfd=FD_ARG0),
)

BY_NAME: dict[str, Syscall] = {s.name: s for s in SYSCALLS}
BY_NR: dict[int, Syscall] = {s.nr: s for s in SYSCALLS}

# Needed for process and fd state whatever the rules say: cwd (chdir), effective ids (set*id:
# user.uid is the euid, which every event's header does not carry), session and process group
# (setsid, setpgid) and fd copies. Process creation, exec and exit come from the sched
# tracepoints, which are always attached. close is not here: it is the commonest syscall after
# open and no rule of Falco's names it, and its only use would be to forget descriptors. A
# descriptor number reused by an open the kernel filtered is caught where it is used instead:
# the events that name an existing fd carry the kernel's (dev, ino) of it, and a table entry that
# does not match is dropped as stale (decoder.py).
BASE: frozenset[str] = frozenset({"dup", "dup2", "dup3", "chdir", "fchdir", "setsid", "setpgid",
                                  "setuid", "setgid", "setresuid", "setresgid"})

# Falco's older name for umount2.
ALIASES: dict[str, str] = {"umount": "umount2"}


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


# Event types the capture produces without a syscall of that name.
SYNTHETIC: frozenset[str] = frozenset({"container", "procexit"})
