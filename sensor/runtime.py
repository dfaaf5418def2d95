"""Wires sources → engine → outputs (and response) for `falconet run` and `falconet replay`.

One engine thread: it polls every source in turn, runs each event through the ruleset and submits
the alerts to the outputs, which never block it (sensor/outputs/ queues per channel).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sensor.event import Alert
from sensor.sources import Source


@dataclass
class Summary:
    """What a run did, for the closing line and for tests."""

    events: int = 0
    alerts: int = 0
    seconds: float = 0.0
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        drops = sum(s.get("drops", 0) for s in self.by_source.values())
        return (f"Events detected: {self.alerts}; events processed: {self.events}; "
                f"drops: {drops}; elapsed: {self.seconds:.1f}s")


class Runtime:
    """Drives sources through a ruleset into a sink of alerts until stopped."""

    def __init__(self, ruleset: Any, sources: Sequence[Source], sink: Callable[[Alert], None]) -> None:
        self.ruleset = ruleset
        self.sources = list(sources)
        self.sink = sink
        self.events = 0
        self.alerts = 0
        self._stop = threading.Event()

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def run(self, duration: float | None = None) -> Summary:
        """Poll until stopped, `duration` seconds have passed, or every source has finished."""
        started = time.monotonic()
        deadline = started + duration if duration else None
        for s in self.sources:
            s.start()
        process = self.ruleset.process
        sink = self.sink
        timeout = 0.2 if len(self.sources) == 1 else 0.02
        try:
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                live = [s for s in self.sources if not s.finished]
                if not live:
                    break
                for s in live:
                    for ev in s.poll(timeout):
                        self.events += 1
                        for alert in process(ev):
                            self.alerts += 1
                            sink(alert)
        finally:
            for s in self.sources:
                s.stop()
        return Summary(events=self.events, alerts=self.alerts, seconds=time.monotonic() - started,
                       by_source={s.name: s.stats() for s in self.sources})
