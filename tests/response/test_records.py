"""The record of an outcome: an internal alert that Falco consumers and the ECS mapping read."""

from __future__ import annotations

import json

from sensor.alert import Priority, alert_json
from sensor.response.records import REASONS, done, failed, record, skipped

from .helpers import alert


def test_record_names_its_alert_and_has_its_own_uuid():
    a = alert({"proc.pid": 42})
    rec = record("kill-it", "kill_process", done("sent SIGKILL to pid 42", "pid 42 (cat)"), a, False)
    assert rec.source == "internal"
    assert rec.rule == "Falconet internal: response"
    assert rec.priority is Priority.INFORMATIONAL
    assert rec.uuid != a.uuid and len(rec.uuid) == 36
    assert rec.hostname == a.hostname
    assert rec.output == ("Falconet response done: action kill-it (kill_process) on pid 42 (cat): "
                          f"sent SIGKILL to pid 42 for rule '{a.rule}' (alert {a.uuid})")
    assert rec.output_fields == {
        "response.action": "kill-it", "response.do": "kill_process", "response.target": "pid 42 (cat)",
        "response.outcome": "done", "response.reason": "done", "response.dry_run": False,
        "response.alert_id": a.uuid, "response.alert_rule": a.rule}
    assert rec.extra["falconet"]["response"] == {
        "action": "kill-it", "do": "kill_process", "target": "pid 42 (cat)", "alert_id": a.uuid,
        "alert_rule": a.rule, "dry_run": False, "reason": "done", "result": "done"}


def test_failure_is_an_error_with_outcome_failure():
    rec = record("hook", "http", failed("POST answered HTTP 500", "https://x/"), alert({}), False)
    assert rec.priority is Priority.ERROR
    assert rec.extra["event"]["outcome"] == "failure"
    assert rec.extra["event"]["type"] == ["info", "error"]
    assert rec.output.startswith("Falconet response FAILED: ")


def test_skip_has_outcome_unknown_and_its_reason():
    rec = record("k", "kill_process", skipped("pid_reused", "pid 42 now belongs to another process"),
                 alert({}), True)
    assert rec.priority is Priority.INFORMATIONAL
    assert rec.extra["event"]["outcome"] == "unknown"
    assert rec.extra["falconet"]["response"]["reason"] == "pid_reused"
    assert rec.extra["falconet"]["response"]["dry_run"] is True
    assert "pid_reused" in REASONS


def test_record_renders_as_a_falco_json_alert():
    rec = record("k", "kill_process", done("sent SIGKILL to pid 42", "pid 42"), alert({}), False)
    doc = json.loads(alert_json(rec))
    assert doc["rule"] == "Falconet internal: response"
    assert doc["source"] == "internal"
    assert doc["priority"] == "Informational"
    assert doc["uuid"] == rec.uuid
    assert doc["output_fields"]["response.outcome"] == "done"


def test_record_without_an_alert_names_the_host():
    rec = record("k", "kill_process", skipped("queue_full", "dropped 3 alert(s)"), None, False, "node-1")
    assert rec.hostname == "node-1"
    assert rec.extra["falconet"]["response"]["alert_id"] is None
