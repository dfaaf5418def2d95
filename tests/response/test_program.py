"""program: the alert JSON on stdin; exit status, stderr and timeouts on the record."""

from __future__ import annotations

import json
import time

from sensor.response.program import RunProgram
from sensor.response.target import Target

from .helpers import alert


def run(command: str, timeout: float = 5.0, dry_run: bool = False):
    action = RunProgram({"command": command, "timeout": timeout})
    a = alert({"proc.pid": 7})
    target = action.resolve(a)
    assert isinstance(target, Target)
    return a, action.execute(a, target, dry_run)


def test_alert_json_on_stdin(tmp_path):
    out_file = tmp_path / "alert.json"
    a, out = run(f"cat > {out_file}")
    assert out.result == "done"
    doc = json.loads(out_file.read_text())
    assert doc["uuid"] == a.uuid and doc["output_fields"] == {"proc.pid": 7}


def test_nonzero_exit_is_a_failure_with_stderr():
    _, out = run("echo 'quarantine service unreachable' >&2; exit 3")
    assert out.result == "failed"
    assert "exited with status 3: quarantine service unreachable" in out.text


def test_timeout_kills_the_command_and_what_it_started(tmp_path):
    marker = tmp_path / "late"
    started = time.monotonic()
    _, out = run(f"sleep 3 & wait; touch {marker}", timeout=0.3)
    assert time.monotonic() - started < 2
    assert out.result == "failed" and "longer than 0.3s" in out.text
    time.sleep(0.2)
    assert not marker.exists()


def test_command_that_ignores_stdin():
    _, out = run("true")
    assert out.result == "done"


def test_dry_run_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    _, out = run(f"touch {marker}", dry_run=True)
    assert out.reason == "dry_run" and not marker.exists()
