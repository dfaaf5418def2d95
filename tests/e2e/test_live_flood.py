"""Issue 14, finding 4: a local user must not blind the sensor by flooding it with events.

As `nobody`, a process opens files at full speed for a few seconds, with relative paths (which
the kernel cannot judge, so every one must reach the rules) and directories. Meanwhile root reads
/etc/shadow 20 times. Every one of the 20 reads must raise its alert; whatever the flooder lost is
counted, and an alert names it. Before budgets, the flood filled the ring and reads were lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import compat_file
from live_sensor import LiveSensor

pytestmark = pytest.mark.ebpf
FLOOD_SECONDS = 4
READS = 20
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"          # nobody cannot run the virtual environment's, under /root


@pytest.fixture
def area() -> Iterator[Path]:
    """A directory nobody can work in (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="falconet-flood-"))
    try:
        os.chmod(d, 0o755)
        (d / "sub").mkdir()
        (d / "f").write_text("x")
        for p in (d, d / "sub", d / "f"):
            os.chown(p, NOBODY, NOBODY)
        yield d
    finally:
        shutil.rmtree(d)


def test_a_flooding_user_does_not_hide_reads_of_shadow(tmp_path: Path, area: Path) -> None:
    stable = compat_file("falco_rules.yaml")
    # a small ring, so that the flood would fill it many times over within the bounded load
    with LiveSensor(tmp_path, [stable], "syscall.ring_buffer_size=1MiB") as sensor:
        sensor.wait_ready()
        flood = subprocess.Popen(
            [SYSTEM_PYTHON, "-c",
             f"import os, time\nos.chdir({str(area)!r})\nend = time.monotonic() + {FLOOD_SECONDS}\n"
             "while time.monotonic() < end:\n"
             "    for _ in range(500):\n"
             "        os.close(os.open('f', os.O_RDONLY))\n"
             "        os.close(os.open('sub', os.O_RDONLY))\n"],
            preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)))
        time.sleep(1)                                   # the flood is at full speed
        marker = f"reader-{os.getpid()}"
        subprocess.run([sys.executable, "-c", f"import time\nfor _ in range({READS}):\n"
                        "    open('/etc/shadow').read()\n    time.sleep(0.1)\n", marker], check=True)
        assert flood.wait(FLOOD_SECONDS + 30) == 0
        sensor.barrier(120)
        summary = sensor.stop()
    alerts = sensor.alerts()
    reads = [a for a in alerts if a["rule"] == "Read sensitive file untrusted"
             and marker in a["output_fields"]["proc.cmdline"]]
    assert len(reads) == READS, sensor.stderr()[-2000:]
    floods = [a for a in alerts if a["rule"] == "Falconet internal: syscall event flood"]
    assert floods, "the flooder was never throttled: the load did not fill the ring"
    assert {a["output_fields"]["proc.pid"] for a in floods} == {flood.pid}
    assert {a["output_fields"]["user.uid"] for a in floods} == {NOBODY}
    dropped = sum(a["output_fields"]["n_drops"] for a in floods)
    # every drop is counted and reported
    assert summary["drops"] >= dropped > 0
    reported = [a for a in alerts if a["rule"] == "Falconet internal: syscall event drop"]
    assert sum(a["output_fields"]["n_drops"] for a in reported) == summary["drops"]
    assert sum(a["output_fields"].get("n_drops_budget", 0) for a in reported) >= dropped
