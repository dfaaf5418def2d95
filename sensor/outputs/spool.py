"""A channel's durable queue on disk: bounded, in order, and safe against a crash of the sensor.

Layout of a spool directory (`<state_dir>/spool/<channel>` unless configured):
    00000000000000000007.seg   segments: records appended in order, a new file every segment_bytes
    cursor                     "<segment> <offset>": where the oldest undelivered record starts
    lock                       flock()ed while a sensor uses the spool (one writer per directory)

A record is a 16-byte header (payload length, CRC-32 of the payload, time it was spooled in ns)
and the payload, the channel's encoded alert (never empty). `put` appends it with one write(2), so
a record that was put survives the sensor being killed (the page cache holds it; `fsync: true`
also survives a power cut, at the cost of one fsync per alert). The worker `peek`s the oldest
records, delivers them and `commit`s them: only then does the cursor move (written to a new
temporary file and renamed over the old one, so it is always whole) and fully delivered segments
are deleted. A crash between delivery and commit delivers those records again: at least once,
never lost.

The sensor runs as root, so the directory is its own, checked as every private directory is
(sensor/securefile.py): created 0700, refused when another user owns it or may write to it or owns
one of its parents (a parent every user may write is logged). Every file in it is opened relative
to the directory's descriptor, without following symbolic links, created exclusively (O_EXCL) and
set to 0600 with fchmod.

On open, nothing on disk is taken on trust. The cursor is used only if it names a record boundary
of an existing segment with no older segment left before it; otherwise (past the end, negative,
inside a record, older segments still there) it is logged and delivery starts from the oldest
segment (records may arrive twice, none is lost). Every record after the starting point is checked:
a torn record or a zero-filled tail at the end of the last segment (a write cut short; some file
systems keep the new size but not the data) is truncated away, and a damaged record elsewhere skips
the rest of its segment; both are counted in `corrupt_records`/`corrupt_bytes` and logged.

Disk errors (a full disk, I/O errors) raise SpoolError: `put` stores nothing, `commit` has forgotten
the delivered records in memory and writes the cursor again at the next commit or `sync`.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import stat
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from sensor import securefile

log = logging.getLogger("falconet.outputs")

HEADER = struct.Struct(">IIq")     # payload length, crc32(payload), time spooled (ns since the epoch)
SEGMENT_BYTES = 8 * 1024 * 1024
_SEGMENT_NAME = re.compile(r"(\d{20})\.seg")
_CURSOR = "cursor"
_CURSOR_TMP = re.compile(r"cursor(\.[0-9]+\.[0-9a-f]+)?\.tmp")
_NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(slots=True)
class _Segment:
    seq: int
    size: int           # bytes of whole, valid records

    @property
    def name(self) -> str:
        return f"{self.seq:020d}.seg"


class SpoolError(Exception):
    """The spool directory cannot be used (permissions, another sensor holds it) or a disk error."""


def _private_dir(path: Path) -> int:
    """Create (0700) or open the spool directory and return its descriptor (sensor/securefile.py's
    rules); SpoolError saying what is wrong with it and what to do."""
    try:
        return securefile.open_dir(path)
    except securefile.UnsafePathError as e:
        raise SpoolError(f"spool directory {e}; make it the sensor's own (chown, chmod 700) or set the "
                         f"channel's spool.dir") from e
    except OSError as e:
        raise SpoolError(f"spool directory {path}: {e.strerror}; make it writable for the sensor or set "
                         f"the channel's spool.dir") from e


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
        self._cursor_dirty = False  # the cursor on disk is behind _rseq/_roff (a failed write)
        self._depth = 0
        self._bytes = 0
        self._oldest_ns = 0
        self._peeked: list[tuple[int, int, int]] = []   # (segment, end offset, record bytes)
        self._rfd: tuple[int, int] | None = None         # (segment, fd) read from last
        self._dirfd = _private_dir(self.dir)
        self._lockfd = -1
        try:
            self._lockfd = self._open("lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC)
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._release()
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise SpoolError(f"spool directory {self.dir} is in use by another falconet process; "
                                 f"give each sensor its own state_dir") from e
            raise SpoolError(f"spool directory {self.dir}: lock: {e.strerror}") from e
        try:
            self._recover()
        except OSError as e:
            self._release()
            raise SpoolError(f"spool directory {self.dir}: {e.strerror or e}") from e
        except SpoolError:
            self._release()
            raise

    # -- files ---------------------------------------------------------------------------------

    def _open(self, name: str, flags: int) -> int:
        """Open a regular file of the spool (never through a symbolic link), mode 0600."""
        try:
            fd = os.open(name, flags, 0o600, dir_fd=self._dirfd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise SpoolError(f"spool directory {self.dir}: {name} is a symbolic link, which the sensor "
                                 f"does not follow; remove it") from e
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            os.close(fd)
            raise SpoolError(f"spool directory {self.dir}: {name} is not a regular file of the sensor's "
                             f"user; remove it")
        if flags & os.O_CREAT and stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        return fd

    # -- opening -----------------------------------------------------------------------------

    def _recover(self) -> None:
        seqs = []
        for name in os.listdir(self._dirfd):
            m = _SEGMENT_NAME.fullmatch(name)
            if m:
                seqs.append(int(m.group(1)))
            elif _CURSOR_TMP.fullmatch(name):
                os.unlink(name, dir_fd=self._dirfd)      # a cursor write a crash cut short
        seqs.sort()
        for seq in seqs:
            fd = self._open(_Segment(seq, 0).name, _READ)
            try:
                self._segments.append(_Segment(seq, os.fstat(fd).st_size))
            finally:
                os.close(fd)
        self._rseq, self._roff = self._start()
        for i, seg in enumerate(self._segments):
            start = self._roff if seg.seq == self._rseq else 0
            last = i == len(self._segments) - 1
            count, first_ns = self._check_segment(seg, start, last)
            self._depth += count
            self._bytes += seg.size - start
            if first_ns and not self._oldest_ns:
                self._oldest_ns = first_ns
        if self._segments and self._segments[-1].size < self.segment_bytes:
            self._wfd = self._open(self._segments[-1].name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW
                                   | os.O_CLOEXEC)
        if self._depth:
            log.info("spool %s: %d alerts (%d bytes) from an earlier run will be delivered first",
                     self.dir, self._depth, self._bytes)

    def _start(self) -> tuple[int, int]:
        """Where delivery starts: the cursor when the files agree with it, else the oldest segment."""
        cursor = self._read_cursor()
        if not self._segments:
            return (cursor[0] if cursor else 0), 0
        first, newest = self._segments[0].seq, self._segments[-1].seq
        if cursor is None:
            return first, 0
        seq, off = cursor
        distrust = ""
        if seq > newest:
            distrust = f"points past the newest segment ({newest})"
        elif seq < first:
            # The segment it names was deleted after delivery and the sensor stopped before the
            # cursor moved on: the oldest segment is where delivery stands.
            return first, 0
        elif seq > first:
            distrust = f"names segment {seq}, but older segments from {first} on are still there"
        else:
            size = self._segments[0].size
            if off > size:
                distrust = f"points past the end of segment {seq} ({size} bytes)"
            elif not self._is_boundary(self._segments[0], off):
                distrust = "points inside a record"
        if distrust:
            log.error("spool %s: the cursor (segment %d, offset %d) %s; not trusting it: delivering from "
                      "the oldest segment %d (alerts may arrive twice, none is lost)", self.dir, seq, off,
                      distrust, first)
            return first, 0
        return seq, off

    def _read_cursor(self) -> tuple[int, int] | None:
        try:
            fd = self._open(_CURSOR, _READ)
        except FileNotFoundError:
            return None
        try:
            text = os.read(fd, 256).decode("ascii", "replace")
        finally:
            os.close(fd)
        try:
            seq, off = (int(v) for v in text.split())
        except ValueError:
            log.error("spool %s: unreadable cursor %r; delivering from the oldest segment", self.dir, text[:60])
            return None
        if seq < 0 or off < 0:
            log.error("spool %s: the cursor (segment %d, offset %d) is negative; not trusting it: delivering "
                      "from the oldest segment", self.dir, seq, off)
            return None
        return seq, off

    def _is_boundary(self, seg: _Segment, off: int) -> bool:
        """Whether a record starts at `off` (or `off` is the end of the last whole record)."""
        fd = self._open(seg.name, _READ)
        try:
            pos = 0
            while pos < off:
                head = os.pread(fd, HEADER.size, pos)
                if len(head) < HEADER.size:
                    return False
                length = HEADER.unpack(head)[0]
                if length == 0:
                    return False
                pos += HEADER.size + length
            return pos == off
        finally:
            os.close(fd)

    def _check_segment(self, seg: _Segment, start: int, last: bool) -> tuple[int, int]:
        """Scan a segment from `start`; cut what is not whole, valid records. (records, first time)"""
        on_disk = seg.size
        fd = self._open(seg.name, _READ)
        try:
            count, end, first_ns = _scan(fd, start, seg.size)
            if end < seg.size:
                lost = seg.size - end
                tail = os.pread(fd, min(lost, 1 << 20), end)
                zeros = lost <= len(tail) and not tail.strip(b"\0")
                what = ("zero-filled tail" if zeros else "torn record") if last else "damaged record"
                self.corrupt_bytes += lost
                self.corrupt_records += 1
                log.error("spool %s: %s of %d bytes at %s:%d %s", self.dir, what, lost, seg.name, end,
                          "truncated (a write the sensor's stop cut short)" if last
                          else "skipped with the rest of its segment")
                seg.size = end
        finally:
            os.close(fd)
        if last and seg.size < on_disk:
            fd = self._open(seg.name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, seg.size)
            finally:
                os.close(fd)
        return count, first_ns

    # -- writing -----------------------------------------------------------------------------

    def put(self, payload: bytes) -> bool:
        """Append one record; False (nothing written) when the spool is full.

        Raises SpoolError (nothing written) when the disk fails: full, read-only, I/O error.
        """
        if not payload:
            raise ValueError("a spool record cannot be empty")
        now = time.time_ns()
        record = HEADER.pack(len(payload), zlib.crc32(payload), now) + payload
        with self._cond:
            if self._bytes + len(record) > self.max_bytes:
                self.last_error = f"full ({self._bytes} of {self.max_bytes} bytes)"
                return False
            seg = None
            try:
                seg = self._writable(len(record))
                written = os.write(self._wfd, record)   # type: ignore[arg-type]
                if written != len(record):
                    raise OSError(errno.ENOSPC, "short write (disk full?)")
                if self.fsync:
                    os.fsync(self._wfd)                 # type: ignore[arg-type]
            except OSError as e:
                if seg is not None and self._wfd is not None:
                    try:
                        os.ftruncate(self._wfd, seg.size)      # no half record stays behind
                    except OSError:
                        os.close(self._wfd)                    # appends go to a new segment
                        self._wfd = None
                self.last_error = f"{self.dir}: {e.strerror or e}"
                raise SpoolError(self.last_error) from e
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
        seg = _Segment(self._segments[-1].seq + 1 if self._segments else self._rseq, 0)
        try:
            self._wfd = self._open(seg.name, os.O_WRONLY | os.O_APPEND | _NEW_FILE)
        except FileExistsError as e:
            raise OSError(errno.EEXIST, f"{seg.name} appeared in the spool directory") from e
        self._segments.append(seg)
        if self.fsync:
            os.fsync(self._dirfd)
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
            segs = [(s.seq, s.size) for s in self._segments if s.seq >= self._rseq]
            seq0, off = self._rseq, self._roff
        out: list[bytes] = []
        peeked: list[tuple[int, int, int]] = []
        for seq, size in segs:
            if seq != seq0:
                off = 0
            fd = self._read_fd(seq)
            while len(out) < n and off + HEADER.size <= size:
                length, crc, _ = HEADER.unpack(os.pread(fd, HEADER.size, off))
                payload = os.pread(fd, length, off + HEADER.size) if off + HEADER.size + length <= size \
                    else b""
                if not length or len(payload) != length or zlib.crc32(payload) != crc:
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
                              "(%d bytes)", self.dir, seg.name, off, seg.size - off)
                    self.corrupt_records += 1
                    self.corrupt_bytes += seg.size - off
                    self._bytes -= seg.size - off
                    seg.size = off
                    if seg is self._segments[-1] and self._wfd is not None:
                        os.close(self._wfd)       # appends go to a new segment from now on
                        self._wfd = None
            depth = 0
            for s in self._segments:
                if s.seq >= self._rseq:
                    fd = self._read_fd(s.seq)
                    depth += _scan(fd, self._roff if s.seq == self._rseq else 0, s.size)[0]
            self._depth = depth

    def _read_fd(self, seq: int) -> int:
        if self._rfd is not None:
            if self._rfd[0] == seq:
                return self._rfd[1]
            os.close(self._rfd[1])
            self._rfd = None
        fd = self._open(_Segment(seq, 0).name, _READ)
        self._rfd = (seq, fd)
        return fd

    def commit(self, n: int) -> None:
        """Forget the first `n` records of the last `peek`: they were delivered.

        They are forgotten even when writing the cursor fails (SpoolError): the cursor is written
        again at the next commit or `sync`, and a crash before that delivers them again.
        """
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
            self._cursor_dirty = True
            self._oldest_ns = self._head_time() if self._depth else 0
            self._cond.notify_all()
            self._sync()

    def sync(self) -> None:
        """Write the cursor if a failed write left it behind; SpoolError when it fails again."""
        with self._cond:
            self._sync()

    def _sync(self) -> None:
        if not self._cursor_dirty:
            return
        try:
            self._write_cursor(self._rseq, self._roff)
        except OSError as e:
            self.last_error = f"{self.dir}: cursor: {e.strerror or e}"
            raise SpoolError(self.last_error) from e
        self._cursor_dirty = False

    def _drop_segment(self, seg: _Segment) -> None:
        if self._rfd is not None and self._rfd[0] == seg.seq:
            os.close(self._rfd[1])
            self._rfd = None
        try:
            os.unlink(seg.name, dir_fd=self._dirfd)
        except FileNotFoundError:
            pass
        except OSError as e:
            # Its records are delivered; a segment left behind is only disk space (and is found
            # and re-delivered, at least once, if the sensor stops before the next cleanup).
            log.error("spool %s: cannot delete delivered segment %s: %s", self.dir, seg.name, e.strerror)

    def _head_time(self) -> int:
        for seg in self._segments:
            if seg.seq < self._rseq:
                continue
            off = self._roff if seg.seq == self._rseq else 0
            if off + HEADER.size <= seg.size:
                head = os.pread(self._read_fd(seg.seq), HEADER.size, off)
                return HEADER.unpack(head)[2] if len(head) == HEADER.size else 0
        return 0

    def _write_cursor(self, seq: int, off: int) -> None:
        tmp = f"cursor.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = self._open(tmp, os.O_WRONLY | _NEW_FILE)
        try:
            try:
                data = f"{seq} {off}\n".encode()
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, _CURSOR, src_dir_fd=self._dirfd, dst_dir_fd=self._dirfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=self._dirfd)
            except OSError:
                pass
            raise

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
            if self._cursor_dirty:
                try:
                    self._sync()
                except SpoolError as e:
                    log.error("spool %s: %s; delivered alerts may be delivered again at the next start",
                              self.dir, e)
            if self._wfd is not None:
                os.close(self._wfd)
                self._wfd = None
            if self._rfd is not None:
                os.close(self._rfd[1])
                self._rfd = None
            self._release()
            self._cond.notify_all()

    def _release(self) -> None:
        if self._lockfd >= 0:
            os.close(self._lockfd)      # releases the flock
            self._lockfd = -1
        if self._dirfd >= 0:
            os.close(self._dirfd)
            self._dirfd = -1


def _scan(fd: int, start: int, size: int) -> tuple[int, int, int]:
    """(records, end of the last whole valid record, time of the first) from `start`.

    A record is valid when its length is not 0 (a zero-filled header would otherwise pass: crc32 of
    nothing is 0), it fits, its CRC matches and its time is after the epoch.
    """
    count, off, first_ns = 0, start, 0
    while off + HEADER.size <= size:
        length, crc, t_ns = HEADER.unpack(os.pread(fd, HEADER.size, off))
        if length == 0 or t_ns <= 0 or off + HEADER.size + length > size:
            break
        if zlib.crc32(os.pread(fd, length, off + HEADER.size)) != crc:
            break
        if not count:
            first_ns = t_ns
        count += 1
        off += HEADER.size + length
    return count, off, first_ns
