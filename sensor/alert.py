"""The alert and its vocabulary: the one owner of Priority, the hostname decision, the Alert type
and its two Falco renderings (the text line and the JSON alert).

Everything that makes, reads or writes an alert imports this module: the engine (which makes rule
alerts), the outputs, the response worker, `ecs.py` and the metrics. It imports nothing of the
sensor but the standard library, so any part may use it.

Text that came from the watched system (file names, command lines, environment) is untrusted: it
may hold bytes that are not UTF-8 (decoded with `surrogateescape` by the capture) and control
characters that would forge a line in a log. `Alert` makes both safe once, when it is made, so that
no format ever fails to encode an alert or prints a line the alert did not mean:

- an undecodable byte becomes the four characters `\\xNN`, in the output text and in
  `output_fields`, so no information is lost and every encoder (UTF-8 text, JSON, msgpack) takes it;
- in the output text, a control character (C0, DEL, C1), a line or paragraph separator or a bidi
  control becomes its escape (`\\n`, `\\t`, `\\x1b`, `\\u2028`): one alert is one line;
- in the JSON rendering the same characters inside `output_fields` stay what they were and are
  written as JSON escapes (`\\u009b`, `\\u2028`), which JSON readers decode back.
"""

from __future__ import annotations

import enum
import json
import os
import socket
import time
import uuid as _uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Priority(enum.IntEnum):
    """Falco's priorities, most severe first; the number is the syslog severity (0 Emergency …
    7 Debug), which is also ECS `event.severity`. `str()` gives Falco's name."""

    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFORMATIONAL = 6
    DEBUG = 7

    @property
    def label(self) -> str:
        """Falco's spelling: `Emergency` … `Informational`, `Debug`."""
        return _LABELS[self]

    def __str__(self) -> str:
        return _LABELS[self]

    def __format__(self, spec: str) -> str:
        return format(_LABELS[self], spec)

    @classmethod
    def lookup(cls, text: Any) -> Priority | None:
        """The priority a name stands for, in any case, `info` as an alias; None when unknown.
        A Priority is returned as it is."""
        if isinstance(text, Priority):
            return text
        if not isinstance(text, str):
            return None
        return _BY_NAME.get(text.strip().lower())

    @classmethod
    def parse(cls, text: Any) -> Priority:
        """As `lookup`, but an unknown name is a ValueError that lists the names."""
        p = cls.lookup(text)
        if p is None:
            raise ValueError(f"unknown priority {text!r}; one of {', '.join(NAMES)} (any case; info for "
                             f"Informational)")
        return p


_LABELS: dict[Priority, str] = {p: p.name.capitalize() for p in Priority}
_BY_NAME: dict[str, Priority] = {p.name.lower(): p for p in Priority} | {"info": Priority.INFORMATIONAL}
NAMES: tuple[str, ...] = tuple(_LABELS[p] for p in Priority)
"""Falco's priority names, most severe first."""
CHOICES: tuple[str, ...] = (*NAMES[:-1], "Info", NAMES[-1])
"""The names a configuration value may use (matched in any case)."""


def resolve_hostname(configured: str = "") -> str:
    """The hostname alerts carry: the `hostname` setting, else $FALCONET_HOSTNAME, else the
    machine's name. Decided once, where the configuration is read; everything else is given the
    value."""
    return configured or os.environ.get("FALCONET_HOSTNAME") or socket.gethostname()


# -- untrusted text -------------------------------------------------------------------------------

def _escape_char(c: str) -> str:
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:             # a byte surrogateescape could not decode
        return f"\\x{o - 0xDC00:02x}"
    if c == "\n":
        return "\\n"
    if c == "\t":
        return "\\t"
    if c == "\r":
        return "\\r"
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


def safe_line(text: str) -> str:
    """`text` with every character that is not printable escaped: one line, valid UTF-8."""
    if text.isprintable():                # the common case costs one C-level scan
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def _unsurrogate(text: str) -> str:
    if text.isprintable() or not any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
        return text
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)


