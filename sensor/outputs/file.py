"""file: alerts appended to a file, one line each. SIGUSR1 reopens it (after logrotate moved it).

The sensor runs as root and the file's name comes from configuration, so opening it must not be
a way to write as root where someone else chose: the last component is never followed if it is a
symbolic link (O_NOFOLLOW), the file is created 0600, an existing file must be a regular file (or a
FIFO or character device) owned by the sensor's user or root, and a directory every user may write
to (such as /tmp) is refused, because another user could have put a file or link there first.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Any

from sensor.errors import ConfigError, UnavailableError
from sensor.outputs.channel import DeliveryError, Encoder
from sensor.outputs.settings import FileSettings

if TYPE_CHECKING:
    from sensor.outputs.build import BuildContext


_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def shared_directory(path: str) -> str | None:
    """The directory `path` is in when every user may write to it (so it may not hold alerts)."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        return parent if os.stat(parent).st_mode & stat.S_IWOTH else None
    except OSError:
        return None          # a missing directory is a delivery error, retried until it exists


def _refusal(parent: str) -> str:
    return (f"its directory {parent} is writable by every user, who could put a file or link there first; "
            f"choose a directory only the sensor's user can write")


def open_for_append(path: str) -> Any:
    """`path` opened to append, safely (see the module's docstring); OSError or ValueError saying why not."""
    parent = shared_directory(path)
    if parent is not None:
        raise ValueError(_refusal(parent))
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError("it is a symbolic link; give the path of the file itself") from e
        raise
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            raise ValueError("it is neither a regular file, a FIFO nor a character device")
        if st.st_uid not in (os.geteuid(), 0):
            raise ValueError(f"it is owned by uid {st.st_uid}, not by the sensor's user")
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


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
            f = self._f or open_for_append(self.path)
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
        except ValueError as e:
            raise DeliveryError(f"{self.path}: refused: {e}", delivered=done) from e
        return 0

    def reopen(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    close = reopen


def transport(settings: FileSettings, ctx: BuildContext) -> tuple[FileTransport, Encoder]:
    check(settings)
    filename = settings.filename
    parent = shared_directory(filename)
    if parent is not None:
        raise ConfigError(f"{settings.origins('file_output.filename')}: 'file_output.filename' {filename} is "
                          f"refused: {_refusal(parent)}")
    return (FileTransport(filename, settings.keep_alive, ctx.unbuffered),
            ctx.renderer.line_encoder(settings.format))


def check(settings: FileSettings) -> None:
    """The file can be created or appended to by this user: its directory exists and is writable."""
    filename = settings.filename
    where = f"'file_output.filename' {filename} ({settings.origins('file_output.filename')})"
    parent = os.path.dirname(os.path.abspath(filename))
    if not os.path.isdir(parent):
        raise UnavailableError(f"file_output: {where}: the directory {parent} does not exist",
                               hint="create it, or set file_output.filename to a file in an existing directory")
    if os.path.exists(filename):
        if not os.access(filename, os.W_OK):
            raise UnavailableError(f"file_output: {where}: this user cannot write to it",
                                   hint="fix its owner or mode, or choose another file")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise UnavailableError(f"file_output: {where}: this user cannot create files in {parent}",
                               hint="choose a directory the sensor's user can write")
