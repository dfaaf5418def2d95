"""container.* and k8s.* fields: host processes, containers, mounts by index and glob, pods."""

from __future__ import annotations

import pytest
from syscall_world import SEC, T0, World, make_world

from sensor.event import Container, Process, SyscallEvent


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return make_world(tmp_path, monkeypatch)


def _event(container: Container) -> SyscallEvent:
    return SyscallEvent(type="execve", time_ns=T0, num=1, proc=Process(pid=50, container=container), tid=50,
                        res=0)


def test_a_host_process(world: World) -> None:
    ev = world.events["setuid"]
    assert (ev.value("container.id"), ev.value("container.name"), ev.value("container.type")) == \
        ("host", "host", "host")
    assert ev.value("container.full_id") == "host"
    for name in ("container.image", "container.image.repository", "container.image.tag",
                 "container.image.digest", "container.privileged", "container.mounts", "container.start_ts",
                 "container.duration", "k8s.ns.name", "k8s.pod.name", "k8s.pod.uid", "k8s.pod.labels"):
        assert ev.value(name) is None, name
    assert ev.value("container.mount.dest", "0") is None
    assert ev.value("k8s.pod.label", "app") is None


def test_a_container(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("container.id") == "3ad7b26ded6d"
    assert ev.value("container.full_id").startswith("3ad7b26ded6d") and len(ev.value("container.full_id")) == 64
    assert ev.value("container.name") == "web"
    assert ev.value("container.type") == "containerd"
    assert ev.value("container.image") == "docker.io/library/nginx:1.25"
    assert ev.value("container.image.repository") == "docker.io/library/nginx"
    assert ev.value("container.image.tag") == "1.25"
    assert ev.value("container.image.digest") == "sha256:" + "b" * 64
    assert ev.value("container.privileged") is False
    assert ev.value("container.start_ts") == T0 - 3600 * SEC
    assert ev.value("container.duration") == ev.time_ns - (T0 - 3600 * SEC)


def test_labels_of_the_container(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("container.label", "app") == "web"
    assert ev.value("container.label", "tier") == ""
    assert ev.value("container.label", "nosuch") is None
    # as Falco's container plugin: the kubelet's own labels are left out of the list
    assert ev.value("container.labels") == "app:web, tier"
    assert world.events["setuid"].value("container.labels") is None
    assert world.events["setuid"].value("container.label", "app") is None


def test_what_the_runtime_did_not_say_has_no_value() -> None:
    ev = _event(Container(id="0123456789ab", type="docker"))
    assert ev.value("container.id") == "0123456789ab"
    assert ev.value("container.type") == "docker"
    for name in ("container.name", "container.full_id", "container.image", "container.image.repository",
                 "container.privileged", "container.mounts", "container.start_ts", "container.duration",
                 "container.labels", "k8s.pod.name", "k8s.ns.name", "k8s.pod.labels"):
        assert ev.value(name) is None, name


def test_mounts(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("container.mounts") == \
        "/var/run/docker.sock:/var/run/docker.sock::true:rprivate,/proc:/host/proc:ro:false:rslave"
    assert ev.value("container.mount", "1") == "/proc:/host/proc:ro:false:rslave"
    assert ev.value("container.mount.dest", "0") == "/var/run/docker.sock"
    assert ev.value("container.mount.source", "1") == "/proc"
    assert ev.value("container.mount.mode", "1") == "ro"
    assert ev.value("container.mount.rdwr", "0") == "true"
    assert ev.value("container.mount.propagation", "1") == "rslave"
    assert ev.value("container.mount.dest", "2") is None


def test_mounts_by_glob_pattern(world: World) -> None:
    ev = world.events["open_shadow"]
    # as Falco: the pattern matches the mount's source, except for container.mount.source
    assert ev.value("container.mount.dest", "/var/run/docker.sock") == "/var/run/docker.sock"
    assert ev.value("container.mount.dest", "/proc*") == "/host/proc"
    assert ev.value("container.mount", "/pro?") == "/proc:/host/proc:ro:false:rslave"
    assert ev.value("container.mount.source", "/host/*") == "/proc"
    assert ev.value("container.mount.rdwr", "/proc") == "false"
    assert ev.value("container.mount.dest", "/etc*") is None
    assert ev.value("container.mount.dest", "/host/proc") is None


def test_a_container_without_mounts(world: World) -> None:
    ev = _event(Container(id="0123456789ab", mounts=[]))
    assert ev.value("container.mounts") == ""
    assert ev.value("container.mount.dest", "0") is None
    assert ev.value("container.mount.dest", "/*") is None


def test_kubernetes_pod(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("k8s.ns.name") == "shop"
    assert ev.value("k8s.pod.name") == "web-7d9c"
    assert ev.value("k8s.pod.uid") == "3e41dc6b-08a8-44db-bc2a-3724b18ab19a"
    assert ev.value("k8s.pod.id") == ev.value("k8s.pod.uid")
    assert ev.value("k8s.pod.label", "app") == "web"
    assert ev.value("k8s.pod.label", "tier") == ""
    assert ev.value("k8s.pod.label", "team") is None
    # the runtime's own io.kubernetes.* labels are left out, as Falco does
    assert ev.value("k8s.pod.labels") == "app:web, tier"


def test_a_pod_known_only_by_its_uid() -> None:
    ev = _event(Container(id="0123456789ab", pod_uid="3e41dc6b-08a8-44db-bc2a-3724b18ab19a"))
    assert ev.value("k8s.pod.uid") == "3e41dc6b-08a8-44db-bc2a-3724b18ab19a"
    assert ev.value("k8s.pod.name") is None
    assert ev.value("k8s.ns.name") is None
    assert ev.value("k8s.pod.label", "app") is None
