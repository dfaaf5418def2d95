"""Untrusted text from the watched host, live (hardening findings 3 and 8): a file name that is not
UTF-8 and a command line carrying a newline and terminal escapes must reach every line channel as
one alert each, never dropped for their content and never forging a second line.

`falconet run` captures for real (root and eBPF), with stdout as text, a file as JSON and syslog to
a datagram socket of the test's own; a helper process opens the crafted names and then `cat`s them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import interrupt

pytestmark = pytest.mark.ebpf

FALCONET = str(Path(sys.executable).with_name("falconet"))
FORGED = "\n00:00:00.000000000: Critical Forged alert\x1b[2K\r"


def wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_undecodable_names_and_control_characters_reach_every_channel_escaped(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    work.chmod(0o700)
    bad_name = os.fsencode(work) + b"/.x\xff"
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""
- rule: Crafted file opened
  desc: the test's crafted names
  condition: evt.type in (open, openat, openat2) and fd.name startswith {work}/
  output: crafted open (file=%fd.name cmdline=%proc.cmdline)
  priority: Warning
""")
    alerts_file = tmp_path / "alerts.jsonl"
    sock_path = str(tmp_path / "syslog.sock")
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(sock_path)
    syslog.settimeout(0.2)
    argv = [FALCONET, "run", "-M", "120", "-r", str(rules), "-o", f"state_dir={tmp_path / 'state'}",
            "-o", "stdout_output.enabled=true", "-o", "json_output=false",
            "-o", "file_output.enabled=true", "-o", f"file_output.filename={alerts_file}",
            "-o", "file_output.format=json",
            "-o", "syslog_output.enabled=true", "-o", f"syslog_output.address={sock_path}",
            "-o", "syslog_output.format=text", "-o", "webserver.enabled=false"]
    out = open(tmp_path / "stdout.txt", "wb")
    proc = subprocess.Popen(argv, stdout=out, stderr=open(tmp_path / "stderr.txt", "wb"))
    datagrams: list[bytes] = []
    try:
        # The first open that comes back as an alert says the capture is attached.
        def opened_once() -> bool:
            with open(bad_name, "wb"):
                pass
            return alerts_file.exists() and alerts_file.stat().st_size > 0
        wait(opened_once, 90, "the sensor to attach")
        before = len(alerts_file.read_text().splitlines())
        # `cat FILE $'\xff'FORGED`: a command line with an undecodable byte, a newline and ANSI escapes.
        subprocess.run([b"cat", bad_name, b"\xff" + FORGED.encode()], capture_output=True)
        wait(lambda: len(alerts_file.read_text().splitlines()) > before, 10, "the cat alert in the file")
        time.sleep(0.5)
    finally:
        interrupt(proc)
        out.close()
        while True:
            try:
                datagrams.append(syslog.recv(65536))
            except OSError:
                break
        syslog.close()

    docs = [json.loads(line) for line in alerts_file.read_text().splitlines()]
    assert docs and all(d["rule"] == "Crafted file opened" for d in docs)
    assert {d["output_fields"]["fd.name"] for d in docs} == {f"{work}/.x\\xff"}
    cat = [d for d in docs if d["output_fields"]["proc.cmdline"].startswith("cat ")]
    assert len(cat) == 1
    assert cat[0]["output_fields"]["proc.cmdline"] == f"cat {work}/.x\\xff \\xff{FORGED}"
    assert "\n" not in cat[0]["output"] and "\x1b" not in cat[0]["output"]

    stdout_lines = (tmp_path / "stdout.txt").read_bytes().decode("utf-8").splitlines()
    shown = [line for line in stdout_lines if "crafted open" in line]
    assert len(shown) == len(docs)                        # one line per alert, none dropped
    assert not any("Forged alert" in line and "crafted open" not in line for line in stdout_lines)
    assert any(line.endswith("\\xff\\n00:00:00.000000000: Critical Forged alert\\x1b[2K\\r)")
               for line in shown)

    texts = [d.decode("utf-8") for d in datagrams]
    assert len(texts) == len(docs)
    assert all("\n" not in t and "\x1b" not in t for t in texts)
