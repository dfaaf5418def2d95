"""Definitions → compiled rules (Falco's rule_loader_compiler): lists flattened, macros parsed,
conditions parsed, exceptions added, macros expanded, fields and operators checked, outputs compiled.

Each rule's condition is checked once here by generating its Python expression; the per-event-type
functions the ruleset runs are generated from the same trees (ruleset.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sensor.alert import Priority
from sensor.engine import ast, passes
from sensor.engine.codegen import Codegen
from sensor.engine.collector import Collection, RuleDef
from sensor.engine.fields import SOURCES, resolve
from sensor.engine.formatter import Output, OutputError, OutputField, parse_output
from sensor.engine.parser import RuleSyntaxError, parse_condition
from sensor.engine.passes import CompileError, TypeSet
from sensor.engine.reader import Item
from sensor.errors import Diagnostic, DiagnosticList, Location


@dataclass
class CompiledRule:
    """A rule ready to run: its expanded condition tree, event types and compiled output."""

    name: str
    desc: str
    priority: Priority
    source: str
    tags: list[str]
    enabled: bool
    condition: str                 # as written (after appends)
    output: str                    # as written, with append_output text
    node: ast.Node                 # macros expanded, lists resolved, exceptions added
    types: TypeSet
    out: Output
    order: int
    item: Item
    macros: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Compiled:
    rules: list[CompiledRule]
    lists: dict[str, list[str]]
    macros: dict[str, ast.Node]


def _cond_location(item: Item, key: str, err_pos: ast.Pos) -> Location:
    """Where in the file a position inside a condition string is."""
    base = item.where(key)
    style = item.value_styles.get(key)
    if style in (">", "|"):
        line, col = base.line + err_pos.line, err_pos.col
    else:
        line = base.line + err_pos.line - 1
        col = base.column + err_pos.col - 1 if err_pos.line == 1 else err_pos.col
    return Location(base.name, line, col, err_pos.offset, "condition expression", "")


class RuleCompiler:
    """Compiles a Collection; errors and warnings go to `diags`."""

    def __init__(self, coll: Collection, diags: DiagnosticList,
                 extra_output: Callable[[RuleDef], tuple[str, list[Any]]] | None = None) -> None:
        self.coll = coll
        self.diags = diags
        self.extra_output = extra_output
        self.lists: dict[str, list[str]] = {}
        self.macros: dict[str, ast.Node] = {}
        self.broken_macros: set[str] = set()
        self.used_lists: set[str] = set()
        self.used_macros: set[str] = set()

    def _err(self, code: str, msg: str, *locs: Location, snippet: str = "") -> None:
        self.diags.errors.append(Diagnostic(code, msg, tuple(locs), snippet=snippet))

    def _warn(self, code: str, msg: str, *locs: Location) -> None:
        self.diags.warnings.append(Diagnostic(code, msg, tuple(locs)))

    def run(self) -> Compiled:
        for name, ld in self.coll.lists.items():
            self.lists[name] = passes.flatten_list(ld.items, self.lists, self.used_lists)
        for name, md in self.coll.macros.items():
            try:
                tree = parse_condition(md.condition)
            except RuleSyntaxError as e:
                self.broken_macros.add(name)
                self._err("LOAD_ERR_COMPILE_CONDITION", e.message, md.item.loc,
                          _cond_location(md.item, "condition", e.pos), snippet=md.condition)
                continue
            self.macros[name] = passes.resolve_lists(tree, self.lists, self.used_lists)
        rules = []
        for rd in sorted(self.coll.rules.values(), key=lambda r: r.order):
            cr = self.compile_rule(rd)
            if cr is not None:
                rules.append(cr)
        self._unused()
        return Compiled(rules, self.lists, self.macros)

    def _unused(self) -> None:
        for name, md in self.coll.macros.items():
            if name not in self.used_macros and name not in self.broken_macros:
                self._warn("LOAD_UNUSED_MACRO", f"Macro '{name}' not referred to by any rule/macro", md.item.loc)
        for name, ld in self.coll.lists.items():
            if name not in self.used_lists:
                self._warn("LOAD_UNUSED_LIST", f"List '{name}' not referred to by any rule/macro/list", ld.item.loc)

    def compile_rule(self, rd: RuleDef) -> CompiledRule | None:
        item = rd.item
        try:
            tree = parse_condition(rd.condition)
        except RuleSyntaxError as e:
            self._err("LOAD_ERR_COMPILE_CONDITION", e.message, item.loc,
                      _cond_location(item, "condition", e.pos), snippet=rd.condition)
            return None
        refs = passes.macro_refs(tree)
        # Macros count as used even by rules that are skipped later (Falco counts them the same way).
        self._mark_macros(refs)
        broken = sorted(r for r in refs if r in self.broken_macros)
        if broken:
            self._err("LOAD_ERR_COMPILE_CONDITION", f"Rule uses macro '{broken[0]}', which failed to compile",
                      item.loc)
            return None
        try:
            exc = build_exceptions(rd.exceptions, rd.source)
        except CompileError as e:
            self._err("LOAD_ERR_VALIDATE", e.message, item.where("exceptions"))
            return None
        if exc is not None:
            tree = ast.And((tree, ast.Not(exc)), pos=tree.pos)
        used_lists: set[str] = set()
        try:
            tree = passes.resolve_lists(tree, self.lists, used_lists)
            used_macros: set[str] = set()
            # Macro bodies had their lists resolved when they were compiled: resolving again
            # would expand a list item that merely shares a later list's name.
            tree = passes.expand_macros(tree, self.macros, used_macros)
        except CompileError as e:
            self._err("LOAD_ERR_COMPILE_CONDITION", e.message, item.loc,
                      _cond_location(item, "condition", e.pos), snippet=rd.condition)
            return None
        self.used_lists |= used_lists
        if rd.source not in SOURCES:
            self._warn("LOAD_UNKNOWN_SOURCE", f"Unknown source {rd.source}, skipping", item.loc)
            return None
        try:
            Codegen(rd.source).expr(passes.fold(tree))
        except CompileError as e:
            unknown = "nonexistent field" in e.message
            if unknown and rd.skip_if_unknown_filter:
                self._warn("LOAD_UNKNOWN_FILTER", f"{e.message}; skipping rule (skip-if-unknown-filter)", item.loc)
                return None
            self._err("LOAD_ERR_COMPILE_CONDITION", e.message, item.loc,
                      _cond_location(item, "condition", e.pos), snippet=rd.condition)
            return None
        tree = passes.fold(tree)
        types = passes.event_types(tree)
        if rd.source == "syscall" and rd.warn_evttypes and not types.only:
            self._warn("LOAD_NO_EVTTYPE", "Rule matches too many evt.type values. This has a significant "
                       "performance penalty.", item.loc)
        output_text = rd.output
        extra_fields: list[Any] = []
        if self.extra_output is not None:
            more, extra_fields = self.extra_output(rd)
            if more:
                output_text = f"{output_text} {more}"
        try:
            parts = parse_output(output_text, lambda n: resolve(rd.source, n))
            extra: list[OutputField] = []
            static: dict[str, Any] = {}
            for ef in extra_fields:
                if isinstance(ef, dict):
                    static.update(ef)
                    continue
                found = resolve(rd.source, str(ef))
                if found is None:
                    raise OutputError(f"invalid extra field {ef}: no such field")
                f, arg = found
                extra.append(OutputField(str(ef), f.name, arg, f.type))
        except OutputError as e:
            self._err("LOAD_ERR_COMPILE_OUTPUT", str(e), item.loc, item.where("output"), snippet=rd.output)
            return None
        return CompiledRule(
            name=rd.name, desc=rd.desc, priority=rd.priority, source=rd.source, tags=list(rd.tags),
            enabled=rd.enabled, condition=rd.condition, output=output_text, node=tree, types=types,
            out=Output(parts, extra, static), order=rd.order, item=item,
            macros=sorted(used_macros), lists=sorted(used_lists), exceptions=rd.exceptions)

    def _mark_macros(self, refs: set[str], seen: set[str] | None = None) -> None:
        seen = seen if seen is not None else set()
        for r in refs:
            if r in seen or r not in self.macros:
                continue
            seen.add(r)
            self.used_macros.add(r)
            self._mark_macros(passes.macro_refs(self.macros[r]), seen)


# -- exceptions ----------------------------------------------------------------------------------

def _lhs(text: str) -> ast.Node:
    """A field (maybe with transformers) as written in an exception's `fields`."""
    try:
        node = parse_condition(f"{text} exists")
    except RuleSyntaxError as e:
        raise CompileError(f"invalid exception field '{text}': {e.message}") from None
    if not isinstance(node, ast.UnaryCheck):
        raise CompileError(f"invalid exception field '{text}'")
    return node.left


