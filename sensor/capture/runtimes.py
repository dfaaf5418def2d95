"""What a container runtime says about one of its containers, asked over its Unix socket.

Two HTTP APIs answer here (containerd speaks only gRPC and is not asked):
- Docker's Engine API, which Podman serves too (`podman system service`, its Docker-compatible
  routes): `GET /containers/<id>/json` for the container, then `GET /images/<image id>/json` for
  the registry digest, which the container document does not carry.
- CRI-O's inspect endpoint on `crio.sock`: `GET /containers/<id>` answers a ContainerInfo.

A socket that is missing, silent, slow (`timeout`) or answers anything but 200 with JSON gives
None: the caller keeps what it knew, and the rest stays unknown (<NA>), never a guess.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from datetime import datetime
from typing import Any

from sensor.event import Container

# The Docker Engine API version our requests name. Podman's compat API accepts it too; Docker
# Engine 25 and later accept 1.24 to their own version, and 1.41 is served by Docker 20.10 on.
DOCKER_API_VERSION = "1.41"


class RuntimeClient:
    """One runtime's socket. The API is chosen by the socket's name: CRI-O's inspect endpoint on
    `crio.sock`, Docker's Engine API (which Podman also serves) on any other."""

    def __init__(self, socket_path: str, timeout: float = 0.5) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.api = "cri-o" if os.path.basename(socket_path) == "crio.sock" else "docker"

    def knows(self, c: Container) -> bool:
        """Whether this runtime can know the container: CRI-O only its own, Docker's API the rest."""
        return (c.type == "cri-o") == (self.api == "cri-o")

    def describe(self, c: Container) -> bool:
        """Fill `c` from what the runtime says about `c.full_id`; False when it could not say."""
        if self.api == "cri-o":
            doc = self.get(f"/containers/{c.full_id}")
            if doc is None:
                return False
            apply_crio_info(c, doc)
            return True
        doc = self.get(f"/v{DOCKER_API_VERSION}/containers/{c.full_id}/json")
        if doc is None:
            return False
        apply_inspect(c, doc)
        image_id = doc.get("Image")
        if isinstance(image_id, str) and image_id and not c.image_digest:
            image = self.get(f"/v{DOCKER_API_VERSION}/images/{image_id}/json")
            if image is not None:
                c.image_digest = repo_digest(image.get("RepoDigests"), c.image_repository)
        return True

    def get(self, path: str) -> dict[str, Any] | None:
        """The JSON object at `path`, or None when the socket does not answer it with one."""
        if not os.path.exists(self.socket_path):
            return None
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            # http.client sends `Host: localhost` itself; Go's server (Docker, Podman) answers
            # 400 to an HTTP/1.1 request without one.
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                return None
            doc = json.loads(body)
            return doc if isinstance(doc, dict) else None
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


def apply_inspect(c: Container, doc: dict[str, Any]) -> None:
    """Fill a Container from a Docker Engine API container document (Podman's is the same)."""
    cfg = doc.get("Config") or {}
    host_cfg = doc.get("HostConfig") or {}
    name = doc.get("Name") or ""
    c.name = name.lstrip("/") or None
    image = cfg.get("Image") or None
    c.image = image
    if image:
        c.image_repository, c.image_tag, c.image_digest = split_image(image)
    if "Privileged" in host_cfg:
        c.privileged = bool(host_cfg["Privileged"])
    c.mounts = [{"source": m.get("Source", ""), "dest": m.get("Destination", ""),
                 "mode": m.get("Mode", ""), "rdwr": bool(m.get("RW", False)),
                 "propagation": m.get("Propagation", "")}
                for m in doc.get("Mounts") or [] if isinstance(m, dict)]
    started = (doc.get("State") or {}).get("StartedAt")
    if started:
        c.start_ts = _parse_time_ns(started)
    labels = cfg.get("Labels") or {}
    c.labels = {str(k): str(v) for k, v in labels.items()}
    _pod_from_labels(c, labels)


def repo_digest(repo_digests: object, repository: str | None) -> str | None:
    """The registry digest of an image from its `RepoDigests` (`repo@sha256:...`): the one of the
    container's repository, else the only one there is (as Falco's container plugin picks it)."""
    if not isinstance(repo_digests, list):
        return None
    digests = []
    for entry in repo_digests:
        if not isinstance(entry, str) or entry.count("@") != 1:
            continue
        repo, digest = entry.split("@")
        if repository is not None and repo == repository:
            return digest
        digests.append(digest)
    return digests[0] if len(digests) == 1 else None


def _pod_from_labels(c: Container, labels: dict) -> None:
    # The kubelet's labels on every container it starts, whatever the runtime.
    c.pod_name = labels.get("io.kubernetes.pod.name") or c.pod_name
    c.pod_namespace = labels.get("io.kubernetes.pod.namespace") or c.pod_namespace
    c.pod_uid = labels.get("io.kubernetes.pod.uid") or c.pod_uid


def apply_crio_info(c: Container, doc: dict[str, Any]) -> None:
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
    c.labels = {str(k): str(v) for k, v in labels.items()}
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
    except ValueError:
        return None
    # Docker writes 0001-01-01T00:00:00Z for a container that never started.
    return int(secs) * 1_000_000_000 + nanos if secs > 0 else None
