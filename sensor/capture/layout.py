"""The record layouts the BPF program writes into the ring buffer, declared once.

Each record is a fixed part (one C struct, one precompiled `struct.Struct`) optionally followed by
variable-length strings whose lengths sit in the fixed part. `c_structs()` renders the C
declarations with a `_Static_assert` on every size, so a C struct and its decoder cannot drift
apart: the BPF compile fails instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# C type -> struct format code. Arrays of char/u8 become bytes ("16s").
_CODES = {"u8": "B", "u16": "H", "u32": "I", "s32": "i", "u64": "Q", "s64": "q", "char": "s"}
_SIZES = {"u8": 1, "u16": 2, "u32": 4, "s32": 4, "u64": 8, "s64": 8, "char": 1}

# Record kinds (the first u16 of every record).
K_SYSCALL, K_EXEC, K_FORK, K_EXIT = 1, 2, 3, 4

HEADER: tuple[tuple[str, str, int], ...] = (
    ("kind", "u16", 1), ("nr", "u16", 1),         # record kind; syscall number (K_SYSCALL)
    ("tid", "u32", 1), ("tgid", "u32", 1),
    ("uid", "u32", 1), ("gid", "u32", 1),         # real ids
    ("euid", "u32", 1), ("egid", "u32", 1),       # effective ids (user.uid, group.gid)
    ("cpu", "u32", 1),
    ("ts", "u64", 1),                             # CLOCK_BOOTTIME ns
    ("cgroup", "u64", 1),                         # cgroup v2 id of the task
    ("comm", "char", 16),                         # the thread group leader's comm (proc.name)
)

# The exit side of a syscall with its saved arguments; strings (up to three paths) and a socket
# address follow the fixed part, lengths in l0..l2 and laddr (string lengths include the NUL).
SYSCALL = (
    *HEADER,
    ("res", "s64", 1),
    ("a0", "u64", 1), ("a1", "u64", 1), ("a2", "u64", 1),
    ("a3", "u64", 1), ("a4", "u64", 1), ("a5", "u64", 1),
    ("l0", "u16", 1), ("l1", "u16", 1), ("l2", "u16", 1), ("laddr", "u16", 1),
    ("xflags", "u32", 1),                         # X_* bits below
    ("fmode", "u32", 1),                          # file->f_mode of the created/used file
    ("sk_family", "u16", 1), ("sk_type", "u16", 1), ("sk_proto", "u16", 1),
    ("lport", "u16", 1), ("rport", "u16", 1),
    ("l_dir", "u16", 1),                          # the kernel's path of the directory the path is
                                                  # relative to (openat's dirfd, fchdir's fd)
    ("sk_state", "u8", 1), ("kclass", "u8", 1),   # socket state; KCLASS_*: why the record was sent
    ("pad0", "u16", 1),
    ("ino", "u64", 1),
    ("dev", "u32", 1), ("imode", "u32", 1),       # inode's s_dev and i_mode
    ("laddr_raw", "u8", 16), ("raddr_raw", "u8", 16),
)

# sched_process_exec: the new program, read from the kernel (bprm, mm, cred, signal) at exec time.
EXEC = (
    *HEADER,
    ("ppid", "u32", 1), ("vpid", "u32", 1), ("sid", "u32", 1), ("vpgid", "u32", 1),
    ("loginuid", "u32", 1), ("tty", "u32", 1),
    ("old_pid", "u32", 1), ("xflags", "u32", 1),
    ("cap_inh", "u64", 1), ("cap_perm", "u64", 1), ("cap_eff", "u64", 1),
    ("start", "u64", 1),                          # task->start_boottime
    ("exe_ino", "u64", 1),
    ("exe_ctime", "u64", 1), ("exe_mtime", "u64", 1),   # the executable's inode times, ns
    ("l_filename", "u16", 1), ("l_args", "u16", 1), ("l_env", "u16", 1), ("l_exe", "u16", 1),
    # the names of the task's cgroup v2 directory and of its parent: enough to tell the container
    # even when the cgroup is gone by the time user space looks
    ("l_cg_parent", "u16", 1), ("l_cg_leaf", "u16", 1),
    ("l_exepath", "u16", 1),                      # the executable's path from its dentries
    ("pad0", "u16", 1),
)

# sched_process_fork for a new process (threads are filtered in the kernel).
FORK = (
    *HEADER,
    ("child_tid", "u32", 1), ("child_tgid", "u32", 1), ("child_ppid", "u32", 1),
    ("child_vpid", "u32", 1), ("child_start", "u64", 1),
)

# sched_process_exit when the whole thread group is gone.
EXIT = (*HEADER, ("exit_code", "s32", 1), ("pad0", "u32", 1))

# Rows of the probe's maps that user space writes, declared here for the same reason.
# One per syscall (the `specs` map): what the probe reads and how it filters.
SPEC = (
    ("enabled", "u8", 1),
    ("str", "u8", 3),             # argument index read as a string into slot 0..2, 0xFF for none
    ("addr", "u8", 1),            # argument index of the address, 0xFF for none
    ("addrlen", "u8", 1),         # argument index of its length (or the byte count for ADDR_FIXED)
    ("addrmode", "u8", 1),
    ("sockfd", "u8", 1),          # FD_*: read the socket of this fd
    ("filefd", "u8", 1),          # FD_*: read inode/dev/f_mode of this fd
    ("creates_fd", "u8", 1),      # remember (tgid, res) in known_fds
    ("closes_fd", "u8", 1),       # emit only when (tgid, args[0]) is in known_fds
    ("open", "u8", 1),            # an open: flags at args[flags_arg] (openat2: in its open_how)
    ("flags_arg", "u8", 1),
    ("raw", "u8", 1),             # no tracepoint here: served by the raw sys_enter hook
    ("str_if_failed", "u8", 1),   # read the strings only when the call failed (execve)
    ("state", "u8", 1),           # sent for the process or fd state whatever the rules say
    ("dirfd0", "u8", 1),          # argument holding the dirfd string slot 0 is relative to; 0xFF none
    ("fd_path", "u8", 1),         # send the kernel's path of the directory fd in argument 0 (fchdir)
    ("kf_mode", "u8", 1),         # KF_*: how the kernel filter judges this syscall
    ("kf_count", "u8", 1),        # the terms are kterms[kf_first .. kf_first + kf_count)
    ("kf_first", "u16", 1),
    ("sock_args", "u8", 1),       # socket(): the fd's family, type and protocol are its arguments
    ("pad0", "u8", 1),
    ("kf_needs", "u32", 1),       # KC_* bits some term of this syscall tests
    ("pad1", "u32", 1),
    # The terms the result's sign and the open's access mode leave, one bit per term, by class
    # (result < 0) * 4 + (flags & 3): the probe tests only those (a term costs a cache line).
    *((f"kf_mask{i}", "u64", 1) for i in range(8)),
)
KF_ALL, KF_TERMS = 0, 1           # spec.kf_mode: every event is wanted / only what a term matches

# One conjunction of the kernel filter (the `kterms` map); `checks` says which fields apply.
KTERM = (
    ("checks", "u32", 1),
    ("acc", "u8", 1),             # KC_ACC: one bit per open access mode (flags & 3)
    ("ftype", "u8", 1),           # KC_FTYPE: one bit per FT_* class of the fd
    ("l4", "u8", 1),              # KC_L4: one bit per L4_* class
    ("dfa", "u8", 1),             # bit per string slot: its path set has "contains"/"ends with" parts
    ("fl_all", "u32", 1), ("fl_none", "u32", 1),          # KC_FLAGS: open flags set / clear
    ("res_lo0", "s64", 1), ("res_hi0", "s64", 1),         # KC_RES: the result in one of two ranges
    ("res_lo1", "s64", 1), ("res_hi1", "s64", 1),
    ("uid_lo0", "u32", 1), ("uid_hi0", "u32", 1),         # KC_UID: the euid in one of two ranges
    ("uid_lo1", "u32", 1), ("uid_hi1", "u32", 1),
    ("comm_in", "u64", 1), ("comm_out", "u64", 1),        # KC_COMM_*: comm set bits
    ("path0", "u64", 1), ("raw0", "u64", 1),              # KC_PATH0/RAW0: path set bits, string 0
    ("path1", "u64", 1), ("raw1", "u64", 1),              # ... string 1
    ("lnet_in", "u64", 1), ("lnet_out", "u64", 1),        # KC_LNET: net set bits, local address
    ("rnet_in", "u64", 1), ("rnet_out", "u64", 1),        # KC_RNET: remote address
    ("lport", "u16", 1), ("rport", "u16", 1),             # KC_*PORT: port set index + 1
    ("pad1", "u32", 1),
)
KC = {name: 1 << i for i, name in enumerate((
    "RES", "ACC", "FLAGS", "UID", "COMM_IN", "COMM_OUT", "CONTAINER", "FTYPE", "L4", "PATH0", "RAW0",
    "PATH1", "RAW1", "LNET", "RNET", "LPORT", "RPORT"))}
# the fd's class as the kernel can tell it (FT_NONSOCK: not a socket, which kind not known)
FT = {name: 1 << i for i, name in enumerate(("FILE", "DIR", "PIPE", "UNIX", "IPV4", "IPV6", "NONSOCK"))}
L4 = {name: 1 << i for i, name in enumerate(("TCP", "UDP", "ICMP", "RAW", "NA"))}

STRUCTS: dict[str, tuple[tuple[str, str, int], ...]] = {"spec": SPEC, "kterm": KTERM}

RECORDS: dict[str, tuple[int, tuple[tuple[str, str, int], ...]]] = {
    "syscall": (K_SYSCALL, SYSCALL),
    "exec": (K_EXEC, EXEC),
    "fork": (K_FORK, FORK),
    "exit": (K_EXIT, EXIT),
}

# SYSCALL.xflags
X_STR_FAULT = 1 << 0          # a string argument could not be read
X_HAVE_SOCK = 1 << 1          # the sk_* / port / addr fields were read from the socket
X_HAVE_FILE = 1 << 2          # ino/dev/imode/fmode were read from the file
# EXEC.xflags
X_EXE_MEMFD = 1 << 8          # the executable's dentry is named memfd:...
X_EXE_TRUNC = 1 << 9          # args or env were cut at the read limit
X_EXE_UPPER = 1 << 10         # the executable lives in an overlayfs upper layer
X_EXE_OVERLAY = 1 << 11       # the executable lives on an overlayfs (upper or lower)

# SYSCALL.kclass: why the kernel sent a record (the ring's budget treats them differently)
KCLASS_RULE = 1               # some rule may match it
KCLASS_STATE = 2              # no rule can match it, but the process or fd state needs it


@dataclass(frozen=True, slots=True)
class Layout:
    """One record: its kind, field names in order, and the compiled fixed part."""

    name: str
    kind: int
    names: tuple[str, ...]
    struct: struct.Struct

    @property
    def size(self) -> int:
        return self.struct.size


def _fmt(fields: tuple[tuple[str, str, int], ...]) -> str:
    out = ["<"]
    for _name, ctype, count in fields:
        if ctype in ("char", "u8") and count > 1:
            out.append(f"{count}s")
        else:
            out.append(_CODES[ctype] * count)
    return "".join(out)


def _check_alignment(name: str, fields: tuple[tuple[str, str, int], ...]) -> None:
    # Natural alignment everywhere, so the C compiler inserts no padding the decoder would miss.
    off = 0
    for fname, ctype, count in fields:
        size = _SIZES[ctype]
        if off % size:
            raise AssertionError(f"{name}.{fname} at offset {off} is not {size}-byte aligned")
        off += size * count
    if off % 8:
        raise AssertionError(f"record {name} is {off} bytes, not a multiple of 8")


def _build() -> dict[str, Layout]:
    out = {}
    for name, (kind, fields) in RECORDS.items():
        _check_alignment(name, fields)
        names = tuple(f[0] for f in fields)
        out[name] = Layout(name, kind, names, struct.Struct(_fmt(fields)))
    for name, fields in STRUCTS.items():
        _check_alignment(name, fields)
        out[name] = Layout(name, 0, tuple(f[0] for f in fields), struct.Struct(_fmt(fields)))
    return out


LAYOUTS = _build()


def pack(name: str, **values: object) -> bytes:
    """One row of a STRUCTS table; fields not given are zero (arrays: zero bytes)."""
    lay = LAYOUTS[name]
    fields = STRUCTS[name]
    out: list[object] = []
    for fname, ctype, count in fields:
        v = values.pop(fname, None)
        if ctype in ("char", "u8") and count > 1:
            if v is not None and not isinstance(v, (bytes, bytearray)):
                raise TypeError(f"{name}.{fname} is a byte array, not {type(v).__name__}")
            out.append(bytes(v or b"").ljust(count, b"\0"))
        else:
            out.append(0 if v is None else v)
    if values:
        raise KeyError(f"{name} has no field(s) {sorted(values)}")
    return lay.struct.pack(*out)


def c_structs() -> str:
    """C declarations of every record and map row, each followed by a size assertion."""
    lines = []
    for name, fields in STRUCTS.items():
        lines.append(f"struct {name} {{")
        for fname, ctype, count in fields:
            lines.append(f"    {ctype} {fname}{f'[{count}]' if count > 1 else ''};")
        lines.append("};")
        lines.append(f"_Static_assert(sizeof(struct {name}) == {LAYOUTS[name].size}, "
                     f"\"{name} size differs from sensor/capture/layout.py\");")
    for prefix, table in (("KC_", KC), ("FT_", FT), ("L4_", L4)):
        lines += [f"#define {prefix}{k} {v}" for k, v in table.items()]
    lines += [f"#define KF_ALL {KF_ALL}", f"#define KF_TERMS {KF_TERMS}"]
    for name, (kind, fields) in RECORDS.items():
        lines.append(f"#define K_{name.upper()} {kind}")
        lines.append(f"struct rec_{name} {{")
        for fname, ctype, count in fields:
            lines.append(f"    {ctype} {fname}{f'[{count}]' if count > 1 else ''};")
        lines.append("};")
        lines.append(f"_Static_assert(sizeof(struct rec_{name}) == {LAYOUTS[name].size}, "
                     f"\"rec_{name} size differs from sensor/capture/layout.py\");")
    for flag in ("X_STR_FAULT", "X_HAVE_SOCK", "X_HAVE_FILE", "X_EXE_MEMFD", "X_EXE_TRUNC", "X_EXE_UPPER",
                 "X_EXE_OVERLAY", "KCLASS_RULE", "KCLASS_STATE"):
        lines.append(f"#define {flag} {globals()[flag]}")
    return "\n".join(lines) + "\n"
