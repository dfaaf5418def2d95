"""Flood control: the first alert goes at once, identical ones become one summary with the count."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sensor.alert import Alert, Priority
from sensor.outputs.flood import FloodControl

from .conftest import make_alert


def flood(**kw: Any) -> tuple[FloodControl, list[Alert]]:
    emitted: list[Alert] = []
    args: dict[str, Any] = dict(window=0.3, rules=["*"], key_fields=["proc.name"], emit=emitted.append,
                                hostname="node-1")
    args.update(kw)
    return FloodControl(**args), emitted


def same(i: int, **kw: Any) -> Alert:
    fields = {"proc.name": "bash", "proc.pid": i}
    fields.update(kw.pop("fields", {}))
    return make_alert(i, output_fields=fields, **kw)


def test_identical_alerts_become_one_summary() -> None:
    fc, emitted = flood()
    passed = [fc.admit(same(i)) for i in range(10)]
    assert passed == [True] + [False] * 9
    assert emitted == []
    time.sleep(0.35)
    fc.expire()
    [summary] = emitted
    assert summary.rule == "Falconet internal: alerts suppressed"
    assert summary.source == "internal" and summary.priority is Priority.NOTICE
    assert summary.output_fields["falconet.suppressed.count"] == 9
    assert summary.output_fields["falconet.suppressed.rule"] == "Terminal shell in container"
    assert summary.output_fields["falconet.suppressed.key.proc.name"] == "bash"
    assert summary.output_fields["falconet.suppressed.first_time"] == "2024-03-01T12:34:56.123456790Z"
    assert summary.output_fields["falconet.suppressed.last_time"] == "2024-03-01T12:34:56.123456798Z"
    assert summary.output.startswith("9 more alerts of rule 'Terminal shell in container' suppressed within 0.3s")
    assert summary.tags == ["shell", "container", "mitre_execution"]
    assert fc.stats()["suppressed"] == 9 and fc.stats()["summaries"] == 1


def test_different_keys_and_rules_are_not_folded() -> None:
    fc, _ = flood()
    assert fc.admit(same(1))
    assert fc.admit(same(2, fields={"proc.name": "sh"}))
    assert fc.admit(same(3, rule="Other rule"))
    assert not fc.admit(same(4))


def test_new_window_after_the_old_one_ends() -> None:
    fc, emitted = flood(window=0.2)
    assert fc.admit(same(1))
    assert not fc.admit(same(2))
    time.sleep(0.25)
    assert fc.admit(same(3))          # the window ended: the alert goes, and the summary with it
    assert [a.output_fields["falconet.suppressed.count"] for a in emitted] == [1]


def test_without_key_fields_the_output_text_is_the_key() -> None:
    fc, emitted = flood(key_fields=[])
    a = make_alert(1)
    assert fc.admit(a)
    assert not fc.admit(make_alert(1, uuid="other"))
    assert fc.admit(make_alert(2))                   # other output text
    fc.close()
    assert emitted[0].output_fields["falconet.suppressed.count"] == 1
    assert "same output" in emitted[0].output


def test_only_listed_rules_and_never_internal_alerts() -> None:
    fc, _ = flood(rules=["Write below *"])
    assert fc.admit(same(1)) and fc.admit(same(2))
    w = same(3, rule="Write below etc")
    assert fc.admit(w) and not fc.admit(same(4, rule="Write below etc"))
    internal = make_alert(5, source="internal", rule="Falconet internal: x")
    assert fc.admit(internal) and fc.admit(internal)


def test_outputs_deliver_the_first_and_the_summary(tmp_path: Path) -> None:
    from sensor.outputs.build import build_outputs

    from .conftest import output_settings

    path = tmp_path / "alerts.jsonl"
    out = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={path}",
                                        "json_output=true", "flood_control.enabled=true", "flood_control.window=0.2s",
                                        "flood_control.key_fields=[proc.name]"))
    for i in range(100):
        out.submit(same(i))
    time.sleep(1.5)                                  # the housekeeping thread closes the window
    out.flush(10)
    out.close()
    import json

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["rule"] for x in lines] == ["Terminal shell in container", "Falconet internal: alerts suppressed"]
    assert lines[1]["output_fields"]["falconet.suppressed.count"] == 99
