"""What the sensor's web server (/healthz and /metrics, sensor/webserver.py) can be told: the
`webserver.*` keys and WebServerSettings built from them.

Light on purpose: sensor/config.py reads these keys to build its schema, so nothing here imports
the server or prometheus_client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sensor.config_keys import Key, parse_duration
from sensor.errors import ConfigError

if TYPE_CHECKING:
    from sensor.config import Config

CONFIG_KEYS: tuple[Key, ...] = (
    Key("webserver.enabled", bool, True, "Serve the health check and /metrics over HTTP."),
    Key("webserver.listen_address", str, "127.0.0.1",
        "Address to listen on: loopback by default; 0.0.0.0 for kubelet probes or a Prometheus "
        "elsewhere (then set webserver.token to keep per-rule metrics private)."),
    Key("webserver.listen_port", int, 8765, "Port to listen on (0: any free port)."),
    Key("webserver.k8s_healthz_endpoint", str, "/healthz", "Path of the health check."),
    Key("webserver.prometheus_metrics_enabled", bool, True, "Serve Prometheus metrics on /metrics."),
    Key("webserver.token", str, "",
        "Bearer token /metrics requires (Prometheus: authorization.credentials); empty: /metrics is "
        "open, without per-rule labels. The health check never needs it."),
    Key("webserver.max_connections", int, 32, "Concurrent connections; more are closed at once."),
    Key("webserver.request_timeout", str, "5s",
        "Time a client has to send its whole request (TLS handshake included).", check=parse_duration),
    Key("webserver.ssl_enabled", bool, False, "Serve HTTPS instead of HTTP."),
    Key("webserver.ssl_certificate", str, "/etc/falconet/falconet.pem",
        "PEM file holding the server's certificate and its private key (for ssl_enabled)."),
)


@dataclass(frozen=True, slots=True)
class WebServerSettings:
    """`webserver.*`. `tls_certificate` is the PEM file when ssl_enabled, else empty (plain HTTP)."""

    enabled: bool = False
    address: str = "127.0.0.1"
    port: int = 8765
    healthz: str = "/healthz"
    metrics: bool = True
    token: str = ""
    max_connections: int = 32
    request_timeout: float = 5.0
    tls_certificate: str = ""

    @classmethod
    def from_config(cls, cfg: Config) -> WebServerSettings:
        """Raises ConfigError for a value the enabled server cannot use."""
        enabled = bool(cfg.get("webserver.enabled"))
        if enabled and cfg.get("webserver.max_connections") <= 0:
            key = "webserver.max_connections"
            raise ConfigError(f"{key}: must be greater than 0, got {cfg.get(key)!r}", hint=f"set in {cfg.origin(key)}")
        return cls(enabled=enabled, address=cfg.get("webserver.listen_address"),
                   port=cfg.get("webserver.listen_port"), healthz=cfg.get("webserver.k8s_healthz_endpoint"),
                   metrics=bool(cfg.get("webserver.prometheus_metrics_enabled")),
                   token=cfg.get("webserver.token") or "", max_connections=cfg.get("webserver.max_connections"),
                   request_timeout=cfg.duration("webserver.request_timeout"),
                   tls_certificate=cfg.get("webserver.ssl_certificate") if cfg.get("webserver.ssl_enabled") else "")
