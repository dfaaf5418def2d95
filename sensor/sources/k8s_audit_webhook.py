"""The audit webhook: an HTTPS endpoint for kube-apiserver's webhook audit backend.

The API server POSTs an `EventList` (or one `Event`) as JSON. Each connection is served on its own
thread, and the TLS handshake happens there too, so a client that stalls cannot hold up the others.
One reaper thread enforces deadlines: a request (handshake, headers and body) must arrive within
`request_timeout`, an idle keep-alive connection is closed after `idle_timeout`.

Accepted events wait in a bounded queue that the engine drains through `poll()`; the webhook never
waits for the engine. A batch that does not fit is refused whole with 503 and `Retry-After`: the API
server's webhook backend retries an answer that carries Retry-After (and 429, 500, 504 and reset
connections; no other 4xx), so nothing is half-taken and nothing is taken twice. Answers:
  200 every event queued                 400 not JSON, not audit events, or a malformed event
  401 no bearer token / 403 a wrong one  404 another path      405 another method
  411 no Content-Length                  413 body over max_batch_size, or an event over max_event_size
  415 not application/json               503 the queue is full (retry)
When some events of a batch are malformed or too large, the others are still queued and the answer
(400/413) says how many were accepted and which were not. Every refusal is counted in `stats()`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from sensor.errors import ConfigError, UnavailableError
from sensor.event import AuditEvent
from sensor.sources import k8s_audit_certs
from sensor.sources.k8s_audit import Limits, audit_event, audit_items, event_size

log = logging.getLogger("falconet.k8s_audit")

POLL_BATCH = 1024
ALIASES = ("/k8s-audit", "/k8s_audit")
MAX_REASONS = 10            # rejected items named in one answer; the count covers them all


class EventQueue:
    """A bounded FIFO that takes a batch whole or not at all, so a refused batch can be re-sent."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[AuditEvent] = deque()
        self._cv = threading.Condition()

    def offer(self, events: list[AuditEvent]) -> bool:
        with self._cv:
            if len(self._items) + len(events) > self.capacity:
                return False
            self._items.extend(events)
            self._cv.notify()
            return True

    def take(self, max_n: int, timeout: float) -> list[AuditEvent]:
        with self._cv:
            if not self._items and timeout > 0:
                self._cv.wait(timeout)
            n = min(max_n, len(self._items))
            return [self._items.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._items)


