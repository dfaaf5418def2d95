"""syslog: datagrams on a Unix socket, the priority as the severity, reconnect after a restart."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from sensor.outputs.build import build_outputs

from .conftest import JSON_5, TEXT_5_ISO, make_alert, output_settings


def listen(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10)
    return s


def test_datagram_bytes_and_priorities(tmp_path: Path) -> None:
    dev_log = tmp_path / "log"
    server = listen(dev_log)
    out = build_outputs(output_settings(tmp_path, "syslog_output.enabled=true", f"syslog_output.address={dev_log}",
                                        "time_format_iso_8601=true"))
    out.submit(make_alert(5))
    out.submit(make_alert(6, priority="Critical"))
    out.submit(make_alert(7, priority="Debug"))
    assert out.flush(10)
    out.close()
    got = [server.recv(65536) for _ in range(3)]
    m = re.fullmatch(rb"<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) falconet\[(\d+)\]: (.*)", got[0])
    assert m, got[0]
    assert m.group(1) == b"13"                      # facility user (1) * 8 + Notice (5)
    assert int(m.group(3)) == os.getpid()
    assert m.group(4) == TEXT_5_ISO.encode()
    assert got[1].startswith(b"<10>") and got[2].startswith(b"<15>")   # Critical 2, Debug 7


def test_json_format_and_daemon_restart(tmp_path: Path) -> None:
    dev_log = tmp_path / "log"
    server = listen(dev_log)
    out = build_outputs(output_settings(tmp_path, "syslog_output.enabled=true", f"syslog_output.address={dev_log}",
                                        "syslog_output.format=json", "outputs_queue.retry_initial=10ms"))
    out.submit(make_alert(5))
    assert out.flush(10)
    assert server.recv(65536).endswith(b"]: " + JSON_5.encode())
    server.close()
    dev_log.unlink()                                # the daemon restarts: a new socket
    out.submit(make_alert(6))
    ch = out.channels[0]
    from .conftest import wait_until

    assert wait_until(lambda: ch.stats()["errors"] >= 1)
    server = listen(dev_log)
    assert out.flush(10)
    out.close()
    assert b'"uuid":"00000000-0000-4000-8000-000000000006"' in server.recv(65536)
    assert ch.stats()["drops"] == {}
