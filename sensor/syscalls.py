"""Every syscall Falconet knows, in one table shared by the capture and the engine's fields.

A row is one Falco event type: its category and flags as Falco's event table has them
(falcosecurity/libs driver/event_table.c: what `evt.category`, `evt.is_io*` and the fd.* fields of
an event without an fd depend on) and, for the syscalls the capture traces, its x86_64 number,
its tracepoint, what the probe reads at exit, and its parameters under Falco's names (exit events
with the enter parameters merged, as Falco 0.41+ delivers them). Rows without a number are
syscalls the capture does not trace; their category and flags still serve recorded events.

A parameter is (name, kind, source). Sources: "res" (the return value), "a0".."a5" (the raw
arguments), "s0".."s2" (the strings the kernel read), "addr" (the socket address or struct the
kernel copied), "tuple" (the socket's addresses read from the kernel). Kinds name a renderer in
sensor/capture/render.py; "path@aN" is a path resolved against the directory fd in argument N.

This module imports nothing of Falconet: the engine and the capture both may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Falco's event flags (EF_*), the ones the fields read.
CREATES_FD = 1
USES_FD = 2
DESTROYS_FD = 4
READS = 8
WRITES = 16
WAITS = 32
FD_EVENT = CREATES_FD | USES_FD | DESTROYS_FD

# How the probe reads a syscall's socket address or struct (probe.bpf.c ADDR_*), and which fd it
# reads the file or socket of (FD_*).
ADDR_NONE, ADDR_LEN_VALUE, ADDR_LEN_PTR, ADDR_MSGHDR, ADDR_FIXED = 0, 1, 2, 3, 4
FD_NONE, FD_ARG0, FD_RES = 0, 1, 2

Param = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str                       # Falco's evt.type
    category: str                   # Falco's category; "io_read"/"io_write"/"io_other" follow the fd
    flags: int = 0                  # CREATES_FD, USES_FD, ...
    nr: int | None = None           # x86_64 syscall number; None: not traced by the capture
    tracepoint: str = ""            # sys_enter_<tracepoint> / sys_exit_<tracepoint>
    params: tuple[Param, ...] = ()
    strings: tuple[int, ...] = ()   # argument indices read as strings into slots s0, s1, s2
    addr: tuple[int, int, int] = (-1, -1, ADDR_NONE)   # (argument, length argument or bytes, mode)
    sockfd: int = FD_NONE
    filefd: int = FD_NONE
    creates_fd: bool = False
    closes_fd: bool = False
    open_flags_arg: int = -1        # >= 0: an open; its flags are that argument
    strings_if_failed: bool = False  # execve: the path is gone with the old address space
    fd_path: bool = False           # the kernel's path of the directory fd in argument 0 (fchdir)

    @property
    def captured(self) -> bool:
        return self.nr is not None

    def dirfd_of(self, slot: int) -> int:
        """The argument holding the directory fd string slot `slot` is relative to, or -1."""
        src = f"s{slot}"
        for _name, kind, s in self.params:
            if s == src and kind.startswith("path@a"):
                return int(kind[6:])
        return -1


_OPEN_TAIL: tuple[Param, ...] = (("dev", "hex", "dev"), ("ino", "uint", "ino"))
_PROC: tuple[Param, ...] = (
    ("exe", "proc", "exe"), ("args", "proc", "args"), ("tid", "proc", "tid"), ("pid", "proc", "pid"),
    ("ptid", "proc", "ptid"), ("cwd", "proc", "cwd"), ("comm", "proc", "comm"),
    ("uid", "proc", "uid"), ("gid", "proc", "gid"), ("vpid", "proc", "vpid"),
)

CAPTURED: tuple[Syscall, ...] = (
    # files
    Syscall("open", "file", CREATES_FD, 2, "open",
            (("fd", "fd", "res"), ("name", "path", "s0"), ("flags", "openflags", "a1"),
             ("mode", "oct", "a2"), *_OPEN_TAIL),
            strings=(0,), filefd=FD_RES, creates_fd=True, open_flags_arg=1),
    Syscall("openat", "file", CREATES_FD, 257, "openat",
            (("fd", "fd", "res"), ("dirfd", "fd", "a0"), ("name", "path@a0", "s0"),
             ("flags", "openflags", "a2"), ("mode", "oct", "a3"), *_OPEN_TAIL),
            strings=(1,), filefd=FD_RES, creates_fd=True, open_flags_arg=2),
    Syscall("openat2", "file", CREATES_FD, 437, "openat2",
            (("fd", "fd", "res"), ("dirfd", "fd", "a0"), ("name", "path@a0", "s0"),
             ("flags", "openflags", "how.flags"), ("mode", "oct", "how.mode"),
             ("resolve", "openat2resolve", "how.resolve"), *_OPEN_TAIL),
            strings=(1,), addr=(2, 24, ADDR_FIXED), filefd=FD_RES, creates_fd=True, open_flags_arg=2),
    Syscall("creat", "file", CREATES_FD, 85, "creat",
            (("fd", "fd", "res"), ("name", "path", "s0"), ("mode", "oct", "a1"), *_OPEN_TAIL),
            strings=(0,), filefd=FD_RES, creates_fd=True),
    Syscall("close", "io_other", USES_FD | DESTROYS_FD, 3, "close",
            (("res", "errno", "res"), ("fd", "fd", "a0")), closes_fd=True),
    Syscall("dup", "io_other", CREATES_FD | USES_FD, 32, "dup",
            (("res", "fd", "res"), ("oldfd", "fd", "a0")), filefd=FD_ARG0, creates_fd=True),
    Syscall("dup2", "io_other", CREATES_FD | USES_FD, 33, "dup2",
            (("res", "fd", "res"), ("oldfd", "fd", "a0"), ("newfd", "fd", "a1")), filefd=FD_ARG0,
            creates_fd=True),
    Syscall("dup3", "io_other", CREATES_FD | USES_FD, 292, "dup3",
            (("res", "fd", "res"), ("oldfd", "fd", "a0"), ("newfd", "fd", "a1"),
             ("flags", "openflags", "a2")), filefd=FD_ARG0, creates_fd=True),
    Syscall("chdir", "file", 0, 80, "chdir", (("res", "errno", "res"), ("path", "str", "s0")), strings=(0,)),
    Syscall("fchdir", "file", USES_FD, 81, "fchdir", (("res", "errno", "res"), ("fd", "fd", "a0")), filefd=FD_ARG0,
            fd_path=True),
    Syscall("unlink", "file", 0, 87, "unlink", (("res", "errno", "res"), ("path", "path", "s0")), strings=(0,)),
    Syscall("unlinkat", "file", 0, 263, "unlinkat",
            (("res", "errno", "res"), ("dirfd", "fd", "a0"), ("name", "path@a0", "s0"),
             ("flags", "unlinkatflags", "a2")), strings=(1,)),
    Syscall("rename", "file", 0, 82, "rename",
            (("res", "errno", "res"), ("oldpath", "path", "s0"), ("newpath", "path", "s1")),
            strings=(0, 1)),
    Syscall("renameat", "file", 0, 264, "renameat",
            (("res", "errno", "res"), ("olddirfd", "fd", "a0"), ("oldpath", "path@a0", "s0"),
             ("newdirfd", "fd", "a2"), ("newpath", "path@a2", "s1")), strings=(1, 3)),
    Syscall("renameat2", "file", 0, 316, "renameat2",
            (("res", "errno", "res"), ("olddirfd", "fd", "a0"), ("oldpath", "path@a0", "s0"),
             ("newdirfd", "fd", "a2"), ("newpath", "path@a2", "s1"), ("flags", "renameflags", "a4")),
            strings=(1, 3)),
    Syscall("mkdir", "file", 0, 83, "mkdir",
            (("res", "errno", "res"), ("path", "path", "s0"), ("mode", "hex", "a1")), strings=(0,)),
    Syscall("mkdirat", "file", 0, 258, "mkdirat",
            (("res", "errno", "res"), ("dirfd", "fd", "a0"), ("path", "path@a0", "s0"),
             ("mode", "hex", "a2")), strings=(1,)),
    Syscall("rmdir", "file", 0, 84, "rmdir", (("res", "errno", "res"), ("path", "path", "s0")), strings=(0,)),
    Syscall("chmod", "file", 0, 90, "chmod",
            (("res", "errno", "res"), ("filename", "path", "s0"), ("mode", "modeflags", "a1")),
            strings=(0,)),
    Syscall("fchmod", "file", 0, 91, "fchmod",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("mode", "modeflags", "a1")), filefd=FD_ARG0),
    Syscall("fchmodat", "file", 0, 268, "fchmodat",
            (("res", "errno", "res"), ("dirfd", "fd", "a0"), ("filename", "path@a0", "s0"),
             ("mode", "modeflags", "a2")), strings=(1,)),
    Syscall("link", "file", 0, 86, "link",
            (("res", "errno", "res"), ("oldpath", "path", "s0"), ("newpath", "path", "s1")),
            strings=(0, 1)),
    Syscall("linkat", "file", 0, 265, "linkat",
            (("res", "errno", "res"), ("olddir", "fd", "a0"), ("oldpath", "path@a0", "s0"),
             ("newdir", "fd", "a2"), ("newpath", "path@a2", "s1"), ("flags", "linkatflags", "a4")),
            strings=(1, 3)),
    Syscall("symlink", "file", 0, 88, "symlink",
            (("res", "errno", "res"), ("target", "str", "s0"), ("linkpath", "path", "s1")),
            strings=(0, 1)),
    Syscall("symlinkat", "file", 0, 266, "symlinkat",
            (("res", "errno", "res"), ("target", "str", "s0"), ("linkdirfd", "fd", "a1"),
             ("linkpath", "path@a1", "s1")), strings=(0, 2)),
    Syscall("mount", "file", 0, 165, "mount",
            (("res", "errno", "res"), ("dev", "str", "s0"), ("dir", "path", "s1"),
             ("type", "str", "s2"), ("flags", "mountflags", "a3")), strings=(0, 1, 2)),
    Syscall("umount2", "file", 0, 166, "umount",
            (("res", "errno", "res"), ("name", "path", "s0"), ("flags", "umountflags", "a1")),
            strings=(0,)),
    Syscall("memfd_create", "memory", CREATES_FD, 319, "memfd_create",
            (("fd", "fd", "res"), ("name", "str", "s0"), ("flags", "memfdflags", "a1")),
            strings=(0,), creates_fd=True),
    # processes
    Syscall("execve", "process", 0, 59, "execve", (("res", "errno", "res"), *_PROC, ("filename", "path", "s0")),
            strings=(0,), strings_if_failed=True),
    Syscall("execveat", "process", 0, 322, "execveat",
            (("res", "errno", "res"), *_PROC, ("dirfd", "fd", "a0"), ("pathname", "path@a0", "s0"),
             ("flags", "execveatflags", "a4")), strings=(1,), strings_if_failed=True),
    Syscall("clone", "process", 0, 56, "clone", (("res", "pid", "res"), *_PROC, ("flags", "cloneflags", "a0"))),
    Syscall("clone3", "process", 0, 435, "clone3",
            (("res", "pid", "res"), *_PROC, ("flags", "cloneflags", "how.flags")), addr=(0, 8, ADDR_FIXED)),
    Syscall("fork", "process", 0, 57, "fork", (("res", "pid", "res"), *_PROC)),
    Syscall("vfork", "process", 0, 58, "vfork", (("res", "pid", "res"), *_PROC)),
    Syscall("ptrace", "process", 0, 101, "ptrace",
            (("res", "errno", "res"), ("addr", "hex", "a2"), ("data", "hex", "a3"),
             ("request", "ptrace", "a0"), ("pid", "pid", "a1"))),
    Syscall("setuid", "user", 0, 105, "setuid", (("res", "errno", "res"), ("uid", "uid", "a0"))),
    Syscall("setgid", "user", 0, 106, "setgid", (("res", "errno", "res"), ("gid", "gid", "a0"))),
    Syscall("setresuid", "user", 0, 117, "setresuid",
            (("res", "errno", "res"), ("ruid", "uid", "a0"), ("euid", "uid", "a1"),
             ("suid", "uid", "a2"))),
    Syscall("setresgid", "user", 0, 119, "setresgid",
            (("res", "errno", "res"), ("rgid", "gid", "a0"), ("egid", "gid", "a1"),
             ("sgid", "gid", "a2"))),
    Syscall("setsid", "process", 0, 112, "setsid", (("res", "pid", "res"),)),
    Syscall("setpgid", "process", 0, 109, "setpgid",
            (("res", "errno", "res"), ("pid", "pid", "a0"), ("pgid", "pid", "a1"))),
    Syscall("setns", "process", USES_FD, 308, "setns",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("nstype", "cloneflags", "a1")), filefd=FD_ARG0),
    Syscall("unshare", "process", 0, 272, "unshare", (("res", "errno", "res"), ("flags", "cloneflags", "a0"))),
    Syscall("init_module", "other", 0, 175, "init_module",
            (("res", "errno", "res"), ("length", "uint", "a1"), ("uargs", "str", "s0")),
            strings=(2,)),
    Syscall("finit_module", "other", 0, 313, "finit_module",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("uargs", "str", "s0"), ("flags", "int", "a2")),
            strings=(1,), filefd=FD_ARG0),
    Syscall("bpf", "other", CREATES_FD, 321, "bpf", (("fd", "fd", "res"), ("cmd", "int", "a0")), creates_fd=True),
    Syscall("userfaultfd", "file", CREATES_FD, 323, "userfaultfd",
            (("res", "fd", "res"), ("flags", "openflags", "a0")), creates_fd=True),
    # network
    Syscall("socket", "net", CREATES_FD, 41, "socket",
            (("fd", "fd", "res"), ("domain", "family", "a0"), ("type", "uint", "a1"),
             ("proto", "uint", "a2")), sockfd=FD_RES, creates_fd=True),
    Syscall("connect", "net", USES_FD, 42, "connect",
            (("res", "errno", "res"), ("tuple", "tuple", "tuple"), ("fd", "fd", "a0"),
             ("addr", "sockaddr", "addr")), addr=(1, 2, ADDR_LEN_VALUE), sockfd=FD_ARG0),
    Syscall("accept", "net", CREATES_FD, 43, "accept",
            (("fd", "fd", "res"), ("tuple", "tuple", "tuple"), ("queuepct", "uint", "zero")),
            addr=(1, 2, ADDR_LEN_PTR), sockfd=FD_RES, creates_fd=True),
    Syscall("accept4", "net", CREATES_FD, 288, "accept4",
            (("fd", "fd", "res"), ("tuple", "tuple", "tuple"), ("queuepct", "uint", "zero"),
             ("flags", "int", "a3")), addr=(1, 2, ADDR_LEN_PTR), sockfd=FD_RES, creates_fd=True),
    Syscall("bind", "net", USES_FD, 49, "bind",
            (("res", "errno", "res"), ("addr", "sockaddr", "addr"), ("fd", "fd", "a0")),
            addr=(1, 2, ADDR_LEN_VALUE), sockfd=FD_ARG0),
    Syscall("listen", "net", USES_FD, 50, "listen",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("backlog", "int", "a1")), sockfd=FD_ARG0),
    Syscall("sendto", "io_write", USES_FD | WRITES, 44, "sendto",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("size", "uint", "a2"),
             ("tuple", "tuple", "tuple")), addr=(4, 5, ADDR_LEN_VALUE), sockfd=FD_ARG0),
    Syscall("sendmsg", "io_write", USES_FD | WRITES, 46, "sendmsg",
            (("res", "errno", "res"), ("fd", "fd", "a0"), ("tuple", "tuple", "tuple")),
            addr=(1, -1, ADDR_MSGHDR), sockfd=FD_ARG0),
    Syscall("recvfrom", "io_read", USES_FD | READS, 45, "recvfrom",
            (("res", "errno", "res"), ("tuple", "tuple", "tuple"), ("fd", "fd", "a0"),
             ("size", "uint", "a2")), addr=(4, 5, ADDR_LEN_PTR), sockfd=FD_ARG0),
    Syscall("recvmsg", "io_read", USES_FD | READS, 47, "recvmsg",
            (("res", "errno", "res"), ("tuple", "tuple", "tuple"), ("fd", "fd", "a0")),
            addr=(1, -1, ADDR_MSGHDR), sockfd=FD_ARG0),
)
# Event types the engine knows the category and flags of, which the capture does not trace.
UNTRACED: tuple[Syscall, ...] = (
    Syscall("open_by_handle_at", "file", CREATES_FD),
    Syscall("read", "io_read", USES_FD | READS),
    Syscall("pread", "io_read", USES_FD | READS),
    Syscall("readv", "io_read", USES_FD | READS),
    Syscall("preadv", "io_read", USES_FD | READS),
    Syscall("recv", "io_read", USES_FD | READS),
    Syscall("recvmmsg", "io_read", 0),
    Syscall("write", "io_write", USES_FD | WRITES),
    Syscall("pwrite", "io_write", USES_FD | WRITES),
    Syscall("writev", "io_write", USES_FD | WRITES),
    Syscall("pwritev", "io_write", USES_FD | WRITES),
    Syscall("send", "io_write", USES_FD | WRITES),
    Syscall("sendmmsg", "io_write", 0),
    Syscall("sendfile", "io_write", USES_FD),
    Syscall("splice", "io_other", USES_FD),
    Syscall("fcntl", "io_other", USES_FD),
    Syscall("ioctl", "io_other", USES_FD),
    Syscall("io_uring_enter", "io_other", USES_FD | WRITES),
    Syscall("stat", "file", 0),
    Syscall("lstat", "file", 0),
    Syscall("stat64", "file", 0),
    Syscall("lstat64", "file", 0),
    Syscall("fstat", "file", USES_FD),
    Syscall("fstat64", "file", USES_FD),
    Syscall("lseek", "file", USES_FD),
    Syscall("llseek", "file", USES_FD),
    Syscall("getdents", "file", USES_FD),
    Syscall("getdents64", "file", USES_FD),
    Syscall("flock", "file", USES_FD),
    Syscall("getcwd", "file", 0),
    Syscall("access", "file", 0),
    Syscall("umount", "file", 0),
    Syscall("copy_file_range", "file", USES_FD | READS | WRITES),
    Syscall("shutdown", "net", USES_FD),
    Syscall("setsockopt", "net", USES_FD),
    Syscall("getsockopt", "net", USES_FD),
    Syscall("getsockname", "net", 0),
    Syscall("getpeername", "net", 0),
    Syscall("socketpair", "IPC", CREATES_FD),
    Syscall("pipe", "IPC", CREATES_FD),
    Syscall("pipe2", "IPC", CREATES_FD),
    Syscall("eventfd", "IPC", CREATES_FD),
    Syscall("eventfd2", "IPC", CREATES_FD),
    Syscall("inotify_init", "IPC", CREATES_FD),
    Syscall("inotify_init1", "IPC", CREATES_FD),
    Syscall("futex", "IPC", 0),
    Syscall("signalfd", "signal", CREATES_FD),
    Syscall("signalfd4", "signal", CREATES_FD),
    Syscall("kill", "signal", 0),
    Syscall("tkill", "signal", 0),
    Syscall("tgkill", "signal", 0),
    Syscall("timerfd_create", "time", CREATES_FD),
    Syscall("nanosleep", "sleep", WAITS),
    Syscall("epoll_wait", "wait", WAITS),
    Syscall("poll", "wait", WAITS),
    Syscall("ppoll", "wait", WAITS),
    Syscall("select", "wait", WAITS),
    Syscall("procexit", "process", 0),
    Syscall("chroot", "process", 0),
    Syscall("getrlimit", "process", 0),
    Syscall("setrlimit", "process", 0),
    Syscall("prlimit", "process", 0),
    Syscall("semop", "process", 0),
    Syscall("semctl", "process", 0),
    Syscall("semget", "process", 0),
    Syscall("getuid", "user", 0),
    Syscall("geteuid", "user", 0),
    Syscall("getgid", "user", 0),
    Syscall("getegid", "user", 0),
    Syscall("getresuid", "user", 0),
    Syscall("getresgid", "user", 0),
    Syscall("quotactl", "user", 0),
    Syscall("brk", "memory", 0),
    Syscall("mmap", "memory", 0),
    Syscall("mmap2", "memory", 0),
    Syscall("munmap", "memory", 0),
    Syscall("mprotect", "memory", 0),
    Syscall("mlock", "memory", 0),
    Syscall("munlock", "memory", 0),
    Syscall("mlockall", "memory", 0),
    Syscall("munlockall", "memory", 0),
    Syscall("seccomp", "other", 0),
    Syscall("io_uring_setup", "other", CREATES_FD),
    Syscall("io_uring_register", "other", USES_FD),
)

TABLE: tuple[Syscall, ...] = CAPTURED + UNTRACED
BY_NAME: dict[str, Syscall] = {s.name: s for s in TABLE}
BY_NR: dict[int, Syscall] = {s.nr: s for s in CAPTURED if s.nr is not None}
# (category, flags) by event type: what the fields read per event, one dict lookup.
INFO: dict[str, tuple[str, int]] = {s.name: (s.category, s.flags) for s in TABLE}
