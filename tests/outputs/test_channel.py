"""A channel's worker: order, retries, drops counted, shutdown, over a memory queue or a spool."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sensor.outputs.channel import Channel, DeliveryError
from sensor.outputs.queue import MemoryQueue
from sensor.outputs.spool import DiskSpool

from .conftest import make_alert, wait_until


class Destination:
    """A transport whose availability the test switches; it records what it accepted."""

    name = "dest"

    def __init__(self) -> None:
        self.up = True
        self.got: list[bytes] = []
        self.attempts = 0
        self.fail_after = None           # deliver this many of the next batch, then fail
        self.reject: set[bytes] = set()
        self.reopened = 0
        self.closed = False
        self.block = threading.Event()
        self.block.set()

    def send(self, records: list[bytes]) -> int:
        self.block.wait()
        self.attempts += 1
        if not self.up:
            raise DeliveryError("destination down")
        if self.fail_after is not None:
            n, self.fail_after = self.fail_after, None
            self.got.extend(records[:n])
            raise DeliveryError("cut mid-batch", delivered=n)
        rejected = [r for r in records if r in self.reject]
        self.got.extend(r for r in records if r not in self.reject)
        return len(rejected)

    def reopen(self) -> None:
        self.reopened += 1

    def close(self) -> None:
        self.closed = True


def encode(alert: Any) -> bytes:
    return str(alert.output_fields["proc.pid"]).encode()


def channel(store: Any, dest: Destination | None = None) -> tuple[Channel, Destination]:
    dest = dest or Destination()
    ch = Channel(dest, encode, store, batch_max=10, retry_initial=0.01, retry_max=0.05)
    ch.start()
    return ch, dest


@pytest.fixture(params=["memory", "spool"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryQueue(1000) if request.param == "memory" else DiskSpool(tmp_path, 10_000_000)


def test_delivers_in_order_through_an_outage(store: Any) -> None:
    ch, dest = channel(store)
    dest.up = False
    for i in range(100):
        ch.submit(make_alert(i))
    assert wait_until(lambda: dest.attempts >= 3)
    assert dest.got == []
    assert ch.stats()["pending"] == 100 and ch.stats()["failing"]
    dest.up = True
    assert ch.flush(10)
    assert dest.got == [str(i).encode() for i in range(100)]
    st = ch.stats()
    assert st["sent"] == 100 and st["errors"] >= 3 and st["drops"] == {} and not st["failing"]
    ch.close(1)
    assert dest.closed


def test_partial_delivery_is_not_repeated(store: Any) -> None:
    ch, dest = channel(store)
    dest.fail_after = 4
    for i in range(10):
        ch.submit(make_alert(i))
    assert ch.flush(10)
    assert dest.got == [str(i).encode() for i in range(10)]
    ch.close(1)


def test_rejected_for_good_is_dropped_and_counted(store: Any) -> None:
    ch, dest = channel(store)
    dest.reject = {b"3", b"5"}
    for i in range(8):
        ch.submit(make_alert(i))
    assert ch.flush(10)
    assert dest.got == [b"0", b"1", b"2", b"4", b"6", b"7"]
    assert ch.stats()["drops"] == {"rejected": 2} and ch.stats()["sent"] == 6
    ch.close(1)


def test_full_memory_queue_drops_and_counts() -> None:
    ch, dest = channel(MemoryQueue(5))
    dest.block.clear()                       # the worker is stuck in a send
    for i in range(20):
        ch.submit(make_alert(i))
    # one batch is with the worker (still in the queue until delivered), the queue holds 5 in all
    assert ch.stats()["drops"] == {"queue_full": 15}
    dest.block.set()
    assert ch.flush(10)
    assert dest.got == [str(i).encode() for i in range(5)]
    ch.close(1)


def test_full_spool_drops_and_counts(tmp_path: Path) -> None:
    ch, dest = channel(DiskSpool(tmp_path, max_bytes=5 * (16 + 2)))
    dest.up = False
    for i in range(10, 20):
        ch.submit(make_alert(i))
    assert ch.stats()["drops"] == {"spool_full": 5}
    dest.up = True
    assert ch.flush(10)
    assert dest.got == [str(i).encode() for i in range(10, 15)]
    ch.close(1)


def test_encoder_failure_is_counted_not_raised(store: Any) -> None:
    def picky(alert: Any) -> bytes:
        if alert.output_fields["proc.pid"] == 2:
            raise ValueError("cannot serialize")
        return encode(alert)

    dest = Destination()
    ch = Channel(dest, picky, store, retry_initial=0.01)
    ch.start()
    for i in range(4):
        ch.submit(make_alert(i))
    assert ch.flush(10)
    assert dest.got == [b"0", b"1", b"3"]
    assert ch.stats()["drops"] == {"encode_error": 1}
    ch.close(1)


def test_shutdown_counts_what_a_queue_could_not_deliver() -> None:
    ch, dest = channel(MemoryQueue(100))
    dest.up = False
    for i in range(7):
        ch.submit(make_alert(i))
    started = time.monotonic()
    ch.close(0.3)
    assert time.monotonic() - started < 5
    assert ch.stats()["drops"] == {"shutdown": 7}


def test_shutdown_keeps_spooled_alerts_for_the_next_start(tmp_path: Path) -> None:
    ch, dest = channel(DiskSpool(tmp_path, 10_000_000))
    dest.up = False
    for i in range(7):
        ch.submit(make_alert(i))
    ch.close(0.3)
    assert ch.stats()["drops"] == {}
    ch2, dest2 = channel(DiskSpool(tmp_path, 10_000_000))
    assert ch2.flush(10)
    assert dest2.got == [str(i).encode() for i in range(7)]
    ch2.close(1)


def test_shutdown_delivers_what_it_can_in_time(store: Any) -> None:
    ch, dest = channel(store)
    dest.up = False
    for i in range(30):
        ch.submit(make_alert(i))
    threading.Timer(0.2, lambda: setattr(dest, "up", True)).start()
    ch.close(5)
    assert dest.got == [str(i).encode() for i in range(30)]
    assert ch.stats()["drops"] == {}


def test_reopen_runs_on_the_worker(store: Any) -> None:
    ch, dest = channel(store)
    ch.reopen()
    assert wait_until(lambda: dest.reopened == 1)
    ch.close(1)


# -- a full disk must not kill a channel (security review, finding 9) ------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 1 MiB tmpfs: a real file system that runs out of space (ENOSPC)."""
    if os.geteuid() != 0:
        if os.environ.get("FALCONET_STRICT") == "1":
            pytest.fail("needs root to mount a tmpfs under FALCONET_STRICT=1")
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "falconet-test", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_retried_and_nothing_is_lost(small_disk: Path) -> None:
    dest = Destination()
    dest.up = False
    ch, dest = channel(DiskSpool(small_disk / "spool", 10_000_000), dest)
    for i in range(25):
        ch.submit(make_alert(i))
    assert wait_until(lambda: dest.attempts >= 1)
    filler = fill(small_disk)
    dest.up = True                      # delivered, then the cursor cannot be written: ENOSPC
    assert wait_until(lambda: len(dest.got) == 25)
    assert wait_until(lambda: ch.stats()["store_errors"] >= 1)
    for i in range(25, 60):              # the spool cannot take these: they wait in memory
        ch.submit(make_alert(i))
    time.sleep(0.3)
    st = ch.stats()
    assert st["up"] and st["restarts"] == 0 and st["failing"] and st["drops"] == {}
    assert "No space left on device" in st["last_error"] and st["pending"] == 35
    filler.unlink()                      # space again: the held alerts go to the spool, then out
    assert ch.flush(10)
    assert dest.got == [str(i).encode() for i in range(60)]
    assert ch.stats()["drops"] == {} and not ch.stats()["failing"]
    ch.close(1)
    assert (small_disk / "spool" / "cursor").exists()


