"""`falconet replay` as a user runs it: which `-o` it takes. An option that would do nothing (a
response, capture or webserver key; an output key without --outputs) is an error naming it, never
silently ignored; the keys replay does read change what it prints."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from test_rules_cli import falconet

EVENTS = ROOT / "tests" / "data" / "k8s_audit" / "events.jsonl"
RULES = ROOT / "rules" / "k8s_audit_rules.yaml"


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return falconet("replay", str(EVENTS), "-r", str(RULES), *args)


@pytest.mark.parametrize("override", [
    "response.enabled=true", "syscall.kernel_filter=false", "webserver={enabled: false}",
    "k8s_audit.webhook.enabled=false", "metrics.enabled=true",
])
def test_keys_replay_never_reads_are_refused(override: str) -> None:
    for extra in ((), ("--outputs",)):
        r = replay("-o", override, *extra)
        assert r.returncode == 3, r.stderr
        assert r.stderr.startswith(f"falconet: error: -o {override}: replay does not read this key (replay reads "
                                   "rules_files, rules, priority"), r.stderr
        assert r.stderr.count("\n") == 1 and r.stdout == ""


def test_an_output_key_is_taken_with_outputs_only(tmp_path: Path) -> None:
    refused = replay("-o", "stdout_output.enabled=true")
    assert refused.returncode == 3
    assert "add --outputs to send them through the configured outputs" in refused.stderr
    taken = replay("--outputs", "-o", f"state_dir={tmp_path}", "-o", "json_output=true",
                   "-o", "stdout_output.enabled=true")
    assert taken.returncode == 0, taken.stderr
    assert [json.loads(line)["rule"] for line in taken.stdout.splitlines()][:1] == ["K8s Privileged Pod Created"]


def test_the_keys_replay_reads_change_what_it_prints() -> None:
    everything = replay("--json")
    assert everything.returncode == 0, everything.stderr
    alerts = [json.loads(line) for line in everything.stdout.splitlines()]
    assert alerts and all("env" not in a["output_fields"] for a in alerts)
    tagged = replay("--json", "-o", "static_fields={env: prod}", "-o", "hostname=replayer")
    assert {(a["output_fields"]["env"], a["hostname"]) for a in map(json.loads, tagged.stdout.splitlines())} == \
        {("prod", "replayer")}
    critical = replay("--json", "-o", "priority=critical")
    assert critical.returncode == 0 and critical.stdout == ""
    assert "Events detected: 0; events processed: 29" in critical.stderr


def test_an_unknown_key_is_named_as_unknown_not_as_unread() -> None:
    r = replay("-o", "nosuch.key=1")
    assert r.returncode == 3
    assert "unknown configuration key 'nosuch.key'" in r.stderr
