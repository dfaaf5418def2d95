"""Rule files → items (list, macro, rule, engine/plugin requirements) with file and line context.

The first of Falco's three loading stages (rule_loader_reader): it reads YAML and checks the shape of
each item, and knows nothing about what the items mean together (collector.py) or how conditions
compile (compiler.py). Every problem becomes a Diagnostic naming the file, line and item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sensor.errors import Diagnostic, DiagnosticList, Location


class RulesLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's `=` value type: Falco (yaml-cpp) reads `comps: [=, in]` as
    strings, and so must we."""


RulesLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:value"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

ITEM_KINDS = ("rule", "macro", "list", "required_engine_version", "required_plugin_versions")

# Keys each item kind accepts (Falco's rules file schema); others are schema warnings.
RULE_KEYS = frozenset({"rule", "desc", "condition", "output", "priority", "source", "enabled", "tags",
                       "exceptions", "skip-if-unknown-filter", "warn_evttypes", "append", "override",
                       "capture", "capture_duration"})
MACRO_KEYS = frozenset({"macro", "condition", "append", "override"})
LIST_KEYS = frozenset({"list", "items", "append", "override"})

# Falco's reader checks names against libsinsp's lexer: a macro name is an identifier, a list name
# any bare string (rule_loader_reader.cpp RGX_IDENTIFIER, RGX_BARESTR); others only warn.
RGX_IDENTIFIER = "([a-zA-Z]+[a-zA-Z0-9_]*)"
RGX_BARESTR = "([^()\"'[:space:]=,]+)"
_IDENTIFIER = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_BARESTR = re.compile(r"[^()\"'\s=,]+")

# Keys whose value Falco's rules file schema types; a value of another type makes the file fail
# schema validation (schema_valid: false), which is reported but does not stop the load.
_SCHEMA_BOOL = ("capture",)


@dataclass
class Item:
    """One item of a rules file, with the places its keys were written."""

    kind: str
    name: str
    data: dict[str, Any]
    loc: Location
    key_pos: dict[str, tuple[int, int]] = field(default_factory=dict)   # key → (line, column) of value
    value_styles: dict[str, str | None] = field(default_factory=dict)   # key → YAML scalar style

    def where(self, key: str | None = None) -> Location:
        """The location of the item, or of one of its keys' values."""
        if key and key in self.key_pos:
            line, col = self.key_pos[key]
            return Location(self.loc.name, line, col, 0, self.loc.item_type, self.loc.item_name)
        return self.loc


@dataclass
class ReadResult:
    items: list[Item]
    diags: DiagnosticList
    schema_warnings: list[str] = field(default_factory=list)


def read_file(path: Path) -> ReadResult:
    """Read one rules file; YAML errors and malformed items are diagnostics, not exceptions."""
    diags = DiagnosticList()
    name = str(path)
    try:
        text = path.read_text()
    except OSError as e:
        diags.errors.append(Diagnostic("LOAD_ERR_FILE_READ", f"Could not open file {name}: {e.strerror}",
                                       (Location(name, item_type="rules content"),)))
        return ReadResult([], diags)
    return read_text(text, name, diags)


