"""Following audit logs (sensor/sources/k8s_audit/file.py): every line exactly once, across rename
rotation, copytruncate and restarts."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from sensor.sources.k8s_audit import file as k8s_audit_file
from sensor.sources.k8s_audit.file import FileSource

DATA = Path(__file__).resolve().parent.parent / "data" / "k8s_audit"
SAMPLE = [json.loads(line) for line in (DATA / "events.jsonl").read_text().splitlines()]


def event(i: int) -> dict[str, Any]:
    """The i-th line's event: a sample event with a recognisable auditID."""
    ev = copy.deepcopy(SAMPLE[i % len(SAMPLE)])
    ev["auditID"] = f"line-{i:04d}"
    return ev


def append(path: Path, lines: range, end: str = "\n") -> None:
    with path.open("a") as f:
        for i in lines:
            f.write(json.dumps(event(i), separators=(",", ":")) + end)


def ids(events: list[Any]) -> list[str]:
    return [e.obj["auditID"] for e in events]


def want(lines: range) -> list[str]:
    return [f"line-{i:04d}" for i in lines]


def read(src: FileSource, polls: int = 4) -> list[Any]:
    """What a few polls return (the follower sees a rotation on the poll after the old file ends)."""
    out: list[Any] = []
    for _ in range(polls):
        out += src.poll(0)
    return out


@pytest.fixture
def log(tmp_path: Path) -> Path:
    d = tmp_path / "log"
    d.mkdir()
    return d / "audit.log"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def start(log: Path, state: Path, **kw: Any) -> FileSource:
    src = FileSource([str(log)], state_dir=state, **kw)
    src.start()
    return src


def test_lines_are_read_as_they_are_appended_and_a_partial_line_waits(log, state) -> None:
    append(log, range(3))
    src = start(log, state)
    assert ids(read(src)) == want(range(3))
    line = json.dumps(event(3))
    with log.open("a") as f:
        f.write(line[:40])
    assert read(src) == []
    with log.open("a") as f:
        f.write(line[40:] + "\n")
    got = read(src)
    assert ids(got) == want(range(3, 4))
    assert got[0].num == 4 and got[0].source == "k8s_audit"
    src.stop()


def test_rename_rotation_while_running_loses_and_repeats_nothing(log, state) -> None:
    append(log, range(5))
    src = start(log, state)
    got = read(src)
    append(log, range(5, 8))                           # written before the rotation, not read yet
    log.rename(log.with_name("audit-2026-03-14T09-30-00.000.log"))
    append(log, range(8, 11))                          # the new file
    got += read(src)
    assert ids(got) == want(range(11))
    append(log, range(11, 13))
    got += read(src)
    assert ids(got) == want(range(13))
    assert src.stats()["rotations"] == 1 and src.stats()["drops"] == 0
    src.stop()


def test_copytruncate_while_running_loses_and_repeats_nothing(log, state) -> None:
    append(log, range(5))
    src = start(log, state)
    got = read(src)
    append(log, range(5, 8))                           # lands in the copy, after our offset
    shutil.copyfile(log, log.with_name("audit.log.1"))
    with log.open("r+") as f:
        f.truncate(0)
    append(log, range(8, 10))
    got += read(src)
    assert ids(got) == want(range(10))
    assert src.stats()["truncations"] == 1 and src.stats()["lost_rotations"] == 0
    src.stop()


def test_copytruncate_noticed_only_after_the_file_grew_past_our_offset(log, state) -> None:
    append(log, range(3))
    src = start(log, state)
    got = read(src)
    append(log, range(3, 5))
    shutil.copyfile(log, log.with_name("audit.log-20260314"))
    with log.open("r+") as f:
        f.truncate(0)
    append(log, range(5, 20))                          # longer than before: size alone would not tell
    got += read(src)
    assert ids(got) == want(range(20))
    src.stop()


