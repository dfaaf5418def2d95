"""Alerts and configurations for the response tests."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from sensor import config
from sensor.alert import Alert
from sensor.event import RecordedEvent
from sensor.response import procfs
from sensor.response.settings import ResponseSettings


def alert(fields: dict[str, Any], rule: str = "Read sensitive file untrusted", priority: str = "Warning",
          source: str = "syscall", tags: list[str] | None = None) -> Alert:
    """An alert on a recorded event with these Falco fields."""
    ev = RecordedEvent(source, {"evt.type": "openat", **fields})
    return Alert(rule=rule, priority=priority, source=source, time_ns=1_700_000_000_000_000_000,
                 output=f"{rule} (test)", output_fields=dict(fields), tags=list(tags or ["filesystem"]),
                 hostname="testhost", event=ev)


def response_settings(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> ResponseSettings:
    """The response settings of `text` written to tmp_path/falconet.yaml (and `overrides`)."""
    path = tmp_path / "falconet.yaml"
    path.write_text(text)
    return ResponseSettings.from_config(config.load(path, overrides))


class Records:
    """A sink that keeps the records it is given."""

    def __init__(self) -> None:
        self.items: list[Alert] = []

    def __call__(self, rec: Alert) -> None:
        self.items.append(rec)

    def reasons(self) -> list[str]:
        return [r.extra["falconet"]["response"]["reason"] for r in self.items]

    def wait(self, count: int, timeout: float = 5.0) -> list[Alert]:
        import time

        deadline = time.monotonic() + timeout
        while len(self.items) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.items) >= count, f"expected {count} records, got {self.items}"
        return self.items


def wait_started(pid: int, program: str) -> None:
    """Wait until `pid` runs `program` (before exec, /proc shows the forking Python)."""
    comm = Path(program).name[:15]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st = procfs.read_stat(pid)
        if st is not None and st.comm == comm:
            return
        time.sleep(0.002)
    raise AssertionError(f"pid {pid} did not start {program} within 5 s")


def event_fields(pid: int, **more: Any) -> dict[str, Any]:
    """The fields the capture would give an event of process `pid` (start time from /proc)."""
    st = procfs.read_stat(pid)
    assert st is not None
    return {"proc.pid": pid, "proc.pid.ts": st.start_ns, "proc.name": st.comm, "container.id": "host",
            **more}


def dead_within(p: subprocess.Popen, seconds: float = 1.0) -> bool:
    """True when our child `p` exits within `seconds`."""
    try:
        p.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False