def read_text(text: str, name: str, diags: DiagnosticList | None = None) -> ReadResult:
    diags = diags if diags is not None else DiagnosticList()
    items: list[Item] = []
    try:
        docs = list(yaml.compose_all(text, Loader=RulesLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else 0
        col = mark.column + 1 if mark else 0
        problem = getattr(e, "problem", None) or str(e)
        diags.errors.append(Diagnostic(
            "LOAD_ERR_YAML_PARSE", f"YAML parse error: {problem}",
            (Location(name, line, col, mark.index if mark else 0, "rules content"),),
            snippet=_snippet(text, line)))
        return ReadResult(items, diags)
    schema: list[str] = []
    for doc in docs:
        if doc is None or _is_null(doc):
            continue
        if not isinstance(doc, yaml.SequenceNode):
            diags.errors.append(Diagnostic(
                "LOAD_ERR_YAML_VALIDATE", "Rules content is not yaml array of objects",
                (_loc(name, doc, "rules content"),), snippet=_snippet(text, doc.start_mark.line + 1)))
            continue
        for node in doc.value:
            if _is_null(node):
                continue          # a stray `-`: Falco skips null items
            item = _read_item(node, name, text, diags)
            if item is not None:
                items.append(item)
                schema.extend(_schema_problems(item))
    return ReadResult(items, diags, schema)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _schema_problems(item: Item) -> list[str]:
    out = []
    for key in _SCHEMA_BOOL:
        if key in item.data and not isinstance(item.data[key], bool):
            line, col = item.key_pos[key]
            out.append(f"{item.loc.name}:{line}:{col}: {item.kind} '{item.name}': value of '{key}' must be a "
                       "boolean")
    return out


def _loc(name: str, node: yaml.Node, item_type: str, item_name: str = "") -> Location:
    m = node.start_mark
    return Location(name, m.line + 1, m.column + 1, m.index, item_type, item_name)


def _snippet(text: str, line: int) -> str:
    lines = text.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return ""


def _read_item(node: yaml.Node, name: str, text: str, diags: DiagnosticList) -> Item | None:
    if not isinstance(node, yaml.MappingNode):
        diags.errors.append(Diagnostic(
            "LOAD_ERR_YAML_VALIDATE", "Unexpected element type. Each element should be a yaml associative array.",
            (_loc(name, node, "rules content"),), snippet=_snippet(text, node.start_mark.line + 1)))
        return None
    data: dict[str, Any] = {}
    constructor = RulesLoader("")
    key_pos: dict[str, tuple[int, int]] = {}
    styles: dict[str, str | None] = {}
    for knode, vnode in node.value:
        key = str(knode.value)
        try:
            data[key] = constructor.construct_object(vnode, deep=True)
        except yaml.YAMLError as e:  # pragma: no cover - composed nodes always serialise
            diags.errors.append(Diagnostic("LOAD_ERR_YAML_PARSE", str(e), (_loc(name, vnode, "rules content"),)))
            return None
        key_pos[key] = (vnode.start_mark.line + 1, vnode.start_mark.column + 1)
        styles[key] = getattr(vnode, "style", None)
    kind = next((k for k in ITEM_KINDS if k in data), None)
    if kind is None:
        diags.warnings.append(Diagnostic(
            "LOAD_UNKNOWN_ITEM", "Unknown top level item",
            (_loc(name, node, "rules content"),), snippet=_snippet(text, node.start_mark.line + 1)))
        return None
    item_name = data[kind] if kind in ("rule", "macro", "list") else ""
    loc = _loc(name, node, kind, str(item_name) if item_name is not None else "")
    item = Item(kind, str(item_name) if item_name is not None else "", data, loc, key_pos, styles)
    if kind in ("rule", "macro", "list"):
        if not isinstance(item_name, str) or not item_name:
            diags.errors.append(Diagnostic(
                "LOAD_ERR_YAML_VALIDATE", f"Mapping for key '{kind}' is empty" if not item_name
                else f"Value for key '{kind}' must be a string", (item.where(kind),),
                snippet=_snippet(text, node.start_mark.line + 1)))
            return None
        if kind == "macro" and not _IDENTIFIER.fullmatch(item_name):
            diags.warnings.append(Diagnostic(
                "LOAD_INVALID_MACRO_NAME", "Macro has an invalid name. Macro names should match a regular "
                f"expression: {RGX_IDENTIFIER}", (item.loc,)))
        if kind == "list" and not _BARESTR.fullmatch(item_name):
            diags.warnings.append(Diagnostic(
                "LOAD_INVALID_LIST_NAME", "List has an invalid name. List names should match a regular "
                f"expression: {RGX_BARESTR}", (item.loc,)))
        allowed = {"rule": RULE_KEYS, "macro": MACRO_KEYS, "list": LIST_KEYS}[kind]
        for key in data:
            if key not in allowed:
                diags.warnings.append(Diagnostic(
                    "LOAD_UNKNOWN_KEY", f"Unknown key '{key}' in {kind} '{item_name}'; the key is ignored",
                    (item.where(key),)))
    return item
