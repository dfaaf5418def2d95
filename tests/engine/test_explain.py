"""Explanations agree with the compiled condition, node by node.

For a table of conditions (every operator, modifier and transformer, lists, `exists`, `not`,
macros, exceptions, missing values, fields with several values) a rule is loaded and explained on
an event; then every node of the explanation is rendered back to condition text, compiled on its
own with the real compiler (`compile_filter`) and run on the same event: the two never disagree.
The rule's own matcher (the ruleset) agrees with the explanation's root too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_eval import CASES as EVAL_CASES

from sensor.engine import ast, compile_filter, load_rules
from sensor.engine.explain import NO_VALUE, Result, RuleExplainer
from sensor.engine.fields import resolve
from sensor.event import RecordedEvent
from sensor.sources.k8s_audit.decode import events_from_json

PRELUDE = """\
- list: shells
  items: [bash, sh]
- list: more_shells
  items: [shells, zsh]
- list: private_nets
  items: ["10.0.0.0/8", "192.168.0.0/16"]
- list: etc_dirs
  items: [/etc, /usr/etc]
- list: nothing
  items: []
- macro: spawned
  condition: evt.type in (execve, execveat) and evt.res = SUCCESS
- macro: in_container
  condition: container.id != host
- macro: known_shell
  condition: (container.image.repository = my-registry/debug-toolbox)
- macro: nested
  condition: spawned and not known_shell
