"""The generated matchers: rule text never becomes Python source, one compiled function serves every
kind of event, and each field is read at most once per event."""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from pathlib import Path
from typing import Any

import pytest

from sensor.engine import compile_filter
from sensor.engine.fields.record import record_fields
from sensor.engine.loader import load_rules
from sensor.engine.ruleset import Ruleset
from sensor.event import AuditEvent, Process, RecordedEvent, SyscallEvent

# Finding 1 of issue 14: a field argument that closes the old `@…@` placeholder and injects code.
INJECTED = "X]@ or __import__('os').system('id > {out}') or @proc.env[X"


def rules_file(tmp_path: Path, *conds: str, source: str = "syscall") -> Path:
    """Rules R0, R1, ... with these conditions, written as YAML literal blocks (taken verbatim)."""
    p = tmp_path / "r.yaml"
    p.write_text("".join(f"- rule: R{i}\n  desc: d\n  condition: |-\n    {c}\n  output: hit\n"
                         f"  priority: Warning\n  source: {source}\n" for i, c in enumerate(conds)))
    return p


def syscall_event(env: list[str]) -> SyscallEvent:
    proc = Process(pid=10, name="cat", exe="cat", exepath="/usr/bin/cat", env=env)
    return SyscallEvent(type="openat", time_ns=1, num=1, proc=proc, tid=10)


def audit_event(uri: str, **extra: Any) -> AuditEvent:
    return AuditEvent({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "verb": "get", "requestURI": uri,
                       "user": {"username": "u"}, "objectRef": {"resource": "pods"}, **extra}, 1)


_OURS = re.compile(r"_[kxafl]\d+|_match|_s|_e|_r|_v|_w|_x|_U|_recorded|_any|_all|_map|_whole|_pmatch|_in_net"
                   r"|_bytes|e|str|isinstance|list|tuple|fields|fullmatch|startswith|endswith|lower")


def generated_names_and_strings(rs: Ruleset) -> tuple[set[str], list[str]]:
    names: set[str] = set()
    strings: list[str] = []
    for programs in rs.index.programs.values():
        for program in programs.values():
            if program is None:
                continue
            for tok in tokenize.generate_tokens(io.StringIO(program.source).readline):
                if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
                    names.add(tok.string)
                elif tok.type == tokenize.STRING:
                    strings.append(tok.string)
    return names, strings


@pytest.mark.parametrize("cond", [
    'evt.type = openat and proc.env["' + INJECTED + '"] = yy',
    "evt.type = openat and proc.name = \"x') or __import__('os').system('id') or ('\"",
    'evt.type = openat and proc.name in ("a\\"b", "c@d@e", "@proc.name@") and fd.name glob "*@*"',
])
def test_generated_source_holds_no_rule_text(tmp_path: Path, cond: str) -> None:
    rs = load_rules([rules_file(tmp_path, cond.replace("{out}", str(tmp_path / "p")))])
    names, strings = generated_names_and_strings(rs)
    assert strings == []                                  # every value is a constant in the namespace
    assert {n for n in names if not _OURS.fullmatch(n)} == set()


def test_the_injection_of_finding_1_runs_nothing_and_compares_the_argument_as_data(tmp_path: Path) -> None:
    out = tmp_path / "p"
    arg = INJECTED.format(out=out)
    rs = load_rules([rules_file(tmp_path, f'evt.type = openat and proc.env["{arg}"] = yy')])
    # Live events (the extractor reads the process environment) and recorded ones (the key as recorded).
    assert [a.rule for a in rs.process(syscall_event([f"{arg}=yy"]))] == ["R0"]
    assert rs.process(syscall_event(["X=yy"])) == []
    recorded = {"evt.type": "openat", f"proc.env[{arg}]": "yy"}
    assert [a.rule for a in rs.process(RecordedEvent("syscall", recorded))] == ["R0"]
    assert rs.process(RecordedEvent("syscall", {"evt.type": "openat", "proc.env[X]": "yy"})) == []
    # Response match.condition compiles conditions outside rule files the same way.
    fn = compile_filter(f'proc.env["{arg}"] = yy')
    assert fn(syscall_event([f"{arg}=yy"])) is True
    assert fn(syscall_event([])) is False
    assert not out.exists()


def test_jevt_value_injection_in_audit_rules(tmp_path: Path) -> None:
    out = tmp_path / "p"
    arg = f"/x]@ or __import__('os').system('touch {out}') or @jevt.value[/y"
    rs = load_rules([rules_file(tmp_path, f'jevt.value["{arg}"] = v', source="k8s_audit")])
    assert rs.process(audit_event("/api/v1/pods")) == []
    assert not out.exists()


