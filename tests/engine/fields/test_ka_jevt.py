"""jevt.* / json.* fields of audit events: JSON pointers, the whole object, the raw time."""

from __future__ import annotations

import json

import pytest

from sensor.engine.fields import registry
from sensor.engine.fields.jevt import pointer
from sensor.sources.k8s_audit.decode import events_from_json

OBJ = {
    "kind": "Event", "auditID": "a1", "stage": "ResponseComplete",
    "stageTimestamp": "2026-03-14T09:26:53.000000123Z",
    "annotations": {"authorization.k8s.io/decision": "allow", "a~b": "tilde"},
    "requestObject": {"spec": {"tls": [{"hosts": ["shop.example.com"]}], "replicas": 2, "paused": False,
                               "empty": {}, "none": None},
                      "ephemeralContainers": [{"name": "debugger", "image": "busybox:1.36"}]},
}


@pytest.fixture
def event():
    return events_from_json(OBJ)[0]


@pytest.mark.parametrize(("ptr", "value"), [
    ("/stage", "ResponseComplete"),                                   # a string, unquoted
    ("/requestObject/spec/replicas", "2"),                            # anything else as compact JSON
    ("/requestObject/spec/paused", "false"),
    ("/requestObject/spec/tls", '[{"hosts":["shop.example.com"]}]'),
    ("/requestObject/spec/empty", "{}"),
    ("/requestObject/ephemeralContainers/0/name", "debugger"),        # array index
    ("/requestObject/ephemeralContainers/0/image", "busybox:1.36"),
    ("/annotations/authorization.k8s.io~1decision", "allow"),         # ~1 is '/'
    ("/annotations/a~0b", "tilde"),                                   # ~0 is '~'
    ("stage", "ResponseComplete"),                                    # the leading / is optional
])
def test_json_pointers(event, ptr: str, value: str) -> None:
    assert event.value("jevt.value", ptr) == value
    assert event.value("json.value", ptr) == value


@pytest.mark.parametrize("ptr", ["/nope", "/requestObject/spec/none", "/requestObject/ephemeralContainers/1",
                                 "/requestObject/ephemeralContainers/x", "/stage/deeper", ""])
def test_what_a_pointer_does_not_reach_has_no_value(event, ptr: str) -> None:
    assert event.value("jevt.value", ptr) is None


def test_the_whole_object_is_indented_json_as_the_json_plugin_prints_it(event) -> None:
    text = event.value("jevt.obj")
    assert json.loads(text) == OBJ
    assert text.startswith('{\n  "kind": "Event",\n  "auditID": "a1",')       # Go's json.Indent layout
    assert '"empty": {}' in text
    assert event.value("json.obj") == text


def test_rawtime_is_the_event_time_in_nanoseconds_as_text(event) -> None:
    assert event.value("jevt.rawtime") == "1773480413000000123"
    assert event.value("json.rawtime") == "1773480413000000123"
    # What the official rules' always-true / never-true macros rely on:
    assert event.value("jevt.rawtime") is not None and event.value("jevt.rawtime") != "0"


def test_the_fields_are_strings_and_value_needs_its_argument() -> None:
    reg = registry("k8s_audit")
    for name in ("jevt.value", "jevt.obj", "jevt.rawtime", "json.value", "json.obj", "json.rawtime"):
        assert reg[name].type == "CHARBUF" and not reg[name].is_list
    assert reg["jevt.value"].arg == "key" and reg["jevt.value"].arg_required


def test_pointer_walks_dicts_and_lists() -> None:
    assert pointer({"a": [{"b": 1}]}, "/a/0/b") == 1
    assert pointer({"a": [1]}, "/a/-1") is None
    assert pointer({"": {"x": 2}}, "//x") == 2                       # an empty key is a key
