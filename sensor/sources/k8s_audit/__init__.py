"""Kubernetes audit events: the sources that receive them, and their decoding.

kube-apiserver sends audit events (audit.k8s.io/v1 `Event`) to a webhook in batches (`EventList`),
or writes them to a log file one JSON object per line. The modules, each with one job:

  settings.py   the configuration keys, the limits, the listen address (light: config reads it)
  decode.py     JSON → audit events, hardened against hostile input; `events_from_json` (replay)
  certs.py      the webhook's TLS material, bearer token and kube-apiserver's kubeconfig
  webhook.py    the `k8s_audit` source fed by the webhook (over sensor/httpserver: the strict
                HTTP/1.1 reader, and the listener with its connection slots and deadlines)
  file.py       the `k8s_audit` source that follows audit log files across rotation

`make_sources(cfg)` returns the sources the configuration enables.
"""

from __future__ import annotations

from typing import Any

from sensor.errors import ConfigError
from sensor.sources.k8s_audit.decode import (
    DecodeError,
    audit_event,
    audit_items,
    event_size,
    events_from_json,
    rfc3339_ns,
)
from sensor.sources.k8s_audit.file import FileSource
from sensor.sources.k8s_audit.settings import (
    CONFIG_KEYS,
    MAX_BATCH_SIZE,
    MAX_EVENT_SIZE,
    Limits,
    parse_listen,
)

__all__ = ["CONFIG_KEYS", "MAX_BATCH_SIZE", "MAX_EVENT_SIZE", "DecodeError", "Limits", "audit_event",
           "audit_items", "event_size", "events_from_json", "make_sources", "parse_listen", "rfc3339_ns"]


def make_sources(cfg: Any) -> list[Any]:
    """The audit sources the configuration enables: the webhook, the log follower, or none.

    `cfg` is a sensor.config.Config. Nothing is bound or opened until the runtime starts them.
    """
    limits = Limits(
        max_event_size=_positive(cfg, "k8s_audit.max_event_size", "size"),
        max_batch_size=_positive(cfg, "k8s_audit.webhook.max_batch_size", "size"),
        queue_size=_positive(cfg, "k8s_audit.webhook.queue_size"),
        memory_limit=_positive(cfg, "k8s_audit.webhook.memory_limit", "size"),
        request_timeout=_positive(cfg, "k8s_audit.webhook.request_timeout", "duration"),
        idle_timeout=_positive(cfg, "k8s_audit.webhook.idle_timeout", "duration"),
        max_connections=_positive(cfg, "k8s_audit.webhook.max_connections"),
        max_connections_per_client=_positive(cfg, "k8s_audit.webhook.max_connections_per_client"),
    )
    state_dir = cfg.state_path()
    sources: list[Any] = []
    if cfg.get("k8s_audit.webhook.enabled"):
        # Imported here: the webhook pulls in TLS and certificate code that reading the
        # configuration schema (which imports this package) must not pay for.
        from sensor.sources.k8s_audit.webhook import WebhookSource

        host, port = parse_listen(cfg.get("k8s_audit.webhook.listen"))
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
        sources.append(WebhookSource(
            host, port, path=path, tls_cert=cert or None, tls_key=key or None,
            tls_hosts=[str(h) for h in cfg.get("k8s_audit.webhook.tls_hosts") or []],
            token=token, require_token=auth == "token", limits=limits, state_dir=state_dir))
    files = cfg.get("k8s_audit.files") or []
    if files:
        sources.append(FileSource([str(f) for f in files], state_dir=state_dir,
                                  max_event_size=limits.max_event_size,
                                  start_at_end=cfg.get("k8s_audit.files_start") == "end"))
    return sources


def _positive(cfg: Any, key: str, read: str = "get") -> Any:
    """A limit read as a plain value, a size (bytes) or a duration (seconds); it must be > 0."""
    v = getattr(cfg, read)(key)
    if v is None or v <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {cfg.get(key)!r}", hint=f"set in {cfg.origin(key)}")
    return v
