"""A channel's durable queue on disk: bounded, in order, and safe against a crash of the sensor.

Layout of a spool directory (`<state_dir>/spool/<channel>` unless configured):
    00000000000000000007.seg   segments: records appended in order, a new file every segment_bytes
    cursor                     "<segment> <offset>": where the oldest undelivered record starts
    lock                       flock()ed while a sensor uses the spool (one writer per directory)

A record is a 16-byte header (payload length, CRC-32 of the payload, time it was spooled in ns)
and the payload, the channel's encoded alert. `put` appends it with one write(2), so a record that
was put survives the sensor being killed (the page cache holds it; `fsync: true` also survives a
power cut, at the cost of one fsync per alert). The worker `peek`s the oldest records, delivers
them and `commit`s them: only then does the cursor move (written to a temporary file and renamed
over the old one, so it is always whole) and fully delivered segments are deleted. A crash between
delivery and commit delivers those records again: at least once, never lost.

On open, every record after the cursor is checked: a torn record at the end of the last segment
(a write cut short) is truncated away, and a damaged one elsewhere skips the rest of its segment;
both are counted in `corrupt_records`/`corrupt_bytes` and logged, never silently.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from sensor.config import Key, parse_size

log = logging.getLogger("falconet.outputs")

HEADER = struct.Struct(">IIq")     # payload length, crc32(payload), time spooled (ns since the epoch)
SEGMENT_BYTES = 8 * 1024 * 1024


def spool_keys(channel: str, enabled: bool, max_size: str = "256MiB") -> tuple[Key, ...]:
    """The `spool` block every channel declares (DESIGN.md §6: every channel can spool)."""
    return (
        Key(f"{channel}.spool.enabled", bool, enabled,
            "Queue this channel's alerts on disk instead of in memory: they survive a restart and "
            "a long outage of the destination, and leave the spool only once delivered."),
        Key(f"{channel}.spool.dir", str, "",
            f"Spool directory; empty: <state_dir>/spool/{channel.removesuffix('_output')}."),
        Key(f"{channel}.spool.max_size", str, max_size,
            "Most disk space the spool may use; alerts that do not fit are dropped and counted.",
            check=parse_size),
        Key(f"{channel}.spool.fsync", bool, False,
            "fsync every spooled alert, so that even a power cut loses none (slower)."),
    )


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    size: int           # bytes of whole, valid records


class SpoolError(Exception):
    """The spool directory cannot be used (permissions, another sensor holds it, disk errors)."""


class DiskSpool:
    """Records on disk in order; `put` from any thread, `peek`/`commit` from one worker thread."""

    def __init__(self, directory: str | Path, max_bytes: int, *, segment_bytes: int = SEGMENT_BYTES,
                 fsync: bool = False) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.corrupt_records = 0
        self.corrupt_bytes = 0
        self.last_error = ""
        self._cond = threading.Condition()
        self._segments: list[_Segment] = []
        self._wfd: int | None = None
        self._rseq = 0              # the cursor: segment and offset of the oldest undelivered record
        self._roff = 0
        self._depth = 0
        self._bytes = 0
        self._oldest_ns = 0
        self._peeked: list[tuple[int, int, int]] = []   # (segment, end offset, record bytes)
        self._rfd: tuple[int, int] | None = None         # (segment, fd) read from last
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lockfd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise SpoolError(f"spool directory {self.dir}: {e.strerror}; make it writable for the "
                             f"sensor or set the channel's spool.dir") from e
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lockfd)
            raise SpoolError(f"spool directory {self.dir} is in use by another falconet process; "
                             f"give each sensor its own state_dir") from e
        self._recover()

    # -- opening -----------------------------------------------------------------------------

    def _recover(self) -> None:
        self._rseq, self._roff = self._read_cursor()
        for path in sorted(self.dir.glob("*.seg")):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            if seq < self._rseq:
                path.unlink()
                continue
            self._segments.append(_Segment(seq, path, path.stat().st_size))
        if self._segments and self._segments[0].seq != self._rseq:
            self._rseq, self._roff = self._segments[0].seq, 0
        for i, seg in enumerate(self._segments):
            start = min(self._roff, seg.size) if seg.seq == self._rseq else 0
            count, end, first_ns = self._scan(seg.path, start, seg.size)
            if end < seg.size:
                lost = seg.size - end
                self.corrupt_bytes += lost
                self.corrupt_records += 1
                last = i == len(self._segments) - 1
                log.error("spool %s: %s record of %d bytes at %s:%d %s", self.dir,
                          "torn" if last else "damaged", lost, seg.path.name, end,
                          "truncated (it was being written when the sensor stopped)" if last
                          else "skipped with the rest of its segment")
                if last:
                    os.truncate(seg.path, end)
                seg.size = end
            self._depth += count
            self._bytes += seg.size - start
            if first_ns and not self._oldest_ns:
                self._oldest_ns = first_ns
        if self._segments and self._segments[-1].size < self.segment_bytes:
            self._wfd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
        if self._depth:
            log.info("spool %s: %d alerts (%d bytes) from an earlier run will be delivered first",
                     self.dir, self._depth, self._bytes)

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seq, off = (self.dir / "cursor").read_text().split()
            return int(seq), int(off)
        except FileNotFoundError:
            return 0, 0
        except (ValueError, OSError) as e:
            log.error("spool %s: unreadable cursor (%s); delivering from the oldest segment", self.dir, e)
            return 0, 0

    @staticmethod
    def _scan(path: Path, start: int, size: int) -> tuple[int, int, int]:
        """(records, end of the last whole valid record, time of the first) from `start`."""
        count, off, first_ns = 0, start, 0
        with open(path, "rb") as f:
            f.seek(start)
            while off + HEADER.size <= size:
                length, crc, t_ns = HEADER.unpack(f.read(HEADER.size))
                if off + HEADER.size + length > size:
                    break
                payload = f.read(length)
                if zlib.crc32(payload) != crc:
                    break
                if not count:
                    first_ns = t_ns
                count += 1
                off += HEADER.size + length
        return count, off, first_ns

    # -- writing -----------------------------------------------------------------------------

    def put(self, payload: bytes) -> bool:
        """Append one record; False (nothing written) when the spool is full or the disk fails."""
        now = time.time_ns()
        record = HEADER.pack(len(payload), zlib.crc32(payload), now) + payload
        with self._cond:
            if self._bytes + len(record) > self.max_bytes:
                self.last_error = f"full ({self._bytes} of {self.max_bytes} bytes)"
                return False
            try:
                seg = self._writable(len(record))
                written = os.write(self._wfd, record)   # type: ignore[arg-type]
                if written != len(record):
                    os.ftruncate(self._wfd, seg.size)   # type: ignore[arg-type]
                    self.last_error = "short write (disk full?)"
                    return False
                if self.fsync:
                    os.fsync(self._wfd)                 # type: ignore[arg-type]
            except OSError as e:
                self.last_error = f"{self.dir}: {e.strerror}"
                return False
            seg.size += len(record)
            self._bytes += len(record)
            self._depth += 1
            if self._depth == 1:
                self._oldest_ns = now
            self._cond.notify()
            return True

    def _writable(self, length: int) -> _Segment:
        if self._wfd is not None and self._segments:
            seg = self._segments[-1]
            if seg.size == 0 or seg.size + length <= self.segment_bytes:
                return seg
            os.close(self._wfd)
            self._wfd = None
        seq = self._segments[-1].seq + 1 if self._segments else self._rseq
        path = self.dir / f"{seq:020d}.seg"
        self._wfd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        seg = _Segment(seq, path, 0)
        self._segments.append(seg)
        if self.fsync:
            self._fsync_dir()
        return seg

    # -- reading -----------------------------------------------------------------------------

    def peek(self, n: int, timeout: float) -> list[bytes]:
        """Up to `n` oldest undelivered records, waiting up to `timeout` seconds for the first."""
        with self._cond:
            if not self._depth:
                self._cond.wait(timeout)
            if not self._depth:
                self._peeked = []
                return []
            segs = [(s.seq, s.path, s.size) for s in self._segments if s.seq >= self._rseq]
            seq0, off = self._rseq, self._roff
        out: list[bytes] = []
        peeked: list[tuple[int, int, int]] = []
        for seq, path, size in segs:
            if seq != seq0:
                off = 0
            fd = self._read_fd(seq, path)
            while len(out) < n and off + HEADER.size <= size:
                length, crc, _ = HEADER.unpack(os.pread(fd, HEADER.size, off))
                payload = os.pread(fd, length, off + HEADER.size) if off + HEADER.size + length <= size \
                    else b""
                if len(payload) != length or zlib.crc32(payload) != crc:
                    self._damaged(seq, off)
                    break
                off += HEADER.size + length
                out.append(payload)
                peeked.append((seq, off, HEADER.size + length))
            if len(out) >= n:
                break
        self._peeked = peeked
        return out

    def _damaged(self, seq: int, off: int) -> None:
        # Records are written whole by us and checked at open: only damage from outside the sensor
        # gets here. The rest of the segment is given up, counted and logged.
        with self._cond:
            for seg in self._segments:
                if seg.seq == seq and off < seg.size:
                    log.error("spool %s: damaged record at %s:%d; skipping the rest of the segment "
                              "(%d bytes)", self.dir, seg.path.name, off, seg.size - off)
                    self.corrupt_records += 1
                    self.corrupt_bytes += seg.size - off
                    self._bytes -= seg.size - off
                    seg.size = off
                    if seg is self._segments[-1] and self._wfd is not None:
                        os.close(self._wfd)       # appends go to a new segment from now on
                        self._wfd = None
            self._depth = sum(self._scan(s.path, self._roff if s.seq == self._rseq else 0, s.size)[0]
                              for s in self._segments if s.seq >= self._rseq)

    def _read_fd(self, seq: int, path: Path) -> int:
        if self._rfd is not None:
            if self._rfd[0] == seq:
                return self._rfd[1]
            os.close(self._rfd[1])
        fd = os.open(path, os.O_RDONLY)
        self._rfd = (seq, fd)
        return fd

    def commit(self, n: int) -> None:
        """Forget the first `n` records of the last `peek`: they were delivered."""
        if n <= 0 or not self._peeked:
            return
        done, self._peeked = self._peeked[:n], self._peeked[n:]
        seq, off = done[-1][0], done[-1][1]
        with self._cond:
            self._depth -= len(done)
            self._bytes -= sum(d[2] for d in done)
            while self._segments and self._segments[0].seq < seq:
                self._drop_segment(self._segments.pop(0))
            head = self._segments[0] if self._segments else None
            if head is not None and off >= head.size:
                if head is self._segments[-1]:
                    # Everything delivered: the next put starts a new segment.
                    if self._wfd is not None:
                        os.close(self._wfd)
                        self._wfd = None
                    self._drop_segment(self._segments.pop(0))
                    seq, off = seq + 1, 0
                else:
                    self._drop_segment(self._segments.pop(0))
                    seq, off = self._segments[0].seq, 0
            self._rseq, self._roff = seq, off
            self._write_cursor(seq, off)
            self._oldest_ns = self._head_time() if self._depth else 0
            self._cond.notify_all()

    def _drop_segment(self, seg: _Segment) -> None:
        if self._rfd is not None and self._rfd[0] == seg.seq:
            os.close(self._rfd[1])
            self._rfd = None
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass

    def _head_time(self) -> int:
        for seg in self._segments:
            if seg.seq < self._rseq:
                continue
            off = self._roff if seg.seq == self._rseq else 0
            if off + HEADER.size <= seg.size:
                with open(seg.path, "rb") as f:
                    f.seek(off)
                    return HEADER.unpack(f.read(HEADER.size))[2]
        return 0

    def _write_cursor(self, seq: int, off: int) -> None:
        tmp = self.dir / "cursor.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{seq} {off}\n".encode())
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / "cursor")

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- state ---------------------------------------------------------------------------------

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def depth(self) -> int:
        """Records waiting for delivery."""
        return self._depth

    def bytes_used(self) -> int:
        return self._bytes

    def oldest_age(self) -> float:
        """Seconds the oldest undelivered record has waited, 0 when empty."""
        return max(0.0, (time.time_ns() - self._oldest_ns) / 1e9) if self._oldest_ns else 0.0

    def close(self) -> None:
        with self._cond:
            if self._wfd is not None:
                os.close(self._wfd)
                self._wfd = None
            if self._rfd is not None:
                os.close(self._rfd[1])
                self._rfd = None
            if self._lockfd >= 0:
                os.close(self._lockfd)      # releases the flock
                self._lockfd = -1
            self._cond.notify_all()
