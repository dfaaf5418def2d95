"""sensor/capture/containers.py: containers from cgroup paths, and the runtime's API for the rest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fakes.docker_api import FakeDockerAPI

from sensor.capture.containers import (
    ContainerResolver,
    RuntimeClient,
    parse_cgroup_path,
    split_image,
)
from sensor.event import HOST

CID = "3f4e" * 16
POD = "6e0c2a47-cf21-4c1e-9b19-2f1d0c6a7e51"


@pytest.mark.parametrize(("path", "runtime", "pod"), [
    (f"/system.slice/docker-{CID}.scope", "docker", None),
    (f"/docker/{CID}", "docker", None),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
     f"cri-containerd-{CID}.scope", "containerd", POD),
    (f"/kubepods/besteffort/pod{POD}/{CID}", "containerd", POD),
    (f"/machine.slice/libpod-{CID}.scope", "podman", None),
    (f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/crio-{CID}.scope", "cri-o", POD),
    (f"/system.slice/docker-{CID}.scope/init.scope", "docker", None),     # nested below the container
])
def test_runtime_layouts(path: str, runtime: str, pod: str | None) -> None:
    p = parse_cgroup_path(path)
    assert (p.type, p.full_id, p.pod_uid) == (runtime, CID, pod)


@pytest.mark.parametrize("path", ["/", "/process_api/677582260f899261a78ab302db3febfd",
                                  "/user.slice/user-0.slice/session-3.scope", "/system.slice/sshd.service",
                                  f"/machine.slice/libpod-conmon-{CID}.scope"])
def test_host_layouts(path: str) -> None:
    assert parse_cgroup_path(path).full_id is None


def test_image_names() -> None:
    assert split_image("nginx") == ("nginx", None, None)
    assert split_image("docker.io/library/nginx:1.25") == ("docker.io/library/nginx", "1.25", None)
    assert split_image("registry:5000/team/app:v2@sha256:ab") == ("registry:5000/team/app", "v2", "sha256:ab")


def _tree(root: Path, rel: str) -> int:
    d = root / rel.lstrip("/")
    d.mkdir(parents=True)
    return os.stat(d).st_ino


def test_resolver_maps_ids_to_containers_by_walking(tmp_path: Path) -> None:
    host_id = _tree(tmp_path, "/system.slice/cron.service")
    c_id = _tree(tmp_path, f"/system.slice/docker-{CID}.scope")
    r = ContainerResolver(root=tmp_path)
    assert r.get(host_id) is HOST
    c = r.get(c_id)
    assert (c.id, c.full_id, c.type, c.name) == (CID[:12], CID, "docker", None)
    assert r.new_containers == [c]
    assert r.get(c_id) is c


def test_a_vanished_cgroup_is_unknown_until_an_exec_names_it(tmp_path: Path) -> None:
    r = ContainerResolver(root=tmp_path)
    c = r.get(987654)
    assert c.id == ""                                    # not known, and not guessed to be the host
    r.hint(987654, f"system.slice/docker-{CID}.scope")
    assert c.id == CID[:12] and r.get(987654) is c       # filled in place for every holder


@pytest.fixture
def docker_api(tmp_path: Path):
    with FakeDockerAPI(str(tmp_path / "docker.sock")) as api:
        yield api


INSPECT = {
    "Id": CID, "Name": "/web-1", "Image": "sha256:" + "ab" * 32,
    "Config": {"Image": "docker.io/library/nginx:1.25",
               "Labels": {"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop"}},
    "HostConfig": {"Privileged": True},
    "State": {"StartedAt": "2024-05-01T10:00:00.123456789Z"},
    "Mounts": [{"Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock", "Mode": "",
                "RW": True, "Propagation": "rprivate"}],
}


def test_runtime_api_fills_name_image_privileged_and_mounts(tmp_path: Path, docker_api: FakeDockerAPI) -> None:
    docker_api.docs[CID] = INSPECT
    docker_sock = docker_api.path
    c_id = _tree(tmp_path / "cg", f"/system.slice/docker-{CID}.scope")
    r = ContainerResolver([docker_sock], root=tmp_path / "cg")
    c = r.get(c_id)
    assert (c.name, c.image, c.image_repository, c.image_tag) == (
        "web-1", "docker.io/library/nginx:1.25", "docker.io/library/nginx", "1.25")
    assert c.privileged is True and c.image_digest == INSPECT["Image"]
    assert c.mounts == [{"source": "/var/run/docker.sock", "dest": "/var/run/docker.sock", "mode": "",
                         "rdwr": True, "propagation": "rprivate"}]
    assert (c.pod_name, c.pod_namespace) == ("web-1", "shop")
    assert c.start_ts == 1714557600_123456789


def test_runtime_api_absent_or_silent_leaves_values_unknown(tmp_path: Path, docker_api: FakeDockerAPI) -> None:
    docker_sock = docker_api.path
    assert RuntimeClient(docker_sock).inspect(CID) is None
    assert RuntimeClient(str(tmp_path / "nothing.sock")).inspect(CID) is None
    c_id = _tree(tmp_path / "cg", f"/docker/{CID}")
    c = ContainerResolver([docker_sock], root=tmp_path / "cg").get(c_id)
    assert c.id == CID[:12] and c.name is None and c.privileged is None


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


def test_cri_o_containers_are_described_by_crio_sock_and_others_by_the_docker_api(tmp_path: Path) -> None:
    from fakes.docker_api import FakeCrioAPI

    (tmp_path / "crio").mkdir()
    crio_sock, docker_sock = str(tmp_path / "crio" / "crio.sock"), str(tmp_path / "docker.sock")
    crio_id, docker_id = "c" * 64, CID
    with FakeCrioAPI(crio_sock, {crio_id: CRIO_INFO}) as crio, \
            FakeDockerAPI(docker_sock, {docker_id: INSPECT}) as docker:
        kube = "/kubepods.slice/kubepods-pod0a1b2c3d_1111_2222_3333_444455556666.slice"
        c_crio = _tree(tmp_path / "cg", f"{kube}/crio-{crio_id}.scope")
        c_docker = _tree(tmp_path / "cg", f"/system.slice/docker-{docker_id}.scope")
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
    assert c.start_ts == 1714557600_123456789
    assert d.name == "web-1"
    # each runtime was asked only about its own container, on its own route
    assert crio.requests == [f"/containers/{crio_id}"]
    assert docker.requests == [f"/containers/{docker_id}/json"]


def test_a_cri_o_container_the_socket_does_not_know_stays_unknown(tmp_path: Path) -> None:
    from fakes.docker_api import FakeCrioAPI

    (tmp_path / "crio").mkdir()
    sock = str(tmp_path / "crio" / "crio.sock")
    with FakeCrioAPI(sock, {}):
        pod = "/kubepods/besteffort/pod0a1b2c3d-1111-2222-3333-444455556666"
        c_id = _tree(tmp_path / "cg", f"{pod}/crio-{'d' * 64}.scope")
        c = ContainerResolver([sock], root=tmp_path / "cg").get(c_id)
    assert c.type == "cri-o" and c.name is None and c.image is None and c.pod_name is None
    assert c.pod_uid == "0a1b2c3d-1111-2222-3333-444455556666"      # from the cgroup path alone