def test_a_restart_resumes_after_the_last_line_the_engine_took(log, state) -> None:
    append(log, range(10))
    src = start(log, state)
    assert ids(read(src)) == want(range(10))
    src.stop()
    saved = json.loads((state / "k8s_audit" / "positions.json").read_text())
    assert saved["files"][str(log)]["offset"] == log.stat().st_size
    append(log, range(10, 15))
    again = start(log, state)
    assert ids(read(again)) == want(range(10, 15))
    again.stop()


def test_a_restart_after_a_rename_rotation_finishes_the_old_file_first(log, state) -> None:
    append(log, range(5))
    src = start(log, state)
    assert ids(read(src)) == want(range(5))
    src.stop()
    append(log, range(5, 7))                           # written while Falconet was down
    log.rename(log.with_name("audit-2026-03-14T09-31-00.000.log"))
    append(log, range(7, 10))
    again = start(log, state)
    assert ids(read(again)) == want(range(5, 10))
    again.stop()


def test_a_restart_after_copytruncate_reads_the_rest_of_the_copy_first(log, state) -> None:
    append(log, range(5))
    src = start(log, state)
    assert ids(read(src)) == want(range(5))
    src.stop()
    append(log, range(5, 7))
    shutil.copyfile(log, log.with_name("audit.log.1"))
    with log.open("r+") as f:
        f.truncate(0)
    append(log, range(7, 9))
    again = start(log, state)
    assert ids(read(again)) == want(range(5, 9))
    again.stop()


def test_a_restart_after_the_rotated_file_is_gone_says_so(log, state, caplog) -> None:
    append(log, range(5))
    src = start(log, state)
    read(src)
    src.stop()
    log.unlink()
    append(log, range(5, 7))
    again = start(log, state)
    assert ids(read(again)) == want(range(5, 7))
    assert again.stats()["lost_rotations"] == 1
    # (The new file may even reuse the old one's inode number: the tail tells them apart.)
    assert "were not read" in caplog.text
    again.stop()


def test_after_a_crash_at_most_the_lines_of_the_last_poll_are_read_again(log, state, monkeypatch) -> None:
    monkeypatch.setattr(k8s_audit_file, "SAVE_INTERVAL", 0.0)
    append(log, range(4))
    src = start(log, state)
    assert ids(src.poll(0)) == want(range(4))
    append(log, range(4, 6))
    assert ids(src.poll(0)) == want(range(4, 6))       # this poll saved the position after line 3
    # No stop(): the process died while the engine held lines 4 and 5.
    again = start(log, state)
    assert ids(read(again)) == want(range(4, 6))
    again.stop()
    src.followers[0].close()


def test_long_and_malformed_lines_are_skipped_and_counted(log, state, caplog) -> None:
    append(log, range(2))
    with log.open("a") as f:
        huge = event(2)
        huge["requestObject"] = {"data": {"blob": "x" * 9000}}
        f.write(json.dumps(huge) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"kind": "Pod", "apiVersion": "v1"}) + "\n")
        f.write("\n")
    append(log, range(3, 5))
    src = start(log, state, max_event_size=4096)
    assert ids(read(src)) == want([0, 1, 3, 4])
    stats = src.stats()
    assert stats["drops_too_large"] == 1 and stats["drops_invalid"] == 2 and stats["drops"] == 3
    assert f"{log}: line at byte" in caplog.text and "over k8s_audit.max_event_size" in caplog.text
    src.stop()


def test_a_line_longer_than_the_read_window_is_skipped_without_losing_the_next(log, state) -> None:
    with log.open("a") as f:
        f.write('{"kind":"Event","auditID":"' + "z" * 300_000 + '"}\n')
    append(log, range(1, 3))
    src = start(log, state, max_event_size=10_000)
    assert ids(read(src, polls=10)) == want(range(1, 3))
    assert src.stats()["drops_too_large"] == 1
    src.stop()