def _rhs(value: Any, comp: str) -> ast.Node:
    if isinstance(value, list):
        return ast.ListValue(tuple(_scalar(v) for v in value))
    if comp in passes.LIST_OPS:
        return ast.Value(_scalar(value))      # a list name, resolved later, or one item
    return ast.Value(_scalar(value))


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def build_exceptions(exceptions: list[dict[str, Any]], source: str) -> ast.Node | None:
    """The `or` of every exception's matches, for `condition and not (...)`; None when empty.

    Tuple form: `fields: [a, b]`, `comps: [=, in]` (default `=`), `values: [[x, [y, z]], ...]`.
    Single-field form: `fields: a`, `comps: in` (default `in`), `values: [x, y]`.
    """
    alts: list[ast.Node] = []
    for ex in exceptions:
        name = ex.get("name")
        fields_ = ex.get("fields")
        values = ex.get("values") or []
        comps = ex.get("comps")
        if fields_ is None:
            raise CompileError(f"exception '{name}' has no fields")
        if isinstance(fields_, str):
            comp = comps if isinstance(comps, str) else "in"
            if comps is not None and not isinstance(comps, str):
                raise CompileError(f"exception '{name}': with a single field, comps must be a single operator")
            if not values:
                continue
            left = _lhs(fields_)
            if comp in passes.LIST_OPS:
                alts.append(ast.BinaryCheck(left, comp, ast.ListValue(tuple(_scalar(v) for v in values))))
            else:
                alts.extend(ast.BinaryCheck(left, comp, ast.Value(_scalar(v))) for v in values)
            continue
        if not isinstance(fields_, list) or not fields_:
            raise CompileError(f"exception '{name}': fields must be a field name or a list of them")
        if comps is None:
            comps = ["="] * len(fields_)
        if isinstance(comps, str) or len(comps) != len(fields_):
            raise CompileError(f"exception '{name}': fields and comps lists must have the same length")
        lefts = [_lhs(str(f)) for f in fields_]
        for tup in values:
            if not isinstance(tup, list) or len(tup) != len(fields_):
                raise CompileError(f"exception '{name}': each value must be a list with one item per field "
                                   f"({len(fields_)})")
            checks = [ast.BinaryCheck(lf, str(c), _rhs(v, str(c))) for lf, c, v in
                      zip(lefts, comps, tup, strict=True)]
            alts.append(checks[0] if len(checks) == 1 else ast.And(tuple(checks)))
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else ast.Or(tuple(alts))


