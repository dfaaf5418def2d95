"""Loader semantics: lists, macros, rules, override/append, exceptions, selection, and diagnostics
that name the file, line and item."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from sensor.alert import Priority
from sensor.engine.loader import LoadOptions, RulesLoadError, load_rules
from sensor.event import RecordedEvent


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip())
    return p


def ev(**fields: Any) -> RecordedEvent:
    d = {"evt.type": "execve"}
    d.update({k.replace("__", "."): v for k, v in fields.items()})
    return RecordedEvent("syscall", d)


def fired(rs: Any, e: RecordedEvent) -> list[str]:
    return [a.rule for a in rs.process(e)]


RULE = """
    - rule: R
      desc: d
      condition: evt.type = execve and {cond}
      output: "proc=%proc.name"
      priority: Warning
    """


def test_list_macro_rule(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - list: shells
      items: [bash, sh]
    - list: more_shells
      items: [shells, zsh]
    - macro: is_shell
      condition: proc.name in (more_shells)
    - rule: Shell
      desc: a shell
      condition: evt.type = execve and is_shell
      output: "shell %proc.name"
      priority: Notice
      tags: [b, a]
    """)
    rs = load_rules([p])
    assert fired(rs, ev(proc__name="zsh")) == ["Shell"]
    assert fired(rs, ev(proc__name="bash")) == ["Shell"]
    assert fired(rs, ev(proc__name="ls")) == []
    a = rs.process(ev(proc__name="sh"))[0]
    assert (str(a.priority), a.output, a.source, a.tags) == ("Notice", "shell sh", "syscall", ["b", "a"])


def test_list_referencing_a_later_list_is_not_expanded(tmp_path: Path) -> None:
    # Falco expands a list name inside a list only if that list was defined before.
    p = write(tmp_path, """
    - list: first
      items: [second, a]
    - list: second
      items: [b]
    """ + RULE.format(cond="proc.name in (first)"))
    rs = load_rules([p])
    assert fired(rs, ev(proc__name="second")) == ["R"]
    assert fired(rs, ev(proc__name="b")) == []


def test_quoted_list_items_read_as_condition_tokens(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - list: nets
      items: ['"10.0.0.0/8"', '"192.168.0.0/16"']
    - rule: R
      desc: d
      condition: evt.type = connect and fd.snet in (nets)
      output: o
      priority: Notice
    """)
    rs = load_rules([p])
    assert fired(rs, RecordedEvent("syscall", {"evt.type": "connect", "fd.snet": "10.2.3.4"})) == ["R"]


def test_macro_defined_after_use_and_nested(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - macro: outer
      condition: inner and proc.pid > 1
    - macro: inner
      condition: proc.name = bash
    """ + RULE.format(cond="outer"))
    rs = load_rules([p])
    assert fired(rs, ev(proc__name="bash", proc__pid=5)) == ["R"]
    assert fired(rs, ev(proc__name="bash", proc__pid=1)) == []


def test_macro_loop_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - macro: a
      condition: b
    - macro: b
      condition: a
    """ + RULE.format(cond="a"))
    with pytest.raises(RulesLoadError) as info:
        load_rules([p])
    assert "references itself" in str(info.value)


def test_undefined_macro_names_file_line_and_rule(tmp_path: Path) -> None:
    p = write(tmp_path, RULE.format(cond="missing_macro"))
    with pytest.raises(RulesLoadError) as info:
        load_rules([p])
    (err,) = info.value.errors
    assert err.code == "LOAD_ERR_COMPILE_CONDITION"
    assert "Undefined macro 'missing_macro'" in err.message
    assert err.locations[0].item_type == "rule" and err.locations[0].item_name == "R"
    assert err.locations[0].name == str(p) and err.locations[0].line == 1
    assert f"{p}:3" in str(err)


def test_syntax_error_points_into_the_condition(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - rule: R
      desc: d
      condition: evt.type = execve and proc.name in (a,)
      output: o
      priority: Warning
    """)
    with pytest.raises(RulesLoadError) as info:
        load_rules([p])
    err = info.value.errors[0]
    assert err.locations[-1].line == 3
    assert err.locations[-1].column == 52
    assert "unexpected token ')'" in err.message


def test_yaml_error_has_a_line(tmp_path: Path) -> None:
    p = write(tmp_path, "- rule: R\n  desc: [unclosed\n  condition: x\n")
    with pytest.raises(RulesLoadError) as info:
        load_rules([p])
    err = info.value.errors[0]
    assert err.code == "LOAD_ERR_YAML_PARSE" and err.locations[0].line >= 2


