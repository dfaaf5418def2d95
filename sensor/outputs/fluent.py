"""fluent: alerts as ECS documents (DESIGN.md §5) to a Fluentd forwarder over the forward protocol.

Each alert becomes one entry `[EventTime, ECS document]` (the document from `sensor.ecs.to_ecs`, its
`event.id` the alert's uuid, so Fluentd's Elasticsearch output writes each alert once however often
it is delivered). Entries are spooled on disk by default and sent in PackedForward chunks of up to
`batch_size`; a chunk leaves the spool only when Fluentd acknowledged it (forward.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sensor.alert import Alert
from sensor.ecs import to_ecs
from sensor.errors import ConfigError
from sensor.outputs.channel import DeliveryError, Encoder
from sensor.outputs.forward import ForwardConnection, ForwardError, pack_entry
from sensor.outputs.settings import FluentSettings, FluentTLSSettings
from sensor.outputs.tls import tls_context

if TYPE_CHECKING:
    from sensor.outputs.build import BuildContext



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


def connection(s: FluentSettings) -> ForwardConnection:
    """A forward connection to the configured Fluentd (alerts and the sensor's log share it)."""
    return ForwardConnection(
        s.host, s.port, tls=tls_context_of(s.tls), server_name=s.tls.server_name, shared_key=s.shared_key,
        self_hostname=s.self_hostname, username=s.username, password=s.password,
        connect_timeout=s.connect_timeout, ack_timeout=s.ack_timeout)


def tls_context_of(tls: FluentTLSSettings) -> ssl.SSLContext | None:
    """The TLS context of fluent_output.tls.*, or None when TLS is off."""
    if not tls.enabled:
        return None
    try:
        return tls_context(insecure=not tls.verify, ca_cert=tls.ca_cert, client_cert=tls.client_cert,
                           client_key=tls.client_key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"fluent_output.tls files (ca_cert {tls.ca_cert!r}, client_cert {tls.client_cert!r}): "
                          f"{e}") from e


def transport(settings: FluentSettings, ctx: BuildContext) -> tuple[FluentTransport, Encoder]:
    """The channel's transport; records are ECS documents (sensor.ecs) unless `ctx` says otherwise."""
    return (FluentTransport(connection(settings), settings.tag, settings.compress),
            ecs_encoder(ctx.serializer or to_ecs))
