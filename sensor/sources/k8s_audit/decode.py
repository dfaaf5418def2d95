"""Audit events from JSON: the hardened decoder, the streaming walk over a webhook body, and the
checks that make a JSON object an audit event.

kube-apiserver sends audit events (audit.k8s.io/v1 `Event`) to a webhook in batches (`EventList`),
or writes them to a log file one JSON object per line. The event's time is its `stageTimestamp`, as
in Falco's k8saudit plugin.

The input is untrusted: decoding (sensor/jsontext.py) never raises anything but `DecodeError` (a
ValueError) with a sentence saying what is wrong. JSON nested too deeply, integers of more digits
than Python converts, and NaN/Infinity (not JSON) are refused like any malformed text. A webhook body is walked
item by item (`iter_body`), so what is not an audit event is dropped as soon as it is decoded, and
`decode_cost` estimates from the text alone, before anything is decoded, the memory decoding takes.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Generator, Iterator
from json.decoder import scanstring  # type: ignore[attr-defined]  # the C scanner; typeshed omits it
from typing import Any

from sensor.event import AuditEvent
from sensor.jsontext import DECODER as _DECODER
from sensor.jsontext import DecodeError, loads

__all__ = ["DecodeError", "loads"]     # the hardened decoder is sensor/jsontext.py's

_WS = re.compile(r"[ \t\n\r]*")


# ---------------------------------------------------------------------------------------------
# What decoding will cost, from the text alone
# ---------------------------------------------------------------------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# Bytes of CPython objects per JSON token, chosen so the estimate stays above what json.loads
# really allocates for every shape tests/sources/test_k8s_audit_decode.py tries (real audit events
# come out at about twice their real cost; `[{},{},...]`, the cheapest text per object, too).
CONTAINER_COST = 120        # a dict or list, empty or small
STRING_COST = 64            # a str object's header (its characters are counted as text)
SLOT_COST = 40              # one more element or member: a pointer and a number object


def decode_cost(body: bytes) -> int:
    """Estimated bytes of the objects that decoding the JSON `body` makes, found without decoding it.

    Two passes at C speed over the UTF-8 bytes (in which `"` and `\\` only ever stand for
    themselves): strings are cut out and counted, then brackets, commas and colons are counted in
    what remains. The passes themselves need one more copy of at most len(body) bytes.
    """
    bare, strings = _STRING.subn(b"", body)
    containers = bare.count(b"{") + bare.count(b"[")
    slots = bare.count(b",") + bare.count(b":")
    return len(body) + CONTAINER_COST * containers + STRING_COST * strings + SLOT_COST * slots


def text_size(body: bytes) -> int:
    """At most how many bytes `body.decode()` takes: one per character for ASCII, four otherwise
    (a str holds all its characters at the width of its widest)."""
    return len(body) if body.isascii() else 4 * len(body)


# ---------------------------------------------------------------------------------------------
# A webhook body, item by item
# ---------------------------------------------------------------------------------------------

Item = tuple[str, Any, int]         # where it was (`items[3]`), the decoded object, its JSON length


def iter_body(text: str) -> Iterator[Item]:
    """The audit items of a webhook body, one at a time, as they are decoded.

    The body is what the k8saudit plugin accepts: an `Event`, an `EventList`, or a JSON array of
    either. An EventList's items are decoded one by one and handed out, so an item that is not an
    audit event can be dropped at once. DecodeError (raised part-way, after some items may have
    been handed out: the caller must then drop them all) names what is not JSON or not an audit
    object; the items themselves are checked by `audit_event`.
    """
    try:
        i = _skip(text, 0)
        if i == len(text):
            raise DecodeError("body is not valid JSON: it is empty")
        i = yield from _value(text, i, "")
        if _skip(text, i) != len(text):
            raise _syntax("Extra data", text, i)
    except RecursionError:
        raise DecodeError("body is not valid JSON: nested too deeply") from None


def _skip(text: str, i: int) -> int:
    return _WS.match(text, i).end()      # type: ignore[union-attr]  # matches the empty string


def _syntax(message: str, text: str, i: int) -> DecodeError:
    """json's own wording and position (line, column, char) for a structural mistake."""
    return DecodeError(f"body is not valid JSON: {json.JSONDecodeError(message, text, i)}")


def _decode_at(text: str, i: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, i)
    except json.JSONDecodeError as e:
        raise DecodeError(f"body is not valid JSON: {e}") from None
    except DecodeError as e:
        raise DecodeError(f"body is not valid JSON: {e} (at char {i})") from None


def _value(text: str, i: int, where: str) -> Generator[Item, None, int]:
    """The items of the value at `i` (an Event, an EventList, or an array of them); its end."""
    c = text[i]
    if c == "[":
        return (yield from _array(text, i, where, _value))
    if c == "{":
        return (yield from _object(text, i, where))
    value, _ = _decode_at(text, i)
    raise DecodeError(f"{where or 'the body'} is a JSON {_json_type(value)}, not an audit Event or EventList")


def _array(text: str, i: int, where: str, element: Any) -> Generator[Item, None, int]:
    """Walk a JSON array at `i`, `element(text, i, where)` for each element; the array's end."""
    i = _skip(text, i + 1)
    n = 0
    if text[i:i + 1] == "]":
        return i + 1
    while True:
        if i >= len(text):
            raise _syntax("Expecting value", text, i)
        i = yield from element(text, i, f"{where}[{n}]")
        n += 1
        i = _skip(text, i)
        c = text[i:i + 1]
        if c == "]":
            return i + 1
        if c != ",":
            raise _syntax("Expecting ',' delimiter", text, i)
        i = _skip(text, i + 1)


