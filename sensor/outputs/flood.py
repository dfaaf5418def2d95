"""Flood control that loses nothing: identical alerts within a window become one summary alert.

The first alert of a rule and key (the values of `key_fields` in its output fields, or its whole
output text when no key fields are configured) is delivered at once. Identical alerts in the next
`window` seconds are only counted; when the window ends, one internal alert "Falconet internal:
alerts suppressed" carries the rule, the key, the count and the times of the first and last
suppressed alert. Only rules matching `rules` (names with * wildcards) are subject to it.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sensor.alert import Alert, Priority, iso_time
from sensor.outputs.internal import SUPPRESSED, internal_alert

log = logging.getLogger("falconet.outputs")

MAX_KEYS = 100_000      # beyond this many open windows, new keys pass unsuppressed (nothing is lost)


@dataclass(slots=True)
class _Window:
    started: float          # monotonic
    rule: str
    priority: Priority
    tags: list[str]
    key: dict[str, Any]
    suppressed: int = 0
    first_ns: int = 0
    last_ns: int = 0


class FloodControl:
    """Decides which alerts pass; hands summary alerts to `emit` when windows close."""

    def __init__(self, window: float, rules: Sequence[str], key_fields: Sequence[str],
                 emit: Callable[[Alert], None], hostname: str) -> None:
        self.window = window
        self.rules = list(rules)
        self.key_fields = list(key_fields)
        self.emit = emit
        self.hostname = hostname
        self.suppressed = 0
        self.summaries = 0
        self.by_rule: dict[str, int] = {}
        self._windows: dict[tuple[Any, ...], _Window] = {}
        self._applies: dict[str, bool] = {}
        self._lock = threading.Lock()

    def _rule_applies(self, rule: str) -> bool:
        hit = self._applies.get(rule)
        if hit is None:
            hit = self._applies[rule] = any(fnmatch.fnmatchcase(rule, p) for p in self.rules)
        return hit

    def admit(self, alert: Alert) -> bool:
        """True: deliver the alert now. False: it was counted in its window's summary."""
        if alert.source == "internal" or not self._rule_applies(alert.rule):
            return True
        if self.key_fields:
            key = (alert.rule, *(repr(alert.output_fields.get(f)) for f in self.key_fields))
        else:
            key = (alert.rule, alert.output)
        now = time.monotonic()
        ended = None
        with self._lock:
            w = self._windows.get(key)
            if w is not None and now - w.started < self.window:
                w.suppressed += 1
                w.first_ns = w.first_ns or alert.time_ns
                w.last_ns = alert.time_ns
                self.suppressed += 1
                self.by_rule[alert.rule] = self.by_rule.get(alert.rule, 0) + 1
                return False
            if w is not None:
                ended = self._windows.pop(key)
            if len(self._windows) < MAX_KEYS:
                fields = ({f: alert.output_fields.get(f) for f in self.key_fields} if self.key_fields
                          else {"output": alert.output})
                self._windows[key] = _Window(now, alert.rule, alert.priority, list(alert.tags), fields)
        if ended is not None and ended.suppressed:
            self._summarize(ended)
        return True

    def expire(self) -> None:
        """Close the windows that have ended, emitting their summaries (called every second)."""
        now = time.monotonic()
        with self._lock:
            ended = [k for k, w in self._windows.items() if now - w.started >= self.window]
            closed = [self._windows.pop(k) for k in ended]
        for w in closed:
            if w.suppressed:
                self._summarize(w)

    def close(self) -> None:
        """Emit the summaries of every open window (at shutdown: the counts are not lost)."""
        with self._lock:
            closed = list(self._windows.values())
            self._windows.clear()
        for w in closed:
            if w.suppressed:
                self._summarize(w)

    def _summarize(self, w: _Window) -> None:
        self.summaries += 1
        key_text = ", ".join(f"{k}={v}" for k, v in w.key.items()) if self.key_fields else "same output"
        fields: dict[str, Any] = {
            "falconet.suppressed.rule": w.rule,
            "falconet.suppressed.count": w.suppressed,
            "falconet.suppressed.window_sec": self.window,
            "falconet.suppressed.first_time": iso_time(w.first_ns),
            "falconet.suppressed.last_time": iso_time(w.last_ns),
            **({f"falconet.suppressed.key.{k}": v for k, v in w.key.items()} if self.key_fields else {}),
        }
        output = (f"{w.suppressed} more alerts of rule '{w.rule}' suppressed within {self.window:g}s "
                  f"({key_text}; first {iso_time(w.first_ns)}, last {iso_time(w.last_ns)})")
        self.emit(internal_alert(SUPPRESSED, w.priority, output, fields, hostname=self.hostname,
                                 tags=w.tags))

    def stats(self) -> dict[str, Any]:
        return {"suppressed": self.suppressed, "summaries": self.summaries, "by_rule": dict(self.by_rule),
                "open_windows": len(self._windows)}
