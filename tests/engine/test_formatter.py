"""Rule output strings: `%field` tokens, typed output_fields, unknown fields (alert rendering: tests/test_alert.py)."""

from __future__ import annotations

import pytest

from sensor.engine.fields import resolve
from sensor.engine.formatter import Output, OutputError, parse_output
from sensor.event import RecordedEvent


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
