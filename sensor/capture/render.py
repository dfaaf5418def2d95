"""Falco's renderings of syscall arguments (libs driver/flags_table.c, ppm_events_public.h).

Falco converts Linux flag values to its own PPM_* bits and prints the names of the bits that are
set, in its table's order, each matched bit consumed (so O_RDWR is not also O_WRONLY|O_RDONLY).
`evt.rawarg.X` is the PPM value; `evt.arg.X` the rendered text. Renderings are cached by value:
a sensor sees the same few flag combinations over and over.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from functools import lru_cache

# --- open flags: Linux O_* -> PPM_O_* ---------------------------------------------------------
PPM_O_RDONLY, PPM_O_WRONLY, PPM_O_RDWR = 1 << 0, 1 << 1, 3
PPM_O_CREAT, PPM_O_APPEND, PPM_O_DSYNC, PPM_O_EXCL = 1 << 2, 1 << 3, 1 << 4, 1 << 5
PPM_O_NONBLOCK, PPM_O_SYNC, PPM_O_TRUNC, PPM_O_DIRECT = 1 << 6, 1 << 7, 1 << 8, 1 << 9
PPM_O_DIRECTORY, PPM_O_LARGEFILE, PPM_O_CLOEXEC, PPM_O_TMPFILE = 1 << 10, 1 << 11, 1 << 12, 1 << 13
PPM_O_F_CREATED = 1 << 14

# The kernel's x86_64 values (Python's os.O_LARGEFILE is 0 on 64-bit, the kernel's is not).
O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_NONBLOCK = 0o100, 0o200, 0o1000, 0o2000, 0o4000
O_DSYNC, O_DIRECT, O_LARGEFILE, O_DIRECTORY = 0o10000, 0o40000, 0o100000, 0o200000
O_CLOEXEC, O_SYNC, O_TMPFILE = 0o2000000, 0o4010000, 0o20200000
_LINUX_TO_PPM_OPEN = (
    (O_CREAT, PPM_O_CREAT), (O_APPEND, PPM_O_APPEND), (O_DSYNC, PPM_O_DSYNC), (O_EXCL, PPM_O_EXCL),
    (O_NONBLOCK, PPM_O_NONBLOCK), (O_SYNC, PPM_O_SYNC), (O_TRUNC, PPM_O_TRUNC), (O_DIRECT, PPM_O_DIRECT),
    (O_LARGEFILE, PPM_O_LARGEFILE), (O_CLOEXEC, PPM_O_CLOEXEC),
)
FILE_FLAGS = (
    ("O_LARGEFILE", PPM_O_LARGEFILE), ("O_DIRECTORY", PPM_O_DIRECTORY), ("O_DIRECT", PPM_O_DIRECT),
    ("O_TRUNC", PPM_O_TRUNC), ("O_SYNC", PPM_O_SYNC), ("O_NONBLOCK", PPM_O_NONBLOCK),
    ("O_EXCL", PPM_O_EXCL), ("O_DSYNC", PPM_O_DSYNC), ("O_APPEND", PPM_O_APPEND),
    ("O_CREAT", PPM_O_CREAT), ("O_RDWR", PPM_O_RDWR), ("O_WRONLY", PPM_O_WRONLY),
    ("O_RDONLY", PPM_O_RDONLY), ("O_CLOEXEC", PPM_O_CLOEXEC), ("O_TMPFILE", PPM_O_TMPFILE),
    ("O_F_CREATED", PPM_O_F_CREATED),
)


@lru_cache(maxsize=1024)
def open_flags_to_ppm(flags: int) -> int:
    """Linux open(2) flags as Falco's PPM_O_* bits."""
    acc = flags & 3
    out = {0: PPM_O_RDONLY, 1: PPM_O_WRONLY, 2: PPM_O_RDWR}.get(acc, 0)
    for linux, ppm in _LINUX_TO_PPM_OPEN:
        if flags & linux == linux:
            out |= ppm
    if flags & O_TMPFILE == O_TMPFILE:
        out |= PPM_O_TMPFILE
    elif flags & O_DIRECTORY:
        out |= PPM_O_DIRECTORY
    return out


