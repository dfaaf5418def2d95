"""`falconet explain` and `falconet rules test` as a user runs them, on the bundled rules and their
own test files (rules/tests/)."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from test_rules_cli import falconet

from sensor.engine import ast, load_rules
from sensor.engine.explain import RuleExplainer
from sensor.ruletest import read_file

TESTS = ROOT / "rules" / "tests"
SHELL = {"source": "syscall", "fields": {
    "evt.type": "execve", "evt.res": "SUCCESS", "proc.name": "bash", "proc.pname": "runc",
    "container.id": "3ad7b26ded6d", "container.image.repository": "my-registry/debug-toolbox"}}
KNOWN_SHELL = """\
- macro: falconet_user_known_container_shell
  condition: (container.image.repository = my-registry/debug-toolbox)
  override:
    condition: replace
"""


# -- rules test ---------------------------------------------------------------------------------------

def test_the_bundled_rules_pass_their_own_tests() -> None:
    r = falconet("rules", "test", str(TESTS))
    cases = sum(len(read_file(f)) for f in TESTS.glob("*.yaml"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert r.stdout.splitlines()[-1] == f"{cases} passed, 0 failed"
    assert "FAIL" not in r.stdout and cases >= 60


def test_every_bundled_rule_has_a_positive_and_a_real_negative_case() -> None:
    """A rule is tested positively when a case requires it to fire, and negatively when a case
    forbids it (by name or pattern) on an event of its own source and types: a negative case on
    events the rule can never see would prove nothing. A rule whose condition is only an evt.type
    check (Kernel module loaded) matches every event of its types; its negative case is an event of
    another type."""
    for rules_file in sorted((ROOT / "rules").glob("*.yaml")):
        rs = load_rules([rules_file])
        cases = [c for f in TESTS.glob("*.yaml") for c in read_file(f) if rules_file in [p.resolve() for p in c.rules]]
        assert cases, rules_file
        for rule in rs.all_rules:
            x = RuleExplainer(rs, rule)
            checks = [n for n in ast.walk(rule.node) if isinstance(n, (ast.BinaryCheck, ast.UnaryCheck))]
            only_types = all(isinstance(n.left, ast.FieldRef) and n.left.name == "evt.type" for n in checks)
            positive = [c.name for c in cases if rule.name in {w["rule"] for w in c.must_fire}]
            negative = [c.name for c in cases
                        if any(p == rule.name or ("*" in p and fnmatch.fnmatchcase(rule.name, p))
                               for p in c.must_not_fire)
                        and rule.name not in {w["rule"] for w in c.must_fire}
                        and any(x.applies(ev) or (only_types and ev.source == rule.source) for ev in c.events)]
            assert positive, f"{rule.name}: no case requires it to fire"
            assert negative, f"{rule.name}: no case forbids it on an event it could match"


def _broken_copy(tmp_path: Path) -> Path:
    """rules/ and rules/tests/ copied, with 'Sensitive file read' trusting cat by mistake."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    f = rules / "falconet_rules.yaml"
    text = f.read_text()
    assert "gdm-session-wor]" in text
    f.write_text(text.replace("gdm-session-wor]", "gdm-session-wor, cat]"))
    return rules


def test_a_broken_rule_fails_with_an_explanation_naming_the_node(tmp_path: Path) -> None:
    rules = _broken_copy(tmp_path)
    r = falconet("rules", "test", str(rules / "tests" / "falconet_rules_test.yaml"))
    assert r.returncode == 1
    out = r.stdout
    assert "FAIL  " in out and "case 'an untrusted program reading /etc/shadow fires'" in out
    assert 'rule "Sensitive file read" did not fire' in out
    assert 'decided by: not ▸ proc.name "cat" in (falconet_sensitive_file_readers) → true' in out
    decided = [line for line in out.splitlines() if "◀ decided" in line]
    assert decided and all('proc.name "cat" in (falconet_sensitive_file_readers) → true' in d for d in decided)
    assert out.splitlines()[-1].endswith("2 failed")


def test_a_rule_that_fires_but_must_not_is_explained(tmp_path: Path) -> None:
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"rules": [str(ROOT / "rules" / "falconet_rules.yaml")], "tests": [
        {"name": "debug toolbox", "events": [SHELL], "must_not_fire": ["Shell spawned in container"]},
        {"name": "debug toolbox, declared", "overrides": yaml.safe_load(KNOWN_SHELL), "events": [SHELL],
         "must_not_fire": ["Shell spawned in container"]},
    ]}))
    r = falconet("rules", "test", str(t))
    assert r.returncode == 1
    assert f"FAIL  {t}: case 'debug toolbox'" in r.stdout
    assert f"PASS  {t}: case 'debug toolbox, declared'" in r.stdout
    assert 'rule "Shell spawned in container" fired on event #1 but must not: Shell spawned in a container' in r.stdout
    assert 'Rule "Shell spawned in container" matched event #1 (syscall execve)' in r.stdout
    assert r.stdout.splitlines()[-1] == "1 passed, 1 failed"