def test_start_at_end_skips_what_was_there(log, state) -> None:
    append(log, range(5))
    with log.open("a") as f:
        f.write('{"kind":"Ev')                          # a line being written right now
    src = start(log, state, start_at_end=True)
    assert read(src) == []
    with log.open("a") as f:
        f.write("ent\"}\n")
    append(log, range(5, 7))
    assert ids(read(src)) == want(range(5, 7))         # the cut line is not taken for an event
    src.stop()


def test_a_log_that_does_not_exist_yet_is_read_once_it_appears(log, state) -> None:
    src = start(log, state)
    assert read(src) == []
    append(log, range(3))
    assert ids(read(src)) == want(range(3))
    src.stop()


def test_several_logs_at_once(tmp_path, state) -> None:
    a, b = tmp_path / "a" / "audit.log", tmp_path / "b" / "audit.log"
    a.parent.mkdir()
    b.parent.mkdir()
    append(a, range(3))
    append(b, range(3, 6))
    src = FileSource([str(a), str(b)], state_dir=state)
    src.start()
    assert sorted(ids(read(src))) == want(range(6))
    src.stop()
    saved = json.loads((state / "k8s_audit" / "positions.json").read_text())
    assert set(saved["files"]) == {str(a), str(b)}


def test_the_positions_file_is_replaced_atomically(log, state, monkeypatch) -> None:
    append(log, range(2))
    src = start(log, state)
    read(src)
    src.save_positions()
    before = (state / "k8s_audit" / "positions.json").read_text()

    def broken_write(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    append(log, range(2, 4))
    read(src)
    monkeypatch.setattr(os, "write", broken_write)
    with pytest.raises(OSError, match="No space left"):
        src.save_positions()
    monkeypatch.undo()
    assert (state / "k8s_audit" / "positions.json").read_text() == before
    src.stop()
    assert (state / "k8s_audit" / "positions.json").read_text() != before


# ---------------------------------------------------------------------------------------------
# The position file, against another local user (issue 14, finding 11)
# ---------------------------------------------------------------------------------------------

ROOT = os.geteuid() == 0


@pytest.mark.skipif(not ROOT, reason="needs root to prepare files as another user")
def test_a_planted_temporary_file_is_not_reused_and_the_positions_stay_private(log, state) -> None:
    (state / "k8s_audit").mkdir(parents=True, mode=0o700)
    planted = state / "k8s_audit" / ".positions.json.tmp"
    planted.write_text("")
    os.chmod(planted, 0o666)
    os.chown(planted, 65534, 65534)
    append(log, range(3))
    src = start(log, state)
    assert ids(read(src)) == want(range(3))
    src.stop()
    positions = state / "k8s_audit" / "positions.json"
    st = positions.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    assert planted.read_text() == "" and planted.stat().st_uid == 65534


@pytest.mark.skipif(not ROOT, reason="needs root to prepare files as another user")
def test_a_position_directory_or_file_another_user_controls_is_refused_at_start(log, state) -> None:
    from sensor.securefile import UnsafePathError

    d = state / "k8s_audit"
    d.mkdir(parents=True, mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(UnsafePathError, match="belongs to nobody"):
        start(log, state)
    os.chown(d, 0, 0)
    (d / "positions.json").write_text('{"version": 1, "files": {}}')
    os.chown(d / "positions.json", 65534, 65534)
    with pytest.raises(UnsafePathError, match=r"belongs to nobody .* may have been planted"):
        start(log, state)


def test_a_position_past_its_tail_or_negative_is_ignored() -> None:
    assert k8s_audit_file.Position.from_json({"dev": 1, "ino": 2, "offset": -5, "tail": ""}) is None
    assert k8s_audit_file.Position.from_json({"dev": 1, "ino": 2, "offset": 2, "tail": "YWJjZA=="}) is None
    assert k8s_audit_file.Position.from_json({"dev": 1, "ino": 2, "offset": 9, "tail": "YWJjZA=="}) is not None
