"""The audit sources' configuration keys, and K8sAuditSettings built from them: the webhook (or
None when it is off), the audit logs to follow, and the limits both obey.

Light on purpose: sensor/config.py reads these keys to build its schema, so nothing here may import
the webhook's TLS or HTTP machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensor.config_keys import Key, parse_duration, parse_size
from sensor.errors import ConfigError

if TYPE_CHECKING:
    from sensor.config import Config

# Defaults of Falco's k8saudit plugin (maxEventSize = the plugin SDK's event size; the batch size is
# kube-apiserver's --audit-webhook-truncate-max-batch-size default plus about 20%).
MAX_EVENT_SIZE = 262_144
MAX_BATCH_SIZE = 12 * 1024 * 1024
MEMORY_LIMIT = 128 * 1024 * 1024

CONFIG_KEYS: tuple[Key, ...] = (
    Key("k8s_audit.webhook.enabled", bool, False,
        "Receive audit events from kube-apiserver's webhook backend over HTTPS."),
    Key("k8s_audit.webhook.listen", str, "0.0.0.0:9765", "host:port the webhook listens on."),
    Key("k8s_audit.webhook.path", str, "/k8s-audit",
        "URL path that accepts POSTed audit events (/k8s-audit and /k8s_audit are always accepted)."),
    Key("k8s_audit.webhook.tls_cert", str, "",
        "PEM certificate (chain) of the webhook; empty: a self-signed one generated in state_dir."),
    Key("k8s_audit.webhook.tls_key", str, "", "PEM private key of tls_cert."),
    Key("k8s_audit.webhook.tls_hosts", list, [],
        "Extra DNS names and IP addresses for the self-signed certificate (besides this host's).",
        items=str),
    Key("k8s_audit.webhook.auth", str, "token",
        "token: every request must carry the bearer token (k8s_audit.webhook.token, else one "
        "generated at first start in state_dir/k8s_audit/token); none: anyone who reaches the port "
        "can post events that rules and response act on.", choices=("token", "none")),
    Key("k8s_audit.webhook.token", str, "",
        "Bearer token the API server must send (kubeconfig users[].user.token); empty: the one in "
        "state_dir/k8s_audit/token, generated at first start."),
    Key("k8s_audit.webhook.max_batch_size", str, "12MiB",
        "Largest request body (Falco's webhookMaxBatchSize); larger requests are answered 413.",
        check=parse_size),
    Key("k8s_audit.webhook.queue_size", int, 10_000,
        "Events waiting for the engine; a batch that does not fit is answered 503 (the API server "
        "retries it) and counted."),
    Key("k8s_audit.webhook.memory_limit", str, "128MiB",
        "Memory for request bodies being decoded and events waiting for the engine, estimated from "
        "each body's JSON before it is decoded; a request that does not fit now is answered 503 (the "
        "API server retries it), one that never could is answered 413.", check=parse_size),
    Key("k8s_audit.webhook.request_timeout", str, "10s",
        "Time a client has to send one whole request (TLS handshake, headers and body); a new "
        "connection must send its first request within it.", check=parse_duration),
    Key("k8s_audit.webhook.idle_timeout", str, "60s",
        "Time a keep-alive connection stays open between two requests.", check=parse_duration),
    Key("k8s_audit.webhook.max_connections", int, 128,
        "Concurrent connections; more are closed at once and counted."),
    Key("k8s_audit.webhook.max_connections_per_client", int, 32,
        "Concurrent connections from one IP address, so one client cannot take every slot."),
    Key("k8s_audit.max_event_size", str, "256KiB",
        "Largest single audit event (Falco's maxEventSize), webhook or log line; larger ones are "
        "rejected and counted.", check=parse_size),
    Key("k8s_audit.files", list, [],
        "kube-apiserver audit logs (JSON lines) to follow across rotation; positions are kept in "
        "state_dir.", items=str),
    Key("k8s_audit.files_start", str, "beginning",
        "Where to start in a log with no saved position: beginning (read what is there) or end.",
        choices=("beginning", "end")),
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Size and time limits of the audit sources (see CONFIG_KEYS)."""

    max_event_size: int = MAX_EVENT_SIZE
    max_batch_size: int = MAX_BATCH_SIZE
    queue_size: int = 10_000
    memory_limit: int = MEMORY_LIMIT
    request_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 128
    max_connections_per_client: int = 32


