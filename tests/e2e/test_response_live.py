"""Automatic response, live: `falconet run` with the bundled "Sensitive file read" rule and a
kill_process action, against processes that really read /etc/shadow (needs root and eBPF).

Each test starts the sensor with its own overrides, waits until a probe file's open comes back as
an alert (so the capture is attached), then acts and reads the JSON lines the sensor prints: the
detections and the response records ("Falconet internal: response") side by side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import interrupt

pytestmark = pytest.mark.ebpf

ROOT = Path(__file__).resolve().parents[2]
FALCONET = str(Path(sys.executable).with_name("falconet"))
BUNDLED_RULES = ROOT / "rules" / "falconet_rules.yaml"
RULE = "Sensitive file read"
RECORD_RULE = "Falconet internal: response"
READY_RULE = "Falconet e2e response probe"
# bash opens /etc/shadow, then becomes `sleep`: same process, so the alert's PID and start time
# still describe it when the response acts.
VICTIM = ["bash", "-c", "exec 3</etc/shadow; exec sleep 30"]


def kill_action(**extra: Any) -> str:
    item = {"name": "kill-shadow-readers", "match": {"rules": [RULE]}, "do": "kill_process", **extra}
    return "response.actions[]=" + json.dumps(item)


class LiveSensor:
    """`falconet run` in the background, its stdout parsed as JSON alerts."""

    def __init__(self, tmp_path: Path, *overrides: str, duration: int = 90) -> None:
        self.probe = tmp_path / "probe"
        self.probe.write_text("probe\n")
        ready_rules = tmp_path / "probe_rules.yaml"
        ready_rules.write_text(f"""
- rule: {READY_RULE}
  desc: The e2e test opened its probe file, so the capture is running.
  condition: evt.type in (open, openat, openat2) and fd.name = {self.probe}
  output: probe opened (file=%fd.name pid=%proc.pid)
  priority: Debug
  source: syscall
