"""Containers from cgroup ids: which container a process is in, and what its runtime says about it.

`bpf_get_current_cgroup_id()` is the inode number of the task's cgroup v2 directory. The path of
that directory tells the runtime and the container id by its layout (one table, LAYOUTS, below);
a path with none of them is the host, whatever cgroup it is in (shells here live in
/process_api/<id>, not in /). On a hybrid host (cgroup v1 controllers, v2 at
/sys/fs/cgroup/unified) runc places the container in a v2 cgroup of the same path as in v1.

Name, image, privileged, mounts and labels come from the runtime's API when its socket answers
(runtimes.py); otherwise they stay None and print as <NA>. From a kubepods cgroup alone only the
pod UID is known. containerd speaks only gRPC and is not asked: its containers are known by id.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sensor.capture.runtimes import RuntimeClient
from sensor.event import HOST, Container

_HEX64 = r"([0-9a-f]{64})"
# Leaf names that carry a container id: (pattern on one path component, runtime type). The path is
# read from the leaf upwards, so a process in a cgroup nested below the container's (systemd's
# libpod-<id>.scope/container, a payload's own init.scope) belongs to that container.
LAYOUTS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Docker, systemd driver: system.slice/docker-<id>.scope
    (re.compile(rf"^docker-{_HEX64}\.scope$"), "docker"),
    # containerd's CRI plugin, systemd driver: kubepods…slice/cri-containerd-<id>.scope
    (re.compile(rf"^cri-containerd-{_HEX64}\.scope$"), "containerd"),
    # CRI-O: crio-<id>.scope (systemd driver), crio-<id> (cgroupfs driver). crio-conmon-<id> is
    # CRI-O's monitor, a host process.
    (re.compile(rf"^crio-{_HEX64}(?:\.scope)?$"), "cri-o"),
    # Podman: machine.slice/libpod-<id>.scope (systemd driver), libpod_parent/libpod-<id>
    # (cgroupfs driver, run here), libpod_parent/<pod id>/libpod-<id> (a container of a pod,
    # run here), <--cgroup-parent>/libpod-<id>. libpod-conmon-<id>.scope is the host's conmon.
    (re.compile(rf"^libpod-{_HEX64}(?:\.scope)?$"), "podman"),
    # nerdctl (containerd), systemd driver.
    (re.compile(rf"^nerdctl-{_HEX64}\.scope$"), "containerd"),
)
# The cgroupfs drivers that name a container's cgroup by its bare id, under a parent of theirs:
# Docker (docker/<id>), containerd's ctr and its default OCI spec (/<namespace>/<id>, for the
# namespaces `ctr` and the CRI plugin use; run here), and the kubelet (kubepods/…/pod<uid>/<id>).
# A bare id under libpod_parent is a Podman pod's cgroup, not a container's.
_BARE_PARENTS = {"docker": "docker"}
_CONTAINERD_NAMESPACES = ("default", "k8s.io")
_BARE = re.compile(rf"^{_HEX64}$")
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


def cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid hosts)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return Path(left.split(" ")[4])
    except OSError:
        return None
    return None


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a cgroup path says: runtime type, full container id, pod uid (any may be None)."""

    type: str | None
    full_id: str | None
    pod_uid: str | None


def parse_cgroup_path(path: str) -> Parsed:
    """Read the runtime layout of a cgroup v2 path (relative to the hierarchy root)."""
    parts = [p for p in path.split("/") if p]
    pod = None
    for part in parts:
        m = _POD.search(part)
        if m:
            pod = m.group(1).replace("_", "-")
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        for pattern, runtime in LAYOUTS:
            m = pattern.match(part)
            if m:
                return Parsed(runtime, m.group(1), pod)
        if _BARE.match(part):
            bare = _bare_id_runtime(parts[:i], pod)
            if bare is not None:
                return Parsed(bare, part, pod)
    return Parsed(None, None, pod)


def _bare_id_runtime(parents: list[str], pod: str | None) -> str | None:
    # The runtime of a cgroup named by a bare id, from its parents; None when it is no container's.
    if parents and parents[-1] in _BARE_PARENTS:
        return _BARE_PARENTS[parents[-1]]
    if pod is not None:
        return "containerd"        # the kubelet's cgroupfs layout: CRI runtimes other than CRI-O
    if len(parents) == 1 and parents[0] in _CONTAINERD_NAMESPACES:
        return "containerd"
    return None


