"""Definitions → compiled rules (Falco's rule_loader_compiler): lists flattened, macros parsed,
conditions parsed, exceptions added, macros expanded, fields and operators checked, outputs compiled.

Every rule's condition is validated by generating and compiling the Python that evaluates it, with
the generator the ruleset uses for its per-event-type functions (codegen.py), so a rule that loads
compiles; whatever the generator cannot handle is an error here, with the rule's file and line.
"""

from __future__ import annotations

import re
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
from sensor.engine.passes import CompileError, Problem, TypeSet
from sensor.engine.reader import Item
from sensor.errors import Diagnostic, DiagnosticList, Location

# Falco 0.44 no longer sees enter events (falco_load_result.cpp, deprecated_field_descs).
EVT_DIR_DEPRECATED = ("The 'evt.dir' field is deprecated: due to the drop of enter events, 'evt.dir = <' always "
                      "evaluates to true, and 'evt.dir = >' always evaluates to false. The rule expression can be "
                      "simplified by removing the condition on 'evt.dir'")
CONTAINER_INFO = re.compile(r"%container\.info(?![A-Za-z0-9_.\[])")


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
        self.expander = passes.Macros(self.macros)
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
            self._err("LOAD_ERR_VALIDATE", e.message, item.loc, item.where("exceptions"))
            return None
        if exc is not None:
            for text in field_like_values(exc, rd.source):
                self._warn("LOAD_COMPILE_CONDITION", f"string '{text}' in an exception value may be a field "
                           "or a transformer used as a plain string; it is compared as text (use val() in "
                           "the condition to compare with a field's value)", item.loc, item.where("exceptions"))
            tree = ast.And((tree, ast.Not(exc)), pos=tree.pos)
        used_lists: set[str] = set()
        try:
            tree = passes.resolve_lists(tree, self.lists, used_lists)
            used_macros: set[str] = set()
            # Macro bodies had their lists resolved when they were compiled: resolving again
            # would expand a list item that merely shares a later list's name.
            tree = self.expander.expand(tree, used_macros)
        except CompileError as e:
            self._err("LOAD_ERR_COMPILE_CONDITION", e.message, item.loc,
                      _cond_location(item, "condition", e.pos), snippet=rd.condition)
            return None
        self.used_lists |= used_lists
        if rd.source not in SOURCES:
            self._warn("LOAD_UNKNOWN_SOURCE", f"Unknown source {rd.source}, skipping", item.loc)
            return None
        tree = passes.fold(tree)
        try:
            validate(rd.source, tree)
        except CompileError as e:
            if e.kind is Problem.UNKNOWN_FIELD and rd.skip_if_unknown_filter:
                self._warn("LOAD_UNKNOWN_FILTER", f"{e.message}; skipping rule (skip-if-unknown-filter)", item.loc)
                return None
            self._err("LOAD_ERR_COMPILE_CONDITION", e.message, item.loc,
                      _cond_location(item, "condition", e.pos), snippet=rd.condition)
            return None
        if any(isinstance(n, ast.FieldRef) and n.name == "evt.dir" for n in ast.walk(tree)):
            self._warn("LOAD_DEPRECATED_ITEM", f"{EVT_DIR_DEPRECATED} (in the condition)", item.loc)
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
        if CONTAINER_INFO.search(output_text):
            # Falco replaces the old placeholder by nothing and says so.
            output_text = " ".join(CONTAINER_INFO.sub("", output_text).split(" ")).strip()
            output_text = re.sub(r" {2,}", " ", output_text)
            self._warn("LOAD_DEPRECATED_ITEM", "The %container.info output placeholder is deprecated; it is "
                       "replaced by nothing", item.loc, item.where("output"))
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
        if any(isinstance(f, OutputField) and f.field == "evt.dir" for f in parts):
            self._warn("LOAD_DEPRECATED_ITEM", f"{EVT_DIR_DEPRECATED} (in the output)", item.loc,
                       item.where("output"))
        return CompiledRule(
            name=rd.name, desc=rd.desc, priority=rd.priority, source=rd.source, tags=list(rd.tags),
            enabled=rd.enabled, condition=rd.condition, output=output_text, node=tree, types=types,
            out=Output(parts, extra, static), order=rd.order, item=item,
            macros=sorted(used_macros), lists=sorted(used_lists), exceptions=rd.exceptions)

    def _mark_macros(self, refs: set[str]) -> None:
        """Count `refs` and every macro they reach as used (iteratively: chains may be long)."""
        pending = list(refs)
        while pending:
            r = pending.pop()
            if r in self.used_macros or r not in self.macros:
                continue
            self.used_macros.add(r)
            pending.extend(passes.macro_refs(self.macros[r]))


