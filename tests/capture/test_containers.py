"""sensor/capture/containers.py: containers from cgroup paths, and the runtime's API for the rest.

The layouts marked "run here" were read from real containers on our machines (Debian's podman
4.3 with runc and the cgroupfs driver, Debian's containerd 1.6 under `ctr run`, cgroup v1
controllers with v2 at /sys/fs/cgroup/unified): tests/e2e/test_containers_*.py start them for
real. The others come from the runtimes' sources and cannot run here (Docker Engine, the
kubelet, CRI-O, anything on the systemd driver: these machines do not run systemd).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakes.docker_api import FakeDockerAPI

from sensor.capture.containers import ContainerResolver, parse_cgroup_path
from sensor.event import HOST

CID = "3f4e" * 16
POD_ID = "78236af113bb7bbabe6b5a6d7b3d82424575ee590255c432511a4f7bee5bbad5"
POD = "6e0c2a47-cf21-4c1e-9b19-2f1d0c6a7e51"
K8S_SYSTEMD = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice"


@pytest.mark.parametrize(("path", "runtime", "pod"), [
    # run here
    (f"/libpod_parent/libpod-{CID}", "podman", None),                    # podman, cgroupfs driver
    (f"/libpod_parent/{POD_ID}/libpod-{CID}", "podman", None),           # a container of a podman pod
    (f"/mytenant/libpod-{CID}", "podman", None),                         # podman --cgroup-parent
    (f"/default/{CID}", "containerd", None),                             # ctr run (namespace default)
    (f"/k8s.io/{CID}", "containerd", None),                              # ctr -n k8s.io run
    # from the runtimes' sources
    (f"/system.slice/docker-{CID}.scope", "docker", None),
    (f"/docker/{CID}", "docker", None),
    (f"/machine.slice/libpod-{CID}.scope", "podman", None),
    (f"/machine.slice/libpod-{CID}.scope/container", "podman", None),   # podman --systemd=always
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope", "podman", None),
    (f"{K8S_SYSTEMD}/cri-containerd-{CID}.scope", "containerd", POD),
    (f"/kubepods/besteffort/pod{POD}/{CID}", "containerd", POD),        # kubelet, cgroupfs driver
    (f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/crio-{CID}.scope", "cri-o", POD),
    (f"/kubepods/burstable/pod{POD}/crio-{CID}", "cri-o", POD),          # CRI-O, cgroupfs driver
    (f"/system.slice/docker-{CID}.scope/init.scope", "docker", None),   # nested below the container
    (f"/system.slice/nerdctl-{CID}.scope", "containerd", None),
])
def test_runtime_layouts(path: str, runtime: str, pod: str | None) -> None:
    p = parse_cgroup_path(path)
    assert (p.type, p.full_id, p.pod_uid) == (runtime, CID, pod)


@pytest.mark.parametrize("path", [
    "/", "/process_api/677582260f899261a78ab302db3febfd", "/user.slice/user-0.slice/session-3.scope",
    "/system.slice/sshd.service",
    f"/machine.slice/libpod-conmon-{CID}.scope",          # podman's monitor, systemd driver
    f"/kubepods/burstable/pod{POD}/crio-conmon-{CID}",    # CRI-O's monitor
    "/libpod_parent/conmon",                              # podman's monitor, cgroupfs (v1 only here)
    f"/libpod_parent/{POD_ID}",                           # a podman pod's own cgroup, no container's
    f"/elsewhere/{CID}",                                  # a bare id under nobody's parent
])
def test_host_layouts(path: str) -> None:
    assert parse_cgroup_path(path).full_id is None


def test_a_ctr_container_is_known_only_by_a_container_id_it_can_be_told_by() -> None:
    # `ctr run IMAGE mybox` puts mybox in /default/mybox. A name is not an id a path can vouch for,
    # and host cgroups look the same (/process_api/<id> here): such a container is not recognised.
    assert parse_cgroup_path("/default/mybox").full_id is None


def test_a_pod_without_a_container_id_still_names_its_pod() -> None:
    p = parse_cgroup_path(f"/kubepods/besteffort/pod{POD}")
    assert (p.full_id, p.pod_uid) == (None, POD)


def _tree(root: Path, rel: str) -> int:
    d = root / rel.lstrip("/")
    d.mkdir(parents=True)
    return os.stat(d).st_ino


def test_resolver_maps_ids_to_containers_by_walking(tmp_path: Path) -> None:
    host_id = _tree(tmp_path, "/system.slice/cron.service")
    c_id = _tree(tmp_path, f"/libpod_parent/libpod-{CID}")
    r = ContainerResolver(root=tmp_path)
    assert r.get(host_id) is HOST
    c = r.get(c_id)
    assert (c.id, c.full_id, c.type, c.name) == (CID[:12], CID, "podman", None)
    assert r.new_containers == [c]
    assert r.get(c_id) is c


def test_two_cgroups_of_one_container_share_its_description(tmp_path: Path) -> None:
    outer = _tree(tmp_path, f"/machine.slice/libpod-{CID}.scope")
    inner = _tree(tmp_path, f"/machine.slice/libpod-{CID}.scope/container")
    r = ContainerResolver(root=tmp_path)
    assert r.get(outer) is r.get(inner)
    assert len(r.new_containers) == 1


def test_a_vanished_cgroup_is_unknown_until_an_exec_names_it(tmp_path: Path) -> None:
    r = ContainerResolver(root=tmp_path)
    c = r.get(987654)
    assert c.id == ""                                    # not known, and not guessed to be the host
    r.hint(987654, f"libpod_parent/libpod-{CID}")
    assert (c.id, c.type) == (CID[:12], "podman") and r.get(987654) is c   # filled in place


def test_the_runtime_is_asked_once_per_container_and_again_only_after_retry_s(tmp_path: Path) -> None:
    sock = str(tmp_path / "podman.sock")
    c_id = _tree(tmp_path / "cg", f"/libpod_parent/libpod-{CID}")
    with FakeDockerAPI(sock, flavour="podman") as api:
        r = ContainerResolver([sock], root=tmp_path / "cg", retry_s=3600)
        c = r.get(c_id)
        r.get(c_id)
        assert c.name is None and len(api.requests) == 1    # unknown to the runtime: <NA>, asked once
        r2 = ContainerResolver([sock], root=tmp_path / "cg", retry_s=0)
        r2.get(c_id)
        r2.get(c_id)
        assert len(api.requests) == 3                        # retry_s=0: asked again on the next event
