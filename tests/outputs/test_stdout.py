"""stdout: exact bytes, and alerts appear at once when stdout is a pipe (kubectl logs)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sensor.outputs.build import build_outputs

from .conftest import JSON_5, TEXT_5_ISO, make_alert, output_settings

ROOT = Path(__file__).resolve().parents[2]


def run_stdout(tmp_path: Path, *overrides: str) -> bytes:
    buf = io.BytesIO()
    out = build_outputs(output_settings(tmp_path, "stdout_output.enabled=true", *overrides), stdout=buf)
    out.submit(make_alert(5))
    assert out.flush(10)
    out.close()
    return buf.getvalue()


def test_text_line_bytes(tmp_path: Path) -> None:
    assert run_stdout(tmp_path, "time_format_iso_8601=true") == (TEXT_5_ISO + "\n").encode()


def test_json_bytes(tmp_path: Path) -> None:
    assert run_stdout(tmp_path, "json_output=true") == (JSON_5 + "\n").encode()


def test_json_include_switches(tmp_path: Path) -> None:
    line = run_stdout(tmp_path, "json_output=true", "json_include_output_property=false",
                      "json_include_tags_property=false", "json_include_output_fields_property=false",
                      "json_include_message_property=true")
    assert line == (b'{"hostname":"node-1","message":"A shell was spawned in a container (user=root '
                    b'shell=bash pid=5)","priority":"Notice","rule":"Terminal shell in container",'
                    b'"source":"syscall","time":"2024-03-01T12:34:56.123456794Z",'
                    b'"uuid":"00000000-0000-4000-8000-000000000005"}\n')


def test_pipe_gets_each_alert_at_once(tmp_path: Path) -> None:
    # The child writes one alert and then waits; the line must arrive while it is still running.
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from outputs.conftest import make_alert, output_settings
        from pathlib import Path
        from sensor.outputs.build import build_outputs
        out = build_outputs(output_settings(Path({str(tmp_path)!r}), "stdout_output.enabled=true"))
        out.submit(make_alert(5))
        time.sleep(30)
    """)
    env = dict(os.environ, TZ="UTC")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        started = time.monotonic()
        line = proc.stdout.readline()       # type: ignore[union-attr]
        assert time.monotonic() - started < 20
        assert proc.poll() is None, "the alert only came out when the process exited"
        from .conftest import TEXT_5_UTC

        assert line == (TEXT_5_UTC + "\n").encode()
    finally:
        proc.kill()
        proc.wait()