def render_flags(value: int, table: tuple[tuple[str, int], ...], none: str = "") -> str:
    """Names of the bits set in `value`, in the table's order, each bit consumed once."""
    names = []
    rest = value
    for name, bit in table:
        if bit and rest & bit == bit:
            names.append(name)
            rest &= ~bit
    return "|".join(names) if names else none


@lru_cache(maxsize=1024)
def open_flags(flags: int) -> str:
    """Linux open flags rendered as Falco does: `O_RDONLY|O_CLOEXEC`."""
    return render_flags(open_flags_to_ppm(flags), FILE_FLAGS, "O_NONE")


# --- chmod modes: PT_MODE with chmod_mode ------------------------------------------------------
MODE_FLAGS = (
    ("S_IXOTH", 0o1), ("S_IWOTH", 0o2), ("S_IROTH", 0o4), ("S_IXGRP", 0o10), ("S_IWGRP", 0o20),
    ("S_IRGRP", 0o40), ("S_IXUSR", 0o100), ("S_IWUSR", 0o200), ("S_IRUSR", 0o400),
    ("S_ISVTX", 0o1000), ("S_ISGID", 0o2000), ("S_ISUID", 0o4000),
)


@lru_cache(maxsize=512)
def mode_flags(mode: int) -> str:
    """A chmod mode as Falco renders PT_MODE: `S_IXOTH|S_IROTH|...`."""
    return render_flags(mode & 0o7777, MODE_FLAGS, "0")


# --- clone / namespace flags: Linux CLONE_* names (Falco uses the same names) ------------------
CLONE_FLAGS = (
    ("CLONE_FILES", 0x400), ("CLONE_FS", 0x200), ("CLONE_IO", 0x80000000),
    ("CLONE_NEWIPC", 0x08000000), ("CLONE_NEWNET", 0x40000000), ("CLONE_NEWNS", 0x20000),
    ("CLONE_NEWPID", 0x20000000), ("CLONE_NEWUTS", 0x04000000), ("CLONE_PARENT", 0x8000),
    ("CLONE_PARENT_SETTID", 0x100000), ("CLONE_PTRACE", 0x2000), ("CLONE_SIGHAND", 0x800),
    ("CLONE_SYSVSEM", 0x40000), ("CLONE_THREAD", 0x10000), ("CLONE_UNTRACED", 0x800000),
    ("CLONE_VM", 0x100), ("CLONE_NEWUSER", 0x10000000), ("CLONE_CHILD_CLEARTID", 0x200000),
    ("CLONE_CHILD_SETTID", 0x1000000), ("CLONE_SETTLS", 0x80000), ("CLONE_VFORK", 0x4000),
    ("CLONE_NEWCGROUP", 0x02000000),
)


@lru_cache(maxsize=256)
def clone_flags(flags: int) -> str:
    return render_flags(flags & 0xFFFFFFFF, CLONE_FLAGS, "0")


# --- ptrace requests -----------------------------------------------------------------------------
PTRACE_REQUESTS = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSR",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSR", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH",
    18: "PTRACE_GETFPXREGS", 19: "PTRACE_SETFPXREGS", 21: "PTRACE_OLDSETOPTIONS",
    24: "PTRACE_SYSCALL", 25: "PTRACE_GET_THREAD_AREA", 26: "PTRACE_SET_THREAD_AREA",
    30: "PTRACE_ARCH_PRCTL", 31: "PTRACE_SYSEMU", 32: "PTRACE_SYSEMU_SINGLESTEP",
    33: "PTRACE_SINGLEBLOCK", 0x4200: "PTRACE_SETOPTIONS", 0x4201: "PTRACE_GETEVENTMSG",
    0x4202: "PTRACE_GETSIGINFO", 0x4203: "PTRACE_SETSIGINFO", 0x4204: "PTRACE_GETREGSET",
    0x4205: "PTRACE_SETREGSET", 0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT",
    0x4208: "PTRACE_LISTEN", 0x4209: "PTRACE_PEEKSIGINFO", 0x420A: "PTRACE_GETSIGMASK",
    0x420B: "PTRACE_SETSIGMASK",
}