@pytest.mark.parametrize(("case", "message"), [
    ({"name": "n", "events": [SHELL], "must_fire": ["Shell spawned in containr"]},
     "must_fire names no loaded rule: 'Shell spawned in containr'"),
    ({"name": "n", "events": [SHELL], "must_not_fire": ["K8s*"]}, "must_not_fire names no loaded rule: 'K8s*'"),
    ({"name": "n", "events": [SHELL]}, "expects nothing"),
    ({"name": "n", "events": [], "must_fire": ["Shell spawned in container"]}, "no events"),
    ({"name": "n", "event": [SHELL], "must_fire": ["Shell spawned in container"]}, "unknown key 'event'"),
    ({"name": "n", "events": [{"fields": "x"}], "must_fire": ["Shell spawned in container"]},
     "case 'n': event 1: 'fields' must be an object"),
    ({"name": "n", "events": [SHELL], "must_fire": [{"rule": "Shell spawned in container",
                                                      "output_fields": {"proc.name": "sh"}}]},
     "fired, but not with the expected output fields: proc.name: expected 'sh', got 'bash'"),
    ({"name": "n", "events": [SHELL], "must_fire": [{"rule": "Shell spawned in container",
                                                      "output_fields": {"fd.name": "x"}}]},
     "output_fields names 'fd.name', which its output does not have"),
    ({"name": "n", "options": ["rule_matching=sometimes"], "events": [SHELL],
      "must_fire": ["Shell spawned in container"]}, "options:"),
    ({"name": "n", "overrides": [{"rule": "Bad", "desc": "d", "condition": "proc.nam = x", "output": "o",
                                   "priority": "Warning"}], "events": [SHELL],
      "must_fire": ["Shell spawned in container"]}, "(overrides of case 'n')"),
])
def test_mistakes_in_a_test_file_fail_with_a_message(tmp_path: Path, case: dict, message: str) -> None:
    t = tmp_path / "t.yaml"
    t.write_text(yaml.safe_dump({"rules": [str(ROOT / "rules" / "falconet_rules.yaml")], "tests": [case]}))
    r = falconet("rules", "test", str(t))
    assert r.returncode == 1, r.stdout
    assert message in r.stdout, r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_an_unreadable_test_file_is_an_error(tmp_path: Path) -> None:
    t = tmp_path / "t.yaml"
    t.write_text("tests: [\n")
    r = falconet("rules", "test", str(t), str(tmp_path / "missing.yaml"))
    assert r.returncode == 1
    assert f"ERROR {t}:2: not valid YAML" in r.stdout
    assert f"ERROR {tmp_path / 'missing.yaml'}: cannot read" in r.stdout
    assert r.stdout.splitlines()[-1] == "0 passed, 2 failed"


# -- explain ----------------------------------------------------------------------------------------

def test_explain_finds_the_macro_exception_that_stops_a_rule(tmp_path: Path) -> None:
    tuning = tmp_path / "tuning.yaml"
    tuning.write_text(KNOWN_SHELL)
    capture = tmp_path / "capture.jsonl"
    other = {"source": "syscall", "fields": {"evt.type": "openat", "proc.name": "cat"}}
    capture.write_text(json.dumps(other) + "\n" + json.dumps(SHELL) + "\n")
    r = falconet("explain", "Shell spawned in container", str(capture),
                 "-r", str(ROOT / "rules" / "falconet_rules.yaml"), "-r", str(tuning))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == 'Rule "Shell spawned in container" did not match event #2 (syscall execve)'
    assert lines[1] == ('  decided by: not ▸ macro falconet_user_known_container_shell ▸ container.image.repository '
                        '"my-registry/debug-toolbox" = my-registry/debug-toolbox → true')
    assert '    proc.name "bash" in (falconet_shell_binaries) → true (matched: bash)' in lines
    assert "Explained 1 of 2 events (syscall events of type execve, execveat)" in r.stderr


def test_explain_reads_one_event_from_the_command_line_or_stdin_and_prints_json() -> None:
    arg = json.dumps(SHELL)
    r = falconet("explain", "--json", "Shell spawned in container", arg)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["matched"] is True and doc["alerted"] is True and doc["rule"] == "Shell spawned in container"
    assert doc["tree"]["kind"] == "and" and doc["tree"]["decided"] is True
    r2 = falconet("explain", "--json", "Shell spawned in container", stdin=arg + "\n")
    assert json.loads(r2.stdout) == doc


def test_explain_audit_events_with_a_filter() -> None:
    log = ROOT / "tests" / "data" / "k8s_audit" / "events.jsonl"
    r = falconet("explain", "K8s Privileged Pod Created", str(log), "--filter",
                 "ka.target.namespace = kube-system and ka.target.resource = pods")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('Rule "K8s Privileged Pod Created"') == 1
    assert '  decided by: no operand of "or" holds → false' in r.stdout
    assert "      ka.req.pod.containers.privileged <no value> intersects (true) → no value" in r.stdout
    assert "Explained 1 of 29 events" in r.stderr


