"""response.actions validation: every mistake is a load error naming the file and line."""

from __future__ import annotations

import pytest

from sensor.errors import ConfigError
from sensor.response.spec import parse_actions

from .helpers import response_settings

GOOD = """\
response:
  enabled: true
  actions:
    - name: kill-shadow-readers
      match: {rules: ["Read sensitive file*"], priority: Warning, tags: [], sources: [syscall]}
      do: kill_process
      with: {signal: KILL}
      cooldown: 0s
      max_per_minute: 60
    - name: quarantine
      match:
        rules: ["Terminal shell in container"]
      do: k8s_label_pod
      cooldown: 5m
"""


def errors_of(tmp_path, text: str, overrides: tuple[str, ...] = ()) -> str:
    settings = response_settings(tmp_path, text, overrides)
    with pytest.raises(ConfigError) as err:
        parse_actions(settings)
    return str(err.value)


def test_the_documented_example_loads(tmp_path):
    settings = response_settings(tmp_path, GOOD)
    kill, label = parse_actions(settings)
    assert (kill.name, kill.do, kill.cooldown, kill.max_per_minute) == (
        "kill-shadow-readers", "kill_process", 0.0, 60)
    assert kill.params == {"signal": "KILL", "tree": False}
    assert kill.where == f"{tmp_path}/falconet.yaml:4"
    assert label.cooldown == 300.0
    assert label.params["labels"] == {"falconet/quarantine": "true"}
    assert label.params["timeout"] == 5.0


def test_unknown_do_names_its_line(tmp_path):
    text = GOOD.replace("do: k8s_label_pod", "do: k8s_label_pods")
    msg = errors_of(tmp_path, text)
    assert f"{tmp_path}/falconet.yaml:13:" in msg
    assert "unknown `do` value 'k8s_label_pods'" in msg
    assert "kill_process, k8s_delete_pod, k8s_label_pod, k8s_isolate_pod, http, program" in msg


def test_every_error_is_reported_with_its_own_line(tmp_path):
    text = GOOD.replace("with: {signal: KILL}", "with: {signal: NOPE, force: true}") \
               .replace("cooldown: 5m", "cooldown: soon")
    msg = errors_of(tmp_path, text)
    assert "falconet.yaml:7: response action 'kill-shadow-readers': with.signal unknown signal" in msg
    assert "falconet.yaml:7: response action 'kill-shadow-readers': kill_process has no parameter " \
           "'force'" in msg
    assert "falconet.yaml:14: response action 'quarantine': cooldown expected a duration" in msg


def test_match_keys_are_checked(tmp_path):
    text = GOOD.replace('        rules: ["Terminal shell in container"]',
                        '        rule: ["Terminal shell in container"]\n        priority: Loud')
    msg = errors_of(tmp_path, text)
    assert "falconet.yaml:12: response action 'quarantine': unknown key 'rule' in match" in msg
    assert "falconet.yaml:13: response action 'quarantine': match.priority: unknown priority 'Loud'" in msg


def test_missing_match_is_an_error(tmp_path):
    text = "response:\n  actions:\n    - name: all\n      do: kill_process\n"
    msg = errors_of(tmp_path, text)
    assert "falconet.yaml:3: response action 'all' needs a `match` block" in msg


def test_required_parameter(tmp_path):
    text = "response:\n  actions:\n    - name: hook\n      match: {}\n      do: http\n"
    msg = errors_of(tmp_path, text)
    assert "falconet.yaml:3: response action 'hook': http needs with.url" in msg


def test_bad_url_and_types(tmp_path):
    text = ("response:\n  actions:\n    - name: hook\n      match: {}\n      do: http\n"
            "      with:\n        url: ftp://x\n        retries: many\n")
    msg = errors_of(tmp_path, text)
    assert "falconet.yaml:7: response action 'hook': with.url must be an http:// or https:// URL" in msg
    assert "falconet.yaml:8: response action 'hook': with.retries must be an integer" in msg


def test_duplicate_names(tmp_path):
    text = GOOD.replace("name: quarantine", "name: kill-shadow-readers")
    msg = errors_of(tmp_path, text)
    assert f"falconet.yaml:10: response action name 'kill-shadow-readers' is already used at " \
           f"{tmp_path}/falconet.yaml:4" in msg


def test_unknown_item_key_and_bad_limit(tmp_path):
    text = GOOD.replace("max_per_minute: 60", "max_per_minute: -1\n      when: always")
    msg = errors_of(tmp_path, text)
    assert "falconet.yaml:9: response action 'kill-shadow-readers': max_per_minute must be" in msg
    assert "falconet.yaml:10: unknown key 'when' in response action" in msg


def test_item_that_is_not_a_mapping(tmp_path):
    msg = errors_of(tmp_path, "response:\n  actions:\n    - kill_process\n")
    assert "falconet.yaml:3: response action must be a mapping" in msg


def test_condition_needs_sources(tmp_path):
    text = GOOD.replace('        rules: ["Terminal shell in container"]',
                        '        condition: proc.name = bash')
    msg = errors_of(tmp_path, text)
    assert "falconet.yaml:12: response action 'quarantine': match.condition needs match.sources" in msg


def test_override_items_name_the_override(tmp_path):
    item = "{name: x, match: {}, do: kill_it}"
    msg = errors_of(tmp_path, "", (f"response.actions[]={item}",))
    assert f"-o response.actions[]={item} (response.actions[0])" in msg
    assert "unknown `do` value 'kill_it'" in msg


def test_override_items_load(tmp_path):
    settings = response_settings(tmp_path, "", (
        "response.enabled=true",
        'response.actions[]={name: k, match: {rules: ["A*"]}, do: kill_process, with: {signal: 15, tree: true}}'))
    (spec,) = parse_actions(settings)
    assert spec.params == {"signal": "15", "tree": True}
    assert spec.match.rules == ("A*",)
