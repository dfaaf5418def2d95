"""Audit events from JSON (sensor/sources/k8s_audit/): what is accepted, what is refused and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensor.sources.k8s_audit.decode import audit_event, event_size, events_from_json, rfc3339_ns
from sensor.sources.k8s_audit.settings import parse_listen

DATA = Path(__file__).resolve().parent.parent / "data" / "k8s_audit"


def sample() -> list[dict]:
    return [json.loads(line) for line in (DATA / "events.jsonl").read_text().splitlines()]


def test_one_event_becomes_one_audit_event_timed_by_its_stage_timestamp() -> None:
    ev = sample()[1]
    [got] = events_from_json(ev)
    assert got.source == "k8s_audit" and got.type == "k8s_audit"
    assert got.obj is ev
    assert got.time_ns == rfc3339_ns(ev["stageTimestamp"])
    assert got.time_ns == 1773480427_591793000      # 2026-03-14T09:27:07.591793Z


def test_an_event_list_and_a_json_array_give_their_events_in_order() -> None:
    events = sample()
    as_list = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events}
    assert [e.obj["auditID"] for e in events_from_json(as_list)] == [e["auditID"] for e in events]
    nested = [events[0], {"kind": "EventList", "items": events[1:3]}, events[3]]
    got = events_from_json(nested, first_num=10)
    assert [e.obj["auditID"] for e in got] == [e["auditID"] for e in events[:4]]
    assert [e.num for e in got] == [10, 11, 12, 13]


def test_an_empty_event_list_has_no_events() -> None:
    assert events_from_json({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}}) == []
    assert events_from_json({"kind": "EventList", "items": []}) == []
    assert events_from_json([]) == []


@pytest.mark.parametrize(("obj", "reason"), [
    ({"kind": "Pod", "apiVersion": "v1"}, "is a 'Pod', not an audit.k8s.io Event or EventList"),
    ({"apiVersion": "v1", "metadata": {}}, "has no 'kind'"),
    ("Event", "is a JSON string, not an audit Event"),
    (42, "is a JSON number"),
    ({"kind": "EventList", "items": {"a": 1}}, "EventList items is a JSON object, not an array"),
    ({"kind": "EventList", "items": [{"auditID": "a", "stageTimestamp": "2026-03-14T09:26:53Z"}, 7]},
     "items[1] is a JSON number, not an audit event object"),
    ({"kind": "Event", "stageTimestamp": "2026-03-14T09:26:53Z"}, "event has no auditID"),
    ({"kind": "Event", "auditID": "a"}, "event has no stageTimestamp"),
    ({"kind": "Event", "auditID": "a", "stageTimestamp": "yesterday"},
     "event: stageTimestamp: not an RFC 3339 time: 'yesterday'"),
    ([{"kind": "Event", "auditID": "a", "stageTimestamp": "2026-03-14T09:26:53Z"}, {"kind": "Status"}],
     "[1] is a 'Status'"),
])
def test_what_is_not_an_audit_event_is_refused_with_the_reason(obj: object, reason: str) -> None:
    with pytest.raises(ValueError) as e:
        events_from_json(obj)
    assert reason in str(e.value)


@pytest.mark.parametrize(("text", "ns"), [
    ("2026-03-14T09:26:53Z", 1773480413_000000000),
    ("2026-03-14T09:26:53.5Z", 1773480413_500000000),
    ("2026-03-14T09:26:53.589793Z", 1773480413_589793000),         # what kube-apiserver writes
    ("2026-03-14T09:26:53.123456789Z", 1773480413_123456789),
    ("2026-03-14T10:26:53.000001+01:00", 1773480413_000001000),
    ("2026-03-14T04:56:53.25-04:30", 1773480413_250000000),
    ("2026-03-14t09:26:53z", 1773480413_000000000),
])
def test_rfc3339_times_with_micro_or_nanoseconds_and_any_offset(text: str, ns: int) -> None:
    assert rfc3339_ns(text) == ns


@pytest.mark.parametrize("text", ["2026-03-14 09:26", "2026-13-14T09:26:53Z", "2026-03-14T09:26:53",
                                  "2026-03-14T09:26:53.1234567890Z", "1773480413"])
def test_malformed_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        rfc3339_ns(text)


def test_audit_event_names_where_the_bad_item_was() -> None:
    with pytest.raises(ValueError, match=r"^items\[3\] has no auditID"):
        audit_event({"stageTimestamp": "2026-03-14T09:26:53Z"}, "items[3]")


def test_event_size_is_measured_on_compact_json() -> None:
    ev = sample()[0]
    assert event_size(ev) == len(json.dumps(ev, separators=(",", ":")).encode())
    assert event_size({"k": "é"}) == len('{"k":"é"}'.encode())


@pytest.mark.parametrize(("text", "want"), [
    ("0.0.0.0:9765", ("0.0.0.0", 9765)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("[::1]:9765", ("::1", 9765)),
    (":9765", ("0.0.0.0", 9765)),
])
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["9765", "localhost", "host:port", "h:70000"])
def test_bad_listen_addresses_name_the_key(text: str) -> None:
    from sensor.errors import ConfigError

    with pytest.raises(ConfigError, match=r"k8s_audit\.webhook\.listen"):
        parse_listen(text)


# ---------------------------------------------------------------------------------------------
# build_sources: what the configuration turns on
# ---------------------------------------------------------------------------------------------

def configured(tmp_path: Path, *overrides: str):
    from sensor import config
    from sensor.sources.k8s_audit.build import build_sources
    from sensor.sources.k8s_audit.settings import K8sAuditSettings

    cfg = config.load(None, [f"state_dir={tmp_path}", *overrides])
    return build_sources(K8sAuditSettings.from_config(cfg))


def test_no_audit_source_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FALCONET_CONFIG", raising=False)
    assert configured(tmp_path) == []


def test_the_webhook_and_the_log_follower_from_the_configuration(tmp_path: Path) -> None:
    from sensor.sources.k8s_audit.file import FileSource
    from sensor.sources.k8s_audit.webhook import WebhookSource

    hook, files = configured(
        tmp_path, "k8s_audit.webhook.enabled=true", "k8s_audit.webhook.listen=127.0.0.1:9999",
        "k8s_audit.webhook.path=/audit", "k8s_audit.webhook.max_batch_size=2MiB",
        "k8s_audit.max_event_size=64KiB", "k8s_audit.webhook.request_timeout=2500ms",
        "k8s_audit.webhook.token=${K8S_AUDIT_TEST_TOKEN:-abc}", f"k8s_audit.files=[{tmp_path}/audit.log]")
    assert isinstance(hook, WebhookSource) and isinstance(files, FileSource)
    assert (hook.host, hook.port) == ("127.0.0.1", 9999)
    assert hook.paths == {"/audit", "/k8s-audit", "/k8s_audit"}
    assert hook.limits.max_batch_size == 2 * 1024 * 1024 and hook.limits.max_event_size == 64 * 1024
    assert hook.limits.request_timeout == 2.5
    assert hook.token == b"abc"
    assert hook.state_dir == tmp_path
    assert files.paths == [f"{tmp_path}/audit.log"] and files.max_event_size == 64 * 1024


@pytest.mark.parametrize(("overrides", "message"), [
    (["k8s_audit.webhook.tls_cert=/x.crt"], "tls_cert and tls_key must be set together"),
    (["k8s_audit.webhook.listen=9765"], "k8s_audit.webhook.listen: '9765' is not host:port"),
    (["k8s_audit.webhook.path=k8s-audit"], "must start with /"),
    (["k8s_audit.webhook.queue_size=0"], "k8s_audit.webhook.queue_size: must be greater than 0"),
    (["k8s_audit.max_event_size=0"], "k8s_audit.max_event_size: must be greater than 0"),
])
def test_configuration_mistakes_name_the_key(tmp_path: Path, overrides: list[str], message: str) -> None:
    from sensor.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        configured(tmp_path, "k8s_audit.webhook.enabled=true", *overrides)
    assert message in str(e.value)


def test_a_size_that_is_not_a_size_is_refused_when_the_configuration_loads(tmp_path: Path) -> None:
    from sensor.errors import ConfigError

    with pytest.raises(ConfigError, match=r"k8s_audit\.max_event_size"):
        configured(tmp_path, "k8s_audit.max_event_size=lots")
