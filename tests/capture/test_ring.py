"""sensor/capture/ring.py: the ring buffer's records read through mmap, against a file laid out as
the kernel lays out a BPF ring buffer map (consumer page, producer page, data)."""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from sensor.capture.ring import RingReader

PAGE = mmap.PAGESIZE
SIZE = 4 * PAGE
BUSY, DISCARD = 1 << 31, 1 << 30


class FakeRing:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "ring"
        self.path.write_bytes(b"\0" * (2 * PAGE + 2 * SIZE))
        self.fd = os.open(self.path, os.O_RDWR)
        self.mem = mmap.mmap(self.fd, 2 * PAGE + 2 * SIZE)
        self.prod = 0

    def put(self, payload: bytes, flags: int = 0) -> int:
        at = 2 * PAGE + (self.prod & (SIZE - 1))
        struct.pack_into("<II", self.mem, at, len(payload) | flags, 0)
        self.mem[at + 8:at + 8 + len(payload)] = payload
        start = self.prod
        self.prod += (len(payload) + 8 + 7) & ~7
        struct.pack_into("<Q", self.mem, PAGE, self.prod)
        return start

    @property
    def consumer(self) -> int:
        return struct.unpack_from("<Q", self.mem, 0)[0]


def test_records_in_order_busy_stops_and_discarded_are_skipped(tmp_path: Path) -> None:
    ring = FakeRing(tmp_path)
    reader = RingReader(ring.fd, SIZE)
    ring.put(b"first")
    ring.put(b"gone!!", DISCARD)
    ring.put(b"second-record")
    busy = ring.put(b"not yet", BUSY)
    got: list[bytes] = []
    assert reader.pending() == ring.prod
    assert reader.consume(lambda v, off, n: got.append(bytes(v[off:off + n])), 100) == 2
    assert got == [b"first", b"second-record"]
    assert ring.consumer == busy                        # stopped at the record still being written
    struct.pack_into("<I", ring.mem, 2 * PAGE + busy, len(b"not yet"))   # the kernel commits it
    assert reader.consume(lambda v, off, n: got.append(bytes(v[off:off + n])), 100) == 1
    assert got[-1] == b"not yet" and reader.pending() == 0
    reader.close()


def test_a_handler_can_leave_a_record_for_the_next_batch(tmp_path: Path) -> None:
    ring = FakeRing(tmp_path)
    reader = RingReader(ring.fd, SIZE)
    for i in range(5):
        ring.put(bytes([i]) * 9)
    seen: list[int] = []

    def first_three(v: memoryview, off: int, n: int) -> bool:
        if len(seen) == 3:
            return False
        seen.append(v[off])
        return True

    assert reader.consume(first_three, 100) == 3
    assert reader.pending() == 2 * 24
    seen.clear()
    assert reader.consume(lambda v, off, n: seen.append(v[off]), 1) == 1     # at most one per call
    assert seen == [3]
    reader.close()
