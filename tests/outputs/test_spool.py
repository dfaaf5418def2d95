"""The disk spool: order, bounds, crash recovery, one sensor per directory."""

from __future__ import annotations

import os
import stat
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


# -- recovery does not trust the cursor (security review, finding 17) ------------------------------


def spool_of(tmp_path: Path, n: int = 9, segment_bytes: int = 60) -> list[bytes]:
    """A stopped spool of `n` records, two per segment; the records."""
    spool = DiskSpool(tmp_path, 1_000_000, segment_bytes=segment_bytes)
    records = [f"rec-{i}".encode() for i in range(n)]
    for r in records:
        spool.put(r)
    spool.close()
    return records


@pytest.mark.parametrize(("cursor", "says"), [
    ("99 0\n", "points past the newest segment"),
    ("0 999999\n", "points past the end of segment 0"),
    ("0 5\n", "points inside a record"),
    ("-1 -5\n", "is negative"),
    ("-3 0\n", "is negative"),
])
def test_a_cursor_that_does_not_fit_the_files_loses_and_invents_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, cursor: str, says: str) -> None:
    records = spool_of(tmp_path)
    (tmp_path / "cursor").write_text(cursor)
    with caplog.at_level("ERROR", logger="falconet.outputs"):
        again = DiskSpool(tmp_path, 1_000_000, segment_bytes=60)
    assert drain(again) == records                    # every record, from the oldest segment
    assert [r.getMessage() for r in caplog.records if says in r.getMessage()], caplog.text
    again.close()


def test_older_segments_before_the_cursor_are_delivered_not_deleted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    records = spool_of(tmp_path)
    (tmp_path / "cursor").write_text("2 0\n")         # says segments 0 and 1 are delivered; they are there
    with caplog.at_level("ERROR", logger="falconet.outputs"):
        again = DiskSpool(tmp_path, 1_000_000, segment_bytes=60)
    assert drain(again) == records
    assert "older segments from 0 on are still there" in caplog.text


def test_a_valid_cursor_is_followed(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1_000_000, segment_bytes=60)
    for i in range(9):
        spool.put(f"rec-{i}".encode())
    spool.peek(3, 0)
    spool.commit(3)                                    # segment 0 gone, cursor inside segment 1
    spool.close()
    assert (tmp_path / "cursor").read_text() == "1 21\n"
    again = DiskSpool(tmp_path, 1_000_000, segment_bytes=60)
    assert drain(again) == [f"rec-{i}".encode() for i in range(3, 9)]


def test_a_zero_filled_tail_is_cut_not_read_as_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # After a crash some file systems keep a file's new size but not the data: zeros. A zero
    # header is length 0 with crc32(b"") == 0, which read as an endless run of empty records.
    records = spool_of(tmp_path, 3, segment_bytes=1000)
    seg = next(tmp_path.glob("*.seg"))
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(bytes(4096))
    with caplog.at_level("ERROR", logger="falconet.outputs"):
        again = DiskSpool(tmp_path, 1_000_000, segment_bytes=1000)
    assert again.depth() == 3 and seg.stat().st_size == size
    assert drain(again) == records
    assert again.corrupt_records == 1 and again.corrupt_bytes == 4096
    assert f"zero-filled tail of 4096 bytes at {seg.name}:{size} truncated" in caplog.text


def test_an_empty_record_cannot_be_spooled(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1000)
    with pytest.raises(ValueError, match="cannot be empty"):
        spool.put(b"")


# -- the spool directory is the sensor's own (security review, finding 11) --------------------------

NOBODY = 65534


def as_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("FALCONET_STRICT") == "1":
            pytest.fail("needs root (chown to another user) under FALCONET_STRICT=1")
        pytest.skip("needs root to hand a directory to another user")


def test_a_directory_another_user_prepared_is_refused_and_its_symlinks_not_followed(tmp_path: Path) -> None:
    # A local user prepares the spool directory with cursor.tmp and the first segment pointing at a
    # file of root's; a sensor that used the directory would truncate and append to that file.
    as_root()
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    trap = tmp_path / "state" / "spool" / "fluent"
    trap.mkdir(parents=True)
    os.chown(trap, NOBODY, NOBODY)
    os.chmod(trap, 0o777)
    for name in ("cursor.tmp", "00000000000000000000.seg", "lock"):
        os.symlink(victim, trap / name)
    with pytest.raises(SpoolError, match=rf"spool directory {trap} belongs to nobody \(uid {NOBODY}\), who "
                                         r"could replace the files written there"):
        spool = DiskSpool(trap, 1_000_000)
        spool.put(b"alert")
        spool.peek(1, 0)
        spool.commit(1)
    assert victim.read_text() == "root's file\n"


def test_a_world_writable_directory_or_parent_is_refused(tmp_path: Path) -> None:
    as_root()
    ours = tmp_path / "open"
    ours.mkdir(mode=0o700)
    os.chmod(ours, 0o777)
    with pytest.raises(SpoolError, match=r"is writable by others \(mode 0777\)"):
        DiskSpool(ours, 1000)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(SpoolError, match=rf"its parent {theirs} belongs to nobody \(uid {NOBODY}\)"):
        DiskSpool(theirs / "spool", 1000)


def test_a_world_writable_parent_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pod = tmp_path / "emptydir"              # Kubernetes makes an emptyDir 0777
    pod.mkdir()
    os.chmod(pod, 0o777)
    with caplog.at_level("WARNING", logger="falconet"):
        DiskSpool(pod / "spool" / "fluent", 1000).close()
    assert f"its parent {pod} is writable by every user (mode 0777, no sticky bit)" in caplog.text


def test_symlinks_inside_the_spool_are_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    os.symlink(victim, spool_dir / "00000000000000000000.seg")
    with pytest.raises(SpoolError, match=r"00000000000000000000\.seg is a symbolic link"):
        DiskSpool(spool_dir, 1000)
    os.unlink(spool_dir / "00000000000000000000.seg")
    os.symlink(victim, spool_dir / "cursor")
    with pytest.raises(SpoolError, match="cursor is a symbolic link"):
        DiskSpool(spool_dir, 1000)
    assert victim.read_text() == "keep\n"


def test_files_are_private_and_temp_files_exclusive(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        spool = DiskSpool(tmp_path / "s", 1_000_000)
        spool.put(b"a")
        spool.put(b"b")
        # A leftover cursor.tmp (a crash, or someone's symlink) is not reused.
        os.symlink(tmp_path / "elsewhere", tmp_path / "s" / "cursor.tmp")
        spool.peek(1, 0)
        spool.commit(1)
        spool.close()
    finally:
        os.umask(old)
    assert not (tmp_path / "elsewhere").exists()
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in (tmp_path / "s").iterdir() if not p.is_symlink()}
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    again = DiskSpool(tmp_path / "s", 1_000_000)
    assert drain(again) == [b"b"]
    assert not (tmp_path / "s" / "cursor.tmp").is_symlink()    # leftovers are removed at open