def _item(text: str, i: int, where: str) -> Generator[Item, None, int]:
    obj, end = _decode_at(text, i)
    yield where, obj, end - i
    return end


_UNSET = object()


def _object(text: str, i: int, where: str) -> Generator[Item, None, int]:
    """An Event (one item) or an EventList (its items, streamed) at `i`; the object's end.

    kube-apiserver writes `kind` first; should `items` come before it, they are handed out on the
    understanding that the object is an EventList, and the walk fails if it turns out not to be.
    """
    start = i
    here = where or "the body"
    kind: Any = _UNSET
    saw_items = False
    i = _skip(text, i + 1)
    if text[i:i + 1] == "}":
        raise DecodeError(f"{here} has no 'kind': expected an audit.k8s.io Event or EventList")
    while True:
        if text[i:i + 1] != '"':
            raise _syntax("Expecting property name enclosed in double quotes", text, i)
        try:
            key, i = scanstring(text, i + 1)
        except json.JSONDecodeError as e:
            raise DecodeError(f"body is not valid JSON: {e}") from None
        i = _skip(text, i)
        if text[i:i + 1] != ":":
            raise _syntax("Expecting ':' delimiter", text, i)
        i = _skip(text, i + 1)
        if key == "items" and kind in (_UNSET, "EventList"):
            if text[i:i + 1] == "[":
                saw_items = True
                i = yield from _array(text, i, f"{where}items", _item)
            else:
                value, i = _decode_at(text, i)
                if value is not None:
                    raise DecodeError(f"{here}: EventList items is a JSON {_json_type(value)}, not an array")
        else:
            value, i = _decode_at(text, i)
            if key == "kind":
                kind = value
                if kind == "Event" and not saw_items:
                    # An Event is one item: decode it whole (it is small, or over max_event_size).
                    obj, end = _decode_at(text, start)
                    yield where or "event", obj, end - start
                    return end
                if kind not in ("Event", "EventList"):
                    raise DecodeError(f"{here} is a {kind!r}, not an audit.k8s.io Event or EventList")
        i = _skip(text, i)
        c = text[i:i + 1]
        if c == "}":
            break
        if c != ",":
            raise _syntax("Expecting ',' delimiter", text, i)
        i = _skip(text, i + 1)
    if kind is _UNSET:
        raise DecodeError(f"{here} has no 'kind': expected an audit.k8s.io Event or EventList")
    if kind != "EventList":
        raise DecodeError(f"{here} is an Event with an `items` array, not an audit Event or EventList")
    return i + 1



# ---------------------------------------------------------------------------------------------
# Decoded JSON → audit events
# ---------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII)


def rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any fraction up to nanoseconds, any offset)."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(8) is None:
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs -= offset if m.group(9) == "+" else -offset
    frac = m.group(7) or ""
    return secs * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def audit_items(obj: Any) -> Iterator[tuple[str, Any]]:
    """The audit events a decoded JSON body holds, each with where it was (`items[3]`).

    Accepts what the k8saudit plugin accepts: an `Event`, an `EventList`, or a JSON array of
    either. Raises DecodeError naming what is not an audit object; items themselves are checked by
    `audit_event`.
    """
    yield from _items(obj, "")


def _items(obj: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _items(v, f"{where}[{i}]")
        return
    here = where or "the body"
    if not isinstance(obj, dict):
        raise DecodeError(f"{here} is a JSON {_json_type(obj)}, not an audit Event or EventList")
    kind = obj.get("kind")
    if kind == "Event":
        yield where or "event", obj
    elif kind == "EventList":
        items = obj.get("items")
        if items is None:
            return                   # an empty list serializes without items
        if not isinstance(items, list):
            raise DecodeError(f"{here}: EventList items is a JSON {_json_type(items)}, not an array")
        for i, v in enumerate(items):
            yield f"{where}items[{i}]", v
    elif kind is None:
        raise DecodeError(f"{here} has no 'kind': expected an audit.k8s.io Event or EventList")
    else:
        raise DecodeError(f"{here} is a {kind!r}, not an audit.k8s.io Event or EventList")


def audit_event(item: Any, where: str = "event", num: int = 0) -> AuditEvent:
    """One audit event object as an AuditEvent; DecodeError says what is missing or malformed."""
    if not isinstance(item, dict):
        raise DecodeError(f"{where} is a JSON {_json_type(item)}, not an audit event object")
    if "auditID" not in item:
        raise DecodeError(f"{where} has no auditID: not an audit event")
    stamp = item.get("stageTimestamp")
    if not isinstance(stamp, str):
        raise DecodeError(f"{where} has no stageTimestamp (the event time)")
    try:
        time_ns = rfc3339_ns(stamp)
    except ValueError as e:
        raise DecodeError(f"{where}: stageTimestamp: {e}") from None
    return AuditEvent(item, time_ns, num)


def events_from_json(obj: Any, first_num: int = 0) -> list[AuditEvent]:
    """The AuditEvents of an audit Event, EventList or JSON array of them.

    Raises DecodeError with the reason for a non-audit object or a malformed event (the first one
    found; nothing is returned then). `num` counts up from `first_num`.
    """
    return [audit_event(item, where, first_num + i) for i, (where, item) in enumerate(audit_items(obj))]


def event_size(item: Any) -> int:
    """Bytes of an event as compact JSON: what the size limit is measured on (as Falco does)."""
    # surrogatepass: JSON may escape a lone surrogate (\ud800), which strict UTF-8 cannot encode.
    return len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


