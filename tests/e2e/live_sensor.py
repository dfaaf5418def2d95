"""`falconet run` as a user runs it, for the live tests: started with rule files and -o overrides,
ready once an open of its own probe file comes back as an alert, stopped with Ctrl-C for its
summary line. Alerts are read from its JSON output."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FALCONET = str(Path(sys.executable).with_name("falconet"))
READY_RULE = "Falconet live test probe"


class LiveSensor:
    def __init__(self, workdir: Path, rules: list[Path], *overrides: str, verbose: bool = False) -> None:
        self.probe = workdir / "probe"
        self.probe.write_text("probe\n")
        probe_rules = workdir / "probe_rules.yaml"
        probe_rules.write_text(f"""
- rule: {READY_RULE}
  desc: The test opened its probe file, so the capture is running.
  condition: evt.type in (open, openat, openat2) and fd.name = {self.probe}
  output: probe (pid=%proc.pid)
  priority: Debug
""")
        argv = [FALCONET, "run", "-o", "json_output=true", "-o", "webserver.enabled=false"]
        for r in [*rules, probe_rules]:
            argv += ["-r", str(r)]
        for o in overrides:
            argv += ["-o", o]
        if verbose:
            argv.append("-v")
        self.out_path = workdir / "alerts.jsonl"
        self.err_path = workdir / "sensor.err"
        self.out = open(self.out_path, "w")          # closed in stop()
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.err, text=True)
        self.summary: dict[str, int] = {}

    def alerts(self) -> list[dict[str, Any]]:
        out = []
        with open(self.out_path) as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
        return out

    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_ready(self, timeout: float = 120.0) -> None:
        self.barrier(timeout)

    def barrier(self, timeout: float = 60.0) -> None:
        """Until the sensor has matched every event before now (the ring is first in, first out)."""
        seen = sum(1 for a in self.alerts() if a["rule"] == READY_RULE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sensor exited: {self.stderr()[-3000:]}")
            self.probe.read_text()
            time.sleep(0.2)
            if sum(1 for a in self.alerts() if a["rule"] == READY_RULE) > seen:
                return
        raise RuntimeError(f"the sensor did not catch up in time: {self.stderr()[-3000:]}")

    def stop(self) -> dict[str, int]:
        """Ctrl-C; the summary line's events and drops."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()
        m = re.search(r"events processed: (\d+); drops: (\d+) events", self.stderr())
        if m:
            self.summary = {"events": int(m.group(1)), "drops": int(m.group(2))}
        return self.summary

    def __enter__(self) -> LiveSensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
