"""AST → one Python function that evaluates a list of conditions, compiled once (sqlglot's style:
handlers dispatched from tables, source generated as text and `compile()`d once).

Rules are data, so nothing a rule contains ever becomes source text. The generator writes only
names it makes up and operators it chooses: every value a condition holds (a string, a set of
values, a compiled regex, the argument of a field) is a constant in the function's namespace
(`_k3`), and every field is read through the accessor of the event's class (access.py) as
`_x2(_s, _a2)`. The same compiled code serves live, recorded and any other events.

The generator type-checks as it goes: an unknown field, an operator the field's type does not
support or a value that does not convert raises a CompileError of the matching Problem, with the
position of the check. Semantics are Falco's: a field with no value makes every comparison on it
false, `!=` included.

Each field is read at most once per call. At every read the generator knows whether the field was
surely read before on every path to it (then it is a local), never read before (then the read is
stored in the local), or perhaps read (then the local is tested against the `_U` marker first).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import Any

from sensor.engine import ast
from sensor.engine.access import Access, bindings
from sensor.engine.fields import resolve
from sensor.engine.fields.base import Field
from sensor.engine.operators import (
    OPS_BY_KIND,
    RUNTIME,
    STRING_TRANSFORMERS,
    TRANSFORMS,
    convert,
    convert_net,
    glob_regex,
    is_textual,
    kind_of,
    length,
)
from sensor.engine.passes import CompileError, Problem
from sensor.event import field_key

UNREAD = object()   # `_U`: a cached field that this call has not read yet

LIST_ITEM_OPS = frozenset({"in", "intersects", "pmatch"})


# -- the compiled result --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FieldUse:
    """One distinct field (with its argument) that a function reads: `_xN(_s, _aN)`, kept in `_fN`."""

    n: int
    field: Field
    arg: str | None


class Program:
    """A generated function `_match(e) -> tuple of indexes`, compiled once; `bind` makes the
    callable for one kind of event and one ruleset's context values (evt.hostname) by filling a
    namespace (no generation, cannot fail)."""

    __slots__ = ("code", "consts", "reads", "source")

    def __init__(self, source: str, consts: dict[str, Any], reads: Sequence[FieldUse], name: str) -> None:
        self.source = source
        self.consts = consts
        self.reads = tuple(reads)
        try:
            self.code: CodeType = compile(source, name, "exec")
        except (SyntaxError, RecursionError, MemoryError, ValueError) as e:
            # The limits in passes.py keep generated code well inside Python's; should one still be
            # crossed, the condition is refused at load time rather than failing at run time.
            raise CompileError(f"condition is too complex to compile ({type(e).__name__}: {e})",
                               kind=Problem.TOO_DEEP) from None

    def bind(self, access: Access, context: Mapping[str, Any]) -> Callable[[Any], Any]:
        ns = dict(RUNTIME)
        ns.update(self.consts)
        ns.update(bindings(access, self.reads, context))
        ns["_U"] = UNREAD
        exec(self.code, ns)
        return ns["_match"]


@dataclass(frozen=True, slots=True)
class _Side:
    """A generated left-hand side: its expression and what kind of value it yields."""

    text: str
    type: str
    multi: bool       # several values, compared one by one (any of them)
    is_list: bool     # a list field (in/pmatch need every value)
    either: bool      # fd.ip-like: `!=` means no value equals


# -- the generator --------------------------------------------------------------------------------

class Codegen:
    """Generates one function for one event source; values and reads accumulate as it goes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.consts: dict[str, Any] = {}
        self._const_names: dict[tuple[type, Any], str] = {}
        self.reads: dict[str, FieldUse] = {}
        self._helpers: list[str] = []
        self._n = 0
        # Flow state: which fields are surely read at the current point, which perhaps, and which
        # locals need the `_U` marker set at entry.
        self._sure: set[str] = set()
        self._seen: set[str] = set()
        self._guarded: set[str] = set()

    # -- the function -----------------------------------------------------------------------------

    def function(self, checks: Iterable[tuple[int, ast.Node]], first: bool = True,
                 name: str = "<condition>") -> Program:
        """`_match(e)` evaluating each (index, condition) in order, returning the indexes that hold:
        the first one only when `first`, else all of them."""
        body = []
        for index, node in checks:
            text = self.expr(node)
            if text == "False":
                continue
            hit = f"        return ({index},)\n" if first else f"        _r.append({index})\n"
            body.append(f"    if {text}:\n{hit}")
        lines = [*self._helpers, "def _match(e):"]
        if self.reads:
            lines.append("    _s = e.fields if _recorded else e")
        if self._guarded:
            lines.append("    " + " = ".join(self._local(k) for k in sorted(self._guarded)) + " = _U")
        if not first:
            lines.append("    _r = []")
        source = "\n".join(lines) + "\n" + "".join(body) + ("    return ()\n" if first else "    return _r\n")
        return Program(source, self.consts, list(self.reads.values()), name)

    def value_function(self, node: ast.Node, name: str = "<value>") -> Program:
        """`_match(e)` returning what a left-hand side (a field, a transformer, join/concat/getopt)
        yields for the event, read exactly as a check reads it: for explanations, off the hot path."""
        text = self.lhs(node).text
        lines = [*self._helpers, "def _match(e):"]
        if self.reads:
            lines.append("    _s = e.fields if _recorded else e")
        lines.append(f"    return {text}")
        return Program("\n".join(lines) + "\n", self.consts, list(self.reads.values()), name)

    # -- names ------------------------------------------------------------------------------------

    def const(self, value: Any) -> str:
        """The name under which `value` is in the namespace (equal hashable values share one)."""
        try:
            key: tuple[type, Any] | None = (type(value), value)
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in self._const_names:
            return self._const_names[key]
        self._n += 1
        name = f"_k{self._n}"
        self.consts[name] = value
        if key is not None:
            self._const_names[key] = name
        return name

    def _lambda(self, param: str, test: str) -> str:
        """A one-argument function defined beside `_match` (for tests over each value of a field)."""
        self._n += 1
        name = f"_l{self._n}"
        self._helpers.append(f"{name} = lambda {param}: {test}")
        return name

    def _local(self, key: str) -> str:
        return f"_f{self.reads[key].n}"

    # -- fields -----------------------------------------------------------------------------------

    def resolve_field(self, ref: ast.FieldRef) -> tuple[Field, str | None]:
        found = resolve(self.source, ref.name)
        if found is None:
            raise CompileError(f"filter_check called with nonexistent field {ref.name}", ref.pos,
                               Problem.UNKNOWN_FIELD)
        f, dot_arg = found
        arg = ref.arg
        if dot_arg is not None:
            if arg is not None:
                raise CompileError(f"field '{ref.text()}' has two arguments", ref.pos, Problem.FIELD_ARGUMENT)
            arg = dot_arg
        if arg is None and f.arg_required:
            raise CompileError(f"field '{f.name}' requires an argument", ref.pos, Problem.FIELD_ARGUMENT)
        if arg is not None:
            if f.arg is None:
                raise CompileError(f"field '{f.name}' does not accept an argument", ref.pos, Problem.FIELD_ARGUMENT)
            if f.arg == "index" and not arg.isdigit():
                raise CompileError(f"field '{f.name}' takes a numeric index, not '{arg[:80]}'", ref.pos,
                                   Problem.FIELD_ARGUMENT)
        return f, arg

    def _read(self, f: Field, arg: str | None) -> str:
        """The expression reading a field at the current point, cached in its local."""
        key = field_key(f.name, arg)
        use = self.reads.get(key)
        if use is None:
            self._n += 1
            use = self.reads[key] = FieldUse(self._n, f, arg)
        local, call = f"_f{use.n}", f"_x{use.n}(_s, _a{use.n})"
        if key in self._sure:
            text = local
        elif key not in self._seen:
            text = f"({local} := {call})"
        else:
            self._guarded.add(key)
            text = f"({local} if {local} is not _U else ({local} := {call}))"
        self._seen.add(key)
        self._sure.add(key)
        return text

    # -- boolean structure ------------------------------------------------------------------------

    def expr(self, node: ast.Node) -> str:
        handler = _EXPR.get(type(node))
        if handler is None:
            raise CompileError(f"unexpected {type(node).__name__} where a check was expected", node.pos)
        return handler(self, node)

    def _junction(self, node: ast.And | ast.Or, word: str) -> str:
        # Only the first operand is surely evaluated; later ones see what earlier ones read.
        parts = [self.expr(node.items[0])]
        after_first = set(self._sure)
        parts.extend(self.expr(c) for c in node.items[1:])
        self._sure = after_first
        return "(" + f" {word} ".join(parts) + ")"

    def _and(self, node: ast.And) -> str:
        return self._junction(node, "and")

    def _or(self, node: ast.Or) -> str:
        return self._junction(node, "or")

    def _not(self, node: ast.Not) -> str:
        return f"(not {self.expr(node.item)})"

    def _const(self, node: ast.Const) -> str:
        return "True" if node.value else "False"

    def _ident(self, node: ast.Ident) -> str:
        raise CompileError(f"Undefined macro '{node.name}' used in filter.", node.pos, Problem.UNDEFINED_MACRO)

    def _unary(self, node: ast.UnaryCheck) -> str:
        return f"({self.lhs(node.left).text} is not None)"

    # -- left-hand sides --------------------------------------------------------------------------

    def lhs(self, node: ast.Node) -> _Side:
        if isinstance(node, ast.FieldRef):
            f, arg = self.resolve_field(node)
            multi = f.is_list or f.multi or (f.arg == "index" and arg is None and not f.arg_required)
            return _Side(self._read(f, arg), f.type, multi, f.is_list, f.multi)
        if isinstance(node, ast.Transform) and node.op == "val" and isinstance(node.item, ast.FieldRef):
            return self.lhs(node.item)          # val(field) on the left reads the field
        if isinstance(node, ast.Call):
            call = _CALLS.get(node.op)
            if call is None:
                raise CompileError(f"unknown transformer '{node.op}'", node.pos, Problem.TRANSFORMER)
            return call(self, node)
        if isinstance(node, ast.Transform):
            handler = _TRANSFORMERS.get(node.op)
            if handler is None:
                raise CompileError(f"'{node.op}' can only be used on the right-hand side of a comparison"
                                   if node.op == "val" else f"unknown transformer '{node.op}'",
                                   node.pos, Problem.TRANSFORMER)
            return handler(self, node, self.lhs(node.item))
        raise CompileError("expected a field or a transformer", node.pos, Problem.TRANSFORMER)

    def _string_transform(self, node: ast.Transform, inner: _Side) -> _Side:
        if not is_textual(inner.type):
            raise CompileError(f"transformer '{node.op}' is not supported on fields of type {inner.type}",
                               node.pos, Problem.TRANSFORMER)
        fn = self.const(TRANSFORMS[node.op])
        return _Side(f"_map({fn}, {inner.text})", "CHARBUF", inner.multi, inner.is_list, inner.either)

    def _len(self, node: ast.Transform, inner: _Side) -> _Side:
        fn = self.const(length)
        if inner.is_list:
            return _Side(f"_whole({fn}, {inner.text})", "UINT64", False, False, False)
        return _Side(f"_map({fn}, {inner.text})", "UINT64", inner.multi, False, inner.either)

    def _operand(self, node: ast.Node) -> str:
        """One operand of join/concat: a field or transformer, or a literal (concat's strings)."""
        if isinstance(node, ast.Value):
            return self.const(node.text)
        return self.lhs(node).text

    def _join(self, node: ast.Call) -> _Side:
        sep = node.args[0]
        assert isinstance(sep, ast.Value)
        items = ", ".join(self._operand(a) for a in node.args[1:])
        return _Side(f"_join({self.const(sep.text)}, ({items},))", "CHARBUF", False, False, False)

    def _concat(self, node: ast.Call) -> _Side:
        items = ", ".join(self._operand(a) for a in node.args)
        return _Side(f"_concat(({items},))", "CHARBUF", False, False, False)

    def _getopt(self, node: ast.Call) -> _Side:
        args, opts = node.args
        assert isinstance(opts, ast.Value)
        inner = self.lhs(args)
        if not is_textual(inner.type):
            raise CompileError(f"transformer 'getopt' is not supported on fields of type {inner.type}",
                               node.pos, Problem.TRANSFORMER)
        return _Side(f"_getopt({inner.text}, {self.const(opts.text)})", "CHARBUF", True, True, False)

    # -- comparisons ------------------------------------------------------------------------------

    def _binary(self, n: ast.BinaryCheck) -> str:
        left = self.lhs(n.left)
        op = "=" if n.op == "==" else n.op
        kind = kind_of(left.type)
        if op not in OPS_BY_KIND[kind]:
            raise CompileError(f"operator '{n.op}' is not supported by field '{ast.to_text(n.left)}' of type "
                               f"{left.type}", n.pos, Problem.OPERATOR)
        if n.modifier is not None:
            return self._modified(n, left, op, kind)
        if isinstance(n.right, (ast.Transform, ast.Call)):
            return self._field_rhs(n, left, op)
        if left.multi:
            # fd.ip/fd.net/fd.port hold both sides of a connection: `!=` means neither side equals.
            negate = op == "!=" and left.either
            lam = self._lambda("_x", self._test("=" if negate else op, kind, left.type, n.right, "_x"))
            which = "_all" if left.is_list and op in ("in", "pmatch") else "_any"
            return f"((_v := {left.text}) is not None and {'not ' if negate else ''}{which}({lam}, _v))"
        if kind != "net" and (op == "=" or op in ("in", "intersects")):
            # A missing value (None) equals no converted value and is in no set: no test needed.
            return f"({self._test(op, kind, left.type, n.right, left.text)})"
        return f"((_v := {left.text}) is not None and {self._test(op, kind, left.type, n.right, '_v')})"

    def _modified(self, n: ast.BinaryCheck, left: _Side, op: str, kind: str) -> str:
        """`f op anyof|allof|oneof (a, b, ...)`: `f op a or f op b`, `... and ...`, or exactly one."""
        right = n.right
        if not isinstance(right, ast.ListValue):
            raise CompileError(f"modifier '{n.modifier}' expects a list", right.pos, Problem.OPERATOR)
        items = right.items
        distinct = len(set(items)) == len(items)
        if op == "=" and kind != "net" and (n.modifier == "anyof" or (n.modifier == "oneof" and distinct)):
            body = self._test("in", kind, left.type, right, "_x")
        else:
            tests = [self._test(op, kind, left.type, ast.Value(i, pos=right.pos), "_x") for i in items]
            if n.modifier == "anyof":
                body = " or ".join(f"({t})" for t in tests) or "False"
            elif n.modifier == "allof":
                body = " and ".join(f"({t})" for t in tests) or "True"
            else:
                body = f"({' + '.join(f'({t})' for t in tests) or '0'}) == 1"
        lam = self._lambda("_x", body)
        if left.multi:
            which = "_all" if left.is_list and n.modifier == "allof" else "_any"
            return f"((_v := {left.text}) is not None and {which}({lam}, _v))"
        return f"((_v := {left.text}) is not None and {lam}(_v))"

    def _field_rhs(self, n: ast.BinaryCheck, left: _Side, op: str) -> str:
        """A comparison with another field's value: `proc.name = val(proc.pname)`."""
        r = n.right
        test = _FIELD_TESTS.get(op)
        if test is None:
            raise CompileError(f"operator '{n.op}' cannot compare with a field value", n.pos, Problem.OPERATOR)
        sure = set(self._sure)       # the right side is read only when the left has a value
        if isinstance(r, ast.Transform) and r.op == "val":
            if not isinstance(r.item, ast.FieldRef):
                raise CompileError("'val' takes a field", r.pos, Problem.TRANSFORMER)
            f, arg = self.resolve_field(r.item)
            many = f.is_list or f.multi or (f.arg == "index" and arg is None and not f.arg_required)
            right, right_type = self._read(f, arg), f.type
        else:
            side = self.lhs(r)
            right, right_type, many = side.text, side.type, side.multi
        self._sure = sure
        if many and op not in ("in", "intersects"):
            raise CompileError(f"operator '{n.op}' cannot compare with {ast.to_text(r)}, which has several "
                               "values (use 'in' or 'intersects')", n.pos, Problem.OPERATOR)
        if kind_of(right_type) != kind_of(left.type):
            raise CompileError(f"operator '{n.op}' cannot compare {ast.to_text(n.left)} ({left.type}) with "
                               f"{ast.to_text(r)} ({right_type})", n.pos, Problem.OPERATOR)
        if left.multi:
            lam = self._lambda("_x, _w", test("_x", "_w"))
            return (f"((_v := {left.text}) is not None and (_w := {right}) is not None and "
                    f"_any(lambda _x: {lam}(_x, _w), _v))")
        return f"((_v := {left.text}) is not None and (_w := {right}) is not None and {test('_v', '_w')})"

    def _test(self, op: str, kind: str, typ: str, right: ast.Node, v: str) -> str:
        """A test of the value named `v` against a constant right-hand side."""
        if op in LIST_ITEM_OPS:
            items = right.items if isinstance(right, ast.ListValue) else (getattr(right, "text", ""),)
            if op == "pmatch":
                prefixes = tuple(i.rstrip("/") if len(i) > 1 else i for i in items)
                return f"_pmatch({self.const(prefixes)}, {v})"
            if kind == "net":
                nets = tuple(convert_net(i, right.pos) for i in items)
                return f"_in_net({self.const(nets)}, {v})"
            values = frozenset(convert(i, kind, typ, right.pos) for i in items)
            return f"{v} in {self.const(values)}"
        if not isinstance(right, ast.Value):
            raise CompileError(f"operator '{op}' expects a single value, not a list", right.pos, Problem.OPERATOR)
        if kind == "net":
            net = convert_net(right.text, right.pos)
            return f"{'not ' if op == '!=' else ''}_in_net({self.const((net,))}, {v})"
        return _VALUE_TESTS[op](self, v, right.text, kind, typ, right.pos)