""")
        argv = [FALCONET, "run", "-M", str(duration), "-r", str(BUNDLED_RULES), "-r", str(ready_rules),
                "-o", "json_output=true", "-o", "response.enabled=true"]
        for o in overrides:
            argv += ["-o", o]
        self.alerts: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.alerts.append(doc)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.alerts)

    def wait_for(self, pred: Any, timeout: float = 5.0, what: str = "an alert") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for a in self.snapshot():
                if pred(a):
                    return a
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise AssertionError(f"no {what} within {timeout}s; sensor exit={self.proc.poll()} "
                             f"stderr={''.join(self.stderr)[-2000:]} alerts={self.snapshot()[-5:]}")

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.probe.read_text()
            if any(a.get("rule") == READY_RULE for a in self.snapshot()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"the sensor did not start within {timeout}s: exit={self.proc.poll()} "
                             f"stderr={''.join(self.stderr)[-2000:]}")

    def detection_for(self, pid: int, timeout: float = 5.0) -> dict[str, Any]:
        return self.wait_for(lambda a: a.get("rule") == RULE
                             and (a.get("output_fields") or {}).get("proc.pid") == pid,
                             timeout, f"'{RULE}' alert for pid {pid}")

    def records_for(self, alert_id: str) -> list[dict[str, Any]]:
        return [a for a in self.snapshot() if a.get("rule") == RECORD_RULE
                and a["output_fields"].get("response.alert_id") == alert_id]

    def record_for(self, alert_id: str, timeout: float = 5.0) -> dict[str, Any]:
        return self.wait_for(lambda a: a.get("rule") == RECORD_RULE
                             and a["output_fields"].get("response.alert_id") == alert_id,
                             timeout, f"response record for alert {alert_id}")

    def stop(self) -> None:
        interrupt(self.proc)


@pytest.fixture
def sensor(tmp_path):
    started: list[LiveSensor] = []

    def start(*overrides: str) -> LiveSensor:
        s = LiveSensor(tmp_path, *overrides)
        started.append(s)
        s.wait_ready()
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def victims():
    procs: list[subprocess.Popen] = []

    def start(argv: list[str] = VICTIM) -> subprocess.Popen:
        p = subprocess.Popen(argv)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def alive_after(p: subprocess.Popen, seconds: float) -> bool:
    try:
        p.wait(seconds)
        return False
    except subprocess.TimeoutExpired:
        return True


def test_shadow_reader_is_dead_within_a_second(sensor, victims):
    s = sensor(kill_action())
    started = time.monotonic()
    p = victims()
    p.wait(timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert p.returncode == -signal.SIGKILL
    alert = s.detection_for(p.pid)
    rec = s.record_for(alert["uuid"])
    assert rec["source"] == "internal" and rec["priority"] == "Informational"
    assert rec["output_fields"]["response.outcome"] == "done"
    assert rec["output_fields"]["response.target"].startswith(f"pid {p.pid}")
    assert rec["uuid"] != alert["uuid"]


def test_dry_run_leaves_it_alive_and_says_so(sensor, victims):
    s = sensor(kill_action(), "response.dry_run=true")
    p = victims()
    alert = s.detection_for(p.pid)
    rec = s.record_for(alert["uuid"])
    assert rec["output_fields"]["response.reason"] == "dry_run"
    assert rec["output_fields"]["response.dry_run"] is True
    assert "would send SIGKILL" in rec["output"]
    assert alive_after(p, 1.0)


def test_pid_reuse_kills_nothing(sensor, victims):
    """The sensor is frozen while the reader exits and a newcomer takes its PID: the alert that
    arrives afterwards names the old process, and the newcomer survives."""
    s = sensor(kill_action())
    os.kill(s.proc.pid, signal.SIGSTOP)
    try:
        reader = victims(["bash", "-c", "exec 3</etc/shadow"])
        reader.wait(5)
        time.sleep(0.1)            # well past the 2-tick start-time precision
        newcomer = None
        for _ in range(20):
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(reader.pid - 1))
            candidate = victims(["sleep", "30"])
            if candidate.pid == reader.pid:
                newcomer = candidate
                break
            candidate.kill()
        assert newcomer is not None, f"could not get PID {reader.pid} again"
    finally:
        os.kill(s.proc.pid, signal.SIGCONT)
    alert = s.detection_for(reader.pid)
    rec = s.record_for(alert["uuid"])
    assert rec["output_fields"]["response.reason"] == "pid_reused"
    assert "belongs to another process" in rec["output"]
    assert alive_after(newcomer, 1.0)


def test_cooldown_holds_for_the_same_process(sensor, victims):
    # Three reads by one process: acted on once, then cooldown (dry run keeps it alive to read again).
    s = sensor(kill_action(cooldown="1m"), "response.dry_run=true")
    p = victims(["bash", "-c", "for i in 1 2 3; do exec 3</etc/shadow; sleep 0.1; done; exec sleep 30"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alerts = [a for a in s.snapshot() if a.get("rule") == RULE
                  and a["output_fields"].get("proc.pid") == p.pid]
        if len(alerts) == 3 and all(s.records_for(a["uuid"]) for a in alerts):
            break
        time.sleep(0.05)
    reasons = [s.records_for(a["uuid"])[0]["output_fields"]["response.reason"] for a in alerts]
    assert reasons == ["dry_run", "cooldown", "cooldown"]


def test_rate_limit_spares_the_third(sensor, victims):
    s = sensor(kill_action(max_per_minute=2))
    procs = []
    for _ in range(3):
        procs.append(victims())
        s.record_for(s.detection_for(procs[-1].pid)["uuid"])
    assert procs[0].wait(1) == -signal.SIGKILL
    assert procs[1].wait(1) == -signal.SIGKILL
    rec = s.records_for(s.detection_for(procs[2].pid)["uuid"])[0]
    assert rec["output_fields"]["response.reason"] == "rate_limit"
    assert alive_after(procs[2], 0.5)
