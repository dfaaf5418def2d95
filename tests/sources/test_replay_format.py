"""The recording format (sensor/sources/replay.py): each process's shared fields written once,
environments left out unless asked, older recordings still replayed, bounded memory both sides."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from sensor.sources.replay import RecordWriter, ReplayError, read_events


def fields(pid: int, evt_type: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"evt.type": evt_type, "evt.rawtime": 1_700_000_000_000_000_000 + pid, "fd.name": f"/tmp/{pid}",
            "proc.pid": pid, "proc.name": name, "proc.cmdline": f"{name} -x", "proc.aname": ["bash", "sshd"],
            "proc.aname[1]": "bash", "user.name": "root", "container.id": "host",
            "proc.env": "HOME=/root AWS_SECRET_ACCESS_KEY=abc", "proc.duration": pid * 7, **extra}


def events_of(text: str) -> list[dict[str, Any]]:
    return [ev.fields for ev in read_events(io.StringIO(text), "rec.jsonl")]


def test_a_process_is_written_once_and_replays_in_full() -> None:
    out = io.StringIO()
    w = RecordWriter(out)
    recorded = [fields(10, "openat", "cat"), fields(10, "close", "cat"), fields(11, "execve", "ls"),
                fields(10, "read", "cat")]
    for f in recorded:
        w.write("syscall", dict(f))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [("ctx" in x, "source" in x) for x in lines] == [
        (True, False), (True, True), (True, True), (True, False), (True, True), (True, True)]
    assert lines[0]["fields"]["proc.name"] == "cat" and "proc.name" not in lines[1]["fields"]
    assert lines[1]["fields"]["proc.duration"] == 70          # changes every event: not shared
    expected = [{k: v for k, v in f.items() if k != "proc.env"} for f in recorded]
    assert events_of(out.getvalue()) == expected
    assert w.events == 4 and w.bytes == len(out.getvalue())


def test_environment_only_when_asked() -> None:
    out = io.StringIO()
    RecordWriter(out).write("syscall", fields(1, "openat", "cat"))
    assert "AWS_SECRET" not in out.getvalue()
    out = io.StringIO()
    RecordWriter(out, with_env=True).write("syscall", fields(1, "openat", "cat"))
    assert events_of(out.getvalue())[0]["proc.env"] == "HOME=/root AWS_SECRET_ACCESS_KEY=abc"


def test_the_compact_form_is_much_smaller_than_every_event_in_full() -> None:
    compact, full = io.StringIO(), io.StringIO()
    cw, fw = RecordWriter(compact), RecordWriter(full, compact=False, with_env=True)
    for i in range(200):
        f = fields(100 + i % 3, "openat", "cat", **{f"proc.aname[{k}]": f"p{k}" for k in range(8)})
        cw.write("syscall", dict(f))
        fw.write("syscall", dict(f))
    assert cw.bytes / cw.events < 0.5 * fw.bytes / fw.events
    assert events_of(compact.getvalue()) == [{k: v for k, v in e.items() if k != "proc.env"}
                                             for e in events_of(full.getvalue())]


def test_contexts_are_bounded_and_numbers_reused() -> None:
    out = io.StringIO()
    w = RecordWriter(out, max_contexts=2)
    order = [1, 2, 1, 3, 2, 1]                      # 3 forgets 2 (least recently used), 2 forgets 1 ...
    for pid in order:
        w.write("syscall", fields(pid, "openat", f"p{pid}"))
    defined = [json.loads(line)["ctx"] for line in out.getvalue().splitlines() if '"source"' not in line]
    assert defined == [0, 1, 1, 0, 1]
    assert [e["proc.pid"] for e in events_of(out.getvalue())] == order


def test_older_recordings_replay_unchanged(tmp_path: Path) -> None:
    old = json.dumps({"source": "syscall", "fields": fields(5, "openat", "cat")}) + "\n"
    assert events_of(old)[0]["proc.env"].startswith("HOME=")
    full = io.StringIO()
    RecordWriter(full, compact=False).write("syscall", fields(5, "openat", "cat"))
    assert '"ctx"' not in full.getvalue()


def test_undecodable_bytes_round_trip_in_an_ascii_file() -> None:
    out = io.StringIO()
    name = b"/tmp/caf\xe9".decode("utf-8", "surrogateescape")
    RecordWriter(out).write("syscall", fields(1, "openat", "cat", **{"fd.name": name}))
    out.getvalue().encode("ascii")                   # the file is plain ASCII
    assert events_of(out.getvalue())[0]["fd.name"] == name


def test_a_context_used_before_it_is_defined_names_the_line() -> None:
    with pytest.raises(ReplayError, match=r"rec\.jsonl:1: context 4 is used before a line defines it"):
        events_of('{"source": "syscall", "ctx": 4, "fields": {"evt.type": "openat"}}\n')
    with pytest.raises(ReplayError, match=r"rec\.jsonl:2: a context line is"):
        events_of('# comment\n{"ctx": "x", "fields": {}}\n')