def parse_listen(text: str, where: str = "k8s_audit.webhook.listen") -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9765`) → (host, port); ConfigError names the key otherwise."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not host:port", hint="e.g. 0.0.0.0:9765")
    return host or "0.0.0.0", int(port)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """`k8s_audit.webhook.*` of an enabled webhook: the address (`listen` as written, and parsed),
    the URL path, the TLS material (None: self-signed in state_dir) and who may post (None token:
    generated in state_dir)."""

    listen: str
    host: str
    port: int
    path: str = "/k8s-audit"
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_hosts: tuple[str, ...] = ()
    token: str | None = None
    require_token: bool = True

    @classmethod
    def from_config(cls, cfg: Config) -> WebhookSettings:
        listen = cfg.get("k8s_audit.webhook.listen")
        host, port = parse_listen(listen)
        path = cfg.get("k8s_audit.webhook.path") or "/k8s-audit"
        if not path.startswith("/"):
            raise ConfigError(f"k8s_audit.webhook.path: {path!r} must start with /")
        cert, key = cfg.get("k8s_audit.webhook.tls_cert"), cfg.get("k8s_audit.webhook.tls_key")
        if bool(cert) != bool(key):
            raise ConfigError("k8s_audit.webhook.tls_cert and tls_key must be set together",
                              hint="leave both empty for a self-signed certificate in state_dir")
        auth, token = cfg.get("k8s_audit.webhook.auth"), cfg.get("k8s_audit.webhook.token") or None
        if auth == "none" and token:
            raise ConfigError("k8s_audit.webhook.token is set while k8s_audit.webhook.auth is none",
                              hint=f"set auth to token, or remove the token ({cfg.origin('k8s_audit.webhook.token')})")
        return cls(listen, host, port, path=path, tls_cert=cert or None, tls_key=key or None,
                   tls_hosts=tuple(str(h) for h in cfg.get("k8s_audit.webhook.tls_hosts") or ()),
                   token=token, require_token=auth == "token")


@dataclass(frozen=True, slots=True)
class K8sAuditSettings:
    """`k8s_audit.*`: the webhook (None: off), the audit logs to follow, where a log without a
    saved position starts, the limits, and state_dir (positions, certificate, token)."""

    webhook: WebhookSettings | None = None
    files: tuple[str, ...] = ()
    start_at_end: bool = False
    limits: Limits = Limits()
    state_dir: Path = Path("/var/lib/falconet")

    @property
    def enabled(self) -> bool:
        return self.webhook is not None or bool(self.files)

    @classmethod
    def from_config(cls, cfg: Config) -> K8sAuditSettings:
        """Raises ConfigError naming the key of a value the audit sources cannot use."""
        limits = Limits(
            max_event_size=_positive(cfg, "k8s_audit.max_event_size", cfg.size),
            max_batch_size=_positive(cfg, "k8s_audit.webhook.max_batch_size", cfg.size),
            queue_size=_positive(cfg, "k8s_audit.webhook.queue_size", cfg.get),
            memory_limit=_positive(cfg, "k8s_audit.webhook.memory_limit", cfg.size),
            request_timeout=_positive(cfg, "k8s_audit.webhook.request_timeout", cfg.duration),
            idle_timeout=_positive(cfg, "k8s_audit.webhook.idle_timeout", cfg.duration),
            max_connections=_positive(cfg, "k8s_audit.webhook.max_connections", cfg.get),
            max_connections_per_client=_positive(cfg, "k8s_audit.webhook.max_connections_per_client", cfg.get),
        )
        webhook = WebhookSettings.from_config(cfg) if cfg.get("k8s_audit.webhook.enabled") else None
        return cls(webhook=webhook, files=tuple(str(f) for f in cfg.get("k8s_audit.files") or ()),
                   start_at_end=cfg.get("k8s_audit.files_start") == "end", limits=limits,
                   state_dir=cfg.state_path())


def _positive(cfg: Config, key: str, read: Callable[[str], Any]) -> Any:
    """A limit read as a plain value, a size (bytes) or a duration (seconds); it must be > 0."""
    v = read(key)
    if v is None or v <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {cfg.get(key)!r}", hint=f"set in {cfg.origin(key)}")
    return v
