"""Containers from cgroup ids: which container a process is in, and what its runtime says about it.

`bpf_get_current_cgroup_id()` is the inode number of the task's cgroup v2 directory. The path of
that directory tells the runtime and the container id by its layout (measured here, see docs/capture.md):
`docker-<64hex>.scope`, `docker/<64hex>`, `cri-containerd-<64hex>.scope`, `crio-<64hex>.scope`,
`libpod-<64hex>.scope`, and `kubepods…pod<uid>…` parents for the pod UID. A path with none of them
is the host, whatever cgroup it is in (shells here live in /process_api/<id>, not in /).

Name, image, privileged and mounts come from the runtime's API when its socket answers: Docker's
Engine API (which Podman also serves), or CRI-O's inspect endpoint on crio.sock; otherwise they
stay None and print as <NA>. Pod name and namespace come from the runtime's Kubernetes labels;
from a kubepods cgroup alone only the pod UID is known. containerd speaks only gRPC (CRI) and is
not asked.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sensor.event import HOST, Container

_HEX64 = r"([0-9a-f]{64})"
# (compiled pattern on one path component, runtime type); first match from the leaf upwards wins.
LAYOUTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"^docker-{_HEX64}\.scope$"), "docker"),
    (re.compile(rf"^cri-containerd-{_HEX64}\.scope$"), "containerd"),
    (re.compile(rf"^crio-{_HEX64}\.scope$"), "cri-o"),
    (re.compile(rf"^libpod-{_HEX64}\.scope$"), "podman"),
    (re.compile(rf"^nerdctl-{_HEX64}\.scope$"), "containerd"),
)
# cgroupfs driver: the id is a bare directory under a runtime parent.
_PARENTS = {"docker": "docker", "libpod_parent": "podman", "kubepods": None, "default": "containerd"}
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
            parent_runtime = None
            for anc in parts[:i]:
                if anc in _PARENTS:
                    parent_runtime = _PARENTS[anc] or parent_runtime
            if pod or parent_runtime:
                return Parsed(parent_runtime or ("containerd" if pod else None), part, pod)
    return Parsed(None, None, pod)


class RuntimeClient:
    """A container runtime's HTTP API over a Unix socket, by the socket's name: CRI-O's inspect
    endpoint (`GET /containers/<id>`) on `crio.sock`, Docker's Engine API (`GET
    /containers/<id>/json`, which Podman serves too) on any other."""

    def __init__(self, socket_path: str, timeout: float = 0.5) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.api = "cri-o" if os.path.basename(socket_path) == "crio.sock" else "docker"

    def knows(self, c: Container) -> bool:
        """Whether this runtime can know the container: CRI-O only its own, Docker's API the rest."""
        return (c.type == "cri-o") == (self.api == "cri-o")

    def inspect(self, full_id: str) -> dict | None:
        """The container's inspect document, or None when the socket does not answer."""
        if not os.path.exists(self.socket_path):
            return None
        path = f"/containers/{full_id}" if self.api == "cri-o" else f"/containers/{full_id}/json"
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            conn.request("GET", path, headers={"Host": "localhost"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                return None
            return json.loads(body)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def apply_inspect(c: Container, doc: dict) -> None:
    """Fill a Container from a Docker/Podman inspect document."""
    cfg = doc.get("Config") or {}
    host_cfg = doc.get("HostConfig") or {}
    name = doc.get("Name") or ""
    c.name = name.lstrip("/") or None
    image = cfg.get("Image") or None
    c.image = image
    if image:
        repo, tag, digest = split_image(image)
        c.image_repository, c.image_tag = repo, tag
        c.image_digest = digest
    img_id = doc.get("Image") or ""
    if img_id.startswith("sha256:") and not c.image_digest:
        c.image_digest = img_id
    if "Privileged" in host_cfg:
        c.privileged = bool(host_cfg["Privileged"])
    mounts = []
    for m in doc.get("Mounts") or []:
        mounts.append({"source": m.get("Source", ""), "dest": m.get("Destination", ""),
                       "mode": m.get("Mode", ""), "rdwr": bool(m.get("RW", False)),
                       "propagation": m.get("Propagation", "")})
    c.mounts = mounts
    started = (doc.get("State") or {}).get("StartedAt")
    if started:
        c.start_ts = _parse_time_ns(started)
    _pod_from_labels(c, cfg.get("Labels") or {})


def _pod_from_labels(c: Container, labels: dict) -> None:
    # The kubelet's labels on every container it starts, whatever the runtime.
    c.pod_name = labels.get("io.kubernetes.pod.name") or c.pod_name
    c.pod_namespace = labels.get("io.kubernetes.pod.namespace") or c.pod_namespace
    c.pod_uid = labels.get("io.kubernetes.pod.uid") or c.pod_uid


def apply_crio_info(c: Container, doc: dict) -> None:
    """Fill a Container from CRI-O's ContainerInfo (`GET /containers/<id>` on crio.sock).

    Its `name` is CRI-O's own (k8s_<container>_<pod>_<namespace>_<uid>_<attempt>); the Kubernetes
    container name is a label, as Falco reports it. The image the pod asked for is the
    io.kubernetes.cri-o.ImageName annotation; `image` is only some name of the image id. Mounts are
    the io.kubernetes.cri-o.Volumes annotation (a JSON list). CRI-O does not say whether the
    container is privileged: that stays unknown.
    """
    labels = doc.get("labels") or {}
    notes = {**(doc.get("annotations") or {}), **(doc.get("crio_annotations") or {})}
    c.name = labels.get("io.kubernetes.container.name") or doc.get("name") or None
    image = notes.get("io.kubernetes.cri-o.ImageName") or doc.get("image") or None
    c.image = image
    if image:
        c.image_repository, c.image_tag, c.image_digest = split_image(image)
    ref = doc.get("image_ref") or ""
    if not c.image_digest and ref.startswith("sha256:"):
        c.image_digest = ref
    try:
        volumes = json.loads(notes.get("io.kubernetes.cri-o.Volumes") or "[]")
    except ValueError:
        volumes = []
    c.mounts = [{"source": v.get("host_path", ""), "dest": v.get("container_path", ""), "mode": "",
                 "rdwr": not v.get("readonly", False), "propagation": ""}
                for v in volumes if isinstance(v, dict)]
    created = doc.get("created_time")
    if isinstance(created, int) and created > 0:
        c.start_ts = created
    _pod_from_labels(c, labels)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`registry:5000/ns/app:1.2@sha256:..` -> (repository, tag, digest); tag None when absent."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


def _parse_time_ns(text: str) -> int | None:
    # RFC 3339 with nanoseconds, e.g. 2024-05-01T10:00:00.123456789Z
    try:
        main, _, frac = text.rstrip("Z").partition(".")
        secs = datetime.fromisoformat(main + "+00:00").timestamp()
        nanos = int((frac + "000000000")[:9]) if frac else 0
        return int(secs) * 1_000_000_000 + nanos
    except ValueError:
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
            if not client.knows(c):
                continue
            doc = client.inspect(c.full_id)
            if doc is not None:
                (apply_crio_info if client.api == "cri-o" else apply_inspect)(c, doc)
                return
