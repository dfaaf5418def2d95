"""The ingest pipelines against their input/expected pairs (elasticsearch/_dev/test/pipeline/).

Offline, the pairs run through tests/assets/ingest.py, a model of the documented processors; with
FALCONET_ES_URL set, the `cluster` test runs them through the real `_ingest/pipeline/_simulate`.
Either way, fields in the test's `dynamic_fields` are checked by pattern, every other by value.
The raw Falco and Falcosidekick pairs must come out as the very document `to_ecs` builds for the
same alert: that is what lets one set of dashboards serve both.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from typing import Any

import pytest
import yaml

from sensor import ecs
from sensor.alert import alert_dict
from sensor.assets import asset_dir

from . import samples
from .ingest import Simulator

ES_DIR = asset_dir("elasticsearch")
PAIRS = ES_DIR / "_dev" / "test" / "pipeline"
NAMES = sorted(p.name for p in PAIRS.glob("test-*.json") if not p.name.endswith("-expected.json"))


def pipelines() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in (ES_DIR / "ingest_pipelines").glob("*.json")}


def pair(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    events = json.loads((PAIRS / name).read_text())["events"]
    expected = json.loads((PAIRS / f"{name}-expected.json").read_text())["expected"]
    dynamic = dict(yaml.safe_load((PAIRS / "test-common-config.yml").read_text())["dynamic_fields"])
    own = PAIRS / f"{name}-config.yml"
    if own.exists():
        dynamic.update(yaml.safe_load(own.read_text()).get("dynamic_fields", {}))
    return events, expected, dynamic


def compare(actual: dict[str, Any], expected: dict[str, Any], dynamic: dict[str, str]) -> None:
    """Equal, except that dynamic fields must be present and match their pattern."""
    actual, expected = copy.deepcopy(actual), copy.deepcopy(expected)
    for field, pattern in dynamic.items():
        a, e = ecs.get_path(actual, field), ecs.get_path(expected, field)
        if e is None:
            assert a is None, f"{field} is not expected but came out as {a!r}"
            continue
        assert a is not None, f"{field} is missing"
        for v in a if isinstance(a, list) else [a]:
            assert re.match(pattern, str(v)), f"{field}={v!r} does not match {pattern}"
        _drop(actual, field)
        _drop(expected, field)
    assert actual == expected


def _drop(doc: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        doc = doc[p]
    del doc[leaf]


@pytest.fixture
def utc(monkeypatch):
    """Falco prints the text time in `output` in local time; the pairs were written in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_every_kind_of_sender_has_a_pair():
    assert NAMES == ["test-falco-alert.json", "test-falconet-alert.json", "test-falcosidekick.json",
                     "test-malformed.json"]


@pytest.mark.parametrize("name", NAMES)
def test_pair_through_the_processor_model(name):
    events, expected, dynamic = pair(name)
    sim = Simulator(pipelines())
    assert len(events) == len(expected)
    for event, want in zip(events, expected, strict=True):
        compare(sim.run("falconet-alerts", event), want, dynamic)


def test_inputs_are_what_each_sender_writes(utc):
    assert pair("test-falconet-alert.json")[0] == [ecs.to_ecs(f()) for f in samples.FALCONET]
    assert pair("test-falco-alert.json")[0] == [samples.falco_json(f()) for f in samples.FALCO]
    assert pair("test-falcosidekick.json")[0] == [alert_dict(f()) for f in samples.SIDEKICK]


def _without(doc: dict[str, Any], *fields: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for f in fields:
        if ecs.get_path(doc, f) is not None:
            _drop(doc, f)
    return doc


def test_a_falco_alert_becomes_the_document_falconet_sends(utc):
    # Falco sends no uuid, so there is no event.id; everything else is the same document.
    for alert, want in zip(samples.FALCO, pair("test-falco-alert.json")[1], strict=True):
        assert _without(want, "event.ingested") == _without(ecs.to_ecs(alert()), "event.id", "falco.uuid")
    for alert, want in zip(samples.SIDEKICK, pair("test-falcosidekick.json")[1], strict=True):
        assert _without(want, "event.ingested") == ecs.to_ecs(alert())


def test_falconet_documents_pass_unchanged():
    events, expected, _ = pair("test-falconet-alert.json")
    for event, want in zip(events, expected, strict=True):
        assert _without(want, "event.ingested") == event


def test_malformed_alerts_are_kept_with_the_error():
    _, expected, _ = pair("test-malformed.json")
    for doc in expected:
        assert doc["event"]["kind"] == "pipeline_error"
        assert doc["error"]["message"]
        assert doc["@timestamp"]
        assert doc["falco"]["rule"]           # the alert itself is still there
        assert "_tmp" not in doc


@pytest.mark.cluster
@pytest.mark.skipif(not os.environ.get("FALCONET_ES_URL"), reason="set FALCONET_ES_URL")
@pytest.mark.parametrize("name", NAMES)
def test_pair_through_elasticsearch_simulate(name):
    """The real thing: install the pipelines under test names and `_simulate` the pair."""
    from elasticsearch import Elasticsearch

    from sensor.provision.connection import Endpoint
    from sensor.provision.es import client_options

    endpoint = Endpoint("Elasticsearch", os.environ["FALCONET_ES_URL"], os.environ.get("FALCONET_USERNAME"),
                        os.environ.get("FALCONET_PASSWORD"), os.environ.get("FALCONET_ES_API_KEY"),
                        os.environ.get("FALCONET_CA_CERT"), os.environ.get("FALCONET_INSECURE") == "1")
    client = Elasticsearch(hosts=[endpoint.url], **client_options(endpoint))
    suffix = "-falconet-pipeline-test"
    bodies = pipelines()
    try:
        for pname, body in bodies.items():
            text = json.dumps(body)
            for other in bodies:
                text = text.replace(f'"name": "{other}"', f'"name": "{other}{suffix}"')
            client.ingest.put_pipeline(id=pname + suffix, body=json.loads(text))
        events, expected, dynamic = pair(name)
        resp = client.ingest.simulate(id="falconet-alerts" + suffix,
                                      docs=[{"_index": "logs-falconet.alerts-default", "_source": e}
                                            for e in events])
        for doc, want in zip(resp["docs"], expected, strict=True):
            assert "error" not in doc, doc
            compare(doc["doc"]["_source"], want, dynamic)
    finally:
        for pname in bodies:
            client.ingest.delete_pipeline(id=pname + suffix, ignore_status=404)
