"""stdout: one line per alert, flushed at once even when stdout is a pipe (so alerts appear in
`kubectl logs` as they happen, not when a 4 KiB buffer fills)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, BinaryIO

from sensor.errors import UnavailableError
from sensor.outputs.channel import DeliveryError, Encoder
from sensor.outputs.settings import StdoutSettings

if TYPE_CHECKING:
    from sensor.outputs.build import BuildContext


class StdoutTransport:
    """Writes records to a binary stream; `unbuffered` flushes after every alert (Falco's
    buffered_outputs: false), otherwise after every batch."""

    name = "stdout"

    def __init__(self, stream: BinaryIO | None = None, unbuffered: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.unbuffered = unbuffered

    def send(self, records: list[bytes]) -> int:
        done = 0
        try:
            if self.unbuffered:
                for r in records:
                    self.stream.write(r)
                    self.stream.flush()
                    done += 1
            else:
                self.stream.write(b"".join(records))
                self.stream.flush()
        except (OSError, ValueError) as e:       # ValueError: the stream was closed
            raise DeliveryError(f"stdout: {e}", delivered=done) from e
        return 0

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass


def transport(settings: StdoutSettings, ctx: BuildContext) -> tuple[StdoutTransport, Encoder]:
    if ctx.stdout is None:          # the sensor's own stdout, not a stream it was given
        check()
    return StdoutTransport(ctx.stdout, ctx.unbuffered), ctx.renderer.line_encoder("")


def check() -> None:
    """Standard output is open (`falconet run >&-` closes it)."""
    try:
        os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        raise UnavailableError("stdout_output: standard output is closed",
                               hint="give the sensor a stdout, or set stdout_output.enabled=false") from None
