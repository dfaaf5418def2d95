"""The security review's attacks on a running audit webhook (issue 14, finding 5), against
`falconet run` in its own process, whose peak memory (VmHWM) is read from /proc.

The review took the sensor from 48 to 363 MB with one unauthenticated 12 MiB body of `[{},{},...]`
(713 MB with four at once) and to 303 MB with 40 half-sent header blocks. Here the same loads,
bounded in number, must leave the peak within the webhook's memory_limit plus a small margin.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT

DATA = ROOT / "tests" / "data" / "k8s_audit"
EVENTS = [json.loads(line) for line in (DATA / "events.jsonl").read_text().splitlines()]
FALCONET = [sys.executable, "-c", "from sensor.cli import main; main()"]
TOKEN = "attack-test-token"
MIB = 1024 * 1024
MEMORY_LIMIT = 32 * MIB
MARGIN = 24 * MIB        # interpreter, TLS buffers and threads of ~50 connections, allocator slack
BODY = b"[" + b"{}," * (4 * MIB - 2) + b"{}]"          # 12 MiB of empty objects, just under max_batch_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


@pytest.fixture
def sensor(tmp_path: Path):
    port = free_port()
    proc = subprocess.Popen(
        [*FALCONET, "run", "-o", "syscall.enabled=false", "-o", f"state_dir={tmp_path}",
         "-o", "webserver.enabled=false", "-o", "k8s_audit.webhook.enabled=true",
         "-o", f"k8s_audit.webhook.listen=127.0.0.1:{port}", "-o", "k8s_audit.webhook.token=${T}",
         "-o", f"k8s_audit.webhook.memory_limit={MEMORY_LIMIT}",
         # All forty half-sent heads below come from one address: let them all in.
         "-o", "k8s_audit.webhook.max_connections_per_client=64"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "T": TOKEN})
    ca = tmp_path / "k8s_audit" / "ca.crt"
    deadline = time.monotonic() + 30
    ctx = None
    while time.monotonic() < deadline and proc.poll() is None:
        if ca.exists():
            ctx = ssl.create_default_context(cafile=str(ca))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                pass
        time.sleep(0.1)
    assert ctx is not None and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
    yield proc, port, ctx
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def request(port: int, ctx: ssl.SSLContext, head: bytes, body: bytes = b"") -> bytes:
    """Send a request's head; if the server has not answered within half a second, its body; and
    return the status line of the answer, or b"" when the server hung up without one. (One thread
    per TLS socket: OpenSSL does not take a read and a write on one connection at once.)"""
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost")
    try:
        sock.sendall(head)
        sock.settimeout(0.5)
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            sock.settimeout(30)
            try:
                sock.sendall(body)
            except OSError:
                pass
            answer = sock.recv(4096)
        return answer.split(b"\r\n", 1)[0]
    except OSError:
        return b""
    finally:
        sock.close()


def head(length: int, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    return (b"POST /k8s-audit HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" + auth
            + b"Content-Length: %d\r\n\r\n" % length)


def at_once(n: int, fn) -> list:
    results: list = [None] * n

    def run(i: int) -> None:
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_large_bodies_and_half_sent_heads_leave_memory_within_the_limit(sensor) -> None:
    proc, port, ctx = sensor
    ok = json.dumps({"kind": "EventList", "items": EVENTS[:5]}).encode()
    assert request(port, ctx, head(len(ok), TOKEN), ok).startswith(b"HTTP/1.1 200")     # warmed up
    base = memory(proc.pid)["VmRSS"]

    # Four unauthenticated 12 MiB bodies at once: answered 401 before the bodies are read.
    answers = at_once(4, lambda: request(port, ctx, head(len(BODY), None), BODY))
    assert all(a.startswith(b"HTTP/1.1 401") for a in answers), answers

    # Four authenticated ones: at most one fits in memory_limit (read, found to be 50 times its
    # size decoded, refused with 413); the others are told to retry (503) before being read.
    assert len(BODY) <= 12 * MIB
    answers = at_once(4, lambda: request(port, ctx, head(len(BODY), TOKEN), BODY))
    assert sorted(a[:12] for a in answers) == [b"HTTP/1.1 413"] + [b"HTTP/1.1 503"] * 3, answers

    # Forty connections that each send 15 KiB of headers and never finish them.
    socks = []
    for _ in range(40):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost")
        s.sendall(b"POST /k8s-audit HTTP/1.1\r\nHost: localhost\r\n" + b"X-Pad: " + b"a" * 15_000 + b"\r\n")
        socks.append(s)
    time.sleep(1.0)
    peak = memory(proc.pid)["VmHWM"]
    for s in socks:
        s.close()

    assert request(port, ctx, head(len(ok), TOKEN), ok).startswith(b"HTTP/1.1 200")    # still serving
    assert peak - base < MEMORY_LIMIT + MARGIN, f"peak {peak / MIB:.0f} MiB, {base / MIB:.0f} MiB before"
