"""The sensor's small web server (Falco's `webserver`): the Kubernetes health check and /metrics.

GET <k8s_healthz_endpoint> answers 200 `{"status": "ok"}` while the engine loop is going round,
503 otherwise; GET /metrics answers the Prometheus exposition (sensor/metrics.py) when
`prometheus_metrics_enabled`. It runs on its own daemon threads and reads counters only.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from sensor.config import Key
from sensor.errors import ConfigError, UnavailableError

log = logging.getLogger("falconet")

CONFIG_KEYS: tuple[Key, ...] = (
    Key("webserver.enabled", bool, True, "Serve the health check and /metrics over HTTP."),
    Key("webserver.listen_address", str, "0.0.0.0", "Address to listen on."),
    Key("webserver.listen_port", int, 8765, "Port to listen on (0: any free port)."),
    Key("webserver.k8s_healthz_endpoint", str, "/healthz", "Path of the health check."),
    Key("webserver.prometheus_metrics_enabled", bool, True, "Serve Prometheus metrics on /metrics."),
    Key("webserver.ssl_enabled", bool, False, "Serve HTTPS instead of HTTP."),
    Key("webserver.ssl_certificate", str, "/etc/falconet/falconet.pem",
        "PEM file holding the server's certificate and its private key (for ssl_enabled)."),
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        srv = self.server.owner
        if path == srv.healthz:
            ok = srv.healthy()
            self._answer(200 if ok else 503, "application/json",
                         json.dumps({"status": "ok" if ok else "unhealthy"}).encode())
        elif path == "/metrics" and srv.collector is not None:
            from sensor.metrics import exposition

            self._answer(200, CONTENT_TYPE_LATEST, exposition(srv.collector))
        else:
            self._answer(404, "text/plain; charset=utf-8", b"not found\n")

    def _answer(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("webserver: %s %s", self.address_string(), fmt % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: WebServer


class WebServer:
    """/healthz and /metrics on one port; `start()` binds (UnavailableError when it cannot)."""

    def __init__(self, address: str, port: int, *, healthy: Callable[[], bool], collector: Any = None,
                 healthz: str = "/healthz", tls_certificate: str = "") -> None:
        self.address = address
        self.requested_port = port
        self.healthy = healthy
        self.collector = collector
        self.healthz = healthz
        self.tls_certificate = tls_certificate
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, cfg: Any, *, healthy: Callable[[], bool], collector: Any) -> WebServer:
        return cls(cfg.get("webserver.listen_address"), cfg.get("webserver.listen_port"), healthy=healthy,
                   collector=collector if cfg.get("webserver.prometheus_metrics_enabled") else None,
                   healthz=cfg.get("webserver.k8s_healthz_endpoint"),
                   tls_certificate=cfg.get("webserver.ssl_certificate") if cfg.get("webserver.ssl_enabled")
                   else "")

    @property
    def port(self) -> int:
        """The port actually bound (useful with listen_port 0)."""
        return self._server.server_address[1] if self._server else self.requested_port

    def start(self) -> WebServer:
        try:
            server = _Server((self.address, self.requested_port), _Handler)
        except OSError as e:
            raise UnavailableError(f"webserver: cannot listen on {self.address}:{self.requested_port}: "
                                   f"{e.strerror}", hint="set webserver.listen_port, or "
                                   "webserver.enabled=false") from e
        if self.tls_certificate:
            try:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(self.tls_certificate)
            except (OSError, ssl.SSLError) as e:
                server.server_close()
                raise ConfigError(f"webserver.ssl_certificate {self.tls_certificate}: {e}",
                                  hint="a PEM file with the certificate and its private key") from e
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="webserver", daemon=True)
        self._thread.start()
        log.info("webserver: listening on %s://%s:%d", "https" if self.tls_certificate else "http",
                 self.address, self.port)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
