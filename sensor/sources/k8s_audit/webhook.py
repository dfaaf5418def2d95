"""The audit webhook: an HTTPS endpoint for kube-apiserver's webhook audit backend.

The API server POSTs an `EventList` (or one `Event`) as JSON. A request is checked in an order
that keeps what an unauthenticated client can cost small: its head must fit in 16 KiB (http1.py),
then the path and the bearer token are checked, and only then is a body read. Bodies and the
events they hold count against one memory budget (`memory_limit`): the body's size is reserved
before it is read, the memory decoding will take is estimated from the text and reserved before
it is decoded (decode.decode_cost), and queued events keep their share until the engine takes
them. The body is decoded item by item (decode.iter_body), so what is not an audit event is
dropped as soon as it is read.

Accepted events wait in a bounded queue that the engine drains through `poll()`; the webhook never
waits for the engine. A batch that does not fit is refused whole with 503 and `Retry-After`: the API
server's webhook backend retries an answer that carries Retry-After (and 429, 500, 504 and reset
connections; no other 4xx), so nothing is half-taken and nothing is taken twice. Answers:
  200 every event queued                 400 not JSON, not audit events, a malformed event or request
  401 no bearer token / 403 a wrong one  404 another path      405 another method
  411 no Content-Length                  413 body over max_batch_size or memory_limit, or an event
  415 not application/json                   over max_event_size
  431 request head over 16 KiB           503 the queue or the memory budget is full (retry)
When some events of a batch are malformed or too large, the others are still queued and the answer
(400/413) says how many were accepted and which were not. Every refusal is counted in `stats()`
and logged as one line (at most a few a second; the rest are counted in the next line).

Authentication is on by default (`require_token`): without a configured token, one is generated at
first start in state_dir/k8s_audit/token. Turning it off on an address other than loopback is
warned about at start.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from sensor import securefile
from sensor.errors import ConfigError, UnavailableError
from sensor.event import AuditEvent
from sensor.httpserver import http1
from sensor.httpserver.listener import Listener
from sensor.sources.k8s_audit import certs
from sensor.sources.k8s_audit.decode import (
    DecodeError,
    audit_event,
    decode_cost,
    event_size,
    iter_body,
    text_size,
)
from sensor.sources.k8s_audit.settings import Limits

log = logging.getLogger("falconet.k8s_audit")

POLL_BATCH = 1024
ALIASES = ("/k8s-audit", "/k8s_audit")
MAX_REASONS = 10            # rejected items named in one answer; the count covers them all
MIB = 1024 * 1024
SERVER = "falconet-k8s-audit"


class MemoryBudget:
    """Bytes the webhook may hold at once: request bodies, their decoding, queued events."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.used -= n


class EventQueue:
    """A bounded FIFO that takes a batch whole or not at all, so a refused batch can be re-sent.

    Each event holds its share of the memory budget until it is taken.
    """

    def __init__(self, capacity: int, budget: MemoryBudget) -> None:
        self.capacity = capacity
        self.budget = budget
        self._items: deque[tuple[AuditEvent, int]] = deque()
        self._cv = threading.Condition()

    def offer(self, events: list[tuple[AuditEvent, int]]) -> bool:
        """Queue (event, reserved bytes) pairs, all or none; the reservations pass to the queue."""
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
            taken = [self._items.popleft() for _ in range(n)]
        self.budget.release(sum(cost for _, cost in taken))
        return [ev for ev, _ in taken]

    def __len__(self) -> int:
        return len(self._items)


class RefusalLog:
    """One log line per refused request, at most `per_second` a second; the lines that were held
    back are counted in the next one, so a flood of bad requests cannot flood the log."""

    def __init__(self, per_second: float = 5.0) -> None:
        self.per_second = per_second
        self._tokens = per_second
        self._last = time.monotonic()
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, client: str, code: int, reason: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.per_second, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            if self._tokens < 1:
                self._held += 1
                return
            self._tokens -= 1
            held, self._held = self._held, 0
        more = f" ({held} more refusals not logged)" if held else ""
        log.warning("k8s audit webhook: refused a request from %s: %d %s%s", client, code, reason[:300], more)


