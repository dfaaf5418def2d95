"""One output channel: a store (memory queue or disk spool), a worker thread, and a transport.

    engine ──submit──► store ──peek──► worker ──send──► transport (stdout, file, http, fluent...)
                         ▲                                  │
                         └──────────── commit ◄─── delivered┘

`submit` never blocks: a full store drops the alert and counts it (`drops["queue_full"]` or
`drops["spool_full"]`). With a memory queue the alert object waits and is encoded by the worker;
with a spool it is encoded at once and written to disk (so what `submit` accepted survives the
sensor being killed). The worker delivers the oldest alerts in batches; a failed delivery is
retried in order with a growing pause, while new alerts wait behind it. Nothing leaves the store
before its transport has delivered it, except what the transport rejects for good (an HTTP 400),
which is counted as `drops["rejected"]`. At shutdown the worker keeps delivering for up to
`shutdown_timeout`; what a memory queue still holds then is counted as `drops["shutdown"]`, what a
spool holds stays on disk for the next start.

A spool's disk can fail (full, read-only, I/O errors). Such store errors are retried, never fatal:
alerts the spool cannot take wait in memory (up to `hold_max`, beyond that they are dropped and
counted as `drops["store_error"]`) and go to the spool, in order, once it takes writes again; a
cursor that could not be written is written again at the next commit. The worker thread itself is
supervised: an unexpected exception restarts it after a pause (`restarts`). A worker that stopped
all the same (a BaseException) makes the channel `dead`, which /healthz and /metrics show.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

from sensor.alert import Alert
from sensor.outputs.queue import MemoryQueue
from sensor.outputs.spool import DiskSpool, SpoolError

log = logging.getLogger("falconet.outputs")


class DeliveryError(Exception):
    """A retryable failure; the first `delivered` records of the batch were done with before it
    (`rejected` of them refused for good, the others delivered)."""

    def __init__(self, message: str, delivered: int = 0, rejected: int = 0) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.rejected = rejected


class Transport(Protocol):
    """Where a channel's records go. `send` delivers all of `records` or raises DeliveryError."""

    name: str

    def send(self, records: list[bytes]) -> int:
        """Deliver in order; return how many were rejected for good (never to be retried)."""

    def reopen(self) -> None:
        """Reopen files (SIGUSR1, after log rotation). Called from the worker thread."""

    def close(self) -> None:
        """Release connections, files and processes."""


Encoder = Callable[[Alert], bytes]


