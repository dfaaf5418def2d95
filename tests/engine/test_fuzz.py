"""A bounded fuzz run of the condition parser and compiler: random conditions built from the
language's pieces and hostile text (quotes, backslashes, `@`, Python code) must either be refused
with RuleSyntaxError/CompileError or compile into code that holds none of their text and
evaluates on every kind of event without raising. (This finds issue 14's finding 1 in seconds.)"""

from __future__ import annotations

import io
import random
import time
import tokenize
from pathlib import Path
from typing import Any

from sensor.engine import RuleSyntaxError, compile_filter
from sensor.engine.passes import CompileError
from sensor.event import Process, RecordedEvent, SyscallEvent

SECONDS = 2.0

FIELDS = ["proc.name", "proc.pid", "proc.aname", "proc.aname[2]", "proc.env", "fd.name", "fd.ip", "fd.num",
          "evt.type", "evt.arg.flags", "evt.arg[name]", "user.uid", "proc.is_exe_writable", "proc.nope"]
OPS = ["=", "==", "!=", "<", ">=", "contains", "icontains", "startswith", "endswith", "glob", "iglob", "regex",
       "bcontains", "in", "intersects", "pmatch", "exists"]
TRANSFORMERS = ["tolower", "toupper", "b64", "basename", "len"]


def hostile(rnd: random.Random, out: Path) -> str:
    return rnd.choice([
        f"X]@ or __import__('os').system('touch {out}') or @proc.env[X",
        f"@x@') or open('{out}', 'w') or ('", "a@b", "@", "@@", "\\", "\\\\", "a\\'b", 'a\\"b', "${x}",
        "{x}", "%s", "\n", "é", "0x10", "-1", "1e5", "10.0.0.0/8", "true", "*", "[a-", "(", ")", ",",
    ])


def quoted(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def value(rnd: random.Random, out: Path) -> str:
    s = hostile(rnd, out) if rnd.random() < 0.5 else rnd.choice(["cat", "1", "/etc/shadow", "10.0.0.5", "x y"])
    return quoted(s) if rnd.random() < 0.7 or not s.isalnum() else s


def field(rnd: random.Random, out: Path) -> str:
    if rnd.random() < 0.3:
        return f"proc.env[{quoted(hostile(rnd, out))}]"
    f = rnd.choice(FIELDS)
    r = rnd.random()
    if r < 0.2:
        f = f"{rnd.choice(TRANSFORMERS)}({f})"
    elif r < 0.25:
        f = f"join({value(rnd, out)}, ({f}, {rnd.choice(FIELDS)}))"
    elif r < 0.3:
        f = f"concat({f}, {quoted(hostile(rnd, out))}, {rnd.choice(FIELDS)})"
    elif r < 0.33:
        f = f"getopt({f}, {quoted(hostile(rnd, out))})"
    return f


def check(rnd: random.Random, out: Path) -> str:
    op = rnd.choice(OPS)
    left = field(rnd, out)
    if op == "exists":
        return f"{left} exists"
    if op in ("in", "intersects", "pmatch"):
        return f"{left} {op} ({', '.join(value(rnd, out) for _ in range(rnd.randint(0, 3)))})"
    if rnd.random() < 0.15:
        items = ", ".join(value(rnd, out) for _ in range(rnd.randint(0, 3)))
        return f"{left} {op} {rnd.choice(['oneof', 'anyof', 'allof'])} ({items})"
    if rnd.random() < 0.1:
        return f"{left} {op} val({rnd.choice(FIELDS)})"
    return f"{left} {op} {value(rnd, out)}"


def condition(rnd: random.Random, out: Path, depth: int = 0) -> str:
    r = rnd.random()
    if depth > 3 or r < 0.4:
        return check(rnd, out)
    if r < 0.55:
        return f"not {condition(rnd, out, depth + 1)}"
    if r < 0.7:
        return f"({condition(rnd, out, depth + 1)})"
    word = rnd.choice(["and", "or"])
    return f"{condition(rnd, out, depth + 1)} {word} {condition(rnd, out, depth + 1)}"


def events(rnd: random.Random, out: Path) -> list[Any]:
    env = [f"{hostile(rnd, out)}=cat", "HOME=/root"]
    parent = Process(pid=2, name="sh", exe="sh", exepath="/bin/sh")
    proc = Process(pid=3, ppid=2, name="cat", exe="cat", exepath="/bin/cat", env=env, parent=parent)
    live = SyscallEvent(type="openat", time_ns=1, num=1, proc=proc, tid=3,
                        args={"name": "/etc/shadow", "flags": "O_RDONLY"})
    recorded = RecordedEvent("syscall", {"evt.type": "openat", "proc.name": hostile(rnd, out), "proc.pid": 3,
                                         "fd.name": "/etc/shadow", "proc.aname": ["sh", "init"],
                                         f"proc.env[{hostile(rnd, out)}]": "cat"})
    return [live, recorded]


def test_fuzz_conditions(tmp_path: Path) -> None:
    out = tmp_path / "canary"
    rnd = random.Random(20261207)
    deadline = time.monotonic() + SECONDS
    compiled = refused = 0
    while time.monotonic() < deadline:
        text = condition(rnd, out)
        try:
            fn = compile_filter(text, "syscall")
        except (RuleSyntaxError, CompileError):
            refused += 1
            continue
        compiled += 1
        for ev in events(rnd, out):
            assert fn(ev) in (True, False), text
    assert not out.exists()
    assert compiled > 50 and refused > 50, (compiled, refused)


def test_fuzz_generated_source_is_ours(tmp_path: Path) -> None:
    from sensor.engine.codegen import Codegen
    from sensor.engine.parser import parse_condition
    from sensor.engine.passes import fold

    out = tmp_path / "canary"
    rnd = random.Random(7)
    deadline = time.monotonic() + SECONDS / 2
    while time.monotonic() < deadline:
        try:
            program = Codegen("syscall").function([(0, fold(parse_condition(condition(rnd, out))))])
        except (RuleSyntaxError, CompileError):
            continue
        toks = tokenize.generate_tokens(io.StringIO(program.source).readline)
        assert not [t.string for t in toks if t.type == tokenize.STRING]
