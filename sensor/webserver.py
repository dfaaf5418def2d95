"""The sensor's small web server (Falco's `webserver`): the Kubernetes health check and /metrics.

GET <k8s_healthz_endpoint> answers 200 `{"status": "ok"}` while the engine loop is going round,
503 otherwise; GET /metrics answers the Prometheus exposition (sensor/metrics.py) when
`prometheus_metrics_enabled`. It reads counters only.

Whoever can reach the port can ask, so (issue 14, finding 7): it listens on loopback unless told
otherwise; a request is read by sensor/httpserver (a 16 KiB head, a deadline for the whole
request, a cap on connections in all and per client, the TLS handshake on the connection's own
thread, so one silent client cannot freeze the health check); one request per connection; a
client that goes away is not an error. /metrics tells which rules fired
(falcosecurity_falco_rules_matches_total{rule_name}): with `webserver.token` set it answers only
requests that carry it; without a token the rule names are summed away, so an unauthenticated
reader learns how many alerts of each priority and source there were, not which rules noticed what.
/healthz needs no token (kubelet probes carry none).
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric

from sensor.errors import ConfigError, UnavailableError
from sensor.httpserver import http1
from sensor.httpserver.listener import Listener
from sensor.metrics import SensorCollector, exposition
from sensor.webserver_settings import WebServerSettings

log = logging.getLogger("falconet")
SERVER = "falconet"


PER_CLIENT_SHARE = 4        # one address may hold at most a quarter of the slots


class WithoutRuleNames:
    """A collector that reads another and sums away its `rule_name` label (what an
    unauthenticated scrape may see)."""

    def __init__(self, collector: SensorCollector) -> None:
        self.collector = collector

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for family in self.collector.collect():
            if not any("rule_name" in s.labels for s in family.samples):
                yield family
                continue
            summed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for s in family.samples:
                key = (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "rule_name")))
                summed[key] = summed.get(key, 0.0) + s.value
            out = Metric(family.name, family.documentation, family.type)
            for (name, labels), value in summed.items():
                out.add_sample(name, dict(labels), value)
            yield out


class WebServer:
    """/healthz and /metrics on one port; `start()` binds (UnavailableError when it cannot)."""

    def __init__(self, address: str, port: int, *, healthy: Callable[[], bool],
                 collector: SensorCollector | None = None,
                 healthz: str = "/healthz", tls_certificate: str = "", token: str = "",
                 max_connections: int = 32, request_timeout: float = 5.0) -> None:
        self.address = address
        self.requested_port = port
        self.healthy = healthy
        self.collector = collector
        self.healthz = healthz
        self.tls_certificate = tls_certificate
        self.token = token.encode() if token else None
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self._listener: Listener | None = None
        self._counts: dict[str, int] = dict.fromkeys(
            ("requests", "unauthorized", "bad_requests", "timeouts", "refused_connections",
             "refused_per_client", "tls_errors"), 0)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, s: WebServerSettings, *, healthy: Callable[[], bool],
                      collector: SensorCollector) -> WebServer:
        return cls(s.address, s.port, healthy=healthy, collector=collector if s.metrics else None,
                   healthz=s.healthz, tls_certificate=s.tls_certificate, token=s.token,
                   max_connections=s.max_connections, request_timeout=s.request_timeout)

    @property
    def port(self) -> int:
        """The port actually bound (useful with listen_port 0)."""
        return self._listener.address[1] if self._listener else self.requested_port

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    def start(self) -> WebServer:
        context = None
        if self.tls_certificate:
            try:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(self.tls_certificate)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"webserver.ssl_certificate {self.tls_certificate}: {e}",
                                  hint="a PEM file with the certificate and its private key") from e
        try:
            self._listener = Listener(
                self.address, self.requested_port, context, serve=self._serve, count=self._count,
                name="webserver", max_connections=self.max_connections,
                per_client=max(1, self.max_connections // PER_CLIENT_SHARE), request_timeout=self.request_timeout)
        except OSError as e:
            raise UnavailableError(f"webserver: cannot listen on {self.address}:{self.requested_port}: "
                                   f"{e.strerror}", hint="set webserver.listen_port, or "
                                   "webserver.enabled=false") from e
        self._listener.start()
        log.info("webserver: listening on %s://%s:%d", "https" if context else "http", self.address, self.port)
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()

    def _serve(self, sock: Any, client: str) -> None:
        """One request, one answer, then the connection closes."""
        rfile = sock.makefile("rb")
        try:
            try:
                req = http1.read_request(rfile)
            except http1.HttpError as e:
                self._count("bad_requests")
                sock.sendall(http1.response(e.code, {"status": "error", "reason": e.reason}, close=True,
                                            server=SERVER))
                return
            except http1.Incomplete:
                return
            if req is None:
                return
            self._count("requests")
            sock.sendall(self._answer(req))
        finally:
            rfile.close()

    def _answer(self, req: http1.Request) -> bytes:
        head = req.method == "HEAD"
        if req.method not in ("GET", "HEAD"):
            return http1.response(405, {"status": "error", "reason": f"{req.method} is not allowed"},
                                  {"Allow": "GET, HEAD"}, close=True, server=SERVER)
        if req.path == self.healthz:
            ok = self.healthy()
            return http1.response(200 if ok else 503, json.dumps({"status": "ok" if ok else "unhealthy"}).encode(),
                                  close=True, server=SERVER, head_only=head)
        if req.path == "/metrics" and self.collector is not None:
            if self.token is not None and not self._authorized(req):
                self._count("unauthorized")
                return http1.response(401, {"status": "error", "reason": "a bearer token is required "
                                                                           "(webserver.token)"},
                                      {"WWW-Authenticate": 'Bearer realm="falconet"'}, close=True, server=SERVER)
            collector = self.collector if self.token is not None else WithoutRuleNames(self.collector)
            return http1.response(200, exposition(collector), close=True, server=SERVER,
                                  content_type=CONTENT_TYPE_LATEST, head_only=head)
        return http1.response(404, b"not found\n", close=True, server=SERVER,
                              content_type="text/plain; charset=utf-8", head_only=head)

    def _authorized(self, req: http1.Request) -> bool:
        scheme, _, cred = req.headers.get("authorization", "").partition(" ")
        assert self.token is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(cred.strip().encode("latin-1"), self.token)
