"""Whole runs of the audit pipeline: `falconet run` receiving the sample stream over the HTTPS webhook
and from a followed audit log, and `falconet replay` of the same stream. The alerts are the ones
tests/data/k8s_audit/expected.yaml lists for rules/k8s_audit_rules.yaml (first match per event)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from conftest import ROOT

DATA = ROOT / "tests" / "data" / "k8s_audit"
RULES = ROOT / "rules" / "k8s_audit_rules.yaml"
EVENTS = [json.loads(line) for line in (DATA / "events.jsonl").read_text().splitlines()]
EXPECTED = yaml.safe_load((DATA / "expected.yaml").read_text())
# The console script of the interpreter running the tests (the project's venv).
FALCONET = [sys.executable, "-c", "from sensor.cli import main; main()"]


def first_matches(items: list[dict]) -> list[str]:
    return [x["falconet"][0] for x in items if x["falconet"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """`falconet run` in the background, its JSON alerts collected from stdout as they come."""

    def __init__(self, *args: str, state: Path, env: dict[str, str] | None = None) -> None:
        cmd = [*FALCONET, "run", "-r", str(RULES), "-o", "syscall.enabled=false", "-o", f"state_dir={state}",
               "-o", "json_output=true", "-o", "webserver.enabled=false", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "FALCONET_HOSTNAME": "e2e", **(env or {})})
        self.alerts: list[dict] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._read_alerts, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for r in self._readers:
            r.start()

    def _read_alerts(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.alerts.append(json.loads(line))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def wait_alerts(self, n: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.alerts) < n and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        return self.alerts

    def finish(self, timeout: float = 20, stop: bool = True) -> str:
        """Stop the run (or, with stop=False, let -M end it) and return its stderr."""
        if stop and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for r in self._readers:
            r.join(timeout=5)
        return "".join(self.stderr)


def test_run_with_the_webhook_alerts_on_what_the_api_server_posts(tmp_path: Path) -> None:
    port = free_port()
    # The token comes from the environment through ${VAR} expansion, as a Deployment would pass it.
    run = Run("-o", "k8s_audit.webhook.enabled=true", "-o", f"k8s_audit.webhook.listen=127.0.0.1:{port}",
              "-o", "k8s_audit.webhook.token=${E2E_AUDIT_TOKEN}", state=tmp_path,
              env={"E2E_AUDIT_TOKEN": "e2e-token"})
    try:
        ca = tmp_path / "k8s_audit" / "ca.crt"
        deadline = time.monotonic() + 30
        while not ca.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        ctx = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        while time.monotonic() < deadline:
            try:
                conn.connect()
                break
            except OSError:
                conn.close()
                time.sleep(0.1)

        def post(body: dict, token: str | None) -> int:
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            conn.request("POST", "/k8s-audit", body=json.dumps(body), headers=headers)
            r = conn.getresponse()
            r.read()
            if r.getheader("Connection") == "close":
                conn.close()
            return r.status

        assert post({"kind": "EventList", "items": EVENTS[:3]}, None) == 401
        assert post({"kind": "EventList", "items": EVENTS[:3]}, "wrong") == 403
        for i in range(0, len(EVENTS), 7):
            assert post({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": EVENTS[i:i + 7]},
                        "e2e-token") == 200
        want = first_matches(EXPECTED)
        alerts = run.wait_alerts(len(want))
    finally:
        err = run.finish()
    assert [a["rule"] for a in alerts] == want, err
    assert {a["source"] for a in alerts} == {"k8s_audit"} and {a["hostname"] for a in alerts} == {"e2e"}
    assert alerts[0]["time"] == "2026-03-14T09:27:07.591793000Z"
    assert "drops: 0 events" in err


def test_run_follows_an_audit_log_and_resumes_after_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    lines = (DATA / "events.jsonl").read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:15]))
    args = ("-o", f"k8s_audit.files=[{log}]", "-M", "4")
    first = Run(*args, state=tmp_path / "state")
    err = first.finish(timeout=30, stop=False)
    assert [a["rule"] for a in first.alerts] == first_matches(EXPECTED[:15]), err
    with log.open("a") as f:
        f.write("".join(lines[15:]))
    second = Run(*args, state=tmp_path / "state")
    err = second.finish(timeout=30, stop=False)
    assert [a["rule"] for a in second.alerts] == first_matches(EXPECTED[15:]), err


def test_replay_of_the_audit_stream_prints_the_same_alerts() -> None:
    out = subprocess.run([*FALCONET, "replay", str(DATA / "events.jsonl"), "-r", str(RULES), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    alerts = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["rule"] for a in alerts] == first_matches(EXPECTED)
    assert f"events processed: {len(EVENTS)}" in out.stderr
