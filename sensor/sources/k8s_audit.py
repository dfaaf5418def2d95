"""Kubernetes audit events: decoding, configuration, and the sources that receive them.

kube-apiserver sends audit events (audit.k8s.io/v1 `Event`) to a webhook in batches (`EventList`),
or writes them to a log file one JSON object per line. Both arrive here as parsed JSON and become
`AuditEvent`s through `events_from_json` (also used by `falconet replay`). The event's time is its
`stageTimestamp`, as in Falco's k8saudit plugin.

The two sources live in their own modules: the HTTPS webhook (k8s_audit_webhook.py) and the log
follower (k8s_audit_file.py). `make_sources(cfg)` returns the ones the configuration enables.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sensor.config import Key, parse_duration, parse_size
from sensor.errors import ConfigError
from sensor.event import AuditEvent

# Defaults of Falco's k8saudit plugin (maxEventSize = the plugin SDK's event size; the batch size is
# kube-apiserver's --audit-webhook-truncate-max-batch-size default plus about 20%).
MAX_EVENT_SIZE = 262_144
MAX_BATCH_SIZE = 12 * 1024 * 1024

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
    Key("k8s_audit.webhook.token", str, "",
        "Bearer token the API server must send (kubeconfig users[].user.token); empty: none required."),
    Key("k8s_audit.webhook.max_batch_size", str, "12MiB",
        "Largest request body (Falco's webhookMaxBatchSize); larger requests are answered 413.",
        check=parse_size),
    Key("k8s_audit.webhook.queue_size", int, 10_000,
        "Events waiting for the engine; a batch that does not fit is answered 503 (the API server "
        "retries it) and counted."),
    Key("k8s_audit.webhook.request_timeout", str, "10s",
        "Time a client has to send one whole request (TLS handshake, headers and body).",
        check=parse_duration),
    Key("k8s_audit.webhook.idle_timeout", str, "60s",
        "Time an idle keep-alive connection stays open.", check=parse_duration),
    Key("k8s_audit.webhook.max_connections", int, 128,
        "Concurrent connections; more are closed at once and counted."),
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

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))")


def rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any fraction up to nanoseconds, any offset)."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(8) is None:
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs -= offset if m.group(9) == "+" else -offset
    frac = m.group(7) or ""
    return secs * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def audit_items(obj: Any) -> Iterator[tuple[str, Any]]:
    """The audit events a decoded JSON body holds, each with where it was (`items[3]`).

    Accepts what the k8saudit plugin accepts: an `Event`, an `EventList`, or a JSON array of
    either. Raises ValueError naming what is not an audit object; items themselves are checked by
    `audit_event`.
    """
    yield from _items(obj, "")


def _items(obj: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _items(v, f"{where}[{i}]")
        return
    here = where or "the body"
    if not isinstance(obj, dict):
        raise ValueError(f"{here} is a JSON {_json_type(obj)}, not an audit Event or EventList")
    kind = obj.get("kind")
    if kind == "Event":
        yield where or "event", obj
    elif kind == "EventList":
        items = obj.get("items")
        if items is None:
            return                   # an empty list serializes without items
        if not isinstance(items, list):
            raise ValueError(f"{here}: EventList items is a JSON {_json_type(items)}, not an array")
        for i, v in enumerate(items):
            yield f"{where}items[{i}]", v
    elif kind is None:
        raise ValueError(f"{here} has no 'kind': expected an audit.k8s.io Event or EventList")
    else:
        raise ValueError(f"{here} is a {kind!r}, not an audit.k8s.io Event or EventList")


def audit_event(item: Any, where: str = "event", num: int = 0) -> AuditEvent:
    """One audit event object as an AuditEvent; ValueError says what is missing or malformed."""
    if not isinstance(item, dict):
        raise ValueError(f"{where} is a JSON {_json_type(item)}, not an audit event object")
    if "auditID" not in item:
        raise ValueError(f"{where} has no auditID: not an audit event")
    stamp = item.get("stageTimestamp")
    if not isinstance(stamp, str):
        raise ValueError(f"{where} has no stageTimestamp (the event time)")
    try:
        time_ns = rfc3339_ns(stamp)
    except ValueError as e:
        raise ValueError(f"{where}: stageTimestamp: {e}") from None
    return AuditEvent(item, time_ns, num)


def events_from_json(obj: Any, first_num: int = 0) -> list[AuditEvent]:
    """The AuditEvents of an audit Event, EventList or JSON array of them.

    Raises ValueError with the reason for a non-audit object or a malformed event (the first one
    found; nothing is returned then). `num` counts up from `first_num`.
    """
    return [audit_event(item, where, first_num + i) for i, (where, item) in enumerate(audit_items(obj))]


def event_size(item: Any) -> int:
    """Bytes of an event as compact JSON: what the size limit is measured on (as Falco does)."""
    return len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


@dataclass(frozen=True, slots=True)
class Limits:
    """Size and time limits of the audit sources (see CONFIG_KEYS)."""

    max_event_size: int = MAX_EVENT_SIZE
    max_batch_size: int = MAX_BATCH_SIZE
    queue_size: int = 10_000
    request_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 128


def parse_listen(text: str, where: str = "k8s_audit.webhook.listen") -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9765`) → (host, port); ConfigError names the key otherwise."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not host:port", hint="e.g. 0.0.0.0:9765")
    return host or "0.0.0.0", int(port)


def make_sources(cfg: Any) -> list[Any]:
    """The audit sources the configuration enables: the webhook, the log follower, or none.

    `cfg` is a sensor.config.Config. Nothing is bound or opened until the runtime starts them.
    """
    limits = Limits(
        max_event_size=_positive(cfg, "k8s_audit.max_event_size", "size"),
        max_batch_size=_positive(cfg, "k8s_audit.webhook.max_batch_size", "size"),
        queue_size=_positive(cfg, "k8s_audit.webhook.queue_size"),
        request_timeout=_positive(cfg, "k8s_audit.webhook.request_timeout", "duration"),
        idle_timeout=_positive(cfg, "k8s_audit.webhook.idle_timeout", "duration"),
        max_connections=_positive(cfg, "k8s_audit.webhook.max_connections"),
    )
    state_dir = cfg.state_path()
    sources: list[Any] = []
    if cfg.get("k8s_audit.webhook.enabled"):
        from sensor.sources.k8s_audit_webhook import WebhookSource

        host, port = parse_listen(cfg.get("k8s_audit.webhook.listen"))
        path = cfg.get("k8s_audit.webhook.path") or "/k8s-audit"
        if not path.startswith("/"):
            raise ConfigError(f"k8s_audit.webhook.path: {path!r} must start with /")
        cert, key = cfg.get("k8s_audit.webhook.tls_cert"), cfg.get("k8s_audit.webhook.tls_key")
        if bool(cert) != bool(key):
            raise ConfigError("k8s_audit.webhook.tls_cert and tls_key must be set together",
                              hint="leave both empty for a self-signed certificate in state_dir")
        sources.append(WebhookSource(
            host, port, path=path, tls_cert=cert or None, tls_key=key or None,
            tls_hosts=[str(h) for h in cfg.get("k8s_audit.webhook.tls_hosts") or []],
            token=cfg.get("k8s_audit.webhook.token") or None, limits=limits, state_dir=state_dir))
    files = cfg.get("k8s_audit.files") or []
    if files:
        from sensor.sources.k8s_audit_file import FileSource

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
