"""sensor/capture/runtimes.py: what Docker's and Podman's Engine API and CRI-O's inspect endpoint say
about a container, read into the Container a rule sees.

The Podman documents in data/ were recorded from Debian's podman 4.3.1 (`podman system service`,
`GET /v1.41/containers/<id>/json` and `/images/<id>/json`) for a container started with
`--privileged --label app=web --label tier=front -v /etc:/host/etc:ro -v /proc:/host/proc`.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from fakes.docker_api import FakeCrioAPI, FakeDockerAPI

from sensor.capture.containers import ContainerResolver
from sensor.capture.runtimes import DOCKER_API_VERSION, RuntimeClient, repo_digest, split_image
from sensor.event import Container

DATA = Path(__file__).parent / "data"
PODMAN_DOC = json.loads((DATA / "podman_compat_container.json").read_text())
PODMAN_IMAGE = json.loads((DATA / "podman_compat_image.json").read_text())
CID = "3f4e" * 16
IMAGE_ID = "sha256:" + "ab" * 32

# A Docker Engine document, shaped as api/types/container.InspectResponse (Docker 26).
DOCKER_DOC = {
    "Id": CID, "Created": "2024-05-01T09:59:59.5Z", "Path": "nginx", "Args": [],
    "State": {"Status": "running", "Running": True, "Pid": 4242, "StartedAt": "2024-05-01T10:00:00.123456789Z",
              "FinishedAt": "0001-01-01T00:00:00Z"},
    "Image": IMAGE_ID, "Name": "/web-1", "RestartCount": 0, "Driver": "overlay2", "Platform": "linux",
    "HostConfig": {"Privileged": True, "NetworkMode": "bridge", "PidMode": ""},
    "Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock",
                "Mode": "", "RW": True, "Propagation": "rprivate"}],
    "Config": {"Hostname": "3f4e3f4e3f4e", "Image": "docker.io/library/nginx:1.25",
               "Labels": {"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop",
                          "maintainer": "NGINX Docker Maintainers"}},
}
DOCKER_IMAGE = {"Id": IMAGE_ID, "RepoTags": ["nginx:1.25"],
                "RepoDigests": ["nginx@sha256:" + "cd" * 32, "docker.io/library/nginx@sha256:" + "ef" * 32],
                "Config": {}}


def _describe(sock: str, full_id: str, type_: str | None = "docker") -> Container:
    c = Container(id=full_id[:12], full_id=full_id, type=type_)
    assert RuntimeClient(sock).describe(c)
    return c


def test_a_podman_container_as_podmans_compat_api_describes_it(tmp_path: Path) -> None:
    sock = str(tmp_path / "podman.sock")
    cid = PODMAN_DOC["Id"]
    with FakeDockerAPI(sock, {cid: PODMAN_DOC}, {PODMAN_IMAGE["Id"]: PODMAN_IMAGE}, flavour="podman") as api:
        c = _describe(sock, cid, "podman")
    assert (c.name, c.image, c.image_repository, c.image_tag) == (
        "web-1", "localhost/fntest/busybox:1", "localhost/fntest/busybox", "1")
    assert c.image_digest == PODMAN_IMAGE["RepoDigests"][0].split("@")[1]
    assert c.privileged is True
    assert c.mounts == [
        {"source": "/etc", "dest": "/host/etc", "mode": "", "rdwr": False, "propagation": "rprivate"},
        {"source": "/proc", "dest": "/host/proc", "mode": "", "rdwr": True, "propagation": "rprivate"}]
    assert c.labels == {"app": "web", "tier": "front"}
    assert c.start_ts is not None and c.pod_name is None
    assert api.requests == [f"/v{DOCKER_API_VERSION}/containers/{cid}/json",
                            f"/v{DOCKER_API_VERSION}/images/{PODMAN_DOC['Image']}/json"]


def test_a_docker_container_with_its_image_digest_and_the_kubelets_labels(tmp_path: Path) -> None:
    sock = str(tmp_path / "docker.sock")
    with FakeDockerAPI(sock, {CID: DOCKER_DOC}, {IMAGE_ID: DOCKER_IMAGE}):
        c = _describe(sock, CID)
    assert (c.name, c.image_repository, c.image_tag) == ("web-1", "docker.io/library/nginx", "1.25")
    # the digest of the container's own repository, not the image id
    assert c.image_digest == "sha256:" + "ef" * 32
    assert (c.pod_name, c.pod_namespace) == ("web-1", "shop")
    assert c.labels is not None and c.labels["maintainer"] == "NGINX Docker Maintainers"
    assert c.start_ts == 1714557600_123456789
    assert c.mounts == [{"source": "/var/run/docker.sock", "dest": "/var/run/docker.sock", "mode": "",
                         "rdwr": True, "propagation": "rprivate"}]


def test_an_image_named_by_digest_needs_no_image_request(tmp_path: Path) -> None:
    sock = str(tmp_path / "docker.sock")
    doc = {**DOCKER_DOC, "Config": {**DOCKER_DOC["Config"], "Image": "registry:5000/app@sha256:" + "12" * 32}}
    with FakeDockerAPI(sock, {CID: doc}) as api:
        c = _describe(sock, CID)
    assert (c.image_repository, c.image_tag, c.image_digest) == ("registry:5000/app", None, "sha256:" + "12" * 32)
    assert len(api.requests) == 1


def test_an_image_the_runtime_no_longer_has_leaves_the_digest_unknown(tmp_path: Path) -> None:
    sock = str(tmp_path / "docker.sock")
    with FakeDockerAPI(sock, {CID: DOCKER_DOC}):
        c = _describe(sock, CID)
    assert c.name == "web-1" and c.image_digest is None


def test_repo_digest_picks_the_containers_repository_or_the_only_one() -> None:
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    assert repo_digest([f"a@{d1}", f"b@{d2}"], "b") == d2
    assert repo_digest([f"a@{d1}"], "c") == d1
    assert repo_digest([f"a@{d1}", f"b@{d2}"], "c") is None
    assert repo_digest(None, "a") is None and repo_digest(["malformed"], "a") is None


def test_image_names() -> None:
    assert split_image("nginx") == ("nginx", None, None)
    assert split_image("docker.io/library/nginx:1.25") == ("docker.io/library/nginx", "1.25", None)
    assert split_image("registry:5000/team/app:v2@sha256:ab") == ("registry:5000/team/app", "v2", "sha256:ab")


def test_absent_silent_or_unknown_leaves_everything_unknown(tmp_path: Path) -> None:
    sock = str(tmp_path / "docker.sock")
    c = Container(id=CID[:12], full_id=CID, type="docker")
    assert RuntimeClient(str(tmp_path / "nothing.sock")).describe(c) is False
    with FakeDockerAPI(sock):
        assert RuntimeClient(sock).describe(c) is False
    silent = socket.socket(socket.AF_UNIX)                  # accepts, never answers
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen()
    try:
        assert RuntimeClient(str(tmp_path / "silent.sock"), timeout=0.2).describe(c) is False
    finally:
        silent.close()
    assert (c.name, c.image, c.privileged, c.mounts, c.labels) == (None, None, None, None, None)


CRIO_INFO = {
    "name": "k8s_api_api-0_prod_0a1b2c3d-1111-2222-3333-444455556666_0", "pid": 4242,
    "image": "registry.local/api@sha256:" + "ef" * 32, "image_ref": "sha256:" + "ef" * 32,
    "created_time": 1714557600_123456789,
    "labels": {"io.kubernetes.container.name": "api", "io.kubernetes.pod.name": "api-0",
               "io.kubernetes.pod.namespace": "prod",
               "io.kubernetes.pod.uid": "0a1b2c3d-1111-2222-3333-444455556666"},
    "annotations": {"io.kubernetes.container.hash": "1234"},
    "crio_annotations": {
        "io.kubernetes.cri-o.ImageName": "registry.local/api:1.2.3",
        "io.kubernetes.cri-o.Volumes": json.dumps([
            {"container_path": "/etc/hosts", "host_path": "/var/lib/kubelet/pods/0a1b/etc-hosts",
             "readonly": False},
            {"container_path": "/etc/config", "host_path": "/var/lib/kubelet/pods/0a1b/volumes/cfg",
             "readonly": True}]),
    },
    "log_path": "/var/log/pods/prod_api-0/api/0.log", "root": "/var/lib/containers/storage/x",
    "sandbox": "ab" * 32, "ip_addresses": ["10.0.0.7"],
}


def _tree(root: Path, rel: str) -> int:
    d = root / rel.lstrip("/")
    d.mkdir(parents=True)
    return os.stat(d).st_ino


def test_cri_o_containers_are_described_by_crio_sock_and_others_by_the_docker_api(tmp_path: Path) -> None:
    (tmp_path / "crio").mkdir()
    crio_sock, docker_sock = str(tmp_path / "crio" / "crio.sock"), str(tmp_path / "docker.sock")
    crio_id = "c" * 64
    with FakeCrioAPI(crio_sock, {crio_id: CRIO_INFO}) as crio, \
            FakeDockerAPI(docker_sock, {CID: DOCKER_DOC}, {IMAGE_ID: DOCKER_IMAGE}) as docker:
        kube = "/kubepods.slice/kubepods-pod0a1b2c3d_1111_2222_3333_444455556666.slice"
        c_crio = _tree(tmp_path / "cg", f"{kube}/crio-{crio_id}.scope")
        c_docker = _tree(tmp_path / "cg", f"/system.slice/docker-{CID}.scope")
        r = ContainerResolver([docker_sock, crio_sock], root=tmp_path / "cg")
        c = r.get(c_crio)
        d = r.get(c_docker)
    assert c.type == "cri-o" and c.id == crio_id[:12]
    # the Kubernetes container name and the image the pod asked for, not CRI-O's own names
    assert (c.name, c.image, c.image_repository, c.image_tag) == (
        "api", "registry.local/api:1.2.3", "registry.local/api", "1.2.3")
    assert c.image_digest == "sha256:" + "ef" * 32
    assert (c.pod_name, c.pod_namespace, c.pod_uid) == ("api-0", "prod", "0a1b2c3d-1111-2222-3333-444455556666")
    assert c.mounts == [
        {"source": "/var/lib/kubelet/pods/0a1b/etc-hosts", "dest": "/etc/hosts", "mode": "", "rdwr": True,
         "propagation": ""},
        {"source": "/var/lib/kubelet/pods/0a1b/volumes/cfg", "dest": "/etc/config", "mode": "", "rdwr": False,
         "propagation": ""}]
    assert c.privileged is None                        # CRI-O does not say: unknown, not false
    assert c.labels == CRIO_INFO["labels"]
    assert c.start_ts == 1714557600_123456789
    assert d.name == "web-1"
    # each runtime was asked only about its own container, on its own routes
    assert crio.requests == [f"/containers/{crio_id}"]
    assert docker.requests == [f"/v{DOCKER_API_VERSION}/containers/{CID}/json",
                               f"/v{DOCKER_API_VERSION}/images/{IMAGE_ID}/json"]


def test_a_cri_o_container_the_socket_does_not_know_stays_unknown(tmp_path: Path) -> None:
    (tmp_path / "crio").mkdir()
    sock = str(tmp_path / "crio" / "crio.sock")
    with FakeCrioAPI(sock, {}):
        pod = "/kubepods/besteffort/pod0a1b2c3d-1111-2222-3333-444455556666"
        c_id = _tree(tmp_path / "cg", f"{pod}/crio-{'d' * 64}.scope")
        c = ContainerResolver([sock], root=tmp_path / "cg").get(c_id)
    assert c.type == "cri-o" and c.name is None and c.image is None and c.pod_name is None
    assert c.pod_uid == "0a1b2c3d-1111-2222-3333-444455556666"      # from the cgroup path alone


# -- the fakes are as strict as the servers they model -------------------------------------------

def _raw(sock: str, request: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(sock)
    s.sendall(request)
    out = b""
    while chunk := s.recv(65536):          # every request here asks the server to close
        out += chunk
    s.close()
    return out


@pytest.mark.parametrize("flavour", ["docker", "podman"])
def test_a_request_without_host_is_refused_as_go_refuses_it(tmp_path: Path, flavour: str) -> None:
    sock = str(tmp_path / "api.sock")
    with FakeDockerAPI(sock, {CID: DOCKER_DOC}, flavour=flavour):
        out = _raw(sock, f"GET /containers/{CID}/json HTTP/1.1\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 400 Bad Request: missing required Host header\r\n")


def test_docker_routes_versions_and_lookups(tmp_path: Path) -> None:
    sock = str(tmp_path / "docker.sock")
    client = RuntimeClient(sock)
    with FakeDockerAPI(sock, {CID: DOCKER_DOC}):
        assert client.get(f"/containers/{CID}/json")["Id"] == CID          # unversioned
        assert client.get("/v1.24/containers/web-1/json")["Id"] == CID     # by name
        assert client.get(f"/v1.41/containers/{CID[:5]}/json")["Id"] == CID  # by unique prefix
        assert client.get(f"/v1.99/containers/{CID}/json") is None         # too new: 400
        assert client.get(f"/v1.12/containers/{CID}/json") is None         # too old: 400
        out = _raw(sock, f"POST /containers/{CID}/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
                         "Content-Length: 0\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 404") and b'{"message": "page not found"}' in out
        out = _raw(sock, b"GET /containers/nope/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 404") and b'"No such container: nope"' in out


def test_podman_answers_as_podman_4_3_does(tmp_path: Path) -> None:
    sock = str(tmp_path / "podman.sock")
    with FakeDockerAPI(sock, {PODMAN_DOC["Id"]: PODMAN_DOC}, flavour="podman"):
        out = _raw(sock, b"GET /v1.41/containers/nope/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 404") and b"Libpod-Api-Version: 4.3.1" in out
        assert b'"cause": "no such container"' in out
        out = _raw(sock, f"POST /containers/{PODMAN_DOC['Id']}/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
                         "Content-Length: 0\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 405")
        assert RuntimeClient(sock).get(f"/v9.99/containers/{PODMAN_DOC['Id']}/json") is not None


def test_the_fakes_refuse_documents_no_real_server_would_send(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a container document"):
        FakeDockerAPI(str(tmp_path / "a.sock"), {CID: {"Id": CID, "Name": "/x"}})
    with pytest.raises(ValueError, match="not a ContainerInfo"):
        FakeCrioAPI(str(tmp_path / "crio.sock"), {CID: {"name": "x"}})
