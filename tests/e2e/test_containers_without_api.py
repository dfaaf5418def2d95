"""End to end, as root: containers known from their cgroup alone, with `<NA>` for whatever no
runtime said. A container under Debian's containerd, started with `ctr run` (containerd speaks only
gRPC and is not asked), and a podman container while no runtime socket answers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from containers_lab import Containerd, Podman, Sensor, busybox_image, podman_fixture, require, sensor_fixture

pytestmark = pytest.mark.ebpf

UNKNOWN = ("container.name", "container.image", "container.image.repository", "container.image.tag",
           "container.image.digest", "container.privileged", "container.mounts", "container.labels")


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    yield from podman_fixture()


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    return busybox_image(podman)


@pytest.fixture(scope="module")
def sensor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sensor]:
    # No runtime socket at all: what a container is can only come from its cgroup.
    yield from sensor_fixture(tmp_path_factory, "sensor-no-api", [])


@pytest.fixture(scope="module")
def containerd(podman: Podman, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    require("containerd", "ctr")
    c = Containerd()
    try:
        if image not in c.ctr("image", "ls", "-q").stdout.split():
            archive = tmp_path_factory.mktemp("oci") / "busybox.tar"
            podman("save", "--format", "oci-archive", "-o", str(archive), image)
            c.ctr("image", "import", "--base-name", image.rsplit(":", 1)[0], str(archive))
        yield c
    finally:
        c.stop()


def _fields(sensor: Sensor, full_id: str, rule: str) -> dict:
    got = sensor.of_container(full_id, rules={rule})
    assert rule in got, f"no {rule!r} alert for {full_id[:12]}; got {sorted(got)}"
    return got[rule][0]["output_fields"]


def test_a_container_under_ctr_run_is_known_by_its_id(containerd: Containerd, image: str,
                                                       sensor: Sensor) -> None:
    cid = secrets.token_hex(32)                     # a 64-hex id, as containerd's CRI plugin names them
    containerd.ctr("run", "-d", image, cid, "sleep", "300")
    try:
        containerd.ctr("task", "exec", "--exec-id", "e2e-read", cid, "cat", "/etc/shadow")
        for rule in ("Read sensitive file untrusted", "Sensitive file read"):
            f = _fields(sensor, cid, rule)
            assert (f["container.id"], f["container.full_id"], f["container.type"]) == \
                (cid[:12], cid, "containerd")
            assert (f["proc.name"], f["fd.name"]) == ("cat", "/etc/shadow")
            for name in UNKNOWN:
                assert f[name] is None, f"{name} = {f[name]!r}: nobody said so"
    finally:
        containerd.ctr("task", "kill", "-s", "SIGKILL", cid, check=False)
        containerd.ctr("task", "rm", "-f", cid, check=False)
        containerd.ctr("container", "rm", cid, check=False)


def test_a_podman_container_with_no_socket_answering_has_only_what_its_cgroup_says(
        podman: Podman, image: str, sensor: Sensor) -> None:
    cid = podman.run_detached("falconet-e2e-no-api", image, "sleep", "300",
                              options=("--privileged", "--label", "app=web"))
    podman("exec", "falconet-e2e-no-api", "cat", "/etc/shadow")
    f = _fields(sensor, cid, "Sensitive file read")
    assert (f["container.id"], f["container.full_id"], f["container.type"]) == (cid[:12], cid, "podman")
    for name in UNKNOWN:
        assert f[name] is None, f"{name} = {f[name]!r}: nobody said so"
    # privileged is not known, so neither rule that needs it may fire on a guess
    got = sensor.of_container(cid, settle=0)
    assert not {"Launch Privileged Container", "Privileged container started"} & set(got)
