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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sensor.alert import Alert
from sensor.outputs.queue import MemoryQueue
from sensor.outputs.spool import DiskSpool

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
                 batch_max: int = 100, retry_initial: float = 0.5, retry_max: float = 30.0) -> None:
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
        self._failing_since = 0.0
        self._stop = threading.Event()
        self._deadline = 0.0
        self._reopen = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"output-{self.name}", daemon=True)

    # -- engine side -----------------------------------------------------------------------------

    def submit(self, alert: Alert) -> None:
        """Queue one alert; never blocks. Drops (counted) when the store is full."""
        if self.spooled:
            try:
                record = self.encode(alert)
            except Exception as e:            # a bug in a serializer must not stop the engine
                self._drop("encode_error", f"cannot encode alert {alert.uuid}: {e!r}")
                return
            if not self.store.put(record):
                self._drop("spool_full", f"spool {self.store.last_error}")   # type: ignore[union-attr]
                return
        elif not self.store.put(alert):
            self._drop("queue_full", f"queue full ({self.store.capacity} alerts)")  # type: ignore[union-attr]
            return
        self._idle.clear()

    def _drop(self, reason: str, why: str) -> None:
        with self._drops_lock:          # submit runs on several threads (engine, response, internal)
            first = reason not in self.drops
            self.drops[reason] = self.drops.get(reason, 0) + 1
        if first:
            log.error("output %s: dropping alerts: %s (counted in falconet_output_drops_total)",
                      self.name, why)

    # -- control -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def reopen(self) -> None:
        """Ask the worker to reopen its files before its next write (safe from a signal handler)."""
        self._reopen.set()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was delivered; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.store.depth() == 0 and self._idle.is_set():
                return True
            time.sleep(0.01)
        return self.store.depth() == 0

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
        elif self.store.depth():
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
            "pending": self.store.depth(), "oldest_age": self.store.oldest_age(),
            "spooled": self.spooled, "failing": bool(self._failing_since),
            "last_error": self.last_error,
        }
        if self.spooled:
            spool: DiskSpool = self.store                       # type: ignore[assignment]
            out["spool_bytes"] = spool.bytes_used()
            out["spool_corrupt"] = spool.corrupt_records
        return out

    # -- worker ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            items = self.store.peek(self.batch_max, 0.2)
            if self._reopen.is_set():         # after the wait: what SIGUSR1 preceded goes to the new file
                self._reopen.clear()
                self._call(self.transport.reopen, "reopen")
            if not items:
                self._idle.set()
                if self._stop.is_set():
                    return
                continue
            records = items if self.spooled else self._encode_batch(items)
            if not self._deliver(records):
                return                  # stopping and out of time: the rest stays (spool) or counts
            self.store.commit(len(items))
            if not self.store.depth():
                self._idle.set()

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
            if self._stop.is_set():
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(pause, remaining))
            else:
                self._stop.wait(pause)      # shutdown starts the last attempts at once
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
