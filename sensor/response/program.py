"""program: run a command with the alert's JSON (Falcosidekick-compatible) on stdin.

The command runs through /bin/sh -c, as Falco's program_output does, so pipes and redirections
work; it gets the sensor's environment without its secrets (sensor.credentials). Exit status 0 is
success; anything else, or running past `timeout`, is a failure recorded with the tail of its
stderr. The cooldown target is the alert's rule.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from typing import Any

from sensor.alert import alert_dict
from sensor.credentials import child_environment
from sensor.response.params import Param, positive
from sensor.response.records import Outcome, done, failed, skipped
from sensor.response.target import Target


class RunProgram:
    """Run `command` with the alert JSON on stdin."""

    do = "program"
    PARAMS = {
        "command": Param(str, description="Shell command; reads one JSON alert on stdin."),
        "timeout": Param(float, 10.0, "Seconds before the command is killed.", check=positive),
    }

    def __init__(self, params: dict[str, Any], ctx: Any = None) -> None:
        self.command = params["command"]
        self.timeout = float(params["timeout"])

    def resolve(self, alert: Any) -> Target | Outcome:
        return Target(key=alert.rule, text=self.command)

    def execute(self, alert: Any, target: Target, dry_run: bool) -> Outcome:
        if dry_run:
            return skipped("dry_run", f"would run `{self.command}`", target.text)
        body = json.dumps(alert_dict(alert), separators=(",", ":"), default=str) + "\n"
        try:
            # Its own process group, so a timeout kills what the shell started too.
            proc = subprocess.Popen(["/bin/sh", "-c", self.command], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    start_new_session=True, env=child_environment())
        except OSError as e:
            return failed(f"cannot run `{self.command}`: {e.strerror or e}", target.text)
        try:
            _, stderr = proc.communicate(body.encode(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return failed(f"`{self.command}` ran longer than {self.timeout:g}s and was killed", target.text)
        if proc.returncode != 0:
            tail = stderr.decode(errors="replace").strip()[-300:]
            return failed(f"`{self.command}` exited with status {proc.returncode}"
                          + (f": {tail}" if tail else ""), target.text)
        return done(f"ran `{self.command}` (exit status 0)", target.text)
