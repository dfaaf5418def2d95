"""Events recorded earlier, read back from a JSON-lines file (DESIGN.md §4).

A line `{"source": "syscall", "fields": {...}}` is a recorded event (any source); a line holding a
Kubernetes audit `Event`, an `EventList` or a JSON array of events becomes k8s_audit events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sensor.errors import FalconetError
from sensor.event import Event, RecordedEvent

BATCH = 512


class ReplayError(FalconetError):
    """A line of a replay file is not an event; names the file and line."""


def parse_line(obj: Any, where: str, num: int) -> list[Event]:
    """The events one decoded line holds."""
    if isinstance(obj, dict) and "fields" in obj:
        fields = obj["fields"]
        if not isinstance(fields, dict):
            raise ReplayError(f"{where}: 'fields' must be an object of Falco field names to values")
        source = obj.get("source", "syscall")
        if not isinstance(source, str):
            raise ReplayError(f"{where}: 'source' must be a string")
        return [RecordedEvent(source, fields, num)]
    if isinstance(obj, list) or (isinstance(obj, dict) and obj.get("kind") in ("Event", "EventList")):
        from sensor.sources.k8s_audit import events_from_json

        try:
            events = events_from_json(obj)
        except ValueError as e:
            raise ReplayError(f"{where}: not a Kubernetes audit event: {e}") from None
        for i, ev in enumerate(events):
            ev.num = num + i
        return list(events)
    raise ReplayError(f"{where}: expected a recorded event ({{\"source\": ..., \"fields\": {{...}}}}) "
                      "or a Kubernetes audit Event/EventList")


def read_events(stream: IO[str], name: str) -> Iterator[Event]:
    """Every event of a replay stream, in order; blank lines and `#` comments are skipped."""
    num = 0
    for lineno, line in enumerate(stream, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ReplayError(f"{name}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
        for ev in parse_line(obj, f"{name}:{lineno}", num + 1):
            num += 1
            yield ev


class ReplaySource:
    """A Source over a replay file: hands out events in batches until the end of the file."""

    name = "replay"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._it: Iterator[Event] | None = None
        self._stream: IO[str] | None = None
        self._done = False
        self.events = 0

    def start(self) -> None:
        if str(self.path) == "-":
            import sys

            self._stream = sys.stdin
        else:
            try:
                self._stream = self.path.open()
            except OSError as e:
                raise ReplayError(f"{self.path}: cannot open: {e.strerror}") from None
        self._it = read_events(self._stream, str(self.path))

    def poll(self, timeout: float) -> list[Event]:
        if self._done or self._it is None:
            return []
        out: list[Event] = []
        for ev in self._it:
            out.append(ev)
            if len(out) >= BATCH:
                break
        else:
            self._done = True
        self.events += len(out)
        return out

    def stop(self) -> None:
        if self._stream is not None and self._stream is not getattr(__import__("sys"), "stdin", None):
            self._stream.close()
        self._done = True

    def stats(self) -> dict[str, int]:
        return {"events": self.events, "drops": 0}

    @property
    def finished(self) -> bool:
        return self._done
