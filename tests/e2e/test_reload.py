"""SIGHUP and SIGUSR1 on a real `falconet run` (Kubernetes audit log source, no eBPF needed).

A broken rules file leaves the old rules running and is reported by a Critical internal alert; a
good one (with a changed output configuration) swaps in, and the alerts that were queued for an
HTTP destination that was failing at the time are all delivered afterwards, in order. SIGUSR1
reopens the alert file after it was rotated.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from outputs.http_collector import Collector

ROOT = Path(__file__).resolve().parents[2]
FALCONET = str(ROOT / ".venv" / "bin" / "falconet")

RULES_V1 = """\
- rule: ConfigMap created
  desc: a ConfigMap was created
  condition: ka.verb = create and ka.target.resource = configmaps
  output: ConfigMap created (name=%ka.target.name)
  priority: Notice
  source: k8s_audit
  tags: [k8s]
"""
RULES_BROKEN = RULES_V1 + """\
- rule: Secret read
  desc: a Secret was read
  condition: ka.verb = get and ka.target.resource in (secrets
  output: Secret read (name=%ka.target.name)
  priority: Warning
  source: k8s_audit
"""
RULES_V2 = RULES_V1 + """\
- rule: Secret read
  desc: a Secret was read
  condition: ka.verb = get and ka.target.resource in (secrets)
  output: Secret read (name=%ka.target.name)
  priority: Warning
  source: k8s_audit
  tags: [k8s]
"""


def audit(verb: str, resource: str, name: str) -> str:
    return json.dumps({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": f"{verb}-{name}",
        "stage": "ResponseComplete", "requestURI": f"/api/v1/namespaces/default/{resource}", "verb": verb,
        "user": {"username": "alice"},
        "objectRef": {"resource": resource, "namespace": "default", "name": name, "apiVersion": "v1"},
        "responseStatus": {"code": 200}, "requestReceivedTimestamp": "2024-03-01T12:00:00.000000Z",
        "stageTimestamp": "2024-03-01T12:00:00.000001Z"}) + "\n"


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_sighup_reload_and_sigusr1_reopen(tmp_path: Path) -> None:
    rules, audit_log, alerts = tmp_path / "rules.yaml", tmp_path / "audit.log", tmp_path / "alerts.jsonl"
    rules.write_text(RULES_V1)
    audit_log.touch()
    http = Collector()
    config: dict[str, Any] = {
        "rules_files": [str(rules)], "state_dir": str(tmp_path / "state"), "json_output": True,
        "syscall": {"enabled": False}, "k8s_audit": {"files": [str(audit_log)]},
        "webserver": {"enabled": False}, "stdout_output": {"enabled": False},
        "file_output": {"enabled": True, "filename": str(alerts), "keep_alive": True},
        "http_output": {"enabled": True, "url": f"http://127.0.0.1:{http.port}/alerts"},
        "outputs_queue": {"retry_initial": "50ms", "retry_max": "200ms"},
    }
    cfg_file = tmp_path / "falconet.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    log = open(tmp_path / "sensor.log", "wb")
    proc = subprocess.Popen([FALCONET, "run", "-c", str(cfg_file)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT)

    def append(*lines: str) -> None:
        with open(audit_log, "a") as f:
            f.writelines(lines)

    def rules_fired(path: Path = alerts) -> list[tuple[str, str]]:
        return [(a["rule"], a["output_fields"].get("ka.target.name")) for a in read_json_lines(path)
                if a["source"] == "k8s_audit"]

    def posted() -> list[dict[str, Any]]:
        return [json.loads(b) for b in http.bodies()]

    try:
        append(audit("create", "configmaps", "cm-1"))
        wait(lambda: [p["output_fields"].get("ka.target.name") for p in posted()] == ["cm-1"], 30, "cm-1 posted")

        http.status = 503                                  # the destination fails: alerts queue up
        append(audit("create", "configmaps", "cm-2"), audit("create", "configmaps", "cm-3"))
        wait(lambda: len(rules_fired()) == 3, 30, "cm-2 and cm-3 in the file")
        wait(lambda: len(http.requests) >= 3, 30, "failed attempts to post cm-2")

        rules.write_text(RULES_BROKEN)                     # a broken rules file ...
        proc.send_signal(signal.SIGHUP)
        wait(lambda: any(a["rule"] == "Falconet internal: rules reload failed" for a in read_json_lines(alerts)),
             30, "the reload-failed alert")
        append(audit("create", "configmaps", "cm-4"), audit("get", "secrets", "s-1"))
        wait(lambda: ("ConfigMap created", "cm-4") in rules_fired(), 30, "cm-4 under the old rules")

        rules.write_text(RULES_V2)                         # ... then a good one, with a new output setting
        config["json_include_tags_property"] = False
        cfg_file.write_text(yaml.safe_dump(config))
        proc.send_signal(signal.SIGHUP)
        wait(lambda: any(a["rule"] == "Falconet internal: rules reloaded" for a in read_json_lines(alerts)),
             30, "the reloaded alert")
        append(audit("get", "secrets", "s-2"))
        wait(lambda: ("Secret read", "s-2") in rules_fired(), 30, "the new rule")

        http.status = 200                                  # the destination is back
        wait(lambda: any(p["output_fields"].get("ka.target.name") == "s-2" for p in posted()), 30,
             "the queued alerts to be posted")

        alerts.rename(tmp_path / "alerts.jsonl.1")         # logrotate, then SIGUSR1
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        append(audit("create", "configmaps", "cm-5"))
        wait(lambda: rules_fired(alerts) == [("ConfigMap created", "cm-5")], 30, "cm-5 in the reopened file")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        http.close()

    file_alerts = read_json_lines(tmp_path / "alerts.jsonl.1")
    failed = next(a for a in file_alerts if a["rule"] == "Falconet internal: rules reload failed")
    assert failed["priority"] == "Critical" and failed["source"] == "internal"
    assert f"{rules}:" in failed["output_fields"]["falconet.reload.error"]
    assert "LOAD_ERR_COMPILE_CONDITION" in failed["output_fields"]["falconet.reload.error"]
    assert rules_fired(tmp_path / "alerts.jsonl.1") == [
        ("ConfigMap created", "cm-1"), ("ConfigMap created", "cm-2"), ("ConfigMap created", "cm-3"),
        ("ConfigMap created", "cm-4"), ("Secret read", "s-2")]        # s-1 came before the rule existed
    by_name = {a["output_fields"].get("ka.target.name"): a for a in file_alerts}
    assert "tags" in by_name["cm-4"] and "tags" not in by_name["s-2"]   # the new output setting applies
    # Every alert queued while the destination failed was delivered after the reload, in order.
    names = [p["output_fields"].get("ka.target.name") for p in posted() if p["source"] == "k8s_audit"]
    delivered = list(dict.fromkeys(names))                 # first delivery of each, in order
    assert delivered == ["cm-1", "cm-2", "cm-3", "cm-4", "s-2", "cm-5"]
    summary = (tmp_path / "sensor.log").read_text().strip().splitlines()[-1]
    assert summary.startswith("Events detected: 6; events processed: 7; drops: 0 events, 0 alerts")
    assert summary.endswith("reloads: 1 (1 failed)")
