"""The sensor's own log, to Fluentd under `fluent_output.log_tag` (DESIGN.md §6: `falconet.log`).

A logging handler that never blocks the thread that logs: records go into a bounded buffer and one
thread sends them in acknowledged chunks over its own forward connection (same host, TLS and shared
key as the alerts). The log is not evidence the way alerts are, so it is not spooled to disk: when
Fluentd stays away and the buffer fills, the oldest records go, and every one that goes is counted
(`dropped`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from typing import Any

from sensor import __version__
from sensor.alert import iso_time
from sensor.outputs.fluent import connection
from sensor.outputs.forward import ForwardConnection, pack_entry
from sensor.outputs.settings import FluentSettings

BATCH = 200
_BACKOFF_MAX = 5.0


class FluentLogHandler(logging.Handler):
    """Sends log records as ECS documents for the logs-falconet.log data stream."""

    def __init__(self, conn: ForwardConnection, tag: str, hostname: str, capacity: int = 10_000,
                 level: int = logging.INFO) -> None:
        super().__init__(level)
        self.conn = conn
        self.tag = tag
        self.hostname = hostname
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self._buf: collections.deque[bytes] = collections.deque()
        self._capacity = capacity
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="falconet-log-forward", daemon=True)
        self._thread.start()

    def document(self, record: logging.LogRecord) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "@timestamp": iso_time(int(record.created * 1e9)),
            "message": record.getMessage(),
            "log": {"level": record.levelname.lower(), "logger": record.name,
                    "origin": {"file": {"name": record.filename, "line": record.lineno},
                               "function": record.funcName}},
            "event": {"dataset": "falconet.log", "module": "falconet", "kind": "event"},
            "host": {"name": self.hostname},
            "process": {"pid": record.process, "thread": {"name": record.threadName}},
            "service": {"name": "falconet", "version": __version__},
            "ecs": {"version": "8.11.0"},
        }
        if record.exc_info:
            doc["error"] = {"type": record.exc_info[0].__name__ if record.exc_info[0] else "",
                            "message": str(record.exc_info[1]),
                            "stack_trace": logging.Formatter().formatException(record.exc_info)}
        # An id of our own too, so a chunk re-sent after a lost ack is recognisable downstream.
        doc["event"]["id"] = str(uuid.uuid4())
        return doc

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == __name__:
            return                                   # our own complaints would feed themselves
        try:
            entry = pack_entry(int(record.created * 1e9), self.document(record))
        except Exception:
            self.handleError(record)
            return
        with self._cv:
            if len(self._buf) >= self._capacity:
                self._buf.popleft()
                self.dropped += 1
            self._buf.append(entry)
            self._cv.notify()

    def _run(self) -> None:
        backoff = 0.1
        while True:
            with self._cv:
                while not self._buf and not self._stopping:
                    self._cv.wait()
                if not self._buf and self._stopping:
                    return
                batch = [self._buf[i] for i in range(min(BATCH, len(self._buf)))]
            try:
                self.conn.send_chunk(self.tag, batch)
            except Exception as e:      # the thread outlives any failure: ForwardError, a bug, ...
                self.errors += 1
                self.conn.close()
                if self._stopping:
                    with self._cv:
                        self.dropped += len(self._buf)
                        self._buf.clear()
                    logging.getLogger(__name__).debug("sensor log not delivered at stop: %s", e)
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            backoff = 0.1
            with self._cv:
                for _ in batch:
                    self._buf.popleft()
                self.sent += len(batch)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is buffered (for up to `timeout` seconds), then stop."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout)
        with self._cv:
            self.dropped += len(self._buf)
            self._buf.clear()
        self.conn.close()
        super().close()

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "dropped": self.dropped, "errors": self.errors}


def attach(settings: FluentSettings, hostname: str, logger: logging.Logger | None = None) -> FluentLogHandler | None:
    """Start sending the `falconet` log to Fluentd when fluent_output is on and log_tag is set."""
    if not settings.enabled or not settings.log_tag:
        return None
    level = getattr(logging, settings.log_level.upper())
    handler = FluentLogHandler(connection(settings), settings.log_tag, hostname, level=level)
    (logger or logging.getLogger("falconet")).addHandler(handler)
    return handler


def detach(handler: FluentLogHandler | None, logger: logging.Logger | None = None) -> None:
    if handler is None:
        return
    (logger or logging.getLogger("falconet")).removeHandler(handler)
    handler.close()