@pytest.mark.parametrize(("args", "message", "code"), [
    (["Shell spawned in containr", "-"], "no rule named 'Shell spawned in containr'", 1),
    (["Kernel module loaded", json.dumps(SHELL)], "none of the 1 events read is among the syscall events of type "
     "finit_module, init_module", 1),
    (["Shell spawned in container", "{not json"], "event argument 1: not valid JSON", 1),
    (["Shell spawned in container", "/nonexistent.jsonl"], "/nonexistent.jsonl: cannot open", 1),
    (["Shell spawned in container", "--filter", "proc.nam = x", "-"], "--filter", 2),
    (["Shell spawned in container", "-o", "file_output.enabled=true", "-"],
     "-o file_output.enabled=true: explain prints explanations and runs no output", 3),
    (["Shell spawned in container", "-o", "response.enabled=true", "-"],
     "-o response.enabled=true: explain does not read this key (it takes the rules' keys only)", 3),
])
def test_explain_errors_are_one_line(args: list[str], message: str, code: int) -> None:
    r = falconet("explain", *args, stdin="")
    assert r.returncode == code
    assert message in r.stderr and "Traceback" not in r.stderr


# -- run --explain ------------------------------------------------------------------------------------

def test_run_explains_near_misses_of_a_live_audit_stream(tmp_path: Path) -> None:
    """An audit-only sensor following an audit log (no eBPF needed) logs near misses, rate-limited,
    and says at the end how many it saw and left unexplained."""
    log = ROOT / "tests" / "data" / "k8s_audit" / "events.jsonl"
    r = falconet("run", "-r", str(ROOT / "rules" / "k8s_audit_rules.yaml"), "-o", "syscall.enabled=false",
                 "-o", f"k8s_audit.files=[{log}]", "-o", f"state_dir={tmp_path}", "-o", "webserver.enabled=false",
                 "--explain", "K8s Privileged Pod Created", "--explain-filter", "ka.target.resource = pods",
                 "-M", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    head = "explain: near miss of rule 'K8s Privileged Pod Created'"
    heads = [line for line in r.stderr.splitlines() if head in line]
    assert len(heads) == 5
    assert 'Rule "K8s Privileged Pod Created" did not match event #1 (k8s_audit k8s_audit)' in r.stderr
    assert ("explain: rule 'K8s Privileged Pod Created': 12 events of its types seen (selected by "
            "--explain-filter), 10 near misses, 5 explained, 5 not explained (rate limit)") in r.stderr
    # The two privileged pods still alert as they would without --explain.
    assert r.stdout.count("Warning Privileged K8s pod created") == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--explain", "Nope"], "no rule named 'Nope' is loaded"),
    (["--explain", "K8s Audit Event"], "rule 'K8s Audit Event' is disabled"),
    (["--explain", "K8s Request Denied", "--explain-filter", "ka.nope = 1"], "--explain-filter 'ka.nope = 1'"),
    (["--explain-filter", "ka.verb = get"], "--explain-filter needs --explain RULE"),
])
def test_run_explain_mistakes_are_usage_errors(args: list[str], message: str) -> None:
    r = falconet("run", "--dry-run", "-r", str(ROOT / "rules" / "k8s_audit_rules.yaml"),
                 "-o", "syscall.enabled=false", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


# -- docs/rules.md stays true ----------------------------------------------------------------------

def _block(doc: str, starts: str) -> str:
    text = doc[doc.index(starts):]
    return text[:text.index("```")]


def test_the_debugging_section_of_the_docs_is_what_the_commands_do(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "rules.md").read_text()
    tuning = tmp_path / "tuning.yaml"
    tuning.write_text(yaml.safe_dump(yaml.safe_load(_block(doc, "- macro: falconet_user_known_container_shell"))))
    event = {"source": "syscall", "fields": {
        "evt.type": "execve", "evt.res": "SUCCESS", "proc.name": "sh", "proc.pname": "python3",
        "proc.cmdline": "sh -c id", "container.id": "9f2c41d07a3e",
        "container.image.repository": "registry.example.com/shop/api"}}
    r = falconet("explain", "-r", str(ROOT / "rules" / "falconet_rules.yaml"), "-r", str(tuning),
                 "Shell spawned in container", json.dumps(event))
    shown = _block(doc, '$ falconet explain "Shell spawned in container" shell.json').splitlines()[1:]
    assert (r.stdout + r.stderr).splitlines() == shown
    # The rule test file of the docs, next to the bundled rules, passes.
    tests = tmp_path / "rules" / "tests"
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    (tests / "docs_example.yaml").write_text(_block(doc, "rules: [../falconet_rules.yaml]"))
    r = falconet("rules", "test", str(tests / "docs_example.yaml"))
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "2 passed, 0 failed", r.stdout