def test_every_error_is_listed(tmp_path: Path) -> None:
    p = write(tmp_path, RULE.format(cond="nope1") + RULE.replace("- rule: R", "- rule: S").format(cond="nope2"))
    q = write(tmp_path, "- rule: T\n  desc: d\n  condition: evt.type=execve\n  output: o\n  priority: warn\n", "b.yaml")
    with pytest.raises(RulesLoadError) as info:
        load_rules([p, q])
    msgs = [e.message for e in info.value.errors]
    assert len(msgs) == 3
    assert any("nope1" in m for m in msgs) and any("nope2" in m for m in msgs)
    assert any("Invalid priority level: warn" in m for m in msgs)
    assert {r.name: r.successful for r in info.value.results} == {str(p): False, str(q): False}


@pytest.mark.parametrize("prio,expected", [("Emergency", "Emergency"), ("ALERT", "Alert"), ("critical", "Critical"),
                                           ("Error", "Error"), ("Warning", "Warning"), ("notice", "Notice"),
                                           ("Informational", "Informational"), ("info", "Informational"),
                                           ("INFO", "Informational"), ("debug", "Debug")])
def test_priorities(tmp_path: Path, prio: str, expected: str) -> None:
    p = write(tmp_path, RULE.replace("Warning", prio).format(cond="proc.name = x"))
    assert str(load_rules([p]).rules[0].priority) == expected


def test_missing_keys_and_bad_types(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - rule: NoOutput
      desc: d
      condition: evt.type = execve
      priority: Warning
    - rule: BadEnabled
      desc: d
      condition: evt.type = execve
      output: o
      priority: Warning
      enabled: maybe
    - list: l
      items: notalist
    - macro: m
    """)
    with pytest.raises(RulesLoadError) as info:
        load_rules([p])
    msgs = " | ".join(e.message for e in info.value.errors)
    assert "no mapping for key 'output'" in msgs
    assert "'enabled' must be a boolean" in msgs
    assert "'items' must be a sequence" in msgs
    assert "no mapping for key 'condition'" in msgs


def test_redefined_rule_keeps_its_position(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - rule: A
      desc: d
      condition: evt.type = execve and proc.name = x
      output: A
      priority: Warning
    - rule: B
      desc: d
      condition: evt.type = execve and proc.name = x
      output: B
      priority: Warning
    - rule: A
      desc: d2
      condition: evt.type = execve and proc.name = x
      output: A2
      priority: Warning
    """)
    rs = load_rules([p])
    assert [r.name for r in rs.rules] == ["A", "B"]
    assert [a.output for a in rs.process(ev(proc__name="x"))] == ["A2"]
    rs_all = load_rules([p], rule_matching="all")
    assert [a.output for a in rs_all.process(ev(proc__name="x"))] == ["A2", "B"]


def test_override_append_and_replace_per_key(tmp_path: Path) -> None:
    base = write(tmp_path, """
    - list: names
      items: [a]
    - macro: m
      condition: proc.name in (names)
    - rule: R
      desc: first
      condition: evt.type = execve and m
      output: "proc=%proc.name"
      priority: Warning
      tags: [t1]
    """, "a.yaml")
    over = write(tmp_path, """
    - list: names
      items: [b]
      override:
        items: append
    - macro: m
      condition: or proc.name = c
      override:
        condition: append
    - rule: R
      condition: and proc.pid > 0
      output: "pid=%proc.pid"
      tags: [t2]
      priority: Critical
      override:
        condition: append
        output: append
        tags: append
        priority: replace
    """, "b.yaml")
    rs = load_rules([base, over])
    r = rs.rules[0]
    assert r.priority is Priority.CRITICAL and r.tags == ["t1", "t2"]
    assert fired(rs, ev(proc__name="b", proc__pid=3)) == ["R"]
    assert fired(rs, ev(proc__name="c", proc__pid=3)) == ["R"]
    assert fired(rs, ev(proc__name="b", proc__pid=0)) == []
    assert rs.process(ev(proc__name="a", proc__pid=3))[0].output == "proc=a pid=3"


def test_override_replace_condition_and_enabled(tmp_path: Path) -> None:
    base = write(tmp_path, RULE.format(cond="proc.name = a"), "a.yaml")
    over = write(tmp_path, """
    - rule: R
      condition: evt.type = execve and proc.name = z
      enabled: false
      override:
        condition: replace
        enabled: replace
    """, "b.yaml")
    rs = load_rules([base, over])
    assert rs.rules == [] and rs.all_rules[0].enabled is False
    assert rs.all_rules[0].condition == "evt.type = execve and proc.name = z"


