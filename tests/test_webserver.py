"""The health and metrics server (sensor/webserver.py) against the review's attacks (issue 14,
finding 7): it listens on loopback by default, keeps its connections and threads bounded, answers
probes while clients stall (TLS included), keeps rule names from unauthenticated readers, and logs
no traceback when clients hang up."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sensor import config
from sensor.alert import Priority
from sensor.metrics import SensorCollector, Snapshot
from sensor.sources.k8s_audit import certs
from sensor.webserver import WebServer

SNAPSHOT = Snapshot(version="test", hostname="h", matches={
    ("Read sensitive file untrusted", Priority.WARNING, "syscall"): 3,
    ("Terminal shell in container", Priority.NOTICE, "syscall"): 2,
    ("Write below etc", Priority.WARNING, "syscall"): 4})


@pytest.fixture
def server():
    started: list[WebServer] = []

    def start(**kw) -> WebServer:
        kw.setdefault("collector", SensorCollector(lambda: SNAPSHOT))
        web = WebServer("127.0.0.1", 0, healthy=lambda: True, **kw).start()
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()


def get(web: WebServer, path: str, headers: dict[str, str] | None = None, scheme: str = "http",
        context: ssl.SSLContext | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{web.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_it_listens_on_loopback_unless_told_otherwise() -> None:
    assert config.load(None, []).get("webserver.listen_address") == "127.0.0.1"


def test_unauthenticated_metrics_carry_no_rule_names_but_the_same_totals(server) -> None:
    web = server()
    status, text = get(web, "/metrics")
    assert status == 200
    assert "rule_name" not in text and "Read sensitive file" not in text
    assert 'falcosecurity_falco_rules_matches_total{priority="4",source="syscall"} 7.0' in text
    assert 'falcosecurity_falco_rules_matches_total{priority="5",source="syscall"} 2.0' in text


def test_with_a_token_metrics_need_it_and_then_name_the_rules(server) -> None:
    web = server(token="m3trics")
    assert get(web, "/metrics")[0] == 401
    assert get(web, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    status, text = get(web, "/metrics", {"Authorization": "Bearer m3trics"})
    assert status == 200 and 'rule_name="Read sensitive file untrusted"' in text
    assert get(web, "/healthz") == (200, '{"status": "ok"}')       # probes carry no token


def _threads_and_fds() -> tuple[int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def test_a_thousand_half_sent_requests_are_capped_and_probes_still_answer(server) -> None:
    web = server(max_connections=16, request_timeout=3.0)
    threads, fds = _threads_and_fds()
    attackers = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", web.port), timeout=5, source_address=("127.0.0.2", 0))
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")        # ... never finished
        except OSError:
            pass
        attackers.append(s)
    try:
        t = time.monotonic()
        assert get(web, "/healthz") == (200, '{"status": "ok"}')
        assert time.monotonic() - t < 1.0
        more_threads, more_fds = _threads_and_fds()
        # The test's own 1,000 sockets are fds of this process too; the server's are capped.
        assert more_threads - threads <= 16 + 2
        assert more_fds - fds <= 1000 + 16 + 2
        assert web.stats()["refused_per_client"] >= 1000 - 16 // 4
    finally:
        for s in attackers:
            s.close()


def test_a_half_sent_request_is_cut_off_at_the_request_timeout(server) -> None:
    web = server(request_timeout=1.0)
    s = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    t = time.monotonic()
    assert s.recv(100) == b""
    assert time.monotonic() - t < 3
    s.close()


def test_a_silent_tls_client_does_not_freeze_the_health_check(server, tmp_path: Path) -> None:
    paths = certs.write_files(certs.generate(["localhost", "127.0.0.1"]), tmp_path / "tls")
    pem = tmp_path / "web.pem"
    pem.write_bytes(paths["tls.crt"].read_bytes() + paths["tls.key"].read_bytes())
    web = server(tls_certificate=str(pem), collector=None)
    silent = socket.create_connection(("127.0.0.1", web.port), timeout=10)    # no ClientHello, ever
    try:
        ctx = ssl.create_default_context(cafile=str(paths["ca.crt"]))
        t = time.monotonic()
        assert get(web, "/healthz", scheme="https", context=ctx)[0] == 200
        assert time.monotonic() - t < 1.0
    finally:
        silent.close()


def test_clients_that_hang_up_leave_no_traceback_in_the_log(server, caplog) -> None:
    web = server()
    with caplog.at_level(logging.DEBUG, logger="falconet"):
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", web.port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            # Reset at once (SO_LINGER 0): the answer meets a broken pipe or a reset.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        time.sleep(0.5)
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert get(web, "/healthz")[0] == 200