def safe_value(value: Any) -> Any:
    """An output_fields value that every encoder takes: undecodable bytes (surrogates, or `bytes`)
    become `\\xNN`; lists and mappings are walked; other values are returned as they are."""
    if isinstance(value, str):
        return _unsurrogate(value)
    if isinstance(value, (list, tuple)):
        return [safe_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): safe_value(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return _unsurrogate(bytes(value).decode("utf-8", "surrogateescape"))
    return value


# -- the alert ------------------------------------------------------------------------------------

@dataclass(slots=True, eq=False)
class Alert:
    """A rule that matched an event, ready for the outputs (Falco's alert, plus Falcosidekick's uuid).

    `time_ns` is the event's time; `output_fields` the typed values of the fields the output
    string names (None when missing); `event` the event itself, so responders can read fields the
    output does not print. Internal alerts (drops, failed reload, flood summaries, response
    records) use source "internal" and have no event. `priority` may be given by name; it is kept
    as a Priority. The output text and the field values are made safe here (see the module's
    docstring), once, whatever made the alert.
    """

    rule: str
    priority: Priority
    source: str
    time_ns: int
    output: str
    output_fields: dict[str, Any]
    tags: list[str]
    hostname: str
    uuid: str = field(default_factory=lambda: str(_uuid.uuid4()))
    event: Any = None
    extra: dict[str, Any] = field(default_factory=dict)   # ECS additions (response records)

    def __post_init__(self) -> None:
        if not isinstance(self.priority, Priority):
            self.priority = Priority.parse(self.priority)
        self.output = safe_line(self.output)
        fields = self.output_fields
        for k, v in fields.items():
            if isinstance(v, str):
                if not v.isprintable():
                    fields[k] = _unsurrogate(v)
            elif isinstance(v, (list, tuple, dict, bytes, bytearray)):
                fields[k] = safe_value(v)


def add_static_fields(alert: Alert, fields: dict[str, Any]) -> Alert:
    """The `static_fields` setting applied to an alert: each one added to output_fields unless the
    alert has a field of that name. Every alert gets them at the one place all alerts pass (the
    outputs; `replay` when it prints)."""
    for k, v in fields.items():
        alert.output_fields.setdefault(k, safe_value(v))
    return alert


# -- renderings -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class JsonOptions:
    """falco.yaml's json_include_* switches and time_format_iso_8601."""

    include_output: bool = True
    include_tags: bool = True
    include_output_fields: bool = True
    include_message: bool = False
    time_iso_8601: bool = False


def iso_time(time_ns: int) -> str:
    """UTC time with nanoseconds and a Z, as Falco's JSON `time`."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def text_time(time_ns: int, iso_8601: bool = False) -> str:
    """The time prefix of a text alert: local HH:MM:SS.nnnnnnnnn, or ISO 8601 UTC."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    if iso_8601:
        return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}+0000"
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{nanos:09d}"


def alert_text(alert: Alert, iso_8601: bool = False) -> str:
    """Falco's text line: `TIME: Priority output`."""
    return f"{text_time(alert.time_ns, iso_8601)}: {alert.priority.label} {alert.output}"


def alert_dict(alert: Alert, opts: JsonOptions = JsonOptions()) -> dict[str, Any]:
    """Falco's JSON alert as a dict, keys in Falco's (sorted) order, plus Falcosidekick's uuid."""
    out: dict[str, Any] = {"hostname": alert.hostname}
    if opts.include_message:
        out["message"] = alert.output
    if opts.include_output:
        out["output"] = alert_text(alert, opts.time_iso_8601)
    if opts.include_output_fields:
        out["output_fields"] = alert.output_fields
    out["priority"] = alert.priority.label
    out["rule"] = alert.rule
    out["source"] = alert.source
    if opts.include_tags:
        out["tags"] = sorted(alert.tags)
    out["time"] = iso_time(alert.time_ns)
    out["uuid"] = alert.uuid
    return out


# JSON escapes only C0 controls by itself; these would still end or reorder a line in a reader that
# takes them for line breaks or terminal controls (C1 CSI, U+2028/2029, bidi overrides).
_JSON_EXTRA_ESCAPES = {o: f"\\u{o:04x}" for o in (*range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
                                                   *range(0x2066, 0x206A))}


def to_json(obj: Any) -> str:
    """One line of JSON, UTF-8 text kept as it is but for the escapes above. Inside a JSON
    document these characters can only stand in strings, so the replacement is always valid."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
    if text.isascii() and "\x7f" not in text:
        return text
    return text.translate(_JSON_EXTRA_ESCAPES)


def alert_json(alert: Alert, opts: JsonOptions = JsonOptions()) -> str:
    """One JSON alert, one line."""
    return to_json(alert_dict(alert, opts))
