"""The outputs as one sink: every alert goes to every enabled channel, after flood control.

`Outputs.submit` is what the engine (and the response worker, and the runtime's internal alerts)
calls; it never blocks. A housekeeping thread closes flood-control windows and reports drops: when
any channel dropped alerts since the last report, an internal alert "Falconet internal: alerts
dropped" names the channels, reasons and counts (at most once per `report_interval`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from sensor.alert import Alert, add_static_fields
from sensor.outputs.channel import Channel
from sensor.outputs.flood import FloodControl
from sensor.outputs.internal import ALERTS_DROPPED, internal_alert

log = logging.getLogger("falconet.outputs")


class Outputs:
    """Fans alerts out to channels; reports what they could not deliver."""

    def __init__(self, channels: Sequence[Channel], *, static_fields: dict[str, Any] | None = None,
                 hostname: str = "", report_interval: float = 60.0, shutdown_timeout: float = 10.0) -> None:
        self.channels = list(channels)
        self.static_fields = dict(static_fields or {})
        self.hostname = hostname
        self.report_interval = report_interval
        self.shutdown_timeout = shutdown_timeout
        self.flood: FloodControl | None = None
        self.submitted = 0
        self.orphaned = 0           # queued for a channel a reload turned off
        self._reported: dict[str, int] = {}
        self._last_report = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._housekeeping, name="outputs", daemon=True)
        self._closed = False

    def set_flood_control(self, flood: FloodControl) -> None:
        self.flood = flood

    def start(self) -> Outputs:
        for ch in self.channels:
            ch.start()
        self._thread.start()
        return self

    def submit(self, alert: Alert) -> None:
        """Hand one alert to every channel. Never blocks; safe from any thread."""
        if self.static_fields:
            add_static_fields(alert, self.static_fields)
        if self.flood is not None and not self.flood.admit(alert):
            return
        self.submitted += 1
        for ch in self.channels:
            ch.submit(alert)

    __call__ = submit

    def reopen(self) -> None:
        """Reopen file outputs (SIGUSR1). Safe from a signal handler: the workers do the reopening."""
        for ch in self.channels:
            ch.reopen()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every channel delivered everything submitted so far; False on timeout."""
        deadline = time.monotonic() + timeout
        return all(ch.flush(max(0.0, deadline - time.monotonic())) for ch in self.channels)

    def close(self, timeout: float | None = None, keep: bool = False) -> dict[str, list[Alert]]:
        """Emit pending flood summaries and drop reports, deliver what can be delivered, stop.

        With `keep` (a reload), what the memory queues still hold is returned by channel name for
        `adopt`, instead of being counted as dropped.
        """
        if self._closed:
            return {}
        self._closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.flood is not None:
            self.flood.close()
        self._report_drops(force=True)
        timeout = self.shutdown_timeout if timeout is None else timeout
        left: dict[str, list[Alert]] = {}

        def close(ch: Channel) -> None:
            left[ch.name] = ch.close(timeout, keep)

        closers = [threading.Thread(target=close, args=(ch,), daemon=True) for ch in self.channels]
        for t in closers:
            t.start()
        for t in closers:
            t.join()
        return {name: alerts for name, alerts in left.items() if alerts}

    def adopt(self, left: dict[str, list[Alert]]) -> None:
        """Queue alerts a previous Outputs (before a reload) had not delivered, channel by channel."""
        mine = {ch.name: ch for ch in self.channels}
        for name, alerts in left.items():
            ch = mine.get(name)
            if ch is None:
                self.orphaned += len(alerts)
                log.error("output %s is off after the reload: %d alerts it had queued are dropped",
                          name, len(alerts))
                continue
            for alert in alerts:
                ch.submit(alert)

    def dead_channels(self) -> list[str]:
        """Channels whose worker stopped: they deliver nothing until the sensor restarts."""
        return [ch.name for ch in self.channels if ch.dead]

    def drops(self) -> int:
        """Alerts dropped by every channel, all reasons."""
        return self.orphaned + sum(sum(ch.drop_counts().values()) for ch in self.channels)

    def stats(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "channels": {ch.name: ch.stats() for ch in self.channels},
            "flood": self.flood.stats() if self.flood is not None else None,
            "drops": self.drops(),
        }

    def _housekeeping(self) -> None:
        while not self._stop.wait(1.0):
            try:
                if self.flood is not None:
                    self.flood.expire()
                if time.monotonic() - self._last_report >= self.report_interval:
                    self._report_drops()
            except Exception:           # housekeeping must outlive a bug in one pass
                log.exception("outputs housekeeping failed")

    def _report_drops(self, force: bool = False) -> None:
        now: dict[str, int] = {}
        for ch in self.channels:
            for reason, n in ch.drop_counts().items():
                now[f"{ch.name}.{reason}"] = n
        new = {k: n - self._reported.get(k, 0) for k, n in now.items() if n > self._reported.get(k, 0)}
        if not new:
            return
        self._reported = now
        self._last_report = time.monotonic()
        total = sum(new.values())
        detail = ", ".join(f"{k}={n}" for k, n in sorted(new.items()))
        fields = {f"falconet.drops.{k}": n for k, n in new.items()}
        fields["falconet.drops.total"] = total
        alert = internal_alert(ALERTS_DROPPED, "Error",
                               f"{total} alerts could not be queued or delivered ({detail})",
                               fields, hostname=self.hostname)
        log.error("%s", alert.output)
        if not force:
            self.submit(alert)
        else:
            # At shutdown the report still goes out if a channel has room for it.
            for ch in self.channels:
                ch.submit(alert)