def test_an_at_sign_in_a_field_argument_is_an_ordinary_character(tmp_path: Path) -> None:
    rs = load_rules([rules_file(tmp_path, "ka.uri.param[a@b] = x", source="k8s_audit")])
    assert [a.rule for a in rs.process(audit_event("/api/v1/pods?a@b=x"))] == ["R0"]
    assert rs.process(audit_event("/api/v1/pods?a@b=y")) == []
    assert rs.process(audit_event("/api/v1/pods?a=x")) == []
    recorded = RecordedEvent("k8s_audit", {"ka.uri.param[a@b]": "x"})
    recorded.type = "k8s_audit"
    assert [a.rule for a in rs.process(recorded)] == ["R0"]


class ValueOnlyEvent:
    """An event of a class the engine has no accessor for: it answers value(field, arg) only, and
    counts the calls."""

    source = "syscall"

    def __init__(self, type_: str, fields: dict[str, Any]) -> None:
        self.type = type_
        self.fields = fields
        self.time_ns = 1
        self.num = 1
        self.reads: list[tuple[str, str | None]] = []

    def value(self, field: str, arg: str | None = None) -> Any:
        self.reads.append((field, arg))
        return RecordedEvent("syscall", self.fields).value(field, arg)


CONDITIONS = [
    ("proc.name = cat and proc.aname[2] = sh", True),
    ("proc.name = cat and proc.aname[2] = bash", False),
    ("proc.exepath = /bin/cat and not proc.name in (sh, bash)", True),
    ("proc.aname in (systemd) and proc.cmdline contains passwd", True),
    ("tolower(proc.name) = CAT or proc.pid > 5", True),
    ("proc.pname = val(proc.name)", False),
]


@pytest.mark.parametrize(("cond", "expected"), CONDITIONS)
def test_one_compiled_matcher_serves_live_recorded_and_other_events(tmp_path: Path, cond: str,
                                                                    expected: bool) -> None:
    init = Process(pid=1, name="systemd", exe="/sbin/init", exepath="/usr/lib/systemd/systemd")
    sh = Process(pid=5, ppid=1, name="sh", exe="sh", exepath="/bin/sh", parent=init)
    bash = Process(pid=7, ppid=5, name="bash", exe="bash", exepath="/bin/bash", parent=sh)
    cat = Process(pid=9, ppid=7, name="cat", exe="cat", exepath="/bin/cat", args=["/etc/passwd"], parent=bash,
                  env=["HOME=/root"])
    live = SyscallEvent(type="openat", time_ns=1, num=1, proc=cat, tid=9)
    fields = record_fields(live)
    del fields["proc.aname[2]"]         # answered from the bare ancestor list, as RecordedEvent does
    rs = load_rules([rules_file(tmp_path, f"evt.type = openat and ({cond})")])
    program = rs.index.programs["syscall"]["openat"]
    assert program is not None
    for event in (live, RecordedEvent("syscall", fields), ValueOnlyEvent("openat", fields)):
        assert bool(rs.process(event)) is expected, type(event).__name__
    # One generated program, bound once per kind of event.
    assert len({fn for fn in rs.index._bound.values()}) == 3


def test_each_field_is_read_once_per_event_across_rules(tmp_path: Path) -> None:
    rs = load_rules([rules_file(tmp_path, "evt.type = openat and proc.name = cat and fd.name startswith /etc",
                         "evt.type = openat and (proc.name = sh or fd.name = /etc/shadow)",
                                "evt.type = openat and fd.name endswith shadow and proc.name != bash")],
                    rule_matching="all")
    ev = ValueOnlyEvent("openat", {"evt.type": "openat", "proc.name": "cat", "fd.name": "/etc/shadow"})
    assert [a.rule for a in rs.process(ev)] == ["R0", "R1", "R2"]
    assert sorted(ev.reads) == [("fd.name", None), ("proc.name", None)]


def test_matchers_are_compiled_when_the_rules_load_not_at_the_first_event(tmp_path: Path) -> None:
    rs = load_rules([rules_file(tmp_path, "evt.type in (openat, execve) and proc.name = cat",
                                "proc.name = sh and evt.type != close")])
    programs = rs.index.programs["syscall"]
    assert set(programs) == {"openat", "execve", "close", None}
    assert programs["close"] is None            # no rule can match a close
    assert all(programs[t] is not None for t in ("openat", "execve", None))
    # An event of a type no rule names runs the shared program for "any other type".
    ev = RecordedEvent("syscall", {"evt.type": "read", "proc.name": "sh"})
    assert [a.rule for a in rs.process(ev)] == ["R1"]
    assert rs.process(RecordedEvent("syscall", {"evt.type": "close", "proc.name": "sh"})) == []
