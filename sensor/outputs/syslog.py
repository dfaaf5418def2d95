"""syslog: one datagram per alert to the local syslog socket, the alert's priority as the severity
(Falco's priorities are syslog's severities, Emergency 0 ... Debug 7), facility user."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sensor.alert import Alert
from sensor.errors import UnavailableError
from sensor.outputs.channel import DeliveryError, Encoder
from sensor.outputs.settings import SyslogSettings

if TYPE_CHECKING:
    from sensor.outputs.build import BuildContext


FACILITY_USER = 1


def syslog_encoder(render: Callable[[Alert], str], ident: str = "falconet") -> Encoder:
    """An encoder producing `<PRI>Mmm dd hh:mm:ss ident[pid]: message`, as glibc's syslog(3)."""
    pid = os.getpid()

    def encode(alert: Alert) -> bytes:
        pri = FACILITY_USER * 8 + int(alert.priority)
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime())
        return f"<{pri}>{stamp} {ident}[{pid}]: {render(alert)}".encode()

    return encode


class SyslogTransport:
    """Datagrams to a Unix socket, reconnecting after the daemon restarts."""

    name = "syslog"

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock: socket.socket | None = None

    def send(self, records: list[bytes]) -> int:
        for i, r in enumerate(records):
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    try:
                        sock.connect(self.address)
                    except OSError:
                        sock.close()
                        raise
                    self._sock = sock
                self._sock.send(r)
            except OSError as e:
                self.close()
                raise DeliveryError(f"syslog {self.address}: {e.strerror or e}", delivered=i) from e
        return 0

    def reopen(self) -> None:
        self.close()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def transport(settings: SyslogSettings, ctx: BuildContext) -> tuple[SyslogTransport, Encoder]:
    check(settings)
    fmt = settings.format
    renderer = ctx.renderer
    return SyslogTransport(settings.address), syslog_encoder(lambda a: renderer.render(a, fmt))


def check(settings: SyslogSettings) -> None:
    """A syslog daemon listens on syslog_output.address (a container seldom has /dev/log)."""
    address = settings.address
    where = f"'syslog_output.address' {address} ({settings.origins('syslog_output.address')})"
    hint = ("start a syslog daemon (rsyslog, or systemd-journald's /dev/log), mount its socket, or set "
            "syslog_output.enabled=false")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
    except FileNotFoundError:
        raise UnavailableError(f"syslog_output: {where} does not exist: no syslog daemon here", hint=hint) from None
    except OSError as e:
        raise UnavailableError(f"syslog_output: {where}: {e.strerror}", hint=hint) from None
    finally:
        sock.close()