# -- handler tables -------------------------------------------------------------------------------

_EXPR: dict[type, Callable[[Codegen, Any], str]] = {
    ast.And: Codegen._and, ast.Or: Codegen._or, ast.Not: Codegen._not, ast.Const: Codegen._const,
    ast.UnaryCheck: Codegen._unary, ast.BinaryCheck: Codegen._binary, ast.Ident: Codegen._ident,
}

_CALLS: dict[str, Callable[[Codegen, ast.Call], _Side]] = {
    "join": Codegen._join, "concat": Codegen._concat, "getopt": Codegen._getopt,
}

_TRANSFORMERS: dict[str, Callable[[Codegen, ast.Transform, _Side], _Side]] = {
    **{name: Codegen._string_transform for name in STRING_TRANSFORMERS},
    "len": Codegen._len,
}


def _compare(pyop: str) -> Callable[[Codegen, str, str, str, str, ast.Pos], str]:
    def test(g: Codegen, v: str, text: str, kind: str, typ: str, pos: ast.Pos) -> str:
        return f"{v} {pyop} {g.const(convert(text, kind, typ, pos))}"
    return test


def _hex_bytes(op: str, text: str, pos: ast.Pos) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CompileError(f"'{op}' expects a hex string of bytes, got '{text[:80]}'", pos, Problem.VALUE) from None


