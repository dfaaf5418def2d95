"""End to end, as root: real podman containers (Debian's podman and runc, overlay storage, the
cgroupfs driver) watched by `falconet run` with the bundled rules and Falco's official ones, the
container metadata read from Podman's Docker-compatible API (`podman system service`).

Each test starts its own containers and reads only the alerts whose container.id is theirs: the
sensor sees every process on the machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from containers_lab import Podman, PodmanService, Sensor, busybox_image, podman_fixture, sensor_fixture

pytestmark = pytest.mark.ebpf


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    yield from podman_fixture()


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    return busybox_image(podman)


@pytest.fixture(scope="module")
def service(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    s = PodmanService(podman, tmp_path_factory.mktemp("podman-api") / "podman.sock")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def sensor(service: PodmanService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sensor]:
    yield from sensor_fixture(tmp_path_factory, "sensor-podman", [str(service.sock)])


def _one(by_rule: dict[str, list], rule: str) -> dict:
    assert rule in by_rule, f"no {rule!r} alert; got {sorted(by_rule)}"
    return by_rule[rule][0]["output_fields"]


def test_a_sensitive_file_read_in_a_container_names_the_container(podman: Podman, image: str,
                                                                   sensor: Sensor) -> None:
    cid = podman.run_detached("falconet-e2e-reader", image, "sleep", "300",
                              options=("--label", "app=web", "--label", "tier=front"))
    podman("exec", "falconet-e2e-reader", "cat", "/etc/shadow")
    got = sensor.of_container(cid, rules={"Read sensitive file untrusted", "Sensitive file read"})
    falco = _one(got, "Read sensitive file untrusted")             # Falco's official rule
    ours = _one(got, "Sensitive file read")                        # the bundled rule
    for f in (falco, ours):
        assert re.fullmatch(r"[0-9a-f]{12}", f["container.id"]) and f["container.id"] == cid[:12]
        assert f["container.full_id"] == cid
        assert (f["container.name"], f["container.type"]) == ("falconet-e2e-reader", "podman")
        repo, tag = image.rsplit(":", 1)
        assert (f["container.image"], f["container.image.repository"], f["container.image.tag"]) == \
            (image, repo, tag)
        assert f["container.image.digest"] == podman.image_digest(image)
        assert f["container.privileged"] is False
        assert f["container.mounts"] == ""                         # no volume: none to list
        assert f["container.labels"] == "app:web, tier:front"
        assert (f["proc.name"], f["fd.name"]) == ("cat", "/etc/shadow")


def test_a_shell_with_a_terminal_raises_terminal_shell_in_container(podman: Podman, image: str,
                                                                     sensor: Sensor) -> None:
    cid = podman.run_detached("falconet-e2e-tty", image, "sleep", "300")
    podman("exec", "-t", "falconet-e2e-tty", "sh", "-c", "true")
    podman("exec", "falconet-e2e-tty", "sh", "-c", "true")          # no terminal: not that rule
    shells = sensor.wait_for(lambda a: a["rule"] == "Shell spawned in container"
                             and a["output_fields"]["container.id"] == cid[:12], count=2)
    got = sensor.of_container(cid, rules={"Terminal shell in container"})
    tty = got.get("Terminal shell in container", [])
    assert len(tty) == 1, f"one shell had a terminal; got {len(tty)} alerts"
    f = tty[0]["output_fields"]
    assert f["proc.name"] == "sh" and f["proc.tty"] != 0
    assert (f["container.id"], f["container.name"]) == (cid[:12], "falconet-e2e-tty")
    # the bundled rule sees both shells, with and without a terminal
    assert sorted(a["output_fields"]["proc.tty"] != 0 for a in shells) == [False, True]


def test_a_binary_dropped_into_the_writable_layer_is_caught_and_an_image_binary_is_not(
        podman: Podman, image: str, sensor: Sensor) -> None:
    cid = podman.run_detached("falconet-e2e-drop", image, "sleep", "300")
    podman("exec", "falconet-e2e-drop", "cp", "/bin/busybox", "/tmp/id")     # into the overlay's upper layer
    podman("exec", "falconet-e2e-drop", "/tmp/id")
    podman("exec", "falconet-e2e-drop", "/bin/id")                          # the image's own binary
    got = sensor.of_container(cid, rules={"Drop and execute new binary in container"}, settle=10)
    drops = got.get("Drop and execute new binary in container", [])
    assert [a["output_fields"]["proc.exepath"] for a in drops] == ["/tmp/id"]
    assert drops[0]["priority"] == "Critical"
    assert drops[0]["output_fields"]["container.name"] == "falconet-e2e-drop"


START_RULES = {"Launch Privileged Container", "Privileged container started",
               "Launch Sensitive Mount Container", "Container with sensitive mount started"}


def test_a_privileged_container_with_a_sensitive_mount_raises_the_container_start_rules(
        podman: Podman, image: str, sensor: Sensor) -> None:
    cid = podman.run_detached("falconet-e2e-privileged", image, "sleep", "300",
                              options=("--privileged", "-v", "/proc:/host/proc:ro"))
    got = sensor.of_container(cid, rules=START_RULES)
    assert START_RULES <= set(got), f"missing {START_RULES - set(got)}; sensor log: {''.join(sensor.stderr)[-3000:]}"
    for rule in START_RULES:
        f = _one(got, rule)
        assert f["proc.vpid"] == 1 and f["proc.name"] == "sleep"     # the container's first process
        assert f["container.privileged"] is True
        assert f["container.mounts"] == "/proc:/host/proc::false:rprivate"
        assert f["container.name"] == "falconet-e2e-privileged"


def test_a_plain_container_raises_no_container_start_rule_of_ours(podman: Podman, image: str,
                                                                  sensor: Sensor) -> None:
    cid = podman.run_detached("falconet-e2e-plain", image, "sleep", "300", options=("-v", "/srv:/srv:ro"))
    podman("exec", "falconet-e2e-plain", "cat", "/etc/shadow")        # an alert that shows it was seen
    got = sensor.of_container(cid, rules={"Sensitive file read"})
    assert "Sensitive file read" in got
    assert not {"Launch Privileged Container", "Privileged container started",
                "Container with sensitive mount started"} & set(got)
    assert _one(got, "Sensitive file read")["container.mounts"] == "/srv:/srv::false:rprivate"


@pytest.mark.parametrize(("layout", "options"), [
    ("cgroup-parent", ("--cgroup-parent", "/falconet-e2e")),     # /falconet-e2e/libpod-<id>
    ("private-cgroupns", ("--cgroupns", "private")),              # the kernel's ids are the host's
    ("pod", ("--pod", "falconet-e2e-pod")),                       # /libpod_parent/<pod id>/libpod-<id>
])
def test_every_cgroup_layout_podman_makes_here_is_a_container(podman: Podman, image: str, sensor: Sensor,
                                                              layout: str, options: tuple[str, ...]) -> None:
    name = f"falconet-e2e-layout-{layout}"
    if layout == "pod":                     # a pod with an infra container (catatonit), no network
        podman("pod", "rm", "-f", "falconet-e2e-pod", check=False)
        podman("pod", "create", "--network", "none", "--name", "falconet-e2e-pod")
    try:
        cid = podman.run_detached(name, image, "sleep", "300", options=options, network=layout != "pod")
        cgroup = Path(f"/proc/{podman('inspect', '--format', '{{.State.Pid}}', name).stdout.strip()}/cgroup")
        path = next(line[3:].strip() for line in cgroup.read_text().splitlines() if line.startswith("0::"))
        assert path.endswith(f"/libpod-{cid}")
        podman("exec", name, "cat", "/etc/shadow")
        f = _one(sensor.of_container(cid, rules={"Sensitive file read"}), "Sensitive file read")
        assert (f["container.id"], f["container.name"], f["container.type"]) == (cid[:12], name, "podman")
    finally:
        if layout == "pod":
            podman("rm", "-f", "-t", "0", name, check=False)
            podman("pod", "rm", "-f", "falconet-e2e-pod", check=False)