class _Conn:
    __slots__ = ("deadline", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline


class Connections:
    """Open connections and their deadlines; a reaper thread shuts down the ones past due.

    Shutting a socket down (not closing it) wakes the thread blocked reading it. Every change and the
    shutdown itself happen under one lock, and a connection leaves the table before its socket is
    closed, so the reaper never touches a descriptor number that was reused.
    """

    def __init__(self, limit: int, on_timeout: Callable[[], None]) -> None:
        self.limit = limit
        self._on_timeout = on_timeout
        self._lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, sock: socket.socket, deadline: float) -> bool:
        with self._lock:
            if len(self._conns) >= self.limit:
                return False
            self._conns[id(sock)] = _Conn(sock, deadline)
            return True

    def rebind(self, old: socket.socket, new: socket.socket) -> None:
        """The connection's socket is now `new` (the TLS socket that took over `old`'s descriptor)."""
        with self._lock:
            conn = self._conns.pop(id(old), None)
            if conn is not None:
                conn.sock = new
                self._conns[id(new)] = conn

    def set_deadline(self, sock: socket.socket, deadline: float) -> None:
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None:
                conn.deadline = deadline

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.pop(id(sock), None)

    def __len__(self) -> int:
        return len(self._conns)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._reap, name="k8s-audit-reaper", daemon=True)
        self._thread.start()

    def _reap(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            with self._lock:
                for conn in self._conns.values():
                    if conn.deadline <= now:
                        conn.deadline = float("inf")     # once is enough
                        # counted first: whoever sees the connection end then sees the count
                        self._on_timeout()
                        self._shutdown(conn.sock)

    def close_all(self) -> None:
        self._stop.set()
        with self._lock:
            for conn in self._conns.values():
                self._shutdown(conn.sock)
        if self._thread is not None:
            self._thread.join(timeout=2)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            # The plain socket's shutdown, also for an SSLSocket: it only wakes the reader.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], source: WebhookSource, context: ssl.SSLContext) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.source = source
        self.ssl_context = context
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves our own name (getfqdn), which can stall on a broken resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        src = self.source
        if not src.conns.add(request, time.monotonic() + src.limits.request_timeout):
            src.count("refused_connections")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs on the connection's own thread: the handshake cannot block the accept loop.
        src = self.source
        try:
            # wrap_socket takes over the descriptor; hand the new socket to the reaper before the
            # handshake, so a client that never sends its hello is cut off like any other.
            tls = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            src.conns.remove(request)
            return
        src.conns.rebind(request, tls)
        try:
            try:
                tls.do_handshake()
            except OSError as e:
                src.count("tls_errors")
                log.debug("k8s audit webhook: TLS handshake with %s failed: %s", client_address, e)
                return
            handler = _Handler(tls, client_address, self)
            if handler.unread_body:
                _linger(tls)
        except OSError:
            pass              # the client went away or the reaper cut it off (counted there)
        finally:
            src.conns.remove(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def shutdown_request(self, request: Any) -> None:
        self.source.conns.remove(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("k8s audit webhook: error serving %s", client_address)


LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20


def _linger(sock: ssl.SSLSocket) -> None:
    """Read and discard what the client is still sending before closing, briefly.

    Closing a socket with unread data makes the kernel reset the connection, and the reset can
    destroy our answer (a 413) before the client reads it.
    """
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        left = LINGER_BYTES
        while left > 0 and (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            chunk = sock.recv(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
    except (OSError, ValueError):
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"        # keep-alive: the API server reuses its connection
    server_version = "falconet-k8s-audit"
    sys_version = ""
    server: _Server
    unread_body = False                  # we answered before reading the whole request

    def handle_one_request(self) -> None:
        limits = self.server.source.limits
        conns = self.server.source.conns
        conns.set_deadline(self.request, time.monotonic() + limits.idle_timeout)
        try:
            if not self.rfile.peek(1):       # the client closed the connection
                self.close_connection = True
                return
        except (OSError, ValueError):
            self.close_connection = True
            return
        conns.set_deadline(self.request, time.monotonic() + limits.request_timeout)
        super().handle_one_request()

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it.
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.source.limits.max_batch_size:
            self.server.source.too_large_body(self, int(length))
            return False
        return super().handle_expect_100()

    def do_POST(self) -> None:
        self.server.source.handle_post(self)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/healthz":
            reply(self, 200, {"status": "ok"})
        else:
            self._not_allowed()

    def _not_allowed(self) -> None:
        reply(self, 405, {"status": "error", "code": 405, "reason": f"{self.command} is not allowed; POST "
                          "audit events"}, headers={"Allow": "POST"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("k8s audit webhook: %s " + format, self.address_string(), *args)


def reply(h: BaseHTTPRequestHandler, code: int, body: dict[str, Any],
          headers: dict[str, str] | None = None, close: bool = False) -> None:
    """Send one JSON answer; `close` ends the connection (the request body was not read)."""
    data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
    h.send_response(code)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if close:
        h.send_header("Connection", "close")
        h.close_connection = True
        h.unread_body = True  # type: ignore[attr-defined]
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


class _TooLarge(Exception):
    pass


def _read_chunked(rfile: BinaryIO, limit: int) -> bytes | None:
    """A chunked request body (RFC 9112 §7.1); None when it is cut short or malformed."""
    parts, total = [], 0
    while True:
        line = rfile.readline(1026)
        if not line.endswith(b"\n"):
            return None
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            return None
        if size == 0:
            while True:                      # trailer fields up to the blank line
                t = rfile.readline(8192)
                if not t.endswith(b"\n"):
                    return None
                if t in (b"\r\n", b"\n"):
                    return b"".join(parts)
        total += size
        if total > limit:
            raise _TooLarge(total)
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.readline(3) not in (b"\r\n", b"\n"):
            return None
        parts.append(chunk)


class WebhookSource:
    """The `k8s_audit` source fed by kube-apiserver's webhook backend (DESIGN.md §4)."""

    name = "k8s_audit_webhook"
    source = "k8s_audit"

    def __init__(self, host: str, port: int, *, path: str = "/k8s-audit", tls_cert: str | None = None,
                 tls_key: str | None = None, tls_hosts: list[str] | None = None, token: str | None = None,
                 limits: Limits = Limits(), state_dir: Path = Path("/var/lib/falconet"),
                 notice: Callable[[str], None] | None = None) -> None:
        self.host, self.port = host, port
        self.paths = frozenset({path, *ALIASES})
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.tls_hosts = list(tls_hosts or [])
        self.token = token.encode() if token else None
        self.limits = limits
        self.state_dir = Path(state_dir)
        self.notice = notice or (lambda text: print(text, file=sys.stderr, flush=True))
        self.queue = EventQueue(limits.queue_size)
        self.conns = Connections(limits.max_connections, lambda: self.count("timeouts"))
        self._counts: dict[str, int] = dict.fromkeys(
            ("requests", "received", "drops_too_large", "drops_invalid", "drops_busy", "drops_at_stop",
             "bad_requests", "unauthorized", "forbidden", "timeouts", "refused_connections",
             "tls_errors"), 0)
        self._count_lock = threading.Lock()
        self._delivered = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.ca_path: Path | None = None

    # -- Source protocol ------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return False

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was asked for."""
        if self._server is None:
            return self.host, self.port
        return str(self._server.server_address[0]), int(self._server.server_address[1])

    def start(self) -> None:
        context = self._ssl_context()
        try:
            self._server = _Server((self.host, self.port), self, context)
        except OSError as e:
            raise UnavailableError(
                f"k8s audit webhook cannot listen on {self.host}:{self.port}: {e.strerror or e}",
                hint="set k8s_audit.webhook.listen to a free host:port") from e
        self.conns.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="k8s-audit-webhook", daemon=True)
        self._thread.start()
        host, port = self.address
        log.info("k8s audit webhook listening on https://%s:%d%s", host, port, min(self.paths))

    def poll(self, timeout: float) -> list[AuditEvent]:
        events = self.queue.take(POLL_BATCH, timeout)
        for ev in events:
            self._delivered += 1
            ev.num = self._delivered
        return events

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self.conns.close_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # Accepted (answered 200) but never taken by the engine: lost with this process, so counted.
        left = len(self.queue.take(len(self.queue), 0))
        if left:
            self.count("drops_at_stop", left)
            log.warning("k8s audit webhook: %d accepted events were not processed before it stopped", left)

    def stats(self) -> dict[str, int]:
        with self._count_lock:
            c = dict(self._counts)
        c["events"] = self._delivered
        c["queued"] = len(self.queue)
        # Events that reached us and will not reach the rules (a refused batch may be re-sent).
        c["drops"] = c["drops_too_large"] + c["drops_invalid"] + c["drops_busy"] + c["drops_at_stop"]
        return c

    # -- TLS ------------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self.tls_cert and self.tls_key:
            cert, key = self.tls_cert, self.tls_key
        else:
            cert, key = self._self_signed()
        for name, path in (("tls_cert", cert), ("tls_key", key)):
            if not Path(path).is_file():
                raise ConfigError(f"k8s_audit.webhook.{name}: {path}: no such file",
                                  hint="set tls_cert and tls_key to PEM files, or leave both empty")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"k8s_audit.webhook: cannot use certificate {cert} with key {key}: {e}",
                              hint="tls_cert must be a PEM certificate and tls_key its PEM private key") \
                from e
        return ctx

    def _self_signed(self) -> tuple[str, str]:
        directory = self.state_dir / "k8s_audit"
        hosts = k8s_audit_certs.local_hosts(self.tls_hosts, self.host)
        try:
            cert, key, ca, created = k8s_audit_certs.ensure_self_signed(directory, hosts)
        except OSError as e:
            raise UnavailableError(
                f"k8s audit webhook: cannot write its certificate in {directory}: {e.strerror or e}",
                hint="make state_dir writable, or set k8s_audit.webhook.tls_cert and tls_key") from e
        self.ca_path = ca
        if created:
            url = f"https://{hosts[0]}:{self.port}{min(self.paths)}"
            self.notice(
                f"falconet: k8s audit webhook: generated a self-signed certificate for "
                f"{', '.join(hosts)} in {directory}; its CA is {ca}.\n"
                f"Give kube-apiserver this file as --audit-webhook-config-file:\n"
                + k8s_audit_certs.kubeconfig(url, ca.read_bytes(), None))
        return str(cert), str(key)

    # -- requests -------------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[name] += n

    def too_large_body(self, h: BaseHTTPRequestHandler, length: int) -> None:
        self.count("bad_requests")
        reply(h, 413, _error(413, f"request body of {length} bytes is over k8s_audit.webhook."
                                  f"max_batch_size ({self.limits.max_batch_size} bytes)"), close=True)

    def handle_post(self, h: BaseHTTPRequestHandler) -> None:
        """Answer one POST: check path, token, type and size, then queue its events."""
        self.count("requests")
        if urlsplit(h.path).path not in self.paths:
            self.count("bad_requests")
            reply(h, 404, _error(404, f"no audit endpoint at {urlsplit(h.path).path}; POST to "
                                      f"{' or '.join(sorted(self.paths))}"), close=True)
            return
        if self.token is not None and not self._authorized(h):
            return
        ctype = h.headers.get("Content-Type", "")
        if "json" not in ctype.lower():
            self.count("bad_requests")
            reply(h, 415, _error(415, f"Content-Type is {ctype or 'missing'}; send application/json"),
                  close=True)
            return
        body = self._read_body(h)
        if body is None:
            return
        self._accept(h, body)

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        auth = h.headers.get("Authorization")
        if not auth:
            self.count("unauthorized")
            reply(h, 401, _error(401, "a bearer token is required (kubeconfig users[].user.token)"),
                  headers={"WWW-Authenticate": 'Bearer realm="falconet"'}, close=True)
            return False
        scheme, _, cred = auth.partition(" ")
        assert self.token is not None
        if scheme.lower() != "bearer" or not hmac.compare_digest(cred.strip().encode(), self.token):
            self.count("forbidden")
            reply(h, 403, _error(403, "the bearer token is not the one k8s_audit.webhook.token expects"),
                  close=True)
            return False
        return True

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes | None:
        limit = self.limits.max_batch_size
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            try:
                body = _read_chunked(h.rfile, limit)
            except _TooLarge as e:
                self.too_large_body(h, e.args[0])
                return None
            if body is None:
                self.count("bad_requests")
                h.close_connection = True   # cut short (deadline) or malformed framing
            return body
        length = h.headers.get("Content-Length")
        if length is None:
            self.count("bad_requests")
            reply(h, 411, _error(411, "Content-Length is required"), close=True)
            return None
        if not length.strip().isdigit():
            self.count("bad_requests")
            reply(h, 400, _error(400, f"Content-Length {length!r} is not a number"), close=True)
            return None
        n = int(length)
        if n > limit:
            self.too_large_body(h, n)
            return None
        body = h.rfile.read(n)
        if len(body) != n:
            # The client stopped sending (or the reaper cut it off at the deadline): no answer
            # can reach it reliably, and the API server treats the broken connection as retryable.
            self.count("bad_requests")
            h.close_connection = True
            return None
        return body

    def _accept(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        try:
            obj = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.count("bad_requests")
            reply(h, 400, _error(400, f"body is not valid JSON: {e}"))
            return
        try:
            items = list(audit_items(obj))
        except ValueError as e:
            self.count("bad_requests")
            reply(h, 400, _error(400, str(e)))
            return
        events: list[AuditEvent] = []
        too_large: list[str] = []
        invalid: list[str] = []
        max_size = self.limits.max_event_size
        check_size = len(body) > max_size       # no item of a small body can be over the limit
        for where, item in items:
            if check_size:
                size = event_size(item)
                if size > max_size:
                    too_large.append(f"{where} is {size} bytes, over k8s_audit.max_event_size ({max_size})")
                    continue
            try:
                events.append(audit_event(item, where))
            except ValueError as e:
                invalid.append(str(e))
        if events and not self.queue.offer(events):
            self.count("drops_busy", len(events))
            reply(h, 503, _error(503, f"event queue full ({self.queue.capacity} events); retry"),
                  headers={"Retry-After": "1"})
            return
        self.count("received", len(events))
        if not (too_large or invalid):
            reply(h, 200, {"status": "ok", "accepted": len(events)})
            return
        self.count("drops_too_large", len(too_large))
        self.count("drops_invalid", len(invalid))
        code = 413 if too_large else 400
        reasons = (too_large + invalid)[:MAX_REASONS]
        for r in reasons:
            log.warning("k8s audit webhook: rejected %s", r)
        reply(h, code, {**_error(code, "; ".join(reasons)), "accepted": len(events),
                        "rejected": len(too_large) + len(invalid)})


def _error(code: int, reason: str) -> dict[str, Any]:
    return {"status": "error", "code": code, "reason": reason}