@pytest.mark.parametrize("text,msg", [
    ("- rule: R\n  condition: x\n  override:\n    condition: prepend\n", "must be 'append' or 'replace'"),
    ("- rule: R\n  priority: Error\n  override:\n    priority: append\n", "cannot be overridden with 'append'"),
    ("- rule: R\n  condition: x\n  output: y\n  override:\n    condition: append\n", "not listed in the 'override'"),
    ("- rule: R\n  override:\n    condition: append\n", "no value was given"),
    ("- rule: Nope\n  condition: x\n  override:\n    condition: append\n", "no rule by that name"),
    ("- rule: R\n  condition: x\n  append: true\n  override:\n    condition: append\n", "cannot be used together"),
    ("- list: nolist\n  items: [x]\n  override:\n    items: append\n", "no list by that name"),
    ("- macro: nomacro\n  condition: x\n  override:\n    condition: append\n", "no macro by that name"),
])
def test_override_errors(tmp_path: Path, text: str, msg: str) -> None:
    base = write(tmp_path, RULE.format(cond="proc.name = a"), "a.yaml")
    bad = write(tmp_path, text, "b.yaml")
    with pytest.raises(RulesLoadError) as info:
        load_rules([base, bad])
    assert msg in str(info.value)
    assert str(bad) in str(info.value)


def test_deprecated_append_and_enabled_only_warn(tmp_path: Path) -> None:
    base = write(tmp_path, RULE.format(cond="proc.name = a") + """
    - list: l
      items: [x]
    """, "a.yaml")
    over = write(tmp_path, """
    - rule: R
      condition: or proc.name = b
      append: true
    - list: l
      items: [y]
      append: true
    - rule: R
      enabled: false
    """, "b.yaml")
    rs = load_rules([base, over])
    codes = [w.code for w in rs.warnings]
    assert codes.count("LOAD_DEPRECATED_ITEM") == 3
    assert rs.all_rules[0].enabled is False
    assert rs.all_rules[0].condition == "evt.type = execve and proc.name = a or proc.name = b"


def test_exceptions_tuple_and_single_field_forms(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - list: trusted
      items: [ok1, ok2]
    - rule: R
      desc: d
      condition: evt.type = execve and proc.name startswith t
      output: o
      priority: Warning
      exceptions:
        - name: by_name_and_parent
          fields: [proc.name, proc.pname]
          comps: [=, in]
          values:
            - [tx, [p1, p2]]
            - [ty, trusted]
        - name: by_name
          fields: proc.name
          values: [tz, tw]
        - name: empty
          fields: [proc.name]
    """)
    rs = load_rules([p])
    assert fired(rs, ev(proc__name="tx", proc__pname="p2")) == []
    assert fired(rs, ev(proc__name="tx", proc__pname="p3")) == ["R"]
    assert fired(rs, ev(proc__name="ty", proc__pname="ok2")) == []
    assert fired(rs, ev(proc__name="tz")) == []
    assert fired(rs, ev(proc__name="tq")) == ["R"]


def test_exception_values_appended_by_override(tmp_path: Path) -> None:
    base = write(tmp_path, """
    - rule: R
      desc: d
      condition: evt.type = execve and proc.name startswith t
      output: o
      priority: Warning
      exceptions:
        - name: names
          fields: [proc.name]
          values: [[ta]]
    """, "a.yaml")
    over = write(tmp_path, """
    - rule: R
      exceptions:
        - name: names
          values: [[tb]]
        - name: parents
          fields: [proc.pname]
          values: [[pp]]
      override:
        exceptions: append
    """, "b.yaml")
    rs = load_rules([base, over])
    assert fired(rs, ev(proc__name="ta")) == []
    assert fired(rs, ev(proc__name="tb")) == []
    assert fired(rs, ev(proc__name="tc", proc__pname="pp")) == []
    assert fired(rs, ev(proc__name="tc", proc__pname="qq")) == ["R"]


def test_exception_errors(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - rule: R
      desc: d
      condition: evt.type = execve
      output: o
      priority: Warning
      exceptions:
        - name: bad
          fields: [proc.name, proc.pname]
          values: [[only_one]]
    """)
    with pytest.raises(RulesLoadError, match="fields and values lists must have equal length"):
        load_rules([p])