# -- conditions outside rule files ---------------------------------------------------------------

def compile_filter(text: str, source: str = "syscall", lists: Mapping[str, list[str]] | None = None,
                   macros: Mapping[str, ast.Node] | None = None) -> Callable[[Any], bool]:
    """Compile one condition into `fn(event) -> bool` (for response matching and tools).

    Raises RuleSyntaxError or CompileError. Lists and macros from a loaded ruleset may be given.
    """
    tree = parse_condition(text)
    tree = passes.resolve_lists(tree, lists or {})
    tree = passes.fold(passes.expand_macros(tree, macros or {}))
    gen = Codegen(source, "value")
    body = gen.expr(tree)
    src = f"def _filter(e):\n    _g = e.value\n    return bool({_value_accessors(gen, body)})\n"
    ns = dict(gen.ns)
    exec(compile(src, "<filter>", "exec"), ns)
    return ns["_filter"]   # type: ignore[no-any-return]


def _value_accessors(gen: Codegen, body: str) -> str:
    """Field placeholders → `_g(field, arg)` (works for every event kind)."""
    import re

    def sub(m: re.Match[str]) -> str:
        use = gen.fields[m.group(1)]
        arg = gen.const(use.arg) if use.arg is not None else "None"
        return f"_g({gen.const(use.field.name)}, {arg})"

    return re.sub(r"@([^@]+)@", sub, body)
