"""The step order, --only, and --dry-run (every call printed with its body, nothing contacted)."""

from __future__ import annotations

import json

import pytest

from sensor.provision import plan

from .helpers import asset, closed_port, es_files, falconet, kibana_objects


def test_steps_follow_beats_setup_order():
    assert [s.key for s in plan.selected_steps()] == [
        "ilm", "component_templates", "index_templates", "ingest_pipelines", "data_streams", "data_view",
        "saved_objects"]


@pytest.mark.parametrize("only, keys", [
    (["ilm"], ["ilm"]),
    (["templates"], ["component_templates", "index_templates", "data_streams"]),
    (["pipelines"], ["ingest_pipelines"]),
    (["dashboards"], ["data_view", "saved_objects"]),
    (["dashboards", "ilm"], ["ilm", "data_view", "saved_objects"]),
])
def test_only_selects_parts_in_the_fixed_order(only, keys):
    assert [s.key for s in plan.selected_steps(only)] == keys


def test_unknown_part_is_refused(capsys, monkeypatch):
    r = falconet(capsys, monkeypatch, "provision", "--only", "mappings", "--dry-run")
    assert r.code == 2
    assert "'mappings' is not one of 'templates', 'ilm', 'pipelines', 'dashboards'" in r.err


def _split_calls(text: str) -> list[tuple[str, str]]:
    """Dry-run output → [(request line, body text)]: a call starts with a METHOD /path line."""
    calls: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(("PUT /", "POST /")):
            calls.append((line, []))
        elif calls:
            calls[-1][1].append(line)
    return [(head, "\n".join(body).strip()) for head, body in calls]


def test_dry_run_prints_every_call_with_its_body_and_contacts_nothing(capsys, monkeypatch):
    down = f"http://127.0.0.1:{closed_port()}"
    r = falconet(capsys, monkeypatch, "provision", "--dry-run", "--es-url", down, "--kibana-url", down,
                 "--namespace", "prod", "--space", "security")
    assert r.code == 0, r.err
    calls = _split_calls(r.out)
    heads = [h for h, _ in calls]
    files = es_files()
    assert heads == (
        [f"PUT /_ilm/policy/{n}" for n in files["ilm"]]
        + [f"PUT /_component_template/{n}" for n in files["component_templates"]]
        + [f"PUT /_index_template/{n}" for n in files["index_templates"]]
        + [f"PUT /_ingest/pipeline/{n}" for n in ("falconet-alerts-falco", "falconet-alerts", "falconet-log")]
        + ["PUT /_data_stream/logs-falconet.alerts-prod", "PUT /_data_stream/logs-falconet.log-prod"]
        + ["POST /s/security/api/saved_objects/_import?overwrite=false"] * 2)
    bodies = dict(calls)
    assert json.loads(bodies["PUT /_index_template/logs-falconet.alerts"]) == \
        asset("index_templates/logs-falconet.alerts.json")
    assert json.loads(bodies["PUT /_ingest/pipeline/falconet-alerts-falco"]) == \
        asset("ingest_pipelines/falconet-alerts-falco.json")
    assert bodies["PUT /_data_stream/logs-falconet.alerts-prod"] == ""
    imported = [body for head, body in calls if head.startswith("POST")]
    ndjson_lines = [line for body in imported for line in body.splitlines()[1:]]
    assert [json.loads(line) for line in ndjson_lines] == kibana_objects()
    # One line per step, on stderr, so stdout is only the calls.
    assert r.err.splitlines()[0] == "ILM policies: printed falconet"
    assert len(r.err.splitlines()) == len(plan.STEPS)