def _regex(text: str, pos: ast.Pos) -> re.Pattern[str]:
    try:
        return re.compile(text, re.DOTALL)
    except re.error as e:
        raise CompileError(f"invalid regular expression '{text[:80]}': {e}", pos, Problem.VALUE) from None


_VALUE_TESTS: dict[str, Callable[[Codegen, str, str, str, str, ast.Pos], str]] = {
    "=": _compare("=="), "!=": _compare("!="), "<": _compare("<"), "<=": _compare("<="),
    ">": _compare(">"), ">=": _compare(">="),
    "contains": lambda g, v, t, *_: f"{g.const(t)} in {v}",
    "icontains": lambda g, v, t, *_: f"{g.const(t.lower())} in {v}.lower()",
    "startswith": lambda g, v, t, *_: f"{v}.startswith({g.const(t)})",
    "endswith": lambda g, v, t, *_: f"{v}.endswith({g.const(t)})",
    "bcontains": lambda g, v, t, k, ty, pos: f"{g.const(_hex_bytes('bcontains', t, pos))} in _bytes({v})",
    "bstartswith": lambda g, v, t, k, ty, pos: f"_bytes({v}).startswith({g.const(_hex_bytes('bstartswith', t, pos))})",
    "glob": lambda g, v, t, *_: f"{g.const(glob_regex(t))}.fullmatch({v}) is not None",
    "iglob": lambda g, v, t, *_: f"{g.const(glob_regex(t, True))}.fullmatch({v}) is not None",
    "regex": lambda g, v, t, k, ty, pos: f"{g.const(_regex(t, pos))}.fullmatch({v}) is not None",
}

# Comparisons of two values that are both read from the event (`val()` and transformers on the right).
_FIELD_TESTS: dict[str, Callable[[str, str], str]] = {
    "=": lambda v, w: f"{v} == {w}", "!=": lambda v, w: f"{v} != {w}",
    "<": lambda v, w: f"{v} < {w}", "<=": lambda v, w: f"{v} <= {w}",
    ">": lambda v, w: f"{v} > {w}", ">=": lambda v, w: f"{v} >= {w}",
    "in": lambda v, w: f"({v} in {w} if isinstance({w}, (list, tuple)) else {v} == {w})",
    "intersects": lambda v, w: f"({v} in {w} if isinstance({w}, (list, tuple)) else {v} == {w})",
    "contains": lambda v, w: f"str({w}) in str({v})",
    "icontains": lambda v, w: f"str({w}).lower() in str({v}).lower()",
    "startswith": lambda v, w: f"str({v}).startswith(str({w}))",
    "endswith": lambda v, w: f"str({v}).endswith(str({w}))",
}
