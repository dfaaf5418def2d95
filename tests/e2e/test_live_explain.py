"""`falconet run --explain` on the live eBPF capture: a rule that does not fire on our own reads of
a marker file gets its near misses explained in the log, with the values the capture saw."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FALCONET = str(Path(sys.executable).with_name("falconet"))


@pytest.mark.ebpf
def test_run_explains_why_a_live_rule_did_not_fire(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.write_text("x")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""
- rule: marker written
  desc: t
  condition: evt.type in (open, openat) and fd.name = {marker} and evt.is_open_write = true
  output: marker written by %proc.name
  priority: Notice
""")
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [FALCONET, "run", "-r", str(rules), "-o", f"state_dir={tmp_path}", "-o", "webserver.enabled=false",
             "--explain", "marker written", "--explain-filter", f"fd.name = {marker}", "-M", "90"],
            stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline and proc.poll() is None:
            subprocess.run(["cat", str(marker)], stdout=subprocess.DEVNULL, check=True)
            if "◀ decided" in log.read_text():
                break
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "explain: near miss of rule 'marker written'" in text
    assert f'fd.name "{marker}" = {marker} → true' in text
    assert "evt.is_open_write false = true → false   ◀ decided" in text
    assert "explain: rule 'marker written':" in text and "(selected by --explain-filter)" in text