class Channel:
    """A store, a transport and the worker thread that moves alerts from one to the other."""

    def __init__(self, transport: Transport, encode: Encoder, store: MemoryQueue | DiskSpool, *,
                 batch_max: int = 100, retry_initial: float = 0.5, retry_max: float = 30.0,
                 hold_max: int = 10_000) -> None:
        self.name = transport.name
        self.transport = transport
        self.encode = encode
        self.store = store
        self.spooled = isinstance(store, DiskSpool)
        self.batch_max = batch_max
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.sent = 0
        self.errors = 0
        self.drops: dict[str, int] = {}
        self._drops_lock = threading.Lock()
        self.last_error = ""
        self.restarts = 0               # worker restarts after an unexpected exception
        self.store_errors = 0           # failed spool reads and writes (each retried)
        self._failing_since = 0.0
        self._store_failing_since = 0.0
        # Encoded alerts the spool could not take (a disk error), oldest first; they go to the
        # spool before anything newer.
        self._held: deque[bytes] = deque()
        self._held_lock = threading.Lock()
        self.hold_max = hold_max
        self._started = False
        self._stop = threading.Event()
        self._deadline = 0.0
        self._reopen = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"output-{self.name}", daemon=True)

    # -- engine side -----------------------------------------------------------------------------

    def submit(self, alert: Alert) -> None:
        """Queue one alert; never blocks. Drops (counted) when the store is full."""
        if self.spooled:
            try:
                record = self.encode(alert)
            except Exception as e:            # a bug in a serializer must not stop the engine
                self._drop("encode_error", f"cannot encode alert {alert.uuid}: {e!r}")
                return
            with self._held_lock:
                if self._held:               # behind alerts that wait for the disk: keep the order
                    self._hold(record)
                    return
                try:
                    accepted = self.store.put(record)
                except SpoolError as e:
                    self._store_failed(e)
                    self._hold(record)
                    return
            if not accepted:
                self._drop("spool_full", f"spool {self.store.last_error}")   # type: ignore[union-attr]
                return
        elif not cast(MemoryQueue, self.store).put(alert):
            self._drop("queue_full", f"queue full ({self.store.capacity} alerts)")  # type: ignore[union-attr]
            return
        self._idle.clear()

    def _hold(self, record: bytes) -> None:
        # Called with _held_lock held.
        if len(self._held) >= self.hold_max:
            self._drop("store_error", f"the spool cannot be written ({self.last_error}) and {self.hold_max} "
                                      f"alerts already wait in memory")
            return
        self._held.append(record)
        self._idle.clear()

    def _drain_held(self) -> None:
        """Move held alerts into the spool, oldest first, while it takes them (worker thread)."""
        with self._held_lock:
            while self._held:
                try:
                    accepted = self.store.put(self._held[0])
                except SpoolError as e:
                    self._store_failed(e)
                    return
                if not accepted:
                    return                   # full: they wait for deliveries to make room
                self._held.popleft()
        self._store_ok()

    def _drop(self, reason: str, why: str) -> None:
        with self._drops_lock:          # submit runs on several threads (engine, response, internal)
            first = reason not in self.drops
            self.drops[reason] = self.drops.get(reason, 0) + 1
        if first:
            log.error("output %s: dropping alerts: %s (counted in falconet_output_drops_total)",
                      self.name, why)

    # -- control -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def reopen(self) -> None:
        """Ask the worker to reopen its files before its next write (safe from a signal handler)."""
        self._reopen.set()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was delivered; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0 and self._idle.is_set():
                return True
            time.sleep(0.01)
        return self.pending() == 0

    def pending(self) -> int:
        """Alerts waiting for delivery (in the store, and in memory while the spool fails)."""
        return self.store.depth() + len(self._held)

    @property
    def dead(self) -> bool:
        """The worker stopped while the channel is open: nothing is delivered until a restart."""
        return self._started and not self._stop.is_set() and not self._thread.is_alive()

    def close(self, timeout: float, keep: bool = False) -> list[Alert]:
        """Deliver what can be delivered within `timeout`, then stop the worker and the transport.

        What a memory queue still holds is counted as dropped, or with `keep` returned (a reload
        hands it to the new channel); a spool keeps its alerts on disk either way.
        """
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self.store.wake()
        if self._thread.is_alive():
            self._thread.join(timeout + 0.5)
        if self._thread.is_alive():
            # Stuck in a send (a peer that does not answer): closing the transport aborts it.
            self._call(self.transport.close, "close")
            self._thread.join(5)
        left: list[Alert] = []
        if not self.spooled:
            left = self.store.take_all()                       # type: ignore[union-attr]
            if left and not keep:
                with self._drops_lock:
                    self.drops["shutdown"] = self.drops.get("shutdown", 0) + len(left)
                log.error("output %s: %d alerts could not be delivered before exit (%s)",
                          self.name, len(left), self.last_error or "timeout")
                left = []
        else:
            self._drain_held()
            if self._held:
                with self._drops_lock:
                    self.drops["store_error"] = self.drops.get("store_error", 0) + len(self._held)
                log.error("output %s: %d alerts the spool could not take (%s) are lost at exit", self.name,
                          len(self._held), self.last_error)
                self._held.clear()
            if self.store.depth():
                log.warning("output %s: %d alerts stay in the spool %s and are delivered %s", self.name,
                            self.store.depth(), self.store.dir,           # type: ignore[union-attr]
                            "by the reloaded channel" if keep else "at the next start")
        self._call(self.transport.close, "close")
        self.store.close()
        return left

    def drop_counts(self) -> dict[str, int]:
        with self._drops_lock:
            return dict(self.drops)

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for /metrics and the summary line."""
        out: dict[str, Any] = {
            "sent": self.sent, "errors": self.errors, "drops": self.drop_counts(),
            "pending": self.pending(), "oldest_age": self.store.oldest_age(),
            "spooled": self.spooled, "failing": bool(self._failing_since or self._store_failing_since),
            "last_error": self.last_error, "up": not self.dead, "restarts": self.restarts,
            "store_errors": self.store_errors,
        }
        if self.spooled:
            spool: DiskSpool = self.store                       # type: ignore[assignment]
            out["spool_bytes"] = spool.bytes_used()
            out["spool_corrupt"] = spool.corrupt_records
        return out

    # -- worker ------------------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Run the worker; restart it after an unexpected exception, with a growing pause."""
        pause = self.retry_initial
        while True:
            try:
                self._work()
                return
            except Exception as e:
                self.restarts += 1
                self.errors += 1
                self.last_error = f"worker: {type(e).__name__}: {e}"
                log.error("output %s: the worker failed (%s); restarting it in %.1fs", self.name,
                          self.last_error, pause, exc_info=log.isEnabledFor(logging.DEBUG))
                if self._pause(pause):
                    return
                pause = min(pause * 2, self.retry_max)
            except BaseException as e:
                self.last_error = f"worker stopped: {type(e).__name__}: {e}"
                log.critical("output %s: the worker stopped (%s); this channel delivers nothing until "
                             "the sensor restarts", self.name, self.last_error)
                return

    def _pause(self, seconds: float) -> bool:
        """Wait before a retry; True when stopping and out of time."""
        if self._stop.is_set():
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(seconds, remaining))
            return False
        self._stop.wait(seconds)                # shutdown starts the last attempts at once
        return False

    def _work(self) -> None:
        pause = self.retry_initial
        while True:
            if self._held:
                self._drain_held()
            try:
                items = self.store.peek(self.batch_max, 0.2)
            except (SpoolError, OSError) as e:     # the spool cannot be read: wait and read again
                self._store_failed(e)
                if self._pause(pause):
                    return
                pause = min(pause * 2, self.retry_max)
                continue
            pause = self.retry_initial
            if self._reopen.is_set():         # after the wait: what SIGUSR1 preceded goes to the new file
                self._reopen.clear()
                self._call(self.transport.reopen, "reopen")
            if not items:
                self._sync_store()
                if not self._held:
                    self._idle.set()
                if self._stop.is_set() and (not self._held or time.monotonic() >= self._deadline):
                    return
                continue
            # A spool holds encoded records, a memory queue the alerts themselves.
            records = items if self.spooled else self._encode_batch(cast("list[Alert]", items))
            if not self._deliver(records):
                return                  # stopping and out of time: the rest stays (spool) or counts
            try:
                self.store.commit(len(items))
            except (SpoolError, OSError) as e:
                # The delivered alerts are committed in memory; the cursor is written again later.
                self._store_failed(e)
            else:
                if not self._held:
                    self._store_ok()
            if not self.pending():
                self._idle.set()

    def _sync_store(self) -> None:
        if self.spooled and self._store_failing_since:
            try:
                self.store.sync()                      # type: ignore[union-attr]
            except SpoolError as e:
                self._store_failed(e)

    def _store_failed(self, e: BaseException) -> None:
        self.store_errors += 1
        self.last_error = f"spool: {e}"
        if not self._store_failing_since:
            self._store_failing_since = time.monotonic()
            log.error("output %s: the spool cannot be written or read: %s; retrying (alerts it cannot take "
                      "wait in memory meanwhile, up to %d)", self.name, e, self.hold_max)

    def _store_ok(self) -> None:
        if self._store_failing_since:
            log.warning("output %s: the spool works again after %.1fs of errors", self.name,
                        time.monotonic() - self._store_failing_since)
            self._store_failing_since = 0.0

    def _encode_batch(self, alerts: list[Alert]) -> list[bytes]:
        out = []
        for alert in alerts:
            try:
                out.append(self.encode(alert))
            except Exception as e:
                self._drop("encode_error", f"cannot encode alert {alert.uuid}: {e!r}")
        return out

    def _deliver(self, records: list[bytes]) -> bool:
        """Send until delivered (True), or until stopping and past the deadline (False)."""
        pause = self.retry_initial
        while records:
            try:
                rejected = self.transport.send(records)
            except DeliveryError as e:
                records = records[e.delivered:]
                self._count_rejected(e.rejected)
                self.sent += e.delivered - e.rejected
                self._failed(str(e))
            except Exception as e:          # an unexpected transport bug is retried, not fatal
                self._failed(f"{type(e).__name__}: {e}")
            else:
                self._count_rejected(rejected)
                self.sent += len(records) - rejected
                if self._failing_since:
                    log.warning("output %s: delivering again after %.1fs of failures", self.name,
                                time.monotonic() - self._failing_since)
                    self._failing_since = 0.0
                return True
            if self._pause(pause):
                return False
            pause = min(pause * 2, self.retry_max)
            if self._reopen.is_set():
                self._reopen.clear()
                self._call(self.transport.reopen, "reopen")
        return True

    def _count_rejected(self, n: int) -> None:
        if n:
            with self._drops_lock:
                self.drops["rejected"] = self.drops.get("rejected", 0) + n

    def _failed(self, why: str) -> None:
        self.errors += 1
        self.last_error = why
        if not self._failing_since:
            self._failing_since = time.monotonic()
            log.error("output %s: delivery failed: %s; retrying (alerts wait in the %s)", self.name,
                      why, "spool" if self.spooled else "queue")

    def _call(self, fn: Callable[[], None], what: str) -> None:
        try:
            fn()
        except Exception as e:
            self.errors += 1
            self.last_error = f"{what}: {e}"
            log.error("output %s: %s failed: %s", self.name, what, e)
