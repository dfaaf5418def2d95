"""Read a BPF ring buffer map through mmap, in batches, without bcc.

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (mapped read-write); from page 1
the producer position page and then the data area, which the kernel maps twice in a row so that a
record never wraps (mapped read-only). Each record starts with an 8-byte header whose first u32 is
the length, with bit 31 set while the record is still being written (stop there) and bit 30 when
it was discarded (skip it); records are 8-byte aligned. The consumer position is published after
each batch, which is when the kernel may reuse the space. The probe submits without waking
anyone (BPF_RB_NO_WAKEUP), so the reader polls `pending()` on a short timer.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable

_BUSY = 1 << 31
_DISCARD = 1 << 30
_LEN_MASK = ~(_BUSY | _DISCARD) & 0xFFFFFFFF
_U32 = struct.Struct("<I")
PAGE = mmap.PAGESIZE


class RingReader:
    """Consumes records from one BPF_MAP_TYPE_RINGBUF map fd."""

    def __init__(self, map_fd: int, size: int) -> None:
        self.fd = map_fd
        self.size = size
        self.mask = size - 1
        self._cons = mmap.mmap(map_fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data = mmap.mmap(map_fd, PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=PAGE)
        self._view = memoryview(self._data)
        # The two positions are read and written whole: a native 'Q' item of a memoryview is one
        # aligned 8-byte load or store. struct's "<Q" goes byte by byte, and the kernel, reading
        # the consumer position half-written, sees the ring full and drops records.
        self._consumer = memoryview(self._cons)[:8].cast("Q")
        self._producer = self._view[:8].cast("Q")

    def pending(self) -> int:
        """Bytes written by the kernel and not yet consumed."""
        return self._producer[0] - self._consumer[0]

    def consumed(self) -> int:
        """The consumer position: bytes consumed since the ring was made."""
        return int(self._consumer[0])

    def consume(self, handle: Callable[[memoryview, int, int], bool], max_records: int) -> int:
        """Call `handle(view, offset, length)` for up to `max_records` committed records.

        `view[offset:offset + length]` is the record; it is valid only during the call. When
        `handle` returns False the record is left in the ring for the next call and the batch
        ends there. Returns the number of records handled.
        """
        data = self._data
        view = self._view
        cons = self._consumer[0]
        prod = self._producer[0]
        mask = self.mask
        unpack_u32 = _U32.unpack_from
        n = 0
        base = PAGE     # data area starts one page into this mapping
        try:
            while cons < prod and n < max_records:
                off = base + (cons & mask)
                hdr = unpack_u32(data, off)[0]
                if hdr & _BUSY:
                    break
                length = hdr & _LEN_MASK
                if not hdr & _DISCARD:
                    if handle(view, off + 8, length) is False:
                        break
                    n += 1
                cons += (length + 8 + 7) & ~7
        finally:
            self._consumer[0] = cons
        return n

    def close(self) -> None:
        self._consumer.release()
        self._producer.release()
        self._view.release()
        self._data.close()
        self._cons.close()
