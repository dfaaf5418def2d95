"""Falco 0.44.1's loader, case by case: for each rules file, whether it loads (`successful`), the
error and warning codes `falco -V` reports, a fragment of the message and where it points.

The cases are written from Falco's rule_loader_reader/collector/compiler and falco_load_result
sources and from issue 16; `docs/rules.md` lists where Falconet still differs.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sensor.engine.loader import FileResult, RulesLoadError, load_rules

RULE = "- rule: R\n  desc: d\n  condition: evt.type = execve{cond}\n  output: o\n  priority: Warning\n"


def result(tmp_path: Path, text: str) -> FileResult:
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    try:
        rs = load_rules([p])
    except RulesLoadError as e:
        (res,) = e.results
        return res
    (res,) = rs.results  # type: ignore[attr-defined]
    return res


CASES: list[tuple[str, str, bool, list[str], list[str], str]] = [
    # (id, file, successful, error codes, warning codes, message fragment)
    ("null item is skipped", "-\n" + RULE.format(cond="") + "-\n", True, [], [], ""),
    ("unknown rule key", RULE.format(cond="") + "  colour: red\n", True, [], ["LOAD_UNKNOWN_KEY"],
     "Unknown key 'colour' in rule 'R'"),
    ("key of another item type",
     "- list: l\n  items: [a]\n  priority: Info\n" + RULE.format(cond=" and proc.name in (l)"),
     True, [], ["LOAD_UNKNOWN_KEY"], "Unknown key 'priority' in list 'l'"),
    ("unknown macro key", "- macro: m\n  condition: proc.name = a\n  output: o\n" + RULE.format(cond=" and m"),
     True, [], ["LOAD_UNKNOWN_KEY"], "Unknown key 'output' in macro 'm'"),
    ("invalid macro name", "- macro: my-macro\n  condition: proc.name = a\n", True, [],
     ["LOAD_INVALID_MACRO_NAME", "LOAD_UNUSED_MACRO"], "Macro names should match a regular expression"),
    ("invalid list name", "- list: 'a b'\n  items: [x]\n", True, [], ["LOAD_INVALID_LIST_NAME", "LOAD_UNUSED_LIST"],
     "List names should match a regular expression"),
    ("append key is deprecated", "- list: l\n  items: [a]\n- list: l\n  items: [b]\n  append: true\n"
     + RULE.format(cond=" and proc.name in (l)"), True, [], ["LOAD_DEPRECATED_ITEM"], "append"),
    ("container.info is deprecated", RULE.format(cond="").replace("output: o", "output: 'o %container.info'"),
     True, [], ["LOAD_DEPRECATED_ITEM"], "%container.info"),
    ("evt.dir in a condition", RULE.format(cond=" and evt.dir = <"), True, [], ["LOAD_DEPRECATED_ITEM"], "evt.dir"),
    ("evt.dir through a macro", "- macro: m\n  condition: evt.dir = <\n" + RULE.format(cond=" and m"), True, [],
     ["LOAD_DEPRECATED_ITEM"], "evt.dir"),
    ("evt.dir in an output", RULE.format(cond="").replace("output: o", "output: 'o %evt.dir'"), True, [],
     ["LOAD_DEPRECATED_ITEM"], "evt.dir"),
    ("condition that can never be true has no LOAD_NO_EVTTYPE",
     RULE.format(cond=" and evt.type = open"), True, [], [], ""),
    ("exception appended with no values",
     RULE.format(cond="") + "  exceptions:\n  - name: e\n    fields: [proc.name]\n    values: [[a]]\n"
     "- rule: R\n  exceptions:\n  - name: e\n  override:\n    exceptions: append\n",
     True, [], ["LOAD_APPEND_NO_VALUES"], "Overriding/appending exception with no values"),
    ("exception value that is a field", RULE.format(cond="") + "  exceptions:\n  - name: e\n"
     "    fields: [proc.name]\n    values: [[proc.pname]]\n", True, [], ["LOAD_COMPILE_CONDITION"], "proc.pname"),
    ("exception value that is a transformer", RULE.format(cond="") + "  exceptions:\n  - name: e\n"
     "    fields: [proc.name]\n    values: [['toupper( proc.pname)']]\n", True, [], ["LOAD_COMPILE_CONDITION"],
     "toupper"),
    ("macro override replace defines it", "- macro: m\n  condition: proc.name = a\n  override:\n"
     "    condition: replace\n" + RULE.format(cond=" and m"), True, [], [], ""),
    ("list override replace defines it", "- list: l\n  items: [a]\n  override:\n    items: replace\n"
     + RULE.format(cond=" and proc.name in (l)"), True, [], [], ""),
    ("capture that is no boolean only fails the schema", RULE.format(cond="") + "  capture: 'yes'\n", True, [], [],
     ""),
    ("rule re-defined with another source", RULE.format(cond="") + RULE.format(cond="").replace(
        "priority: Warning", "priority: Warning\n  source: k8s_audit").replace("evt.type = execve", "ka.verb = get"),
     False, ["LOAD_ERR_VALIDATE"], [], "re-defined with a different source"),
    ("rule appended with another source", RULE.format(cond="") + "- rule: R\n  condition: and proc.name = a\n"
     "  source: k8s_audit\n  override:\n    condition: append\n", False, ["LOAD_ERR_VALIDATE"], [],
     "with a different source"),
    ("rule replaced with another source", RULE.format(cond="") + "- rule: R\n  priority: Error\n"
     "  source: k8s_audit\n  override:\n    priority: replace\n", False, ["LOAD_ERR_VALIDATE"], [],
     "with a different source"),
    ("invalid required_engine_version", "- required_engine_version: x.y\n", False, ["LOAD_ERR_YAML_VALIDATE"], [],
     "Unable to parse engine version 'x.y' as a semver string"),
    ("exceptions replaced without fields", RULE.format(cond="") + "- rule: R\n  exceptions:\n  - name: e\n"
     "    values: [[a]]\n  override:\n    exceptions: replace\n", False, ["LOAD_ERR_YAML_VALIDATE"], [],
     "Item has no mapping for key 'fields'"),
    ("exception without fields", RULE.format(cond="") + "  exceptions:\n  - name: e\n    values: [[a]]\n",
     False, ["LOAD_ERR_YAML_VALIDATE"], [], "fields"),
    ("invalid capture_duration", RULE.format(cond="") + "  capture: true\n  capture_duration: soon\n", False,
     ["LOAD_ERR_YAML_VALIDATE"], [], "capture_duration"),
    *[(f"comps '{c}' is no operator", RULE.format(cond="") + f"  exceptions:\n  - name: e\n"
       f"    fields: [proc.name]\n    comps: ['{c}']\n    values: [[[a]]]\n", False, ["LOAD_ERR_VALIDATE"], [],
       f"'{c}' is not a supported comparison operator") for c in ("in oneof", ">= oneof", "oneof", "equals")],
    ("comps with a modifier", RULE.format(cond="") + "  exceptions:\n  - name: e\n"
     "    fields: [proc.name, fd.name]\n    comps: ['= oneof', startswith anyof]\n"
     "    values: [[[a, b], [/tmp, /var]]]\n", True, [], [], ""),
    ("exception field that does not exist", RULE.format(cond="") + "  exceptions:\n  - name: e\n"
     "    fields: [proc.nope]\n    values: [[a]]\n", False, ["LOAD_ERR_VALIDATE"], [],
     "'proc.nope' is not a supported filter field"),
    ("fields and comps of different lengths", RULE.format(cond="") + "  exceptions:\n  - name: e\n"
     "    fields: [proc.name, proc.pname]\n    comps: [=]\n    values: [[a, b]]\n", False, ["LOAD_ERR_VALIDATE"],
     [], "Fields and comps lists must have equal length"),
    ("single field with a non-list comparison", RULE.format(cond="") + "  exceptions:\n  - name: e\n"
     "    fields: proc.name\n    comps: '='\n    values: [a]\n", False, ["LOAD_ERR_VALIDATE"], [],
     "comps must be one of (in, pmatch, intersects)"),
    ("appending fields to an existing exception", RULE.format(cond="") + "  exceptions:\n  - name: e\n"
     "    fields: [proc.name]\n    values: [[a]]\n- rule: R\n  exceptions:\n  - name: e\n    fields: [proc.pname]\n"
     "    values: [[b]]\n  override:\n    exceptions: append\n", False, ["LOAD_ERR_VALIDATE"], [],
     "Can not append exception fields to existing exception, only values"),
    ("modifier in a condition with a named list", "- list: l\n  items: [/tmp, /var]\n"
     + RULE.format(cond=" and fd.name startswith anyof l"), True, [], [], ""),
    ("literal block with line breaks", "- rule: R\n  desc: d\n  condition: |\n    evt.type = execve and proc.name\n"
     "      contains\n      sh and proc.pname\n      in\n      (bash)\n  output: o\n  priority: Warning\n",
     True, [], [], ""),
]


@pytest.mark.parametrize(("text", "ok", "errors", "warnings", "fragment"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_loader_like_falco(tmp_path: Path, text: str, ok: bool, errors: list[str], warnings: list[str],
                           fragment: str) -> None:
    res = result(tmp_path, text)
    assert res.successful is ok
    assert [d.code for d in res.errors] == errors
    assert sorted(d.code for d in res.warnings) == sorted(warnings)
    if fragment:
        assert any(fragment in d.message for d in res.errors + res.warnings), [str(d) for d in res.warnings]
    for d in res.errors + res.warnings:
        assert "\n" not in d.message


def test_schema_warning_for_capture_is_reported_in_the_json(tmp_path: Path) -> None:
    res = result(tmp_path, RULE.format(cond="") + "  capture: 'yes'\n")
    doc: dict[str, Any] = res.as_json()
    assert doc["successful"] is True and doc["schema_valid"] is False
    assert doc["schema_warnings"] and "capture" in doc["schema_warnings"][0]
    assert json.loads(json.dumps(doc)) == doc


def test_positions_name_the_file_line_and_column(tmp_path: Path) -> None:
    res = result(tmp_path, "- list: l\n  items: [a]\n  priority: Info\n" + RULE.format(cond=" and proc.name in (l)"))
    (w,) = res.warnings
    assert (w.locations[-1].line, w.locations[-1].column) == (3, 13)
    res = result(tmp_path, "- required_engine_version: x.y\n")
    (e,) = res.errors
    assert (e.locations[-1].line, e.locations[-1].column) == (1, 28)


def test_null_items_and_container_info_leave_the_rule_working(tmp_path: Path) -> None:
    from sensor.event import RecordedEvent

    p = tmp_path / "r.yaml"
    p.write_text("-\n" + RULE.format(cond="").replace("output: o", "output: 'shell %proc.name %container.info'"))
    rs = load_rules([p])
    (alert,) = rs.process(RecordedEvent("syscall", {"evt.type": "execve", "proc.name": "sh"}))
    assert alert.output == "shell sh"
