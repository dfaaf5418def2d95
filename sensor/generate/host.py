"""What this host (or container) lets `falconet generate` do, and why not when it does not.

An action that cannot run says exactly why, from what the kernel answered: a read-only filesystem
(and which mount), a capability the process lacks (read from /proc/self/status), a port already in
use (only when bind says so), a seccomp or Yama policy. Inside a container the sentence ends with
where the actions do run: the lab's event-generator service.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Any

from sensor.errors import UnavailableError

# Capability numbers (linux/capability.h) of the ones the actions may need.
CAPS = {"CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10,
        "CAP_SYS_MODULE": 16, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21}
LAB_COMMAND = "docker compose -f compose/docker-compose.yml run --rm event-generator"


class CannotRun(UnavailableError):
    """An action this host or container does not allow, with the reason and the way out."""


def effective_capabilities(status: str | None = None) -> set[str]:
    """The names (of CAPS) in this process's effective capability set."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            bits = int(line.split()[1], 16)
            return {name for name, bit in CAPS.items() if bits >> bit & 1}
    return set()


def in_container() -> bool:
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def _where_it_runs() -> str:
    return f"; the lab's event-generator service has what the actions need: {LAB_COMMAND}" if in_container() else ""


def mount_point(path: str, mountinfo: str | None = None) -> str:
    """The mount `path` is on: the longest mount point above it in /proc/self/mountinfo (a bind
    mount of a directory onto itself is a mount that os.path.ismount does not see)."""
    target = str(Path(path).resolve())
    try:
        text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    except OSError:
        return target
    best = "/"
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].encode().decode("unicode_escape")       # \040 for a space
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best


def read_only(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def lacks(cap: str) -> bool:
    return cap not in effective_capabilities()


def explain(e: OSError, doing: str, path: str = "", cap: str = "") -> CannotRun:
    """The sentence for an OSError met while `doing` something (on `path`, which needs `cap`)."""
    if e.errno == errno.EROFS or (path and e.errno in (errno.EACCES, errno.EPERM) and read_only(path)):
        where = f"{mount_point(path)} is mounted read-only" if path else "the filesystem is read-only"
        return CannotRun(f"{doing}: {where}{_where_it_runs()}")
    if e.errno in (errno.EACCES, errno.EPERM):
        if cap and lacks(cap):
            return CannotRun(f"{doing} needs {cap}, which this process does not have{_where_it_runs()}")
        return CannotRun(f"{doing}: {e.strerror} (a security policy such as seccomp, AppArmor or SELinux "
                         f"refuses it){_where_it_runs()}")
    if e.errno == errno.EADDRINUSE:
        return CannotRun(f"{doing}: the port is in use; stop what listens there")
    if e.errno == errno.ENOENT and path:
        return CannotRun(f"{doing}: {path} does not exist here")
    return CannotRun(f"{doing}: {e.strerror or e}")


def run(argv: list[str], doing: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    """Run a helper program of an action; CannotRun with its own words when it fails."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
                              timeout=30, **kw)
    except FileNotFoundError as e:
        raise CannotRun(f"{doing}: {argv[0]} is not installed here") from e
    except subprocess.SubprocessError as e:
        # preexec_fn failed (moving into the cgroup): the child says why through the exception.
        cause = e.__cause__ if isinstance(e.__cause__, OSError) else None
        if cause is not None:
            raise explain(cause, doing) from e
        raise CannotRun(f"{doing}: {e}") from e
    return proc


def child_errno(proc: subprocess.CompletedProcess[bytes]) -> OSError | None:
    """The OSError a helper reported on its last stderr line as `errno NAME` (our python helpers do)."""
    for line in reversed(proc.stderr.decode(errors="replace").splitlines()):
        if line.startswith("errno "):
            name = line.split()[1]
            code = getattr(errno, name, 0)
            return OSError(code, os.strerror(code))
    return None


def unshare_failed(proc: subprocess.CompletedProcess[bytes], doing: str) -> CannotRun | None:
    """unshare(1) prints `unshare failed: Operation not permitted` when namespaces are refused."""
    text = proc.stderr.decode(errors="replace")
    if proc.returncode and "unshare failed" in text:
        if lacks("CAP_SYS_ADMIN"):
            return CannotRun(f"{doing}: new PID, UTS and IPC namespaces need CAP_SYS_ADMIN, which this "
                             f"process does not have{_where_it_runs()}")
        return CannotRun(f"{doing}: the kernel refused new namespaces ({text.strip().splitlines()[-1]}); "
                         f"a seccomp profile or user.max_*_namespaces forbids them{_where_it_runs()}")
    return None
