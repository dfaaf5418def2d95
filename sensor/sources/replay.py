"""Recordings of events: the JSON-lines format `falconet capture` writes and `falconet replay`
reads (DESIGN.md §4), both sides of it in this one module.

Lines of a recording:

- `{"source": "syscall", "fields": {...}}`: a recorded event (any source), every field that has a
  value, keyed as Falco writes field references.
- `{"ctx": 3, "fields": {...}}`: a context, the fields that the events of one process share (proc.*,
  thread.*, user.*, group.*, container.*, k8s.*), written once;
- `{"source": "syscall", "ctx": 3, "fields": {...}}`: an event whose fields are its context's plus
  its own. A context number is defined before it is used and may be defined again later (the
  writer keeps a bounded number of contexts and reuses the number of the one it forgot), so a
  reader keeps only the latest definition of each number.
- A line holding a Kubernetes audit `Event`, an `EventList` or a JSON array of events is k8s_audit
  events. Blank lines and `#` comments are skipped.

Recordings made before contexts existed (every event in full) read as they always did.
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sensor.errors import FalconetError
from sensor.event import Event, RecordedEvent
from sensor.jsontext import DecodeError, loads
from sensor.sources.k8s_audit.decode import events_from_json

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
    contexts: dict[int, dict[str, Any]] = {}
    for lineno, line in enumerate(stream, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = loads(text)
        except DecodeError as e:
            raise ReplayError(f"{name}:{lineno}: {e}") from None
        where = f"{name}:{lineno}"
        if isinstance(obj, dict) and "ctx" in obj:
            if "source" not in obj:
                _define_context(obj, contexts, where)
                continue
            obj = _with_context(obj, contexts, where)
        for ev in parse_line(obj, where, num + 1):
            num += 1
            yield ev


def _define_context(obj: dict[str, Any], contexts: dict[int, dict[str, Any]], where: str) -> None:
    ctx, fields = obj.get("ctx"), obj.get("fields")
    if not isinstance(ctx, int) or isinstance(ctx, bool) or not isinstance(fields, dict):
        raise ReplayError(f"{where}: a context line is {{\"ctx\": NUMBER, \"fields\": {{...}}}}")
    contexts[ctx] = fields


def _with_context(obj: dict[str, Any], contexts: dict[int, dict[str, Any]], where: str) -> dict[str, Any]:
    shared = contexts.get(obj["ctx"]) if isinstance(obj["ctx"], int) else None
    if shared is None:
        raise ReplayError(f"{where}: context {obj['ctx']!r} is used before a line defines it")
    own = obj.get("fields")
    if not isinstance(own, dict):
        raise ReplayError(f"{where}: 'fields' must be an object of Falco field names to values")
    return {**obj, "fields": {**shared, **own}}


CONTEXT_CLASSES = ("proc.", "thread.", "user.", "group.", "container.", "k8s.")
# Process fields that change with every event (they count time or open fds): kept with the event,
# or no two events of a process would share a context.
PER_EVENT = frozenset({"proc.duration", "proc.ppid.duration", "proc.fdopencount"})
ENV_FIELDS = ("proc.env",)


class RecordWriter:
    """Writes events as lines of a recording, each process's shared fields once (see above).

    `with_env`: keep proc.env (each process's whole environment, often secrets); left out by
    default. `compact`: False writes every event in full, as recordings were before contexts.
    """

    def __init__(self, stream: IO[str], *, with_env: bool = False, compact: bool = True,
                 max_contexts: int = 4096) -> None:
        self.stream = stream
        self.with_env = with_env
        self.compact = compact
        self.max_contexts = max_contexts
        self._contexts: OrderedDict[str, int] = OrderedDict()     # context text -> number, LRU order
        self.events = 0
        self.bytes = 0

    def write(self, source: str, fields: dict[str, Any]) -> None:
        if not self.with_env:
            for k in ENV_FIELDS:
                fields.pop(k, None)
        if not self.compact:
            self._line({"source": source, "fields": fields})
            self.events += 1
            return
        shared = {k: v for k, v in fields.items() if k.startswith(CONTEXT_CLASSES) and k not in PER_EVENT}
        own = {k: v for k, v in fields.items() if k not in shared}
        ctx = self._context(shared) if shared else None
        self._line({"source": source, "ctx": ctx, "fields": own} if ctx is not None
                   else {"source": source, "fields": own})
        self.events += 1

    def _context(self, shared: dict[str, Any]) -> int:
        key = _dumps(shared)
        n = self._contexts.get(key)
        if n is not None:
            self._contexts.move_to_end(key)
            return n
        if len(self._contexts) >= self.max_contexts:
            _, n = self._contexts.popitem(last=False)       # forget the least recently used, reuse its number
        else:
            n = len(self._contexts)
        self._contexts[key] = n
        self._write(f'{{"ctx":{n},"fields":{key}}}\n')
        return n

    def _line(self, obj: dict[str, Any]) -> None:
        self._write(_dumps(obj) + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.bytes += len(text)


def _dumps(obj: Any) -> str:
    # ASCII: a byte the capture could not decode (a lone surrogate) is written as a \\udcXX escape
    # that json.loads reads back as it was, so the file is valid UTF-8 and replays exactly.
    return json.dumps(obj, separators=(",", ":"), default=str)


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
            self._stream = sys.stdin
        else:
            try:
                self._stream = self.path.open()
            except OSError as e:
                err = ReplayError(f"{self.path}: cannot open: {e.strerror}",
                                  hint="give a recording of `falconet capture -w FILE` or an audit log")
                err.exit_code = 4                    # sensor/status.py: something missing here
                raise err from None
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