def test_warnings_unused_no_evttype(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - list: unused_list
      items: [a]
    - macro: unused_macro
      condition: proc.name = a
    - rule: Broad
      desc: d
      condition: proc.name = a
      output: o
      priority: Warning
    """)
    rs = load_rules([p])
    codes = sorted(w.code for w in rs.warnings)
    assert codes == ["LOAD_NO_EVTTYPE", "LOAD_UNUSED_LIST", "LOAD_UNUSED_MACRO"]
    assert rs.event_types("syscall") is None


def test_skip_if_unknown_filter(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - rule: Future
      desc: d
      condition: evt.type = execve and proc.brand_new_field = 1
      output: o
      priority: Warning
      skip-if-unknown-filter: true
    """ + RULE.format(cond="proc.name = a"))
    rs = load_rules([p])
    assert [r.name for r in rs.rules] == ["R"]
    assert [w.code for w in rs.warnings] == ["LOAD_UNKNOWN_FILTER"]


def test_unknown_source_is_skipped_with_a_warning(tmp_path: Path) -> None:
    text = RULE.format(cond="proc.name = a").replace("priority:", "source: aws_cloudtrail\n      priority:")
    p = write(tmp_path, text)
    rs = load_rules([p])
    assert rs.rules == [] and rs.warnings[0].code == "LOAD_UNKNOWN_SOURCE"


@pytest.mark.parametrize("version,ok", [("0.62.0", True), ("0.10.0", True), (15, True), ("0.63.0", False),
                                        ("1.0.0", False), (999, False), ("x.y", False)])
def test_required_engine_version(tmp_path: Path, version: Any, ok: bool) -> None:
    p = write(tmp_path, f"- required_engine_version: {version}\n")
    if ok:
        assert [r.successful for r in load_rules([p]).results] == [True]
    else:
        with pytest.raises(RulesLoadError):
            load_rules([p])


@pytest.mark.parametrize("name,version,ok", [("container", "0.4.0", True), ("k8saudit", "0.18.0", True),
                                             ("json", "0.7.0", True), ("container", "1.0.0", False),
                                             ("container", "0.9.0", False), ("cloudtrail", "0.1.0", False)])
def test_required_plugin_versions(tmp_path: Path, name: str, version: str, ok: bool) -> None:
    p = write(tmp_path, f"- required_plugin_versions:\n  - name: {name}\n    version: {version}\n")
    if ok:
        assert [r.successful for r in load_rules([p]).results] == [True]
    else:
        with pytest.raises(RulesLoadError, match="Plugin requirement not satisfied"):
            load_rules([p])