"""

EXEC = {"evt.type": "execve", "evt.res": "SUCCESS", "proc.name": "bash", "proc.pname": "sshd",
        "proc.args": "-c -t 5 id", "proc.pid": 42, "proc.ppid": 1, "container.id": "3ad7b26ded6d",
        "fd.name": "/etc/passwd", "fd.sip": "10.0.0.9", "fd.ip": ["172.16.0.1", "10.0.0.5"],
        "fd.net": ["172.16.0.1", "10.0.0.5"], "proc.aname": ["sshd", "systemd"],
        "evt.is_open_read": True, "evt.arg.flags": "O_WRONLY|O_TRUNC"}

# (condition, fields replacing those of EXEC; None removes a field)
TABLE: list[tuple[str, dict[str, Any]]] = [
    # every operator, each on a value that holds and one that does not
    *[(f"proc.name {op} {v}", {}) for op, v in [
        ("=", "bash"), ("==", "sh"), ("!=", "bash"), ("!=", "sh"), ("contains", "as"), ("contains", "x"),
        ("icontains", "AS"), ("bcontains", "6173"),
        ("bcontains", "7a7a"), ("startswith", "ba"), ("startswith", "sh"), ("bstartswith", "6261"),
        ("endswith", "sh"), ("endswith", "ba"), ("glob", "b*"), ("glob", "[!b]*"), ("iglob", "B?SH"),
        ("regex", "ba.h"), ("regex", "as"), ("in", "(sh, bash)"), ("in", "(sh, zsh)"),
        ("intersects", "(bash)")]],
    ("proc.pid < 43 and proc.pid <= 42 and proc.pid > 41 and proc.pid >= 42 and proc.pid != 7", {}),
    ("proc.pid in (1, 42)", {}), ("proc.pid = 0x2a", {}),
    ("fd.name pmatch (etc_dirs)", {}), ("fd.name pmatch (etc_dirs)", {"fd.name": "/etcetera"}),
    ("fd.snet in (private_nets)", {}), ("fd.snet in (private_nets)", {"fd.snet": "8.8.8.8"}),
    ("fd.snet = 10.0.0.0/8", {"fd.snet": "10.1.2.3"}), ("fd.snet != 10.0.0.0/8", {"fd.snet": "10.1.2.3"}),
    ("fd.ip = 10.0.0.5", {}), ("fd.ip != 10.0.0.5", {}), ("fd.net != 192.168.0.0/16", {}),
    ("evt.is_open_read = true", {}), ("evt.is_open_read != true", {}),
    ("evt.arg.flags contains O_TRUNC", {}), ("evt.arg[flags] contains O_CREAT", {}),
    ("proc.aname = systemd", {}), ("proc.aname[2] = systemd", {}), ("proc.aname startswith ssh", {}),
    # modifiers
    ("proc.name = oneof (cat, bash)", {}), ("proc.name = oneof (bash, bash)", {}),
    ("proc.name = anyof (cat, bash)", {}), ("proc.name = anyof (cat, ls)", {}),
    ("proc.name != allof (a, b)", {}), ("proc.name != allof (a, bash)", {}),
    ("fd.name contains allof (etc, pass)", {}), ("fd.name contains allof (etc, shadow)", {}),
    ("fd.name contains oneof (etc, pass)", {}), ("fd.name startswith anyof (/proc/, /etc/)", {}),
    ("proc.name icontains anyof (AS, zz)", {}), ("proc.name = anyof (shells)", {}),
    ("proc.name = anyof (cat)", {"proc.name": None}),
    # transformers, val()
    ("tolower(proc.name) = bash", {"proc.name": "BaSh"}), ("toupper(proc.name) = BASH", {}),
    ("basename(fd.name) = passwd", {}), ("b64(proc.name) = bash", {"proc.name": "YmFzaA=="}),
    ("b64(proc.name) = bash", {"proc.name": "not base64!"}), ("len(proc.name) = 4", {}),
    ("len(proc.aname) = 2", {}), ("tolower(toupper(proc.name)) in (shells)", {}),
    ('join(",", (proc.name, proc.pname)) = "bash,sshd"', {}), ('join(",", (proc.name, proc.pname)) = bash', {}),
    ('concat(proc.name, ":", proc.pid) = "bash:42"', {}), ('concat(proc.name, ":", proc.pid) exists', {}),
    ('concat(proc.name, ":", proc.pid) exists', {"proc.pid": None}),
    ('getopt(proc.args, "nt:") intersects (t)', {}), ('getopt(proc.args, "nt:") intersects (n)', {}),
    ("proc.name = val(proc.pname)", {}), ("proc.name != val(proc.pname)", {}),
    ("proc.pid > val(proc.ppid)", {}), ("val(proc.name) = bash", {}),
    ("tolower(proc.name) = tolower(proc.pname)", {"proc.pname": "BASH"}),
    ("proc.name = val(proc.pname)", {"proc.pname": None}),
    # lists, exists, not, missing values
    ("proc.name in (more_shells)", {}), ("proc.name in (more_shells)", {"proc.name": "fish"}),
    ("proc.name in (nothing)", {}), ("not proc.name in (shells)", {}),
    ("proc.name exists", {}), ("proc.name exists", {"proc.name": None}), ("not proc.name exists", {"proc.name": None}),
    ("proc.name = bash", {"proc.name": None}), ("proc.name != bash", {"proc.name": None}),
    ("not proc.name = bash", {"proc.name": None}), ("proc.pid > 0", {"proc.pid": None}),
    ("fd.snet in (private_nets)", {"fd.snet": None}), ("fd.sip in (10.0.0.9, 10.0.0.1)", {}),
    # boolean structure and macros
    ("proc.name = sh or proc.name = zsh and proc.pid = 42", {}),
    ("(proc.name = sh or proc.name = bash) and not (proc.pid = 1 or proc.pid = 2)", {}),
    ("spawned and in_container and proc.name in (shells) and not known_shell", {}),
    ("spawned and in_container and proc.name in (shells) and not known_shell",
     {"container.image.repository": "my-registry/debug-toolbox"}),
    ("spawned and in_container", {"container.id": "host"}),
    ("nested and not not in_container", {}),
    ("spawned", {"evt.type": "execveat", "evt.res": "ENOENT"}),
]

EXCEPTIONS = """\
  exceptions:
    - name: trusted_parents
      fields: [proc.pname, proc.name]
      comps: [=, in]
      values:
        - [cron, [sh, bash]]
        - [sshd, [shells]]
    - name: by_path
      fields: fd.name
      comps: pmatch
      values: [/usr/etc, /opt]
    - name: case_folded
      fields: [tolower(proc.name), proc.pid]
      comps: [startswith, ">="]
      values:
        - [ba, 100]
