"""fluent: alerts as ECS documents (DESIGN.md §5) to a Fluentd forwarder over the forward protocol.

Each alert becomes one entry `[EventTime, ECS document]` (the document from `sensor.ecs.to_ecs`, its
`event.id` the alert's uuid, so Fluentd's Elasticsearch output writes each alert once however often
it is delivered). Entries are spooled on disk by default and sent in PackedForward chunks of up to
`batch_size`; a chunk leaves the spool only when Fluentd acknowledged it (forward.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from sensor.alert import Alert
from sensor.config import Key, parse_duration
from sensor.errors import ConfigError, UnavailableError
from sensor.outputs.channel import DeliveryError
from sensor.outputs.forward import ForwardConnection, ForwardError, pack_entry
from sensor.outputs.spool import spool_keys
from sensor.outputs.tls import tls_context

CONFIG_KEYS: tuple[Key, ...] = (
    Key("fluent_output.enabled", bool, False,
        "Send alerts (ECS documents) to Fluentd with the forward protocol, each chunk acknowledged."),
    Key("fluent_output.host", str, "127.0.0.1", "Fluentd's forward input (in_forward) host."),
    Key("fluent_output.port", int, 24224, "Fluentd's forward input port."),
    Key("fluent_output.tag", str, "falconet.alerts", "The tag of alert records."),
    Key("fluent_output.tls.enabled", bool, False, "Connect with TLS (in_forward's <transport tls>)."),
    Key("fluent_output.tls.ca_cert", str, "", "PEM CA(s) of Fluentd's certificate; empty: the system's."),
    Key("fluent_output.tls.client_cert", str, "", "PEM client certificate, when Fluentd asks for one."),
    Key("fluent_output.tls.client_key", str, "", "PEM private key of client_cert."),
    Key("fluent_output.tls.verify", bool, True, "Verify Fluentd's certificate and name."),
    Key("fluent_output.tls.server_name", str, "", "Name to verify in Fluentd's certificate; empty: host."),
    Key("fluent_output.shared_key", str, "",
        "Shared key of in_forward's <security> section; empty: no handshake."),
    Key("fluent_output.self_hostname", str, "",
        "Our hostname in the handshake (must differ from Fluentd's); empty: the alert hostname."),
    Key("fluent_output.username", str, "", "User for in_forward's user_auth (with password)."),
    Key("fluent_output.password", str, "", "Password of username."),
    Key("fluent_output.batch_size", int, 500, "Most alerts in one acknowledged chunk."),
    Key("fluent_output.compress", str, "", "gzip: send CompressedPackedForward chunks.",
        choices=("", "gzip")),
    Key("fluent_output.connect_timeout", str, "10s", "Timeout of connecting and of the handshake.",
        check=parse_duration),
    Key("fluent_output.ack_timeout", str, "60s",
        "How long to wait for a chunk's ack before sending it again on a new connection.",
        check=parse_duration),
    Key("fluent_output.log_tag", str, "falconet.log",
        "Tag under which the sensor's own log goes to Fluentd (DESIGN.md names on the wire); "
        "empty: the log is not sent."),
    Key("fluent_output.log_level", str, "info", "Lowest level of the sensor's log sent to Fluentd.",
        choices=("debug", "info", "warning", "error", "critical")),
    *spool_keys("fluent_output", True, "1GiB"),
)


def ecs_encoder(serializer: Callable[[Alert], dict[str, Any]]) -> Callable[[Alert], bytes]:
    """Alert → msgpack `[EventTime(alert time), serializer(alert)]`."""
    return lambda alert: pack_entry(alert.time_ns, serializer(alert))


class FluentTransport:
    """Sends batches as acknowledged chunks over one (re)connecting forward connection."""

    name = "fluent"

    def __init__(self, conn: ForwardConnection, tag: str, compress: bool = False) -> None:
        self.conn = conn
        self.tag = tag
        self.compress = compress
        self.chunks = 0

    def send(self, records: list[bytes]) -> int:
        try:
            self.conn.send_chunk(self.tag, records, self.compress)
        except ForwardError as e:
            raise DeliveryError(str(e)) from e
        self.chunks += 1
        return 0

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        self.conn.close()


def default_serializer() -> Callable[[Alert], dict[str, Any]]:
    """sensor.ecs.to_ecs, imported only when the fluent channel is on."""
    try:
        from sensor.ecs import to_ecs
    except ImportError as e:
        raise UnavailableError(f"fluent_output needs the ECS serializer (sensor.ecs.to_ecs), which this "
                               f"build lacks: {e}") from e
    return to_ecs


def connection(cfg: Any, hostname: str, tls: ssl.SSLContext | None) -> ForwardConnection:
    """A forward connection to the configured Fluentd (alerts and the sensor's log share it)."""
    return ForwardConnection(
        cfg.get("fluent_output.host"), cfg.get("fluent_output.port"), tls=tls,
        server_name=cfg.get("fluent_output.tls.server_name"), shared_key=cfg.get("fluent_output.shared_key"),
        self_hostname=cfg.get("fluent_output.self_hostname") or hostname,
        username=cfg.get("fluent_output.username"), password=cfg.get("fluent_output.password"),
        connect_timeout=cfg.duration("fluent_output.connect_timeout"),
        ack_timeout=cfg.duration("fluent_output.ack_timeout"))


def tls_from_config(cfg: Any) -> ssl.SSLContext | None:
    """The TLS context of fluent_output.tls.*, or None when TLS is off."""
    if not cfg.get("fluent_output.tls.enabled"):
        return None
    try:
        return tls_context(insecure=not cfg.get("fluent_output.tls.verify"),
                           ca_cert=cfg.get("fluent_output.tls.ca_cert"),
                           client_cert=cfg.get("fluent_output.tls.client_cert"),
                           client_key=cfg.get("fluent_output.tls.client_key"))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"fluent_output.tls files (ca_cert {cfg.get('fluent_output.tls.ca_cert')!r}, "
                          f"client_cert {cfg.get('fluent_output.tls.client_cert')!r}): {e}") from e


def from_config(cfg: Any, ctx: Any) -> tuple[FluentTransport, Any] | None:
    if not cfg.get("fluent_output.enabled"):
        return None
    tls = tls_from_config(cfg)
    if cfg.get("fluent_output.batch_size") < 1:
        raise ConfigError(f"{cfg.origin('fluent_output.batch_size')}: 'fluent_output.batch_size' must be "
                          f"at least 1")
    conn = connection(cfg, ctx.hostname, tls)
    serializer = ctx.serializer or default_serializer()
    return (FluentTransport(conn, cfg.get("fluent_output.tag"), cfg.get("fluent_output.compress") == "gzip"),
            ecs_encoder(serializer))
