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
    ("uid", "u32", 1), ("gid", "u32", 1),
    ("cpu", "u32", 1),
    ("ts", "u64", 1),                             # CLOCK_BOOTTIME ns
    ("cgroup", "u64", 1),                         # cgroup v2 id of the task
    ("comm", "char", 16),
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
    ("lport", "u16", 1), ("rport", "u16", 1), ("pad0", "u16", 1), ("pad1", "u32", 1),
    ("ino", "u64", 1),
    ("dev", "u32", 1), ("imode", "u32", 1),       # inode's s_dev and i_mode
    ("laddr_raw", "u8", 16), ("raddr_raw", "u8", 16),
)

# sched_process_exec: the new program, read from the kernel (bprm, mm, cred, signal) at exec time.
EXEC = (
    *HEADER,
    ("ppid", "u32", 1), ("vpid", "u32", 1), ("sid", "u32", 1), ("vpgid", "u32", 1),
    ("loginuid", "u32", 1), ("tty", "u32", 1), ("euid", "u32", 1), ("egid", "u32", 1),
    ("old_pid", "u32", 1), ("xflags", "u32", 1),
    ("cap_inh", "u64", 1), ("cap_perm", "u64", 1), ("cap_eff", "u64", 1),
    ("start", "u64", 1),                          # task->start_boottime
    ("exe_ino", "u64", 1),
    ("l_filename", "u16", 1), ("l_args", "u16", 1), ("l_env", "u16", 1), ("l_exe", "u16", 1),
    # the names of the task's cgroup v2 directory and of its parent: enough to tell the container
    # even when the cgroup is gone by the time user space looks
    ("l_cg_parent", "u16", 1), ("l_cg_leaf", "u16", 1), ("pad0", "u32", 1),
)

# sched_process_fork for a new process (threads are filtered in the kernel).
FORK = (
    *HEADER,
    ("child_tid", "u32", 1), ("child_tgid", "u32", 1), ("child_ppid", "u32", 1),
    ("child_vpid", "u32", 1), ("child_start", "u64", 1),
)

# sched_process_exit when the whole thread group is gone.
EXIT = (*HEADER, ("exit_code", "s32", 1), ("pad0", "u32", 1))

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
    return out


LAYOUTS = _build()


def c_structs() -> str:
    """C declarations of every record, each followed by a size assertion."""
    lines = []
    for name, (kind, fields) in RECORDS.items():
        lines.append(f"#define K_{name.upper()} {kind}")
        lines.append(f"struct rec_{name} {{")
        for fname, ctype, count in fields:
            lines.append(f"    {ctype} {fname}{f'[{count}]' if count > 1 else ''};")
        lines.append("};")
        lines.append(f"_Static_assert(sizeof(struct rec_{name}) == {LAYOUTS[name].size}, "
                     f"\"rec_{name} size differs from sensor/capture/layout.py\");")
    for flag in ("X_STR_FAULT", "X_HAVE_SOCK", "X_HAVE_FILE", "X_EXE_MEMFD", "X_EXE_TRUNC"):
        lines.append(f"#define {flag} {globals()[flag]}")
    return "\n".join(lines) + "\n"
