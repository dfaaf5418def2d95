"""The webhook's decoder (sensor/sources/k8s_audit/decode.py, sensor/httpserver/http1.py) on hostile input: every
refusal is a DecodeError or HttpError with a sentence, never another exception; the memory estimate
stays above what decoding really takes; and a bounded fuzz run over both."""

from __future__ import annotations

import io
import json
import random
import time
import tracemalloc
from pathlib import Path

import pytest

from sensor.httpserver import http1
from sensor.sources.k8s_audit.decode import (
    DecodeError,
    audit_event,
    decode_cost,
    iter_body,
    loads,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "k8s_audit"
LINES = (DATA / "events.jsonl").read_text().splitlines()
EVENTS = [json.loads(line) for line in LINES]


def items(body: str) -> list[tuple[str, str]]:
    return [(where, obj["auditID"]) for where, obj, _ in iter_body(body)]


# ---------------------------------------------------------------------------------------------
# The walk gives what a whole decode would, item by item
# ---------------------------------------------------------------------------------------------

def test_an_event_list_is_walked_item_by_item_with_each_items_length() -> None:
    body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": EVENTS[:3]})
    got = list(iter_body(body))
    assert [(w, o) for w, o, _ in got] == [(f"items[{i}]", EVENTS[i]) for i in range(3)]
    assert [n for _, _, n in got] == [len(json.dumps(e)) for e in EVENTS[:3]]


def test_an_event_an_array_and_items_before_kind() -> None:
    assert items(LINES[0]) == [("event", EVENTS[0]["auditID"])]
    nested = json.dumps([EVENTS[0], {"kind": "EventList", "items": EVENTS[1:3]}, [EVENTS[3]]])
    assert items(nested) == [("[0]", EVENTS[0]["auditID"]), ("[1]items[0]", EVENTS[1]["auditID"]),
                             ("[1]items[1]", EVENTS[2]["auditID"]), ("[2][0]", EVENTS[3]["auditID"])]
    late_kind = '{"items": [' + LINES[4] + '], "apiVersion": "audit.k8s.io/v1", "kind": "EventList"}'
    assert items(late_kind) == [("items[0]", EVENTS[4]["auditID"])]
    assert items('{"kind": "EventList", "metadata": {}}') == []
    assert items('{"kind": "EventList", "items": null}') == []


@pytest.mark.parametrize(("body", "reason"), [
    ("", "body is not valid JSON: it is empty"),
    ('{"kind": "EventList", "items": [', "body is not valid JSON: Expecting value"),
    ('{"kind": "Pod", "apiVersion": "v1"}', "the body is a 'Pod', not an audit.k8s.io Event or EventList"),
    ('{"apiVersion": "v1"}', "the body has no 'kind'"),
    ("{}", "the body has no 'kind'"),
    ('"Event"', "the body is a JSON string, not an audit Event or EventList"),
    ("[1]", "[0] is a JSON number"),
    ('{"kind": "EventList", "items": {"a": 1}}', "EventList items is a JSON object, not an array"),
    ('{"items": [], "kind": "Event"}', "is an Event with an `items` array"),
    ('{"items": [], "kind": "Pod"}', "is a 'Pod'"),
    ('{"kind": "EventList"} x', "body is not valid JSON: Extra data"),
    ('{"kind": "EventList", "items": [NaN]}', "NaN is not a JSON value"),
    ('{"kind": "EventList" "items": []}', "Expecting ',' delimiter"),
    ('{"kind" "EventList"}', "Expecting ':' delimiter"),
    ("{kind: 1}", "Expecting property name enclosed in double quotes"),
])
def test_what_is_refused_and_why(body: str, reason: str) -> None:
    with pytest.raises(DecodeError) as e:
        list(iter_body(body))
    assert reason in str(e.value)


def test_json_nested_1000_deep_is_a_decode_error_not_a_recursion_error() -> None:
    deep_list = "[" * 1000 + "]" * 1000
    deep_item = '{"kind": "EventList", "items": [' + '{"a":' * 1000 + "1" + "}" * 1000 + "]}"
    for body in (deep_list, deep_item):
        with pytest.raises(DecodeError, match="nested too deeply"):
            list(iter_body(body))
    with pytest.raises(DecodeError, match="nested too deeply"):
        loads(deep_list)


def test_an_integer_over_4300_digits_is_a_decode_error_naming_the_limit() -> None:
    event = dict(EVENTS[0], requestObject={"n": 0})
    body = json.dumps(event).replace('"n": 0', '"n": ' + "7" * 5000)
    with pytest.raises(DecodeError, match=r"an integer of 5000 digits \(more than 4300\)"):
        list(iter_body(body))
    with pytest.raises(DecodeError, match="5000 digits"):
        loads(body)


def test_a_lone_surrogate_and_unicode_digits_in_a_time_do_not_crash() -> None:
    event = dict(EVENTS[0], stageTimestamp="\uff12\uff10\uff12\uff16-03-14T09:26:53Z")  # fullwidth digits
    [(where, obj, _)] = list(iter_body(json.dumps(event)))
    with pytest.raises(DecodeError, match="stageTimestamp: not an RFC 3339 time"):
        audit_event(obj, where)
    event = dict(EVENTS[0], user={"username": "\ud800"})
    [(where, obj, _)] = list(iter_body(json.dumps(event)))
    assert audit_event(obj, where).obj["user"]["username"] == "\ud800"


# ---------------------------------------------------------------------------------------------
# The memory estimate, made before decoding, is not below what decoding takes
# ---------------------------------------------------------------------------------------------

N = 20_000
SHAPES = {
    "real events": json.dumps({"kind": "EventList", "items": EVENTS * 40}),
    "empty objects": "[" + ",".join(["{}"] * N) + "]",
    "empty arrays": "[" + ",".join(["[]"] * N) + "]",
    "one-key objects": "[" + ",".join(['{"a":1}'] * N) + "]",
    "numbers": "[" + ",".join(["123456789012"] * N) + "]",
    "floats": "[" + ",".join(["1.5"] * N) + "]",
    "short strings": "[" + ",".join(['"ab"'] * N) + "]",
    "escaped strings": "[" + ",".join(['"\\u1234"'] * N) + "]",
    "many keys": "{" + ",".join(f'"k{i}":{{}}' for i in range(N)) + "}",
    "nesting": "[" + ",".join(["[[[]]]"] * N) + "]",
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_decode_cost_estimate_is_at_least_what_decoding_allocates(shape: str) -> None:
    body = SHAPES[shape].encode()
    tracemalloc.start()
    try:
        obj = json.loads(body.decode())
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del obj
    assert decode_cost(body) >= used


def test_empty_objects_cost_fifty_times_their_text_and_real_events_under_ten() -> None:
    # What lets the webhook refuse `[{},{},...]` before decoding it, while real batches fit.
    assert decode_cost(SHAPES["empty objects"].encode()) > 50 * len(SHAPES["empty objects"])
    assert decode_cost(SHAPES["real events"].encode()) < 10 * len(SHAPES["real events"])


# ---------------------------------------------------------------------------------------------
# A bounded fuzz run: mutations of real bodies and requests, a fixed seed, a few seconds
# ---------------------------------------------------------------------------------------------

FUZZ_SECONDS = 3.0


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One of the mutations a byte-level fuzzer (radamsa, AFL's havoc) makes."""
    if not data:
        return bytes([rng.randrange(256)])
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randrange(1, 64))
    kind = rng.randrange(9)
    if kind == 0:                                   # flip a byte
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if kind == 1:                                   # drop a span
        return data[:i] + data[j:]
    if kind == 2:                                   # repeat a span
        return data[:i] + data[i:j] * rng.randrange(2, 50) + data[j:]
    if kind == 3:                                   # insert an interesting token
        token = rng.choice([b"[", b"{", b"]", b"}", b'"', b"\\", b",", b":", b"-", b"1e999", b"NaN",
                            b"\\ud800", b"\xff", b"\x00", b"null", b"true", b'"kind":"EventList"',
                            b'"items":[', "²".encode(), b"9" * rng.randrange(1, 6000)])
        return data[:i] + token + data[i:]
    if kind == 4:                                   # wrap in many arrays
        n = rng.randrange(1, 1500)
        return b"[" * n + data + b"]" * n
    if kind == 5:                                   # truncate
        return data[:i]
    if kind == 6:                                   # swap two spans
        k = rng.randrange(len(data))
        return data[:i] + data[k:k + 8] + data[i + 8:]
    if kind == 7:                                   # nest an object deeply at a point
        n = rng.randrange(1, 1500)
        return data[:i] + b'{"a":' * n + b"1" + b"}" * n + data[i:]
    return data + data[i:j]                         # append a piece


def test_fuzz_the_body_decoder_and_the_request_reader_for_a_few_seconds() -> None:
    rng = random.Random(14_16)
    bodies = [LINES[0].encode(), json.dumps({"kind": "EventList", "items": EVENTS[:4]}).encode(),
              json.dumps([EVENTS[5], {"kind": "EventList", "items": EVENTS[6:8]}]).encode()]
    heads = [b"POST /k8s-audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: 12\r\n\r\n",
             b"POST /k8s-audit HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
    runs = 0
    deadline = time.monotonic() + FUZZ_SECONDS
    while time.monotonic() < deadline:
        data = rng.choice(bodies)
        for _ in range(rng.randrange(1, 4)):
            data = _mutate(rng, data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        try:
            for where, obj, _ in iter_body(text):
                try:
                    audit_event(obj, where)
                except DecodeError:
                    pass
        except DecodeError:
            pass
        decode_cost(data)
        head = rng.choice(heads)
        for _ in range(rng.randrange(1, 3)):
            head = _mutate(rng, head)
        rfile = io.BufferedReader(io.BytesIO(head))        # type: ignore[arg-type]
        try:
            req = http1.read_request(rfile)
            if req is not None:
                http1.read_body(rfile, req, 1 << 20)
        except (http1.HttpError, http1.Incomplete):
            pass
        runs += 1
    assert runs > 200          # the run did real work in its time