# -- exceptions ----------------------------------------------------------------------------------

def _lhs(text: str, source: str) -> ast.Node:
    """A field (maybe with transformers) as written in an exception's `fields`."""
    try:
        node = parse_condition(f"{text} exists")
    except RuleSyntaxError:
        node = None
    if not isinstance(node, ast.UnaryCheck):
        raise CompileError(f"'{text}' is not a supported filter field", kind=Problem.EXCEPTION)
    for ref in ast.walk(node.left):
        if isinstance(ref, ast.FieldRef) and source in SOURCES and resolve(source, ref.name) is None:
            raise CompileError(f"'{text}' is not a supported filter field", kind=Problem.EXCEPTION)
    return node.left


# What an exception's `comps` may hold: libsinsp's operators, and a string operator with a list
# modifier (Falco's rule_loader_cmpop.h); `in oneof`, `>= oneof` or `oneof` alone are not.
SUPPORTED_COMPS = frozenset({"exists", "=", "==", "!=", "<", "<=", ">", ">=", "contains", "icontains", "bcontains",
                             "startswith", "bstartswith", "endswith", "glob", "iglob", "regex", "in",
                             "intersects", "pmatch"})
MODIFIABLE_COMPS = frozenset({"=", "==", "!=", "contains", "icontains", "bcontains", "startswith", "bstartswith",
                              "endswith", "glob", "iglob", "regex"})
MODIFIERS = frozenset({"oneof", "anyof", "allof"})


def _comp(text: Any) -> tuple[str, str | None]:
    words = str(text).split()
    if len(words) == 1 and words[0] in SUPPORTED_COMPS:
        return words[0], None
    if len(words) == 2 and words[0] in MODIFIABLE_COMPS and words[1] in MODIFIERS:
        return words[0], words[1]
    raise CompileError(f"'{text}' is not a supported comparison operator", kind=Problem.EXCEPTION)


