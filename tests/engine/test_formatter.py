"""Output strings and the alert's text and JSON shapes (DESIGN.md §3)."""

from __future__ import annotations

import json
import re
import time

import pytest

from sensor.engine.fields import resolve
from sensor.engine.formatter import (
    JsonOptions,
    Output,
    OutputError,
    alert_dict,
    alert_json,
    alert_text,
    iso_time,
    parse_output,
)
from sensor.event import Alert, RecordedEvent


def out(text: str) -> Output:
    return Output(parse_output(text, lambda n: resolve("syscall", n)))


EV = RecordedEvent("syscall", {"evt.type": "openat", "proc.name": "cat", "proc.pid": 42, "fd.name": "/etc/shadow",
                               "proc.aname[2]": "sshd", "evt.arg.flags": "O_RDONLY", "evt.is_open_read": True,
                               "proc.aname": ["bash", "sshd"]})


@pytest.mark.parametrize("template,text", [
    ("%proc.name", "cat"),
    ("proc=%proc.name pid=%proc.pid", "proc=cat pid=42"),
    ("%proc.nameand", "catand"),                       # longest known field wins
    ("(%proc.name)", "(cat)"),
    ("%proc.name.", "cat."),
    ("%fd.name,%proc.pid", "/etc/shadow,42"),
    ("a=%proc.aname[2]", "a=sshd"),
    ("a=%proc.aname[3]", "a=<NA>"),                    # missing values print <NA>
    ("user=%user.name", "user=<NA>"),
    ("flags=%evt.arg.flags", "flags=O_RDONLY"),
    ("flags=%evt.arg[flags]", "flags=O_RDONLY"),
    ("read=%evt.is_open_read", "read=true"),
    ("anc=%proc.aname", "anc=(bash,sshd)"),
    ("100% sure", "100% sure"),
    ("no fields", "no fields"),
])
def test_render_text(template: str, text: str) -> None:
    assert out(template).render(EV)[0] == text


def test_output_fields_are_typed_and_null_when_missing() -> None:
    _, fields = out("%proc.name %proc.pid %user.name %proc.aname[2] %evt.is_open_read %evt.arg.flags").render(EV)
    assert fields == {"proc.name": "cat", "proc.pid": 42, "user.name": None, "proc.aname[2]": "sshd",
                      "evt.is_open_read": True, "evt.arg.flags": "O_RDONLY"}


def test_unknown_output_field_is_an_error() -> None:
    with pytest.raises(OutputError, match=r"%proc\.nosuch"):
        out("x=%proc.nosuch")


ALERT = Alert(rule="Sensitive file read", priority="Warning", source="syscall", time_ns=1_700_000_000_123_456_789,
              output="Sensitive file opened (file=/etc/shadow)", output_fields={"fd.name": "/etc/shadow",
                                                                                  "proc.pid": 42, "user.name": None},
              tags=["mitre_credential_access", "filesystem", "T1003.008"], hostname="node-1")


def test_json_alert_shape() -> None:
    doc = json.loads(alert_json(ALERT))
    assert list(doc) == ["hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time", "uuid"]
    assert doc["time"] == "2023-11-14T22:13:20.123456789Z"
    assert doc["priority"] == "Warning"
    assert doc["tags"] == ["T1003.008", "filesystem", "mitre_credential_access"]
    assert doc["output_fields"] == {"fd.name": "/etc/shadow", "proc.pid": 42, "user.name": None}
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.123456789: Warning Sensitive file opened \(file=/etc/shadow\)",
                        doc["output"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", doc["uuid"])
    assert "\n" not in alert_json(ALERT)


def test_json_include_switches() -> None:
    doc = alert_dict(ALERT, JsonOptions(include_output=False, include_tags=False, include_output_fields=False,
                                        include_message=True))
    assert set(doc) == {"hostname", "message", "priority", "rule", "source", "time", "uuid"}
    assert doc["message"] == ALERT.output


def test_text_alert_local_and_iso_time() -> None:
    local = time.strftime("%H:%M:%S", time.localtime(1_700_000_000))
    assert alert_text(ALERT) == f"{local}.123456789: Warning Sensitive file opened (file=/etc/shadow)"
    assert alert_text(ALERT, iso_8601=True).startswith("2023-11-14T22:13:20.123456789+0000: Warning ")


def test_iso_time_nanoseconds() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00.000000000Z"
    assert iso_time(1) == "1970-01-01T00:00:00.000000001Z"


def test_each_alert_gets_a_new_uuid() -> None:
    a = Alert("r", "Notice", "syscall", 0, "o", {}, [], "h")
    b = Alert("r", "Notice", "syscall", 0, "o", {}, [], "h")
    assert a.uuid != b.uuid and a.priority_num == 5