class Exchange:
    """One request and its answer on a connection."""

    def __init__(self, request: http1.Request, rfile: BinaryIO, sock: ssl.SSLSocket, client: str) -> None:
        self.request = request
        self.rfile = rfile
        self.sock = sock
        self.client = client
        self.body_read = not request.has_body
        self.close = not request.keep_alive

    def reply(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        """Answer; when the body was not read, the connection cannot carry another request."""
        if not self.body_read:
            self.close = True
        self.sock.sendall(http1.response(code, body, headers, close=self.close, server=SERVER))

    def expect_continue(self) -> None:
        """The client waits for "100 Continue" before sending the body (Expect: 100-continue)."""
        if self.request.headers.get("expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")


class WebhookSource:
    """The `k8s_audit` source fed by kube-apiserver's webhook backend (DESIGN.md §4)."""

    name = "k8s_audit_webhook"
    source = "k8s_audit"

    def __init__(self, host: str, port: int, *, path: str = "/k8s-audit", tls_cert: str | None = None,
                 tls_key: str | None = None, tls_hosts: list[str] | None = None, token: str | None = None,
                 require_token: bool = True, limits: Limits = Limits(),
                 state_dir: Path = Path("/var/lib/falconet"),
                 notice: Callable[[str], None] | None = None) -> None:
        self.host, self.port = host, port
        self.paths = frozenset({path, *ALIASES})
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.tls_hosts = list(tls_hosts or [])
        self.token = token.encode() if token else None
        self.require_token = require_token
        self.limits = limits
        self.state_dir = Path(state_dir)
        self.notice = notice or (lambda text: print(text, file=sys.stderr, flush=True))
        self.budget = MemoryBudget(limits.memory_limit)
        self.queue = EventQueue(limits.queue_size, self.budget)
        self._counts: dict[str, int] = dict.fromkeys(
            ("requests", "received", "drops_too_large", "drops_invalid", "drops_busy", "drops_at_stop",
             "bad_requests", "unauthorized", "forbidden", "timeouts", "refused_connections",
             "refused_per_client", "tls_errors", "busy"), 0)
        self._count_lock = threading.Lock()
        self._delivered = 0
        self._listener: Listener | None = None
        self.refused = RefusalLog()
        self.ca_path: Path | None = None
        self.token_path: Path | None = None
        self.kubeconfig_path: Path | None = None

    # -- Source protocol ------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return False

    @property
    def conns(self) -> Any:
        """The open connections (their count is len())."""
        return self._listener.conns if self._listener is not None else ()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was asked for."""
        if self._listener is None:
            return self.host, self.port
        return self._listener.address

    def start(self) -> None:
        generated = self._credentials()
        context = self._ssl_context(generated)
        try:
            self._listener = Listener(
                self.host, self.port, context, serve=self._serve, count=self.count, name="k8s audit webhook",
                max_connections=self.limits.max_connections, per_client=self.limits.max_connections_per_client,
                request_timeout=self.limits.request_timeout)
        except OSError as e:
            raise UnavailableError(
                f"k8s audit webhook cannot listen on {self.host}:{self.port}: {e.strerror or e}",
                hint="set k8s_audit.webhook.listen to a free host:port") from e
        self._listener.start()
        host, port = self.address
        log.info("k8s audit webhook listening on https://%s:%d%s", host, port, min(self.paths))
        if self.token is None and not _loopback(self.host):
            log.warning("k8s audit webhook: listening on %s with no bearer token (k8s_audit.webhook.auth "
                        "is none): anyone who can reach this address can post audit events that rules "
                        "and response actions act on; set auth to token, or listen on 127.0.0.1",
                        "every interface" if self.host in ("0.0.0.0", "::", "") else self.host)

    def poll(self, timeout: float) -> list[AuditEvent]:
        events = self.queue.take(POLL_BATCH, timeout)
        for ev in events:
            self._delivered += 1
            ev.num = self._delivered
        return events

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.stop()
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
        c["memory_used"] = self.budget.used
        # Events that reached us and will not reach the rules (a refused batch may be re-sent).
        c["drops"] = c["drops_too_large"] + c["drops_invalid"] + c["drops_busy"] + c["drops_at_stop"]
        return c

    def count(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[name] += n

    # -- credentials: TLS and the bearer token ----------------------------------------------------

    def _credentials(self) -> list[str]:
        """Generate in state_dir what is not configured (token, certificate); what was generated."""
        directory = self.state_dir / "k8s_audit"
        generated: list[str] = []
        try:
            if self.require_token and self.token is None:
                self.token_path = directory / "token"
                token, created = certs.ensure_token(self.token_path)
                self.token = token.encode()
                if created:
                    generated.append("token")
        except securefile.UnsafePathError:
            raise
        except OSError as e:
            raise UnavailableError(
                f"k8s audit webhook: cannot keep its bearer token in {directory}: {e.strerror or e}",
                hint="make state_dir writable, or set k8s_audit.webhook.token") from e
        return generated

    def _ssl_context(self, generated: list[str]) -> ssl.SSLContext:
        if self.tls_cert and self.tls_key:
            cert, key = self.tls_cert, self.tls_key
            if generated:
                self.notice(f"falconet: k8s audit webhook: generated the bearer token kube-apiserver must "
                            f"send in {self.token_path} (kubeconfig users[].user.token).")
        else:
            cert, key = self._self_signed(generated)
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

    def _self_signed(self, generated: list[str]) -> tuple[str, str]:
        directory = self.state_dir / "k8s_audit"
        hosts = certs.local_hosts(self.tls_hosts, self.host)
        try:
            cert, key, ca, created = certs.ensure_self_signed(directory, hosts)
        except securefile.UnsafePathError:
            raise
        except OSError as e:
            raise UnavailableError(
                f"k8s audit webhook: cannot write its certificate in {directory}: {e.strerror or e}",
                hint="make state_dir writable, or set k8s_audit.webhook.tls_cert and tls_key") from e
        self.ca_path = ca
        if created:
            generated.append("certificate")
        if generated:
            # The kubeconfig carries the token: a private file, not a log line.
            url = f"https://{hosts[0]}:{self.port}{min(self.paths)}"
            self.kubeconfig_path = directory / "webhook-kubeconfig.yaml"
            token = self.token.decode() if self.token else None
            securefile.write_file(self.kubeconfig_path, certs.kubeconfig(url, ca.read_bytes(), token).encode(),
                                  0o600)
            self.notice(
                f"falconet: k8s audit webhook: generated {' and '.join(generated)} in {directory} "
                f"(certificate for {', '.join(hosts)}; CA {ca}). Give kube-apiserver "
                f"{self.kubeconfig_path} as --audit-webhook-config-file.")
        return str(cert), str(key)

    # -- one connection ---------------------------------------------------------------------------

    def _serve(self, sock: Any, client: str) -> None:
        """Requests on one connection, one after another, until it closes or must be closed."""
        assert self._listener is not None
        listener = self._listener
        rfile = sock.makefile("rb", buffering=65536)
        first = True
        try:
            while True:
                if not first:
                    listener.deadline(sock, self.limits.idle_timeout)
                    try:
                        if not rfile.peek(1):        # the client closed the connection
                            return
                    except (OSError, ValueError):
                        return
                    listener.deadline(sock, self.limits.request_timeout)
                first = False
                try:
                    req = http1.read_request(rfile)
                except http1.HttpError as e:
                    self.count("bad_requests")
                    self.refused(client, e.code, e.reason)
                    sock.sendall(http1.response(e.code, _error(e.code, e.reason), close=True, server=SERVER))
                    http1.linger(sock)
                    return
                except http1.Incomplete:
                    self.count("bad_requests")
                    return
                if req is None:
                    return
                ex = Exchange(req, rfile, sock, client)
                self.handle(ex)
                if ex.close:
                    if not ex.body_read:
                        http1.linger(sock)
                    return
        finally:
            with contextlib.suppress(OSError):
                rfile.close()

    def handle(self, ex: Exchange) -> None:
        """Answer one request: method, path, token, type and size are checked before the body is read."""
        req = ex.request
        self.count("requests")
        if req.method != "POST":
            if req.method == "GET" and req.path == "/healthz":
                ex.reply(200, {"status": "ok"})
            else:
                ex.reply(405, _error(405, f"{req.method} is not allowed; POST audit events"), {"Allow": "POST"})
            return
        if req.path not in self.paths:
            self._refuse(ex, 404, f"no audit endpoint at {req.path}; POST to {' or '.join(sorted(self.paths))}")
            return
        if self.token is not None and not self._authorized(ex):
            return
        ctype = req.headers.get("content-type", "")
        if "json" not in ctype.lower():
            self._refuse(ex, 415, f"Content-Type is {ctype or 'missing'}; send application/json")
            return
        if not req.chunked and req.content_length is None:
            ex.close = True             # where a body without a length would end is unknown
            self._refuse(ex, 411, "Content-Length is required")
            return
        limit = self.limits.max_batch_size
        if req.content_length is not None and req.content_length > limit:
            self._refuse(ex, 413, f"request body of {req.content_length} bytes is over k8s_audit.webhook."
                                  f"max_batch_size ({limit} bytes)")
            return
        # The body, and the copy of it that decode_cost makes; its decoding is reserved once read.
        held = 2 * (req.content_length if req.content_length is not None else limit)
        if not self._reserve(ex, held):
            return
        try:
            held = self._receive(ex, held)
        finally:
            self.budget.release(held)

    def _refuse(self, ex: Exchange, code: int, reason: str, headers: dict[str, str] | None = None) -> None:
        self.count("bad_requests")
        self.refused(ex.client, code, reason)
        ex.reply(code, _error(code, reason), headers)

    def _authorized(self, ex: Exchange) -> bool:
        auth = ex.request.headers.get("authorization")
        if not auth:
            self.count("unauthorized")
            self.refused(ex.client, 401, "no bearer token")
            ex.reply(401, _error(401, "a bearer token is required (kubeconfig users[].user.token)"),
                     {"WWW-Authenticate": 'Bearer realm="falconet"'})
            return False
        scheme, _, cred = auth.partition(" ")
        assert self.token is not None
        if scheme.lower() != "bearer" or not hmac.compare_digest(cred.strip().encode("latin-1"), self.token):
            self.count("forbidden")
            self.refused(ex.client, 403, "wrong bearer token")
            ex.reply(403, _error(403, "the bearer token is not the one this webhook expects"))
            return False
        return True

    def _reserve(self, ex: Exchange, total: int, n: int | None = None) -> bool:
        """Reserve `n` more bytes of the memory budget for a request that needs `total` in all (the
        same when `n` is None), or answer 413 (it never fits) or 503 (not now: retry)."""
        n = total if n is None else n
        if total > self.budget.limit:
            self._refuse(ex, 413, f"handling this request would take about {_mib(total)} MiB, over "
                                  f"k8s_audit.webhook.memory_limit ({_mib(self.budget.limit)} MiB)")
            return False
        if not self.budget.reserve(n):
            self.count("busy")
            self.refused(ex.client, 503, "memory budget in use; retry")
            ex.reply(503, _error(503, f"busy: k8s_audit.webhook.memory_limit ({_mib(self.budget.limit)} MiB) "
                                      "is in use by other requests and queued events; retry"),
                     {"Retry-After": "1"})
            return False
        return True

    def _receive(self, ex: Exchange, held: int) -> int:
        """Read, decode and queue the body; answer. Returns the bytes of the budget still held."""
        assert self._listener is not None
        ex.expect_continue()
        try:
            body = http1.read_body(ex.rfile, ex.request, self.limits.max_batch_size)
        except http1.HttpError as e:
            ex.close = True
            self._refuse(ex, e.code, e.reason)
            return held
        except http1.Incomplete:
            # The client stopped sending (or the reaper cut it off at the deadline): no answer
            # can reach it reliably, and the API server treats the broken connection as retryable.
            self.count("bad_requests")
            ex.close = True
            return held
        ex.body_read = True
        # Decoding and answering get a deadline of their own, from now.
        self._listener.deadline(ex.sock, self.limits.request_timeout)
        cost = decode_cost(body)                     # the objects decoding will make
        more = cost + text_size(body)                # ... and the text they are decoded from
        if not self._reserve(ex, held + more, more):
            return held
        held += more
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            self._refuse(ex, 400, f"body is not valid JSON: not UTF-8 ({e.reason} at byte {e.start})")
            return held
        del body
        events = self._decode(ex, text, cost)
        if events is None:
            return held
        accepted, too_large, invalid = events
        if accepted and not self.queue.offer(accepted):
            self.count("drops_busy", len(accepted))
            self.refused(ex.client, 503, "event queue full")
            ex.reply(503, _error(503, f"event queue full ({self.queue.capacity} events); retry"),
                     {"Retry-After": "1"})
            return held
        held -= sum(c for _, c in accepted)          # now the queue's, until the engine takes them
        self.count("received", len(accepted))
        if not (too_large or invalid):
            ex.reply(200, {"status": "ok", "accepted": len(accepted)})
            return held
        self.count("drops_too_large", len(too_large))
        self.count("drops_invalid", len(invalid))
        code = 413 if too_large else 400
        reasons = (too_large + invalid)[:MAX_REASONS]
        self.refused(ex.client, code, f"{len(too_large) + len(invalid)} item(s): " + "; ".join(reasons))
        ex.reply(code, {**_error(code, "; ".join(reasons)), "accepted": len(accepted),
                        "rejected": len(too_large) + len(invalid)})
        return held

    def _decode(self, ex: Exchange, text: str, cost: int
                ) -> tuple[list[tuple[AuditEvent, int]], list[str], list[str]] | None:
        """The body's events (each with its share of `cost`), and the reasons items were refused;
        None when the body was refused whole (answered here)."""
        accepted: list[tuple[AuditEvent, int]] = []
        too_large: list[str] = []
        invalid: list[str] = []
        max_size = self.limits.max_event_size
        total = max(1, len(text))
        try:
            for where, item, span in iter_body(text):
                # The item's text may hold blanks that compact JSON (what the limit measures) has not.
                if span > max_size and (size := event_size(item)) > max_size:
                    too_large.append(f"{where} is {size} bytes, over k8s_audit.max_event_size ({max_size})")
                    continue
                try:
                    accepted.append((audit_event(item, where), cost * span // total))
                except DecodeError as e:
                    invalid.append(str(e))
        except DecodeError as e:
            self._refuse(ex, 400, str(e))
            return None
        return accepted, too_large, invalid


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mib(n: int) -> str:
    return f"{n / MIB:.0f}" if n >= 10 * MIB else f"{n / MIB:.1f}"


def _error(code: int, reason: str) -> dict[str, Any]:
    return {"status": "error", "code": code, "reason": reason}
