"""What kill_process needs to know about a live process, read from /proc.

Start times are compared in nanoseconds since the epoch, as `proc.pid.ts` is: /proc/PID/stat field
22 counts clock ticks since boot (CLOCK_BOOTTIME), so the boot time is the difference between the
realtime and boottime clocks, taken now (as precise as the clocks, unlike /proc/stat's btime which
is whole seconds).
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000
# A container id in a cgroup path: docker-<64hex>.scope, cri-containerd-<64hex>.scope,
# crio-<64hex>.scope, libpod-<64hex>.scope, or a bare /docker/<64hex> directory.
_CONTAINER_ID_RE = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:/|$)")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/PID/stat that response decisions use."""

    pid: int
    comm: str
    ppid: int
    flags: int
    start_ns: int       # ns since the epoch

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)


def boot_time_ns() -> int:
    """The epoch time of boot, in ns (realtime minus boottime, both read now)."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def read_stat(pid: int, proc: Path = Path("/proc")) -> ProcStat | None:
    """The process's stat line, or None when it does not exist (any more)."""
    try:
        raw = (proc / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    open_, close = raw.index(b"("), raw.rindex(b")")
    comm = raw[open_ + 1:close].decode(errors="replace")
    rest = raw[close + 2:].split()
    # rest[0] is field 3 (state): field N is rest[N - 3].
    return ProcStat(pid=pid, comm=comm, ppid=int(rest[1]), flags=int(rest[6]),
                    start_ns=boot_time_ns() + int(rest[19]) * TICK_NS)


def container_id(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The 12-hex container id of the process (Falco's container.id), "host" when it is in no
    container, None when the process does not exist."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        m = _CONTAINER_ID_RE.search(path)
        if m:
            return m.group(1)[:12]
    return "host"


def cgroup(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The process's cgroup membership as one string (every hierarchy's path, cgroup v1 and v2),
    or None when it does not exist. Two processes are in the same group when these are equal."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    paths = []
    for line in text.splitlines():
        _, _, rest = line.partition(":")         # hierarchy-id:controllers:path
        paths.append(rest)
    return " ".join(sorted(paths))


def cgroup_name(membership: str) -> str:
    """The most telling path of a `cgroup()` membership: the unified (v2) one unless it is the
    root, else the first path that is not the root."""
    parts = [p.split(":", 1) for p in membership.split(" ") if ":" in p]
    unified = [path for ctrl, path in parts if ctrl == ""]
    if unified and unified[0] != "/":
        return unified[0]
    return next((path for _, path in parts if path != "/"), "/")


# Errors that mean this process is out of a resource, not that the entry went away: a walk that
# met one is incomplete and must say so rather than report fewer processes.
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)


def ancestors(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The PIDs above `pid` up to (and including) PID 1, nearest first."""
    out: list[int] = []
    seen = {pid}
    while True:
        st = read_stat(pid, proc)
        if st is None or st.ppid <= 0 or st.ppid in seen:
            return out
        out.append(st.ppid)
        seen.add(st.ppid)
        pid = st.ppid


def children_map(proc: Path = Path("/proc")) -> dict[int, list[ProcStat]]:
    """Every live process by its parent's PID (one pass over /proc). OSError when the walk could
    not be completed (out of file descriptors): never a silently shorter map."""
    out: dict[int, list[ProcStat]] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            st = read_stat(int(entry.name), proc)
        except OSError as e:
            if e.errno in _EXHAUSTED:
                raise
            continue        # exited while we read it
        except ValueError:
            continue        # a stat line being torn down
        if st is not None:
            out.setdefault(st.ppid, []).append(st)
    return out


def descendants(pid: int, proc: Path = Path("/proc")) -> list[ProcStat]:
    """The live descendants of `pid`, parents before their children."""
    tree = children_map(proc)
    out: list[ProcStat] = []
    todo = [pid]
    seen = {pid}
    while todo:
        for child in tree.get(todo.pop(0), []):
            if child.pid not in seen:
                seen.add(child.pid)
                out.append(child)
                todo.append(child.pid)
    return out
