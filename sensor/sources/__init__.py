"""Event sources. Each one implements the `Source` protocol below; runtime.py drives them.

The runtime's one engine thread calls `poll()` on every started source in turn and runs what it
returns through the rules, so the engine is never shared between threads. A source that receives
events on threads of its own (the audit webhook) hands them over through a bounded queue inside
the source and counts what it had to drop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sensor.event import Event


class Source(Protocol):
    name: str            # "syscall", "k8s_audit_webhook", "k8s_audit_file", "replay"

    def start(self) -> None:
        """Begin producing events (attach probes, bind sockets). Raise FalconetError if impossible."""

    def poll(self, timeout: float) -> Iterable[Event]:
        """Return the events available now, waiting up to `timeout` seconds for the first one."""

    def stop(self) -> None:
        """Stop producing and release resources. Idempotent."""

    def stats(self) -> dict[str, int]:
        """Counters for the summary line and /metrics (events, drops, ...)."""

    @property
    def finished(self) -> bool:
        """True when the source will never produce another event (end of a replay file)."""