class ContainerResolver:
    """cgroup id -> Container, cached; the path comes from /proc/<pid>/cgroup or a walk of cgroupfs."""

    def __init__(self, runtime_sockets: Iterable[str] = (), root: Path | None = None,
                 retry_s: float = 30.0) -> None:
        self.root = root if root is not None else cgroup2_root()
        self.clients = [RuntimeClient(p) for p in runtime_sockets]
        self.retry_s = retry_s
        self._by_cgroup: dict[int, Container] = {0: HOST}
        self._by_id: dict[str, Container] = {}
        self._paths: dict[int, str] = {}
        self._lookups: dict[str, float] = {}
        self._hints: dict[int, str] = {}
        self.new_containers: list[Container] = []    # seen for the first time; the source drains it

    def hint(self, cgroup_id: int, tail: str) -> None:
        """What the kernel said the cgroup is called ("parent/leaf"), for when it is gone.

        A cgroup already met but not found (gone before anyone looked) is resolved now, in place,
        so every process that holds its Container sees the answer.
        """
        c = self._by_cgroup.get(cgroup_id)
        if c is not None and c.id != "":
            return
        if len(self._hints) < 65536:
            self._hints[cgroup_id] = tail
        if c is not None:
            self._fill(c, "/" + tail)

    def path_of(self, cgroup_id: int, pid: int | None = None) -> str | None:
        """The cgroup v2 path (relative to the root) whose directory inode is `cgroup_id`."""
        path = self._paths.get(cgroup_id)
        if path is not None:
            return path
        if pid and self.root is not None:
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    for line in f:
                        if line.startswith("0::"):
                            rel = line[3:].strip()
                            if os.stat(str(self.root) + rel).st_ino == cgroup_id:
                                self._paths[cgroup_id] = rel
                                return rel
            except OSError:
                pass
        if self.root is not None:
            self._walk()
        path = self._paths.get(cgroup_id)
        if path is None and cgroup_id in self._hints:
            # The directory is gone; its last two names still tell the layout.
            path = "/" + self._hints[cgroup_id]
        return path

    def _walk(self) -> None:
        root = str(self.root)
        for dirpath, _dirs, _files in os.walk(root):
            try:
                ino = os.stat(dirpath).st_ino
            except OSError:
                continue
            self._paths[ino] = dirpath[len(root):] or "/"

    def get(self, cgroup_id: int, pid: int | None = None) -> Container:
        """The container of a task in cgroup `cgroup_id` (HOST when the layout says host)."""
        c = self._by_cgroup.get(cgroup_id)
        if c is not None:
            if c is not HOST and c.name is None and self.clients:
                self._enrich(c)
            return c
        path = self.path_of(cgroup_id, pid)
        if path is None:
            # Gone before we could look: unknown (id ""), not a guess. Cached so the walk is not
            # repeated; an exec from it later names it (hint) and fills this object in.
            c = Container(id="", cgroup_path=None)
            self._by_cgroup[cgroup_id] = c
            return c
        self._hints.pop(cgroup_id, None)
        parsed = parse_cgroup_path(path)
        if parsed.full_id is None:
            self._by_cgroup[cgroup_id] = HOST
            return HOST
        c = self._by_id.get(parsed.full_id)
        if c is None:
            c = Container(id=parsed.full_id[:12], full_id=parsed.full_id, type=parsed.type,
                          pod_uid=parsed.pod_uid, cgroup_path=path)
            self._by_id[parsed.full_id] = c
            self._enrich(c)
            self.new_containers.append(c)
        self._by_cgroup[cgroup_id] = c
        return c

    def _fill(self, c: Container, path: str) -> None:
        parsed = parse_cgroup_path(path)
        if parsed.full_id is None:
            c.id, c.full_id = HOST.id, ""
            return
        known = self._by_id.get(parsed.full_id)
        if known is not None:
            for f in Container.__dataclass_fields__:
                setattr(c, f, getattr(known, f))
            return
        c.id, c.full_id, c.type = parsed.full_id[:12], parsed.full_id, parsed.type
        c.pod_uid, c.cgroup_path = parsed.pod_uid, path
        self._by_id[parsed.full_id] = c
        self._enrich(c)
        self.new_containers.append(c)

    def _enrich(self, c: Container) -> None:
        now = time.monotonic()
        last = self._lookups.get(c.full_id)
        if last is not None and now - last < self.retry_s:
            return
        self._lookups[c.full_id] = now
        for client in self.clients:
            if client.knows(c) and client.describe(c):
                return