def test_plugin_alternatives(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - required_plugin_versions:
      - name: k8saudit-eks
        version: 0.1.0
        alternatives:
          - name: k8saudit
            version: 0.10.0
    """)
    rs = load_rules([p])
    # The requirement is met by its alternative: the file loads, with nothing to warn about.
    assert [r.successful for r in rs.results] == [True] and rs.warnings == []


def test_directories_multiple_documents_and_order(tmp_path: Path) -> None:
    d = tmp_path / "rules.d"
    d.mkdir()
    (d / "10-base.yaml").write_text(RULE.format(cond="proc.name = a"))
    (d / "20-more.yml").write_text("---\n- list: x\n  items: [q]\n---\n" + RULE.replace("- rule: R", "- rule: S")
                                   .format(cond="proc.name in (x)"))
    (d / "ignored.txt").write_text("not yaml: [")
    rs = load_rules([d], rule_matching="all")
    assert [r.name for r in rs.rules] == ["R", "S"]
    assert fired(rs, ev(proc__name="q")) == ["S"]


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RulesLoadError, match="No such file"):
        load_rules([tmp_path / "nope.yaml"])


def test_selection_priority_tags_and_names(tmp_path: Path) -> None:
    text = "".join(f"""
- rule: {name}
  desc: d
  condition: evt.type = execve and proc.name = x
  output: {name}
  priority: {prio}
  tags: [{tag}]
""" for name, prio, tag in [("Alpha one", "Critical", "t1"), ("Beta", "Notice", "t2"), ("Gamma", "Debug", "t1")])
    p = write(tmp_path, text)

    def names(**kw: Any) -> list[str]:
        return [r.name for r in load_rules([p], LoadOptions(**kw)).rules]

    assert names() == ["Alpha one", "Beta", "Gamma"]
    assert names(min_priority="Notice") == ["Alpha one", "Beta"]
    assert names(min_priority="Critical") == ["Alpha one"]
    assert names(disable_rules=["Alpha*"]) == ["Beta", "Gamma"]
    assert names(disable_rules=["eta"]) == ["Alpha one", "Gamma"]
    assert names(disable_tags=["t1"]) == ["Beta"]
    assert names(enable_tags=["t1"]) == ["Alpha one", "Gamma"]
    assert names(selection=[{"disable": {"rule": "*"}}, {"enable": {"tag": "t2"}}]) == ["Beta"]
    assert names(selection=[{"disable": {"tag": "t*"}}, {"enable": {"rule": "Gamma"}}]) == ["Gamma"]


def test_append_output(tmp_path: Path) -> None:
    p = write(tmp_path, RULE.format(cond="proc.name = a"))
    opts = LoadOptions(append_output=[
        {"match": {"source": "syscall"}, "extra_output": "on %proc.pid", "extra_fields": ["user.name",
                                                                                           {"team": "blue"}]},
        {"match": {"tags": ["nope"]}, "extra_output": "never"},
    ])
    rs = load_rules([p], opts)
    a = rs.process(ev(proc__name="a", proc__pid=7, user__name="root"))[0]
    assert a.output == "proc=a on 7"
    assert a.output_fields == {"proc.name": "a", "proc.pid": 7, "user.name": "root", "team": "blue"}


def test_rule_matching_first_and_all(tmp_path: Path) -> None:
    p = write(tmp_path, RULE.format(cond="proc.name = a") + RULE.replace("- rule: R", "- rule: S")
              .format(cond="proc.name startswith a"))
    assert fired(load_rules([p]), ev(proc__name="a")) == ["R"]
    assert fired(load_rules([p], rule_matching="all"), ev(proc__name="a")) == ["R", "S"]


def test_event_type_index(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - rule: Opens
      desc: d
      condition: evt.type in (open, openat) and fd.name = /x
      output: o
      priority: Warning
    - rule: NotExecs
      desc: d
      condition: not evt.type = execve and fd.name = /x
      output: o
      priority: Warning
      warn_evttypes: false
    - rule: Or
      desc: d
      condition: (evt.type = connect and fd.name = /x) or (evt.type = accept and fd.name = /x)
      output: o
      priority: Warning
    """)
    rs = load_rules([p], rule_matching="all")
    assert {r.name: (r.types.only, sorted(r.types.names)) for r in rs.rules} == {
        "Opens": (True, ["open", "openat"]), "NotExecs": (False, ["execve"]), "Or": (True, ["accept", "connect"])}
    assert rs.event_types() is None
    assert rs.warnings == []
    e = lambda t: RecordedEvent("syscall", {"evt.type": t, "fd.name": "/x"})  # noqa: E731
    assert fired(rs, e("openat")) == ["Opens", "NotExecs"]
    assert fired(rs, e("execve")) == []
    assert fired(rs, e("accept")) == ["NotExecs", "Or"]
    assert fired(rs, e("close")) == ["NotExecs"]


def test_output_is_trimmed_like_falco(tmp_path: Path) -> None:
    p = write(tmp_path, """
    - rule: R
      desc: d
      condition: evt.type = execve and proc.name = a
      output: >
        folded output %proc.name
      priority: Warning
    """)
    assert load_rules([p]).process(ev(proc__name="a"))[0].output == "folded output a"


# -- the hostname: decided once, passed as a value (issue 15) ----------------------------------------

HOST_RULE = """
    - rule: R
      desc: d
      condition: evt.type = execve and evt.hostname = {host}
      output: "on %evt.hostname"
      priority: Warning
    """


def test_hostname_comes_from_the_environment_when_not_configured(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALCONET_HOSTNAME", "sensor-a")
    [a] = load_rules([write(tmp_path, HOST_RULE.format(host="sensor-a"))]).process(ev())
    assert a.hostname == "sensor-a" and a.output == "on sensor-a"
    assert a.output_fields == {"evt.hostname": "sensor-a"}


def test_each_ruleset_keeps_its_own_hostname(tmp_path: Path) -> None:
    # A reload builds a new ruleset before it knows whether the rest of the reload succeeds; when
    # it fails, the running ruleset must still say its own hostname, in conditions and outputs.
    running = load_rules([write(tmp_path, HOST_RULE.format(host="old"), "a.yaml")], hostname="old")
    load_rules([write(tmp_path, HOST_RULE.format(host="new"), "b.yaml")], hostname="new")
    [a] = running.process(ev())
    assert (a.hostname, a.output) == ("old", "on old")
