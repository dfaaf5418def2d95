"""The disk spool: order, bounds, crash recovery, one sensor per directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sensor.outputs.spool import HEADER, DiskSpool, SpoolError


def drain(spool: DiskSpool, n: int = 1000) -> list[bytes]:
    out = []
    while True:
        batch = spool.peek(n, 0)
        if not batch:
            return out
        out.extend(batch)
        spool.commit(len(batch))


def test_fifo_across_segments_and_cleanup(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 10_000_000, segment_bytes=1000)
    payloads = [f"alert-{i:04d}".encode() * 7 for i in range(300)]
    for p in payloads:
        assert spool.put(p)
    assert spool.depth() == 300
    assert len(list(tmp_path.glob("*.seg"))) > 20
    assert spool.bytes_used() == sum(len(p) + HEADER.size for p in payloads)
    got = spool.peek(50, 0)
    assert got == payloads[:50]
    assert spool.peek(50, 0) == payloads[:50]          # not committed: the same batch again
    spool.commit(50)
    assert drain(spool, 70) == payloads[50:]
    assert spool.depth() == 0 and spool.bytes_used() == 0 and spool.oldest_age() == 0
    assert list(tmp_path.glob("*.seg")) == []            # delivered segments are deleted
    assert spool.put(b"next")
    assert spool.peek(10, 0) == [b"next"]
    spool.close()


def test_partial_commit_keeps_the_rest_in_order(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1_000_000)
    for i in range(10):
        spool.put(str(i).encode())
    spool.peek(6, 0)
    spool.commit(4)                    # the transport delivered 4 of 6
    assert spool.peek(100, 0) == [str(i).encode() for i in range(4, 10)]
    assert spool.depth() == 6


def test_restart_resumes_after_the_last_commit(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1_000_000, segment_bytes=64)
    for i in range(20):
        spool.put(f"r{i}".encode())
    spool.peek(7, 0)
    spool.commit(7)
    spool.peek(3, 0)                    # peeked, not delivered: must come again
    spool.close()
    again = DiskSpool(tmp_path, 1_000_000, segment_bytes=64)
    assert again.depth() == 13
    assert drain(again) == [f"r{i}".encode() for i in range(7, 20)]


def test_full_spool_refuses_and_keeps_order(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10 * (HEADER.size + 10))
    accepted = [spool.put(b"x" * 10) for _ in range(12)]
    assert accepted == [True] * 10 + [False] * 2
    assert "full" in spool.last_error
    spool.peek(3, 0)
    spool.commit(3)
    assert spool.put(b"y" * 10)
    assert drain(spool)[-1] == b"y" * 10


def test_torn_record_at_the_end_is_truncated_and_counted(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1_000_000)
    for i in range(5):
        spool.put(f"whole-{i}".encode())
    spool.close()
    seg = next(tmp_path.glob("*.seg"))
    size = seg.stat().st_size
    with open(seg, "ab") as f:               # a write cut short by a crash
        f.write(HEADER.pack(100, 0, 0) + b"only part")
    again = DiskSpool(tmp_path, 1_000_000)
    assert again.corrupt_records == 1
    assert seg.stat().st_size == size
    assert again.put(b"after")
    assert drain(again) == [f"whole-{i}".encode() for i in range(5)] + [b"after"]


def test_damaged_record_skips_rest_of_its_segment_only(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1_000_000, segment_bytes=60)
    for i in range(9):
        spool.put(f"rec-{i}".encode())              # 16 + 5 bytes: two records per segment
    spool.close()
    segs = sorted(tmp_path.glob("*.seg"))
    data = bytearray(segs[1].read_bytes())
    data[HEADER.size + 1] ^= 0xFF                   # flip a byte of the first payload of segment 2
    segs[1].write_bytes(bytes(data))
    again = DiskSpool(tmp_path, 1_000_000, segment_bytes=60)
    assert again.corrupt_records == 1
    got = drain(again)
    assert got == [b"rec-0", b"rec-1", b"rec-4", b"rec-5", b"rec-6", b"rec-7", b"rec-8"]


def test_one_sensor_per_directory(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, 1000)
    with pytest.raises(SpoolError, match="in use by another falconet process"):
        DiskSpool(tmp_path, 1000)
    first.close()
    DiskSpool(tmp_path, 1000).close()


def test_unwritable_directory_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match=rf"{blocker}/spool: .*make it writable"):
        DiskSpool(blocker / "spool", 1000)


def test_what_put_returned_survives_sigkill(tmp_path: Path) -> None:
    # A real process puts records and is SIGKILLed without closing anything.
    script = textwrap.dedent(f"""
        import os, signal
        from sensor.outputs.spool import DiskSpool
        s = DiskSpool({str(tmp_path)!r}, 10_000_000, segment_bytes=4096)
        for i in range(500):
            assert s.put(b"k%d" % i)
        s.peek(100, 0)
        s.commit(100)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], timeout=60)
    assert proc.returncode == -9
    spool = DiskSpool(tmp_path, 10_000_000, segment_bytes=4096)
    assert drain(spool) == [b"k%d" % i for i in range(100, 500)]
    assert os.path.exists(tmp_path / "cursor")
