"""file: alerts appended to a file, one line each. SIGUSR1 reopens it (after logrotate moved it)."""

from __future__ import annotations

from typing import Any

from sensor.config import Key
from sensor.errors import ConfigError
from sensor.outputs.channel import DeliveryError
from sensor.outputs.render import FORMATS
from sensor.outputs.spool import spool_keys

CONFIG_KEYS: tuple[Key, ...] = (
    Key("file_output.enabled", bool, False, "Append alerts to a file."),
    Key("file_output.keep_alive", bool, False,
        "Keep the file open between alerts (true), or open and close it for every batch (false)."),
    Key("file_output.filename", str, "./events.txt", "The file alerts are appended to."),
    Key("file_output.format", str, "",
        "text or json; empty: follow json_output (so a terminal can show text while the file holds "
        "JSON).", choices=FORMATS),
    *spool_keys("file_output", False),
)


class FileTransport:
    """Appends records to `path`, with the file kept open (`keep_alive`) or opened per batch."""

    name = "file"

    def __init__(self, path: str, keep_alive: bool, unbuffered: bool = True) -> None:
        self.path = path
        self.keep_alive = keep_alive
        self.unbuffered = unbuffered
        self._f: Any = None

    def send(self, records: list[bytes]) -> int:
        done = 0
        try:
            f = self._f or open(self.path, "ab")
            try:
                if self.unbuffered:
                    for r in records:
                        f.write(r)
                        f.flush()
                        done += 1
                else:
                    f.write(b"".join(records))
                    f.flush()
            finally:
                if self.keep_alive:
                    self._f = f
                else:
                    f.close()
        except OSError as e:
            self.reopen()
            raise DeliveryError(f"{self.path}: {e.strerror or e}", delivered=done) from e
        return 0

    def reopen(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    close = reopen


def from_config(cfg: Any, ctx: Any) -> tuple[FileTransport, Any] | None:
    if not cfg.get("file_output.enabled"):
        return None
    filename = cfg.get("file_output.filename")
    if not filename:
        raise ConfigError(f"{cfg.origin('file_output.filename')}: 'file_output.filename' is empty",
                          hint="set the file alerts are appended to")
    return (FileTransport(filename, bool(cfg.get("file_output.keep_alive")), ctx.unbuffered),
            ctx.renderer.line_encoder(cfg.get("file_output.format", "")))