"""


def _ruleset(tmp_path: Path, cond: str, exceptions: str = "", source: str = "syscall") -> Any:
    p = tmp_path / "r.yaml"
    out = "%proc.name" if source == "syscall" else "%ka.user.name"
    rule = (f"- rule: R\n  desc: d\n  condition: {json.dumps(cond)}\n  output: out {out}\n"
            f"  priority: Warning\n  source: {source}\n{exceptions}")
    p.write_text(PRELUDE + rule if source == "syscall" else rule)
    return load_rules([p])


def _event(changes: dict[str, Any]) -> RecordedEvent:
    fields = {**EXEC, **changes}
    return RecordedEvent("syscall", {k: v for k, v in fields.items() if v is not None}, 1)


def _nodes(r: Result) -> list[Result]:
    out = [r]
    for c in r.children:
        out += _nodes(c)
    return out


def assert_agrees(rs: Any, event: Any) -> Any:
    """Every node of the explanation against its own compiled condition on the same event."""
    rule = rs.rule("R")
    x = RuleExplainer(rs, rule)
    e = x.explain(event, [a.rule for a in rs.process(event)])
    assert e.consistent and e.root.value == e.matched == e.alerted
    for r in _nodes(e.root):
        text = ast.to_text(r.step.node)
        compiled = compile_filter(text, rule.source, context=rs.context)(event)
        assert compiled is r.value, f"{text!r}: explanation says {r.value}, compiled says {compiled}"
        if r.step.kind == "check":
            missing = any(v is None for op, v in r.values if op.role != "field")
            assert (r.status == NO_VALUE) == (missing and not r.value), text
            for op, v in r.values:
                # A plain field is shown with the value the event has.
                found = resolve(rule.source, op.text)
                if found is not None and found[1] is None:
                    assert v == event.value(op.text), (text, op.text)
    # The path ends where the result was decided: at a check whose result is the one its
    # parents needed, or at a node every operand of which counted.
    last = e.decided_by
    assert last.decided and sum(r.decided for r in _nodes(e.root)) == 1
    return e


@pytest.mark.parametrize(("cond", "changes"), TABLE, ids=[f"{c} | {ch}" for c, ch in TABLE])
def test_every_node_agrees_with_the_compiled_condition(tmp_path: Path, cond: str, changes: dict[str, Any]) -> None:
    rs = _ruleset(tmp_path, f"evt.type in (execve, execveat) and ({cond})")
    assert_agrees(rs, _event(changes))


@pytest.mark.parametrize("changes", [
    {}, {"proc.pname": "cron", "proc.name": "sh"}, {"proc.pname": "sshd"}, {"fd.name": "/opt/x"},
    {"proc.name": "BASH", "proc.pid": 150}, {"proc.name": "BASH", "proc.pid": 50}, {"proc.pname": None},
    {"fd.name": None, "proc.pname": "init"},
], ids=str)
def test_exceptions_agree_and_name_the_item_that_matched(tmp_path: Path, changes: dict[str, Any]) -> None:
    rs = _ruleset(tmp_path, "spawned and proc.name exists", EXCEPTIONS)
    e = assert_agrees(rs, _event(changes))
    (exc,) = [r for r in _nodes(e.root) if r.step.kind == "exceptions"]
    held = [c.step.name for c in exc.children if c.value]
    if e.matched:
        assert held == []
    else:
        # The decision is the first exception item (and value tuple) that held.
        assert held and e.decided_by.step.kind == "exception" and e.decided_by.step.name == held[0]


@pytest.mark.parametrize(("cond", "fields", "want"), EVAL_CASES, ids=[f"{c} | {f}" for c, f, _ in EVAL_CASES])
def test_the_evaluation_table_agrees(tmp_path: Path, cond: str, fields: dict[str, Any], want: bool) -> None:
    rs = _ruleset(tmp_path, f"evt.type = openat and ({cond})")
    e = assert_agrees(rs, RecordedEvent("syscall", {"evt.type": "openat", **fields}, 1))
    assert e.matched is want


AUDIT_POD = {
    "kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete", "verb": "create",
    "auditID": "a1", "stageTimestamp": "2026-03-14T09:27:07.591793Z", "requestURI": "/api/v1/namespaces/default/pods",
    "user": {"username": "alice", "groups": ["dev", "system:authenticated"]},
    "objectRef": {"resource": "pods", "namespace": "default", "name": "p"},
    "responseStatus": {"code": 201},
    "requestObject": {"kind": "Pod", "spec": {
        "containers": [{"name": "a", "image": "docker.io/library/busybox:1.36",
                        "securityContext": {"privileged": True}},
                       {"name": "b", "image": "nginx:1.25"}],
        "volumes": [{"name": "s", "hostPath": {"path": "/var/run/docker.sock"}}]}},
}


@pytest.mark.parametrize("cond", [
    "ka.req.pod.containers.image.repository in (docker.io/library/busybox, nginx)",
    "ka.req.pod.containers.image.repository in (nginx)",
    "ka.req.pod.containers.image.repository intersects (nginx, redis)",
    "ka.req.pod.containers.privileged intersects (true)",
    "ka.req.pod.volumes.hostpath intersects (/var/run/docker.sock, /etc)",
    "ka.req.pod.volumes.hostpath pmatch (/var/run)",
    "ka.user.groups intersects (system:unauthenticated)",
    "ka.req.pod.containers.image startswith anyof (nginx, redis)",
    "ka.req.pod.containers.image contains allof (:, .)",
    "len(ka.req.pod.containers.image) = 2",
    "ka.user.name = alice and not ka.target.subresource exists",
    "ka.req.pod.host_network = true",
    "jevt.value[/user/username] = alice",
])
def test_audit_events_with_list_fields_agree(tmp_path: Path, cond: str) -> None:
    rs = _ruleset(tmp_path, cond, source="k8s_audit")
    (event,) = events_from_json(AUDIT_POD, first_num=1)
    assert_agrees(rs, event)


def test_a_macro_exception_is_named_as_the_decision(tmp_path: Path) -> None:
    rs = _ruleset(tmp_path, "spawned and in_container and proc.name in (shells) and not known_shell")
    ev = _event({"container.image.repository": "my-registry/debug-toolbox"})
    e = RuleExplainer(rs, rs.rule("R")).explain(ev, [a.rule for a in rs.process(ev)])
    assert not e.matched and e.alerted is False
    assert [r.step.text for r in e.path if r.step.kind != "and"] == [
        "not", "macro known_shell", "container.image.repository = my-registry/debug-toolbox"]
    text = e.text()
    assert ('decided by: not ▸ macro known_shell ▸ container.image.repository "my-registry/debug-toolbox" '
            "= my-registry/debug-toolbox → true") in text
    assert 'proc.name "bash" in (shells) → true (matched: bash)' in text
    assert "◀ decided" in [line for line in text.splitlines() if "container.image.repository" in line][-1]


def test_list_names_values_and_no_value_are_shown(tmp_path: Path) -> None:
    rs = _ruleset(tmp_path, "spawned and fd.snet in (private_nets) and not proc.tty exists "
                  "and proc.name = anyof (cat, bash) and fd.name contains allof (etc, shadow)")
    ev = _event({"fd.snet": "10.0.0.9"})
    lines = RuleExplainer(rs, rs.rule("R")).explain(ev).lines()
    assert '    fd.snet "10.0.0.9" in (private_nets) → true (matched: 10.0.0.0/8)' in lines
    assert "      proc.tty <no value> exists → no value" in lines
    assert '    proc.name "bash" = anyof (cat, bash) → true (matched: bash)' in lines
    assert '    fd.name "/etc/passwd" contains allof (etc, shadow) → false (did not hold for: shadow)   ◀ decided' \
        in lines
    ev = _event({"fd.snet": "8.8.8.8"})
    e = RuleExplainer(rs, rs.rule("R")).explain(ev)
    assert e.decided_text() == 'fd.snet "8.8.8.8" in (private_nets) → false'


def test_json_document_has_the_tree_and_the_decision(tmp_path: Path) -> None:
    rs = _ruleset(tmp_path, "spawned and tolower(proc.name) in (shells)", EXCEPTIONS)
    ev = _event({"proc.name": "sh", "proc.pname": "cron"})
    doc = RuleExplainer(rs, rs.rule("R")).explain(ev, [a.rule for a in rs.process(ev)]).as_json()
    json.dumps(doc)
    assert doc["matched"] is False and doc["alerted"] is False and doc["rule"] == "R"
    assert doc["event"] == {"num": 1, "source": "syscall", "type": "execve"}
    cond, negated = doc["tree"]["children"]
    check = cond["children"][1]
    assert check["condition"] == "tolower(proc.name) in (bash, sh)"
    assert check["values"] == {"tolower(proc.name)": "sh", "proc.name": "sh"}
    assert check["result"] == "true" and check["items"] == {"note": "matched", "items": ["sh"]}
    item = negated["children"][0]["children"][0]
    assert item["kind"] == "exception" and item["name"] == "trusted_parents"
    assert item["values"] == ["cron", ["sh", "bash"]] and item["result"] == "true" and item["decided"] is True
    assert doc["decided_by"][-1].startswith('exception trusted_parents: fields (proc.pname, proc.name) values')


def test_a_condition_that_holds_but_another_rule_alerted_says_so(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text(PRELUDE + "".join(
        f"- rule: {n}\n  desc: d\n  condition: spawned and proc.name in (shells)\n  output: o\n  priority: Warning\n"
        for n in ("First", "R")))
    rs = load_rules([p])
    ev = _event({})
    e = RuleExplainer(rs, rs.rule("R")).explain(ev, [a.rule for a in rs.process(ev)])
    assert e.matched and e.alerted is False
    assert e.note == 'the condition holds, but rule "First" matched first (rule_matching: first)'
    assert e.decided_text() == 'every operand of "and" holds → true'


# -- live: run --explain ----------------------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _near_misses(tmp_path: Path, events: list[dict[str, Any]], filter_text: str | None = None,
                 clock: Any = None) -> tuple[Any, Any, list[str]]:
    import logging

    from sensor.engine.explain import NearMisses
    from sensor.runtime import Runtime
    from sensor.sources.replay import ReplaySource

    rs = _ruleset(tmp_path, "spawned and in_container and proc.name in (shells) and not known_shell")
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(json.dumps({"source": "syscall", "fields": f}) + "\n" for f in events))
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("test.explain.live")
    log.propagate = False
    log.handlers = [Keep()]
    log.setLevel(logging.INFO)
    near = NearMisses("R", filter_text, log, clock=clock or _Clock())
    near.bind(rs)
    alerts: list[Any] = []
    rt = Runtime(rs, [ReplaySource(capture)], alerts.append)
    rt.observe = near
    rt.run()
    return near, alerts, records


def test_live_near_misses_are_explained_and_hits_are_not(tmp_path: Path) -> None:
    toolbox = {**EXEC, "container.image.repository": "my-registry/debug-toolbox"}
    events = [EXEC, toolbox, {**EXEC, "proc.name": "nc"}, {**EXEC, "evt.type": "openat"}]
    near, alerts, records = _near_misses(tmp_path, events)
    assert [a.rule for a in alerts] == ["R"]               # the hot path is unchanged
    assert (near.seen, near.misses, near.logged, near.suppressed) == (3, 2, 2, 0)
    assert records[0].splitlines()[0] == "explain: near miss of rule 'R'"
    assert 'Rule "R" did not match event #2 (syscall execve)' in records[0]
    assert "decided by: not ▸ macro known_shell" in records[0]
    assert 'proc.name "nc" in (shells) → false   ◀ decided' in records[1]


def test_live_near_misses_follow_the_filter_and_the_rate_limit(tmp_path: Path) -> None:
    clock = _Clock()
    events = [{**EXEC, "proc.name": "nc", "proc.pid": i} for i in range(12)] + [{**EXEC, "proc.name": "cat"}]
    near, _alerts, records = _near_misses(tmp_path, events, "proc.name = nc", clock)
    assert (near.seen, near.misses, near.logged, near.suppressed) == (12, 12, 5, 7)
    assert len(records) == 5 and all("proc.name \"nc\"" in r for r in records)
    assert near.summary() == ("explain: rule 'R': 12 events of its types seen (selected by --explain-filter), "
                              "12 near misses, 5 explained, 7 not explained (rate limit)")
    # 12 seconds later one more may be logged, and it says how many were not.
    clock.now = 12.0
    near(near._ruleset, _event({"proc.name": "nc"}), [])
    assert records[-1].splitlines()[0] == "explain: near miss of rule 'R' (7 more not explained: rate limit)"


def test_live_explanations_follow_a_reload(tmp_path: Path) -> None:
    import logging

    from sensor.engine.explain import NearMisses

    log = logging.getLogger("test.explain.reload")
    near = NearMisses("R", None, log, clock=_Clock())
    near.bind(_ruleset(tmp_path, "spawned and proc.name = zsh"))
    other = tmp_path / "other.yaml"
    other.write_text("- rule: S\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: Warning\n")
    gone = load_rules([other])
    near(gone, _event({}), [])
    assert near._explainer is None and near.seen == 0
    back = _ruleset(tmp_path, "spawned and proc.name = fish")
    near(back, _event({}), [])
    assert near._explainer is not None and near.misses == 1
    with pytest.raises(ValueError, match=r"--explain-filter 'proc\.nam = x'"):
        NearMisses("R", "proc.nam = x", log).bind(back)
