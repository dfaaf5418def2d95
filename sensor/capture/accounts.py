"""Account names for user.name, group.name and the like, as the process sees them.

Names come from the passwd/group file the process itself sees, as Falco reads them: /etc/passwd
for a host process, /proc/<pid>/root/etc/passwd for a process in a container (the container's own
users; through a live ancestor in the same container when the process has already exited).
Lookups are cached per (container, file, id) in a small bounded cache; a read failure (no process
of the container is left) is not cached, so the next event of the same container can still find
the name. The files are read directly, never through NSS, so a lookup cannot block on LDAP or DNS.
The capture installs `account` as Process.accounts, which the engine's fields call.
"""

from __future__ import annotations

from sensor.event import Process

# Where the files live; tests point these at a directory of their own.
HOST_ETC = "/etc"
PROC_ROOT = "/proc"

CACHE_SIZE = 4096
# Insertion-ordered: when full, the oldest entry goes (cheaper on the hot path than an LRU's reordering).
_cache: dict[tuple[str, str, int], tuple[str, ...] | None] = {}


def clear_cache() -> None:
    """Forget every cached account (after /etc/passwd changed, and between tests)."""
    _cache.clear()


_ANCESTORS = 16


def _db_paths(proc: Process, db: str) -> list[str]:
    """Where `proc` sees the file: the host's, or its container's through /proc/<pid>/root, and
    then through its ancestors in the same container, for when `proc` has exited already (a
    short-lived `id` in a container whose shell is still there)."""
    cid = proc.container.id
    if cid == "host":
        return [f"{HOST_ETC}/{db}"]
    paths: list[str] = []
    p: Process | None = proc
    while p is not None and len(paths) < _ANCESTORS and p.container.id == cid:
        paths.append(f"{PROC_ROOT}/{p.pid}/root/etc/{db}")
        p = p.parent
    return paths


def _read_lines(paths: list[str]) -> list[str] | None:
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            continue
    return None


def account(proc: Process, db: str, ident: int) -> tuple[str, ...] | None:
    """The entry for `ident` in the passwd or group file `proc` sees, without the id fields.

    passwd → (name, home, shell); group → (name,). None when no entry has that id or the file
    cannot be read.
    """
    key = (proc.container.id, db, ident)
    if key in _cache:
        return _cache[key]
    lines = _read_lines(_db_paths(proc, db))
    if lines is None:
        return None
    want = str(ident)
    entry = None
    for line in lines:
        parts = line.split(":")
        if len(parts) >= 3 and parts[2] == want and not line.startswith("#"):
            entry = (parts[0], parts[5], parts[6]) if db == "passwd" and len(parts) >= 7 else (parts[0],)
            break
    if len(_cache) >= CACHE_SIZE:
        del _cache[next(iter(_cache))]
    _cache[key] = entry
    return entry
