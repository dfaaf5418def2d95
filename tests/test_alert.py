"""sensor/alert.py: Priority, the hostname decision, the Alert and its Falco text and JSON forms,
and untrusted text made safe once for every format."""

from __future__ import annotations

import json
import re
import time

import msgpack
import pytest

from sensor.alert import (
    NAMES,
    Alert,
    JsonOptions,
    Priority,
    alert_dict,
    alert_json,
    alert_text,
    iso_time,
    resolve_hostname,
)

ALERT = Alert(rule="Sensitive file read", priority="Warning", source="syscall", time_ns=1_700_000_000_123_456_789,
              output="Sensitive file opened (file=/etc/shadow)", output_fields={"fd.name": "/etc/shadow",
                                                                                  "proc.pid": 42, "user.name": None},
              tags=["mitre_credential_access", "filesystem", "T1003.008"], hostname="node-1")


def alert(output: str = "o", **fields: object) -> Alert:
    return Alert("r", Priority.WARNING, "syscall", 1_700_000_000_000_000_000, output, dict(fields), [], "h")


# -- Priority ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "number"), [
    ("Emergency", 0), ("ALERT", 1), ("critical", 2), ("Error", 3), ("warning", 4), ("NOTICE", 5),
    ("Informational", 6), ("info", 6), ("Info", 6), (" debug ", 7),
])
def test_priority_parses_any_case_and_the_info_alias(text: str, number: int) -> None:
    assert Priority.parse(text) == number


def test_priority_prints_falco_names_and_orders_by_severity() -> None:
    assert [str(p) for p in Priority] == list(NAMES) == ["Emergency", "Alert", "Critical", "Error", "Warning",
                                                         "Notice", "Informational", "Debug"]
    assert f"{Priority.INFORMATIONAL}" == "Informational"
    assert Priority.CRITICAL < Priority.WARNING       # lower is more severe, as in syslog


def test_an_unknown_priority_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown priority 'loud'; one of Emergency, .*Debug"):
        Priority.parse("loud")
    assert Priority.lookup("loud") is None and Priority.lookup(3) is None


def test_an_alert_keeps_its_priority_as_a_priority() -> None:
    a = Alert("r", "notice", "syscall", 0, "o", {}, [], "h")
    assert a.priority is Priority.NOTICE and int(a.priority) == 5


# -- the hostname -----------------------------------------------------------------------------------

def test_hostname_setting_then_environment_then_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setenv("FALCONET_HOSTNAME", "sensor-a")
    assert resolve_hostname("configured") == "configured"
    assert resolve_hostname("") == "sensor-a"
    monkeypatch.delenv("FALCONET_HOSTNAME")
    assert resolve_hostname() == socket.gethostname()


# -- Falco's JSON alert and text line -----------------------------------------------------------------

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
    assert a.uuid != b.uuid


# -- untrusted text: undecodable bytes and control characters (hardening findings 3 and 8) ----------

NOT_UTF8 = b"/etc/.x\xff".decode("utf-8", "surrogateescape")     # how the capture decodes the name


def test_an_undecodable_byte_is_kept_as_an_escape_in_every_format() -> None:
    a = alert(f"file={NOT_UTF8}", **{"fd.name": NOT_UTF8, "proc.args": ["/etc/shadow", "\udcff"]})
    assert a.output == "file=/etc/.x\\xff"
    assert a.output_fields == {"fd.name": "/etc/.x\\xff", "proc.args": ["/etc/shadow", "\\xff"]}
    # every encoder takes it: UTF-8 text, JSON, msgpack (the fluent channel)
    assert alert_text(a).encode("utf-8").endswith(b"file=/etc/.x\\xff")
    assert json.loads(alert_json(a).encode("utf-8"))["output_fields"]["fd.name"] == "/etc/.x\\xff"
    assert msgpack.unpackb(msgpack.packb(a.output_fields))["fd.name"] == "/etc/.x\\xff"


def test_raw_bytes_in_a_field_become_text() -> None:
    assert alert(**{"evt.buffer": b"ab\xfe"}).output_fields["evt.buffer"] == "ab\\xfe"


def test_a_newline_or_terminal_escape_cannot_forge_a_text_line() -> None:
    forged = "x\n12:00:00.000000000: Critical Fake alert\x1b[2K\r"
    a = alert(f"cmdline={forged}", **{"proc.cmdline": forged})
    line = alert_text(a)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith("cmdline=x\\n12:00:00.000000000: Critical Fake alert\\x1b[2K\\r")
    # JSON keeps the value exactly and escapes it
    assert json.loads(alert_json(a))["output_fields"]["proc.cmdline"] == forged


@pytest.mark.parametrize("char", ["\x9b", "\u2028", "\u2029", "\u202e", "\x7f"])
def test_json_escapes_characters_readers_take_for_line_breaks_or_controls(char: str) -> None:
    a = alert(f"a{char}b", **{"proc.cmdline": f"a{char}b"})
    text = alert_json(a)
    assert char not in text and f"\\u{ord(char):04x}" in text
    doc = json.loads(text)
    assert doc["output_fields"]["proc.cmdline"] == f"a{char}b"      # lossless for a JSON reader
    assert char not in doc["output"]                                # the text line is escaped


def test_printable_text_is_left_alone() -> None:
    a = alert("naïve café ☕ /tmp/a b", **{"fd.name": "/tmp/ünïcode ☕"})
    assert a.output == "naïve café ☕ /tmp/a b" and a.output_fields["fd.name"] == "/tmp/ünïcode ☕"
    assert "☕" in alert_json(a)
