"""program: real processes, one long-lived or one per alert; exact bytes on their stdin."""

from __future__ import annotations

import os
from pathlib import Path

from sensor.outputs.build import build_outputs
from sensor.outputs.program import ProgramTransport

from .conftest import JSON_5, make_alert, output_settings, wait_until


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_keep_alive_feeds_one_process_line_by_line(tmp_path: Path) -> None:
    sink, pids = tmp_path / "got", tmp_path / "pids"
    program = f"echo $$ >> {pids}; while IFS= read -r line; do printf '%s\\n' \"$line\" >> {sink}; done"
    out = build_outputs(output_settings(tmp_path, "program_output.enabled=true", "program_output.keep_alive=true",
                                        f"program_output.program={program}", "json_output=true"))
    for i in range(5, 10):
        out.submit(make_alert(i))
    assert out.flush(10)
    assert wait_until(lambda: len(lines(sink)) == 5)
    out.close()
    assert lines(sink)[0] == JSON_5
    assert len(lines(pids)) == 1                     # one process for all five


def test_one_process_per_alert_gets_exactly_the_alert(tmp_path: Path) -> None:
    sink = tmp_path / "got"
    program = f"cat > {sink}.$$; echo $$ >> {tmp_path}/pids"
    out = build_outputs(output_settings(tmp_path, "program_output.enabled=true", "program_output.keep_alive=false",
                                        f"program_output.program={program}", "json_output=true"))
    for i in range(5, 8):
        out.submit(make_alert(i))
    assert out.flush(10)
    out.close()
    pids = lines(tmp_path / "pids")
    assert len(set(pids)) == 3
    bodies = sorted((tmp_path / f"got.{p}").read_bytes() for p in pids)
    assert bodies[0] == (JSON_5 + "\n").encode()
    assert all(b.count(b"\n") == 1 for b in bodies)


def test_a_program_that_exits_is_started_again_without_losing_the_alert(tmp_path: Path) -> None:
    sink = tmp_path / "got"
    # Each process takes one line and exits: every later alert needs a new process.
    program = f"IFS= read -r line; printf '%s\\n' \"$line\" >> {sink}"
    transport = ProgramTransport(program, keep_alive=True)
    for i in range(4):
        assert transport.send([f"alert {i}\n".encode()]) == 0
        assert wait_until(lambda i=i: len(lines(sink)) == i + 1 and not transport.alive, 10)
    transport.close()
    assert lines(sink) == [f"alert {i}" for i in range(4)]
    assert transport.starts == 4


def test_exit_status_and_timeout_are_counted_not_retried(tmp_path: Path) -> None:
    t = ProgramTransport("cat >/dev/null; exit 3", keep_alive=False)
    assert t.send([b"x\n", b"y\n"]) == 0
    assert t.failures == 2 and t.starts == 2
    slow = ProgramTransport("sleep 30", keep_alive=False, timeout=0.2)
    assert slow.send([b"x\n"]) == 0
    assert slow.failures == 1


def test_program_output_inherits_stdout(tmp_path: Path, capfd: object) -> None:
    out = build_outputs(output_settings(tmp_path, "program_output.enabled=true",
                                        "program_output.program=tr a-z A-Z", "json_output=true"))
    out.submit(make_alert(5))
    assert out.flush(10)
    out.close()
    captured = capfd.readouterr()                    # type: ignore[attr-defined]
    assert captured.out == JSON_5.upper() + "\n"
    assert os.path.exists("/bin/sh")
