"""Which alerts an action takes: rule globs, minimum priority, tags, sources, condition."""

from __future__ import annotations

import pytest

from sensor.errors import ConfigError
from sensor.response.match import RECORD_RULE, AlertMatch
from sensor.response.spec import parse_actions

from .helpers import alert, response_settings


def test_rule_globs():
    m = AlertMatch(rules=("Read sensitive file*", "Terminal shell in container"))
    assert m.matches(alert({}, rule="Read sensitive file untrusted"))
    assert m.matches(alert({}, rule="Read sensitive file trusted after startup"))
    assert m.matches(alert({}, rule="Terminal shell in container"))
    assert not m.matches(alert({}, rule="Terminal shell in container (copy)"))
    assert not m.matches(alert({}, rule="read sensitive file untrusted"))     # names are case-sensitive


def test_minimum_priority():
    m = AlertMatch(priority="Warning")
    assert m.matches(alert({}, priority="Critical"))
    assert m.matches(alert({}, priority="Warning"))
    assert not m.matches(alert({}, priority="Notice"))
    assert AlertMatch(priority="info").matches(alert({}, priority="Informational"))
    assert not AlertMatch(priority="Info").matches(alert({}, priority="Debug"))


def test_any_of_the_tags():
    m = AlertMatch(tags=frozenset({"T1003", "mitre_credential_access"}))
    assert m.matches(alert({}, tags=["filesystem", "mitre_credential_access"]))
    assert not m.matches(alert({}, tags=["filesystem"]))


def test_sources_and_internal_alerts():
    any_source = AlertMatch()
    assert any_source.matches(alert({}, source="k8s_audit"))
    assert not any_source.matches(alert({}, source="internal", rule="Falconet internal: syscall event drop"))
    audit_only = AlertMatch(sources=frozenset({"k8s_audit"}))
    assert not audit_only.matches(alert({}))
    assert audit_only.matches(alert({}, source="k8s_audit"))
    internal = AlertMatch(sources=frozenset({"internal"}))
    assert internal.matches(alert({}, source="internal", rule="Falconet internal: syscall event drop"))
    assert not internal.matches(alert({}, source="internal", rule=RECORD_RULE))


def _with_condition(tmp_path, condition: str, sources: str = "[syscall]") -> AlertMatch:
    settings = response_settings(tmp_path, f"""
response:
  actions:
    - name: c
      match: {{sources: {sources}, condition: "{condition}"}}
      do: kill_process
""")
    (spec,) = parse_actions(settings)
    return spec.match


def test_condition_over_the_alerts_event(tmp_path):
    m = _with_condition(tmp_path, "proc.name in (cat, less) and fd.name startswith /etc/")
    assert m.matches(alert({"proc.name": "cat", "fd.name": "/etc/shadow"}))
    assert not m.matches(alert({"proc.name": "vim", "fd.name": "/etc/shadow"}))
    assert not m.matches(alert({"proc.name": "cat"}))     # a missing field makes the comparison false


def test_condition_does_not_compile_is_a_load_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        _with_condition(tmp_path, "proc.name = = cat")
    assert f"{tmp_path}/falconet.yaml:5: response action 'c': match.condition does not compile " \
           "for source syscall" in str(err.value)


def test_condition_with_an_unknown_field_is_a_load_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        _with_condition(tmp_path, "proc.nmae = cat")
    assert "proc.nmae" in str(err.value)


def test_condition_is_compiled_per_source(tmp_path):
    m = _with_condition(tmp_path, "ka.verb = create", sources="[k8s_audit]")
    assert m.matches(alert({"ka.verb": "create"}, source="k8s_audit"))
    assert not m.matches(alert({"ka.verb": "get"}, source="k8s_audit"))
    assert not m.matches(alert({"ka.verb": "create"}, source="syscall"))


def test_condition_may_use_the_rules_lists_and_macros(tmp_path):
    from sensor.engine import load_rules

    rules = tmp_path / "rules.yaml"
    rules.write_text("""
- list: readers
  items: [cat, less]
- macro: reads_etc
  condition: fd.name startswith /etc/
""")
    ruleset = load_rules([rules])
    settings = response_settings(tmp_path, """
response:
  actions:
    - name: c
      match: {sources: [syscall], condition: "proc.name in (readers) and reads_etc"}
      do: kill_process
""")
    (spec,) = parse_actions(settings, ruleset)
    assert spec.match.matches(alert({"proc.name": "less", "fd.name": "/etc/shadow"}))
    assert not spec.match.matches(alert({"proc.name": "vim", "fd.name": "/etc/shadow"}))
    assert not spec.match.matches(alert({"proc.name": "cat", "fd.name": "/tmp/x"}))
    # without the rules, the macro is a name nobody defined: a load error naming the action
    with pytest.raises(ConfigError, match=r"response action 'c': match\.condition does not compile"):
        parse_actions(settings)
