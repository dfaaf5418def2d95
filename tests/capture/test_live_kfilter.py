"""The kernel filter against the kernel (root + eBPF): what a rule must see still arrives, what no
rule can match stays in the kernel, and rules the derivation cannot read keep everything.

Each test attaches one probe for one rule set, acts in child processes, and reads every event the
kernel handed over (not only those of the rules' types), matching them with the same rules.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import compat_file

from sensor.capture.session import Capture, CaptureOptions
from sensor.engine import load_rules
from sensor.engine.kernel_filter import derive, to_data
from sensor.event import SyscallEvent

pytestmark = pytest.mark.ebpf
SYSTEM_PYTHON = "/usr/bin/python3"


class Live:
    """One capture for one rule set; every event handed over, and the alerts of the rules."""

    def __init__(self, rule_files: list[Path], kernel_filter: bool = True) -> None:
        self.rs = load_rules(rule_files)
        preds = {t: to_data(p) for t, p in derive(self.rs).items()} if kernel_filter else None
        self.cap = Capture(CaptureOptions(event_types=self.rs.event_types("syscall"), predicates=preds))
        self.cap.start()
        self.events: list[SyscallEvent] = []
        self.alerts: list[Any] = []

    def drain(self, until: Any = None, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        quiet = None
        while time.monotonic() < deadline:
            got = self.cap.poll(0.05)
            for ev in got:
                self.events.append(ev)
                self.alerts += self.rs.process(ev)
            if got:
                quiet = None
                continue
            quiet = quiet or time.monotonic()
            if (until is None or until()) and time.monotonic() - quiet > 0.5:
                return

    def of(self, pid: int, etype: str) -> list[SyscallEvent]:
        return [e for e in self.events if e.proc.pid == pid and e.type == etype]

    def stop(self) -> None:
        self.cap.stop()


def rules(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "test_rules.yaml"
    f.write_text(text)
    return f


def tcp_pair_sending(n: int) -> tuple[int, int]:
    """A child that connects to a loopback listener and sends `n` messages with send() (sendto):
    (child pid, server port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve() -> None:
        c, _ = srv.accept()
        while c.recv(4096):
            pass
        c.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    code = (f"import os, socket\ns = socket.create_connection(('127.0.0.1', {port}))\n"
            f"for _ in range({n}): s.send(b'x')\ns.close()\nprint(os.getpid())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    t.join(5)
    return int(out.stdout), port


def udp_to_public_addresses(marker: str) -> int:
    """A child in a network namespace of its own (198.51.100.2 on its loopback) that sends two
    UDP datagrams from a bound, unconnected socket to two public addresses (TEST-NET-2)."""
    code = ("import os, socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('198.51.100.2', 0))\ns.sendto(b'x', ('198.51.100.7', 53))\n"
            "s.sendto(b'y', ('198.51.100.8', 53))\nprint(os.getpid())")
    script = ("ip link set lo up && ip addr add 198.51.100.2/24 dev lo && "
              f"exec {SYSTEM_PYTHON} -c {shlex.quote(code)} {marker}")
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, check=True)
    return int(out.stdout)


OUTBOUND_UDP = """
- rule: Outbound UDP datagram (test)
  desc: The stable rules' outbound macro, for UDP.
  condition: outbound and fd.l4proto = udp and proc.cmdline contains {marker}
  output: outbound udp %fd.name
  priority: Notice
"""


@pytest.fixture
def live() -> Iterator[list[Live]]:
    made: list[Live] = []
    yield made
    for lv in made:
        lv.stop()


def test_sendto_keeps_the_outbound_datagram_and_drops_loopback_tcp(tmp_path: Path, live: list[Live]) -> None:
    marker = f"udp-marker-{time.monotonic_ns()}"
    lv = Live([compat_file("falco_rules.yaml"), rules(tmp_path, OUTBOUND_UDP.format(marker=marker))])
    live.append(lv)
    assert lv.cap.tables.specs["sendto"]["kf_mode"] == 1           # filtered in the kernel
    udp = udp_to_public_addresses(marker)
    tcp, port = tcp_pair_sending(23)
    connector = subprocess.run([sys.executable, "-c", f"import os, socket\ntry: socket.create_connection("
                                f"('127.0.0.1', {port}), timeout=1)\nexcept OSError: pass\nprint(os.getpid())"],
                               capture_output=True, text=True, check=True)
    lv.drain(lambda: len(lv.of(udp, "sendto")) >= 2)
    sent = lv.of(udp, "sendto")
    assert [e.fd.sip for e in sent] == ["198.51.100.7", "198.51.100.8"]
    hits = [a for a in lv.alerts if a.rule == "Outbound UDP datagram (test)"]
    # fd.name_changed: the second datagram goes to another address than the first
    assert [a.output for a in hits] == ["outbound udp 198.51.100.2:" + str(sent[1].fd.cport) + "->198.51.100.8:53"]
    assert lv.of(tcp, "sendto") == []                               # TCP on loopback: no rule can match
    assert lv.of(int(connector.stdout), "connect") == []            # connect to loopback: no rule either
    assert lv.cap.stats()["filtered"] > 23


def test_connect_to_loopback_arrives_where_a_rule_can_match_it(tmp_path: Path, live: list[Live]) -> None:
    # A rule on loopback connects, and a rule on sendto the kernel cannot read: every sendto and
    # the connect reach user space.
    lv = Live([compat_file("falco_rules.yaml"), rules(tmp_path, """
- rule: Loopback connect (test)
  desc: t
  condition: evt.type = connect and fd.sip = 127.0.0.1 and fd.l4proto = tcp
  output: loopback connect %fd.name
  priority: Notice
- rule: Sends by a child of a shell (test)
  desc: The derivation cannot read the parent's name.
  condition: evt.type = sendto and proc.pname = zsh-that-is-not-here
  output: x
  priority: Notice
""")])
    live.append(lv)
    assert lv.cap.tables.specs["sendto"]["kf_mode"] == 0            # every sendto
    tcp, port = tcp_pair_sending(23)
    lv.drain(lambda: len(lv.of(tcp, "sendto")) >= 23)
    assert len(lv.of(tcp, "sendto")) == 23
    (conn,) = lv.of(tcp, "connect")
    assert conn.fd.sport == port
    assert [a.rule for a in lv.alerts if a.event is not None and a.event.proc.pid == tcp] == ["Loopback connect (test)"]


def test_with_the_kernel_filter_off_every_event_arrives(tmp_path: Path, live: list[Live]) -> None:
    lv = Live([compat_file("falco_rules.yaml"), rules(tmp_path, OUTBOUND_UDP.format(marker="x"))], kernel_filter=False)
    live.append(lv)
    assert all(s["kf_mode"] == 0 for s in lv.cap.tables.specs.values()) and not lv.cap.tables.detached
    tcp, _port = tcp_pair_sending(23)
    lv.drain(lambda: len(lv.of(tcp, "sendto")) >= 23)
    assert len(lv.of(tcp, "sendto")) == 23
    assert len(lv.of(tcp, "connect")) == 1
