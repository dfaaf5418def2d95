"""Audit rules on the sample audit stream: Falco's official k8s_audit_rules.yaml and Falconet's own
rules/k8s_audit_rules.yaml fire exactly the rules tests/data/k8s_audit/expected.yaml lists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, compat_file

from sensor.alert import Priority
from sensor.engine import load_rules
from sensor.sources.k8s_audit.decode import events_from_json

DATA = ROOT / "tests" / "data" / "k8s_audit"
OURS = ROOT / "rules" / "k8s_audit_rules.yaml"
EXPECTED = yaml.safe_load((DATA / "expected.yaml").read_text())


def stream() -> list:
    events = []
    for i, line in enumerate((DATA / "events.jsonl").read_text().splitlines()):
        events += events_from_json(json.loads(line), first_num=i + 1)
    return events


def fired(ruleset, events) -> dict[str, list[str]]:
    return {e.obj["auditID"]: [a.rule for a in ruleset.process(e)] for e in events}


def test_the_sample_stream_matches_its_expectations_file() -> None:
    assert [e.obj["auditID"] for e in stream()] == [x["auditID"] for x in EXPECTED]


def test_falcos_official_audit_rules_fire_the_expected_rules() -> None:
    rs = load_rules([compat_file("k8s_audit_rules.yaml")], rule_matching="all")
    got = fired(rs, stream())
    for x in EXPECTED:
        assert got[x["auditID"]] == x["falco"], x["name"]


def test_our_audit_rules_fire_the_expected_rules() -> None:
    rs = load_rules([OURS], rule_matching="all")
    got = fired(rs, stream())
    for x in EXPECTED:
        assert got[x["auditID"]] == x["falconet"], x["name"]
    assert {r for x in EXPECTED for r in x["falconet"]} == \
        {r.name for r in rs.rules if r.enabled}, "every enabled rule is exercised by the sample stream"


def test_with_first_matching_the_most_specific_rule_reports_the_event() -> None:
    rs = load_rules([OURS], rule_matching="first")
    got = fired(rs, stream())
    for x in EXPECTED:
        assert got[x["auditID"]] == x["falconet"][:1], x["name"]


def test_our_rules_load_cleanly_and_are_all_audit_rules_with_tags() -> None:
    rs = load_rules([OURS])
    assert [str(w) for w in rs.warnings] == []
    doc = yaml.safe_load(OURS.read_text())
    rules = [item for item in doc if "rule" in item]
    assert {r.name for r in rs.rules if r.enabled} == {r["rule"] for r in rules if r.get("enabled", True)}
    for r in rules:
        assert r["source"] == "k8s_audit", r["rule"]
        assert "k8s" in r["tags"], r["rule"]
        for tag in r["tags"]:
            assert re.fullmatch(r"k8s|k8s_lifecycle|container|network|mitre_[a-z_]+|T\d{4}(\.\d{3})?", tag), tag
        assert r["desc"].strip() and r["output"].strip()
    assert any(r["rule"] == "K8s Audit Event" and r.get("enabled") is False for r in rules)


def test_the_catch_all_rule_is_off_until_enabled() -> None:
    events = stream()
    off = load_rules([OURS], rule_matching="all")
    assert not any("K8s Audit Event" in rules for rules in fired(off, events).values())
    on = load_rules([OURS], rule_matching="all", selection=[{"enable": {"rule": "K8s Audit Event"}}])
    got = fired(on, events)
    completed = [e for e in events if e.obj["stage"] == "ResponseComplete"]
    assert [a for a in completed if got[a.obj["auditID"]][-1:] == ["K8s Audit Event"]] == completed
    assert all("K8s Audit Event" not in got[e.obj["auditID"]] for e in events if e not in completed)


def test_falco_and_falconet_audit_rules_load_together() -> None:
    rs = load_rules([compat_file("k8s_audit_rules.yaml"), OURS], rule_matching="all")
    got = fired(rs, stream())
    for x in EXPECTED:
        assert got[x["auditID"]] == x["falco"] + x["falconet"], x["name"]


def test_users_tune_the_rules_with_their_own_file(tmp_path: Path) -> None:
    local = tmp_path / "local.yaml"
    local.write_text(
        "- list: k8s_audit_allowed_namespaces\n"
        "  items: [xmrig]\n"
        "  override:\n"
        "    items: append\n"
        "- macro: k8s_audit_expected_exec\n"
        "  condition: (ka.user.name = kubernetes-admin)\n"
        "  override:\n"
        "    condition: replace\n")
    rs = load_rules([OURS, local], rule_matching="all")
    got = fired(rs, stream())
    by_name = {x["name"]: got[x["auditID"]] for x in EXPECTED}
    assert by_name["namespace-created"] == ["K8s Resource Created"]
    assert by_name["exec-pod"] == []
    assert by_name["pod-privileged"] == ["K8s Privileged Pod Created"]


def test_alert_text_and_fields_of_an_exec() -> None:
    rs = load_rules([OURS])
    exec_event = next(e for e in stream() if e.obj["auditID"] == EXPECTED[5]["auditID"])
    [alert] = rs.process(exec_event)
    assert alert.rule == "K8s Exec Or Attach Into Pod" and alert.priority is Priority.NOTICE
    assert alert.source == "k8s_audit"
    assert alert.output == ("K8s exec/attach into pod (user=kubernetes-admin pod=web-7c5d8f9b4-x2kqp ns=default "
                            "action=exec container=web command=/bin/sh sourceips=(10.0.12.7))")
    assert alert.output_fields["ka.uri.param[command]"] == "/bin/sh"
    assert alert.output_fields["ka.sourceips"] == ["10.0.12.7"]
    assert alert.time_ns == exec_event.time_ns
    assert {"mitre_execution", "T1609"} <= set(alert.tags)


@pytest.mark.parametrize("name", ["pod-privileged", "crb-cluster-admin", "configmap-aws-keys"])
def test_official_alert_outputs_render_the_request_body(name: str) -> None:
    rs = load_rules([compat_file("k8s_audit_rules.yaml")], rule_matching="all")
    x = next(x for x in EXPECTED if x["name"] == name)
    event = next(e for e in stream() if e.obj["auditID"] == x["auditID"])
    first = rs.process(event)[0]
    assert "<NA>" not in first.output.split("init_images=")[0]
    if name == "crb-cluster-admin":
        assert '{"kind":"ServiceAccount","name":"deployer","namespace":"ci"}' in first.output
