"""OutputSettings → the running outputs: one Channel per enabled channel, behind one Outputs.

Each channel module turns its settings into a transport and an encoder (`transport(settings,
ctx)`), after checking what it needs of this machine; each channel's settings say how many alerts
it takes at once (`batch_size`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from sensor.alert import Alert
from sensor.errors import UnavailableError
from sensor.outputs import file, fluent, http, program, stdout, syslog
from sensor.outputs.channel import Channel, Encoder, Transport
from sensor.outputs.dispatch import Outputs
from sensor.outputs.flood import FloodControl
from sensor.outputs.queue import MemoryQueue
from sensor.outputs.render import Renderer
from sensor.outputs.settings import ChannelSettings, OutputSettings
from sensor.outputs.spool import DiskSpool, SpoolError

Serializer = Callable[[Alert], dict[str, Any]]


@dataclass
class BuildContext:
    """What channel modules need beyond their settings."""

    renderer: Renderer
    hostname: str
    unbuffered: bool
    stdout: BinaryIO | None = None
    serializer: Serializer | None = None          # ECS for fluent; None: sensor.ecs


Made = tuple[Transport, Encoder]


def _transports(s: OutputSettings, ctx: BuildContext) -> list[tuple[ChannelSettings, Transport, Encoder]]:
    """The transport and encoder of every enabled channel, in order (each checked first)."""
    makers: list[tuple[ChannelSettings, Callable[[], Made]]] = [
        (s.stdout, lambda: stdout.transport(s.stdout, ctx)),
        (s.file, lambda: file.transport(s.file, ctx)),
        (s.program, lambda: program.transport(s.program, ctx)),
        (s.http, lambda: http.transport(s.http, ctx)),
        (s.syslog, lambda: syslog.transport(s.syslog, ctx)),
        (s.fluent, lambda: fluent.transport(s.fluent, ctx)),
    ]
    out: list[tuple[ChannelSettings, Transport, Encoder]] = []
    try:
        for settings, make in makers:
            if settings.enabled:
                out.append((settings, *make()))
    except BaseException:
        for _, transport, _ in out:
            transport.close()
        raise
    return out


def _context(s: OutputSettings, stdout: BinaryIO | None, serializer: Serializer | None) -> BuildContext:
    return BuildContext(Renderer(s.render), s.hostname, not s.buffered, stdout, serializer)


def describe_outputs(s: OutputSettings, serializer: Serializer | None = None) -> list[str]:
    """Check every enabled channel as `build_outputs` would, without opening anything (a dry run,
    a reload); one line per channel. Raises ConfigError or UnavailableError like `build_outputs`."""
    lines = []
    for settings, transport, _ in _transports(s, _context(s, None, serializer)):
        transport.close()
        spool = settings.spool
        if spool.enabled:
            probe = spool.dir
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            if not os.access(probe, os.W_OK | os.X_OK):
                prefix = f"{settings.name}_output"
                raise UnavailableError(f"{prefix}.spool: {spool.dir} cannot be created or written by this user",
                                       hint=f"set state_dir or {prefix}.spool.dir to a writable directory")
            lines.append(f"{settings.name}: spooled in {spool.dir} (up to {spool.max_size_text})")
        else:
            lines.append(f"{settings.name}: in-memory queue of {s.queue.capacity} alerts")
    return lines


def build_outputs(s: OutputSettings, *, stdout: BinaryIO | None = None,
                  serializer: Serializer | None = None) -> Outputs:
    """The started Outputs of every enabled channel.

    Raises ConfigError for an unusable channel setting and UnavailableError for what this machine
    lacks (a spool directory the sensor cannot use, or that another sensor uses).
    """
    q = s.queue
    channels: list[Channel] = []
    try:
        for settings, transport, encode in _transports(s, _context(s, stdout, serializer)):
            store: MemoryQueue | DiskSpool
            if settings.spool.enabled:
                try:
                    store = DiskSpool(settings.spool.dir, settings.spool.max_size, fsync=settings.spool.fsync)
                except SpoolError as e:
                    raise UnavailableError(f"{settings.name}_output.spool: {e}") from e
            else:
                store = MemoryQueue(max(1, q.capacity))
            channels.append(Channel(transport, encode, store, batch_max=settings.batch_size,
                                    retry_initial=q.retry_initial, retry_max=q.retry_max,
                                    hold_max=max(1, q.capacity)))
    except BaseException:
        for ch in channels:
            ch.store.close()
        raise
    outputs = Outputs(channels, static_fields=dict(s.static_fields), hostname=s.hostname,
                      report_interval=q.report_interval, shutdown_timeout=q.shutdown_timeout)
    if s.flood.enabled:
        outputs.set_flood_control(FloodControl(s.flood.window, list(s.flood.rules), list(s.flood.key_fields),
                                               outputs.submit, s.hostname))
    return outputs.start()