# --- the small flag sets ------------------------------------------------------------------------
UNLINKAT_FLAGS = (("AT_REMOVEDIR", 0x200),)
LINKAT_FLAGS = (("AT_SYMLINK_FOLLOW", 0x400), ("AT_EMPTY_PATH", 0x1000))
RENAMEAT2_FLAGS = (("RENAME_NOREPLACE", 1), ("RENAME_EXCHANGE", 2), ("RENAME_WHITEOUT", 4))
EXECVEAT_FLAGS = (("AT_EMPTY_PATH", 0x1000), ("AT_SYMLINK_NOFOLLOW", 0x100))
MEMFD_FLAGS = (("MFD_CLOEXEC", 1), ("MFD_ALLOW_SEALING", 2), ("MFD_HUGETLB", 4),
               ("MFD_NOEXEC_SEAL", 8), ("MFD_EXEC", 0x10))
UMOUNT_FLAGS = (("FORCE", 1), ("DETACH", 2), ("EXPIRE", 4), ("NOFOLLOW", 8))
MOUNT_FLAGS = (
    ("RDONLY", 1), ("NOSUID", 2), ("NODEV", 4), ("NOEXEC", 8), ("SYNCHRONOUS", 16),
    ("REMOUNT", 32), ("MANDLOCK", 64), ("DIRSYNC", 128), ("NOATIME", 1024), ("NODIRATIME", 2048),
    ("BIND", 4096), ("MOVE", 8192), ("REC", 16384), ("SILENT", 32768), ("POSIXACL", 1 << 16),
    ("UNBINDABLE", 1 << 17), ("PRIVATE", 1 << 18), ("SLAVE", 1 << 19), ("SHARED", 1 << 20),
    ("RELATIME", 1 << 21), ("KERNMOUNT", 1 << 22), ("I_VERSION", 1 << 23),
    ("STRICTATIME", 1 << 24), ("LAZYTIME", 1 << 25),
)
OPENAT2_RESOLVE = (("RESOLVE_BENEATH", 8), ("RESOLVE_IN_ROOT", 0x10), ("RESOLVE_NO_MAGICLINKS", 2),
                   ("RESOLVE_NO_SYMLINKS", 4), ("RESOLVE_NO_XDEV", 1), ("RESOLVE_CACHED", 0x20))

FAMILIES = {
    0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 4: "AF_IPX", 5: "AF_APPLETALK", 9: "AF_X25",
    10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET", 31: "AF_BLUETOOTH", 38: "AF_ALG",
    40: "AF_VSOCK", 44: "AF_XDP",
}

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


@lru_cache(maxsize=256)
def capabilities(mask: int) -> str:
    """A capability set as Falco renders it: `CAP_CHOWN|CAP_KILL|...`."""
    return "|".join(name for i, name in enumerate(CAPABILITIES) if mask >> i & 1)


@lru_cache(maxsize=512)
def errno_name(res: int) -> str:
    """Falco's evt.res: SUCCESS, or the errno's name (ENOENT) for a negative result."""
    if res >= 0:
        return "SUCCESS"
    return errno.errorcode.get(-res, str(res))


def s32(v: int) -> int:
    """A register value as the signed int the syscall took (fds, pids, dirfds)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def ip_text(family: int, raw: bytes) -> str:
    if family == socket.AF_INET6:
        addr = ipaddress.IPv6Address(raw[:16])
        return str(addr.ipv4_mapped or addr)
    return socket.inet_ntoa(raw[:4])


def sockaddr(raw: bytes) -> tuple[int, str | None, int | None]:
    """(family, address, port) of a struct sockaddr; for AF_UNIX the path as address."""
    if len(raw) < 2:
        return 0, None, None
    family = struct.unpack_from("<H", raw)[0]
    if family == socket.AF_INET and len(raw) >= 8:
        port = struct.unpack_from(">H", raw, 2)[0]
        return family, socket.inet_ntoa(raw[4:8]), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        port = struct.unpack_from(">H", raw, 2)[0]
        return family, ip_text(family, raw[8:24]), port
    if family == socket.AF_UNIX:
        path = raw[2:].split(b"\0", 1)[0] if raw[2:3] != b"\0" else b"@" + raw[3:].rstrip(b"\0")
        return family, path.decode(errors="replace"), None
    return family, None, None