def test_what_the_disk_cannot_take_beyond_hold_max_is_counted(small_disk: Path) -> None:
    dest = Destination()
    ch = Channel(dest, encode, DiskSpool(small_disk / "spool", 10_000_000), batch_max=10,
                 retry_initial=0.01, retry_max=0.05, hold_max=5)
    ch.start()
    fill(small_disk)
    for i in range(8):
        ch.submit(make_alert(i))
    assert ch.drop_counts() == {"store_error": 3} and ch.stats()["pending"] == 5
    ch.close(0.2)
    assert ch.drop_counts() == {"store_error": 8}     # memory is gone at exit: counted, not silent


def test_a_worker_that_fails_is_restarted() -> None:
    dest = Destination()
    calls = {"n": 0}
    real = dest.send

    def flaky(records: list[bytes]) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in a transport")
        return real(records)

    dest.send = flaky                    # type: ignore[method-assign]
    store = MemoryQueue(100)
    ch, _ = channel(store, dest)
    orig_commit = store.commit
    boom = {"once": True}

    def commit(n: int) -> None:
        if boom.pop("once", False):
            raise ValueError("a bug in a store")
        orig_commit(n)

    store.commit = commit                # type: ignore[method-assign]
    for i in range(5):
        ch.submit(make_alert(i))
    assert ch.flush(10)
    assert ch.stats()["restarts"] == 1 and ch.stats()["up"]
    assert dest.got[-5:] == [str(i).encode() for i in range(5)]
    ch.close(1)
