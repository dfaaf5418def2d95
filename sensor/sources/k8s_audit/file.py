"""Follow kube-apiserver audit logs (`--audit-log-path`, one JSON Event per line) across rotation.

Each log is read line by line from a byte offset. We remember, per path, the file's (device, inode),
the offset of the next unread line, and the last bytes before that offset (the "tail"), and save
them atomically in state_dir so a restart resumes where the engine left off. The tail is what makes
rotation safe to detect without losing or repeating a line:

- rename rotation (kube-apiserver's own, logrotate `create`): the path names a new inode. We finish
  the old file through the descriptor we still hold (or, after a restart, find it among its
  siblings by inode), then read the new one from its start.
- copytruncate (logrotate): same inode, but the bytes before our offset are no longer our tail.
  Lines written after our last read went into the copy: we find the sibling whose bytes at our
  offset end with our tail, read the rest of it, then read the truncated file from its start.

A position is saved only for lines the engine has already taken (at the next `poll()`, at most once
a second, and at `stop()`), so a clean restart repeats nothing; a crash repeats at most the last
second. A line over max_event_size or that is not an audit event is skipped and counted.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensor import securefile
from sensor.errors import UnavailableError
from sensor.event import AuditEvent
from sensor.sources.k8s_audit.decode import DecodeError, events_from_json, loads
from sensor.sources.k8s_audit.settings import MAX_EVENT_SIZE

log = logging.getLogger("falconet.k8s_audit")

TAIL = 64                   # bytes before the offset that identify a position in a file
WINDOW = 1 << 16            # bytes read at a time (more when a line is longer)
POLL_BATCH = 1024
SAVE_INTERVAL = 1.0         # seconds between position saves while lines keep coming


@dataclass
class Position:
    """Where reading stands in one file."""

    dev: int
    ino: int
    offset: int
    tail: bytes

    def as_json(self) -> dict[str, Any]:
        return {"dev": self.dev, "ino": self.ino, "offset": self.offset,
                "tail": base64.b64encode(self.tail).decode()}

    @classmethod
    def from_json(cls, d: Any) -> Position | None:
        try:
            pos = cls(int(d["dev"]), int(d["ino"]), int(d["offset"]), base64.b64decode(d["tail"]))
        except (KeyError, TypeError, ValueError):
            return None
        return pos if pos.offset >= len(pos.tail) and len(pos.tail) <= TAIL else None


class _Reader:
    """Complete lines from one open file, from a position; notices when the bytes before it change."""

    def __init__(self, fd: int, label: str, pos: Position, max_line: int, counts: dict[str, int]) -> None:
        self.fd = fd
        self.label = label
        self.pos = pos
        self.max_line = max_line
        self.counts = counts
        self.skipping = False       # inside a line too long to keep: drop bytes up to its newline

    def lines(self, budget: int, final: bool = False) -> tuple[list[tuple[bytes, int]], bool]:
        """Up to about `budget` (line, offset) pairs; and False when our tail is gone (truncated).

        `final`: the file will not grow any more, so a last line without a newline is complete.
        """
        out: list[tuple[bytes, int]] = []
        window = max(WINDOW, self.max_line + 2)
        while len(out) < budget:
            pos = self.pos
            tl = len(pos.tail)
            data = os.pread(self.fd, window + tl, pos.offset - tl)
            if data[:tl] != pos.tail:
                return out, False
            data = data[tl:]
            if not data:
                break
            nl = data.find(b"\n") if self.skipping else data.rfind(b"\n")
            if self.skipping:
                if nl < 0:
                    self._advance(data)
                    continue
                self._advance(data[:nl + 1])
                self.skipping = False
                continue
            if nl < 0:
                if len(data) > self.max_line:
                    self._reject_long(pos.offset)
                    self.skipping = True
                    self._advance(data)
                    continue
                if final and len(data) < window:
                    out.append((data, pos.offset))
                    self._advance(data)
                break
            start = pos.offset
            chunk = data[:nl + 1]
            for line in chunk.split(b"\n")[:-1]:
                if len(line) > self.max_line:
                    self._reject_long(start)
                else:
                    out.append((line, start))
                start += len(line) + 1
            self._advance(chunk)
        return out, True

    def _advance(self, consumed: bytes) -> None:
        p = self.pos
        p.offset += len(consumed)
        p.tail = (p.tail + consumed[-TAIL:])[-TAIL:]

    def _reject_long(self, offset: int) -> None:
        self.counts["drops_too_large"] += 1
        log.warning("k8s audit log %s: line at byte %d is over k8s_audit.max_event_size (%d bytes); "
                    "skipped", self.label, offset, self.max_line)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _open(path: str) -> tuple[int, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fd, os.fstat(fd)


def _tail_at(fd: int, offset: int, tail: bytes) -> bool:
    """True when the bytes just before `offset` in the file are `tail`."""
    return offset >= len(tail) and os.pread(fd, len(tail), offset - len(tail)) == tail


class Follower:
    """One audit log path, followed across rotation. Older files still to finish come first."""

    def __init__(self, path: str, saved: Position | None, max_line: int, start_at_end: bool) -> None:
        self.path = path
        self.saved = saved
        self.max_line = max_line
        self.start_at_end = start_at_end
        self.current: _Reader | None = None
        self.pending: list[_Reader] = []        # rotated files to read to their end first
        self.counts = {"drops_too_large": 0, "rotations": 0, "truncations": 0, "lost_rotations": 0}
        self.strict = True                      # an unreadable file is an error (at start only)
        self._complained = False

    def position(self) -> Position | None:
        """What to save: the oldest file not yet finished, else the current one."""
        reader = self.pending[0] if self.pending else self.current
        if reader is None:
            return self.saved
        return Position(reader.pos.dev, reader.pos.ino, reader.pos.offset, reader.pos.tail)

    def read(self, budget: int) -> list[tuple[bytes, str, int]]:
        """Up to about `budget` lines as (line, file label, byte offset)."""
        out: list[tuple[bytes, str, int]] = []
        if self.current is None and not self.pending:
            self._open_first()
        while self.pending and len(out) < budget:
            r = self.pending[0]
            room = budget - len(out)
            lines, _ = r.lines(room, final=True)
            out += [(ln, r.label, off) for ln, off in lines]
            if len(lines) < room:               # it ended before filling the room
                r.close()
                self.pending.pop(0)
        if self.pending or self.current is None or len(out) >= budget:
            return out
        cur = self.current
        lines, intact = cur.lines(budget - len(out))
        out += [(ln, cur.label, off) for ln, off in lines]
        if not intact:
            self._truncated()
        elif not lines:
            self._check_rotation()
        return out

    def _reader(self, fd: int, label: str, pos: Position) -> _Reader:
        return _Reader(fd, label, pos, self.max_line, self.counts)

    def _open_first(self) -> None:
        try:
            fd, st = _open(self.path)
        except OSError as e:
            if self.strict and not isinstance(e, FileNotFoundError):
                raise UnavailableError(f"k8s audit log {self.path}: cannot open: {e.strerror}",
                                       hint="run as a user that can read it, or fix k8s_audit.files") from e
            if not self._complained:
                log.warning("k8s audit log %s: %s; waiting for it", self.path,
                            "does not exist yet" if isinstance(e, FileNotFoundError) else e.strerror)
                self._complained = True
            return
        self._complained = False
        saved = self.saved
        if saved is not None and (saved.dev, saved.ino) == (st.st_dev, st.st_ino):
            self.current = self._reader(fd, self.path, Position(st.st_dev, st.st_ino, saved.offset, saved.tail))
            return
        if saved is not None and saved.offset > 0:
            # Rotated while we were down: finish the old file first, wherever it went.
            old = self._find_sibling(saved, by_inode=True)
            if old is not None:
                self.pending.append(old)
            else:
                self.counts["lost_rotations"] += 1
                log.warning("k8s audit log %s was rotated while Falconet was stopped and the old file "
                            "(inode %d) is gone: lines after byte %d of it were not read",
                            self.path, saved.ino, saved.offset)
        offset, tail = 0, b""
        if saved is None and self.start_at_end:
            offset, tail = _last_line_end(fd, st.st_size)
        self.current = self._reader(fd, self.path, Position(st.st_dev, st.st_ino, offset, tail))

    def _check_rotation(self) -> None:
        cur = self.current
        assert cur is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return          # renamed away, new file not there yet: keep reading the old one
        if (st.st_dev, st.st_ino) == (cur.pos.dev, cur.pos.ino):
            return
        # Rename rotation: the old file gets no more lines; read what is left, then the new one.
        self.counts["rotations"] += 1
        cur.label = f"{self.path} (rotated)"
        self.pending.append(cur)
        self.current = None
        self.saved = None
        try:
            fd, st = _open(self.path)
        except OSError:
            return          # opened on a later poll by _open_first
        self.current = self._reader(fd, self.path, Position(st.st_dev, st.st_ino, 0, b""))

    def _truncated(self) -> None:
        """copytruncate: the lines after our offset are in the copy; read them, then restart at 0."""
        cur = self.current
        assert cur is not None
        self.counts["truncations"] += 1
        copy = self._find_sibling(cur.pos, by_inode=False)
        if copy is not None:
            self.pending.append(copy)
        elif cur.pos.offset > 0:
            self.counts["lost_rotations"] += 1
            log.warning("k8s audit log %s was truncated and no rotated copy holds the lines after byte "
                        "%d: lines written between our last read and the truncation were not read",
                        self.path, cur.pos.offset)
        cur.pos.offset, cur.pos.tail = 0, b""
        cur.skipping = False

    def _find_sibling(self, pos: Position, by_inode: bool) -> _Reader | None:
        """The rotated file that continues `pos`: same inode (rename), or same bytes (a copy)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        base = os.path.basename(self.path)
        stem = base.split(".", 1)[0]
        try:
            names = os.listdir(directory)
        except OSError:
            return None
        candidates = []
        for name in names:
            if name == base or not name.startswith(stem):
                continue
            full = os.path.join(directory, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_size < pos.offset:
                continue
            same = (st.st_dev, st.st_ino) == (pos.dev, pos.ino)
            if same != by_inode:
                continue
            candidates.append((st.st_mtime, full, st))
        for _, full, st in sorted(candidates, reverse=True):
            try:
                fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            if _tail_at(fd, pos.offset, pos.tail):
                return self._reader(fd, full, Position(st.st_dev, st.st_ino, pos.offset, pos.tail))
            os.close(fd)
        return None

    def close(self) -> None:
        for r in [*self.pending, *([self.current] if self.current else [])]:
            r.close()
        self.pending, self.current = [], None


def _last_line_end(fd: int, size: int) -> tuple[int, bytes]:
    """Offset just after the last newline in the file, and the tail before it."""
    end = size
    while end > 0:
        start = max(0, end - WINDOW)
        data = os.pread(fd, end - start, start)
        nl = data.rfind(b"\n")
        if nl >= 0:
            offset = start + nl + 1
            return offset, os.pread(fd, min(TAIL, offset), offset - min(TAIL, offset))
        end = start
    return 0, b""


class PositionStore:
    """Saved positions, one JSON file in state_dir, replaced atomically through sensor.securefile
    (a private directory, an exclusive temporary file): a position file another user could write
    would let them make us skip lines."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def check_dir(self) -> None:
        """Create the directory (0700) or check that nobody else may write to it."""
        os.close(securefile.open_dir(self.path.parent))

    def load(self) -> dict[str, Position]:
        try:
            data = securefile.read_secret(self.path)
        except securefile.UnsafePathError:
            raise
        except OSError as e:
            log.warning("k8s audit log positions %s unreadable (%s): starting over", self.path, e)
            return {}
        if data is None:
            return {}
        try:
            doc = loads(data)
        except DecodeError as e:
            log.warning("k8s audit log positions %s unreadable (%s): starting over", self.path, e)
            return {}
        files = doc.get("files") if isinstance(doc, dict) else None
        out = {}
        for k, v in (files or {}).items() if isinstance(files, dict) else ():
            p = Position.from_json(v)
            if p is not None:
                out[k] = p
        return out

    def save(self, positions: dict[str, Position]) -> None:
        doc = {"version": 1, "files": {k: p.as_json() for k, p in positions.items()}}
        securefile.write_file(self.path, json.dumps(doc, indent=1).encode(), 0o600)


class FileSource:
    """The `k8s_audit` source that follows audit log files (DESIGN.md §4: k8s_audit.files)."""

    name = "k8s_audit_file"
    source = "k8s_audit"

    def __init__(self, paths: list[str], state_dir: Path = Path("/var/lib/falconet"),
                 max_event_size: int = MAX_EVENT_SIZE, start_at_end: bool = False) -> None:
        self.paths = [os.path.abspath(p) for p in paths]
        self.store = PositionStore(Path(state_dir) / "k8s_audit" / "positions.json")
        self.max_event_size = max_event_size
        self.start_at_end = start_at_end
        self.followers: list[Follower] = []
        self._delivered = 0
        self._invalid = 0
        self._dirty = False
        self._last_save = 0.0
        self._stop = threading.Event()

    @property
    def finished(self) -> bool:
        return False

    def start(self) -> None:
        try:
            self.store.check_dir()
        except OSError as e:
            raise UnavailableError(f"k8s audit logs: cannot create {self.store.path.parent}: {e.strerror}",
                                   hint="make state_dir writable") from e
        saved = self.store.load()
        self.followers = [Follower(p, saved.get(p), self.max_event_size, self.start_at_end)
                          for p in self.paths]
        for f in self.followers:
            f.read(0)           # open now: an unreadable file is an error at start, not later
            f.strict = False

    def poll(self, timeout: float) -> list[AuditEvent]:
        # Everything returned by the previous poll has been through the engine by now.
        if self._dirty and time.monotonic() - self._last_save >= SAVE_INTERVAL:
            self.save_positions()
        events = self._read()
        if not events and timeout > 0 and not self._stop.wait(timeout):
            events = self._read()
        return events

    def _read(self) -> list[AuditEvent]:
        events: list[AuditEvent] = []
        for f in self.followers:
            for line, label, offset in f.read(POLL_BATCH - len(events)):
                self._dirty = True
                if not line.strip():
                    continue
                try:
                    new = events_from_json(loads(line), self._delivered + 1)
                except DecodeError as e:
                    self._invalid += 1
                    log.warning("k8s audit log %s: line at byte %d skipped: %s", label, offset, e)
                    continue
                self._delivered += len(new)
                events += new
            if len(events) >= POLL_BATCH:
                break
        return events

    def save_positions(self) -> None:
        """Write every follower's position now (atomically)."""
        positions = {f.path: p for f in self.followers if (p := f.position()) is not None}
        self.store.save(positions)
        self._dirty = False
        self._last_save = time.monotonic()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            if self.followers:
                self.save_positions()
        finally:
            for f in self.followers:
                f.close()

    def stats(self) -> dict[str, int]:
        """events, drops (invalid + too large lines), and rotation counters (`lost_rotations`: a
        rotated file that could not be found, so an unknown number of lines was not read)."""
        c = {"events": self._delivered, "drops_invalid": self._invalid, "drops_too_large": 0,
             "rotations": 0, "truncations": 0, "lost_rotations": 0}
        for f in self.followers:
            for k, v in f.counts.items():
                c[k] += v
        c["drops"] = c["drops_invalid"] + c["drops_too_large"]
        return c