def _check(name: Any, left: ast.Node, comp: tuple[str, str | None], value: Any) -> ast.Node:
    op, modifier = comp
    takes_list = modifier is not None or op in passes.LIST_OPS
    if isinstance(value, list):
        if not takes_list:
            raise CompileError(f"Exception item {name}: a list of values needs a list comparison "
                               f"(in, intersects, pmatch or an operator with oneof/anyof/allof), not '{op}'",
                               kind=Problem.EXCEPTION)
        return ast.BinaryCheck(left, op, ast.ListValue(tuple(_scalar(v) for v in value)), modifier)
    # A single value for a list comparison is a list name, or a list of one item.
    return ast.BinaryCheck(left, op, ast.Value(_scalar(value)), modifier)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def build_exceptions(exceptions: list[dict[str, Any]], source: str) -> ast.Node | None:
    """The `or` of every exception's matches, for `condition and not (...)`; None when empty.
    Problems are CompileErrors with Falco's messages (rule_loader_collector/compiler).

    Tuple form: `fields: [a, b]`, `comps: [=, in]` (default `=`), `values: [[x, [y, z]], ...]`.
    Single-field form: `fields: a`, `comps: in|pmatch|intersects` (default `in`), `values: [x, y]`.
    """
    alts: list[ast.Node] = []
    for ex in exceptions:
        name = ex.get("name")
        fields_ = ex.get("fields")
        values = ex.get("values") or []
        comps = ex.get("comps")
        if fields_ is None:
            raise CompileError("Rule exception item must have fields property with a list of fields",
                               kind=Problem.EXCEPTION)
        if not isinstance(fields_, list):
            if isinstance(comps, list):
                raise CompileError("Fields and comps must both be strings", kind=Problem.EXCEPTION)
            comp = _comp("in" if comps is None else comps)
            if comp[0] not in passes.LIST_OPS or comp[1] is not None:
                raise CompileError("When fields is a single value, comps must be one of (in, pmatch, intersects)",
                                   kind=Problem.EXCEPTION)
            left = _lhs(str(fields_), source)
            if values:
                alts.append(ast.BinaryCheck(left, comp[0], ast.ListValue(tuple(_scalar(v) for v in values))))
            continue
        if comps is None:
            comps = ["="] * len(fields_)
        if not isinstance(comps, list) or len(comps) != len(fields_):
            raise CompileError("Fields and comps lists must have equal length", kind=Problem.EXCEPTION)
        parsed = [_comp(c) for c in comps]
        lefts = [_lhs(str(f), source) for f in fields_]
        for tup in values:
            if not isinstance(tup, list) or len(tup) != len(fields_):
                raise CompileError(f"Exception item {name}: fields and values lists must have equal length",
                                   kind=Problem.EXCEPTION)
            checks = [_check(name, lf, c, v) for lf, c, v in zip(lefts, parsed, tup, strict=True)]
            alts.append(checks[0] if len(checks) == 1 else ast.And(tuple(checks)))
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else ast.Or(tuple(alts))


_TRANSFORMED = re.compile(r"\s*(tolower|toupper|b64|basename|len|val)\(\s*[a-zA-Z][\w.]*(\[[^\]]*\])?\s*\)\s*")


def field_like_values(exc: ast.Node, source: str) -> list[str]:
    """Values of an exception that name a field or a transformer: almost certainly meant as the
    field's value (val()) but compared as text (Falco warns LOAD_COMPILE_CONDITION)."""
    out: list[str] = []
    for n in ast.walk(exc):
        if not isinstance(n, ast.BinaryCheck):
            continue
        texts = n.right.items if isinstance(n.right, ast.ListValue) else \
            (n.right.text,) if isinstance(n.right, ast.Value) else ()
        for t in texts:
            if (("." in t and resolve(source, t) is not None) or _TRANSFORMED.fullmatch(t)) and t not in out:
                out.append(t)
    return out


# -- validation and conditions outside rule files ------------------------------------------------

def validate(source: str, tree: ast.Node) -> None:
    """Generate and compile the Python that evaluates `tree` (folded); raise CompileError if that
    cannot be done. The ruleset's per-type functions come from the same generator."""
    Codegen(source).function([(0, tree)], name="<condition>")


@dataclass
class _FilterRule:
    source: str
    node: ast.Node
    types: TypeSet


def compile_filter(text: str, source: str = "syscall", lists: Mapping[str, list[str]] | None = None,
                   macros: Mapping[str, ast.Node] | None = None,
                   context: Mapping[str, Any] | None = None) -> Callable[[Any], bool]:
    """Compile one condition into `fn(event) -> bool` (for response matching and tools): a ruleset
    of one rule, indexed and compiled as loaded rules are.

    Raises RuleSyntaxError or CompileError. Lists, macros and context values (evt.hostname) from a
    loaded ruleset may be given.
    """
    from sensor.engine.ruleset import RuleIndex

    tree = parse_condition(text)
    tree = passes.resolve_lists(tree, lists or {})
    tree = passes.fold(passes.expand_macros(tree, macros or {}))
    if source not in SOURCES:
        raise CompileError(f"unknown event source '{source}'", kind=Problem.UNKNOWN_FIELD)
    validate(source, tree)
    index = RuleIndex([_FilterRule(source, tree, passes.event_types(tree))], context=context)
    match = index.match

    def matches(event: Any) -> bool:
        return bool(match(event))

    return matches
