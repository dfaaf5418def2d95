"""AST → AST passes, each a pure function: resolve lists, expand macros, fold constants,
specialise a condition for one event type, and infer the event types a condition can match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sensor.engine import ast

LIST_OPS = frozenset({"in", "intersects", "pmatch"})


class CompileError(ValueError):
    """A condition that parses but cannot be compiled (unknown macro or field, bad value, ...)."""

    def __init__(self, message: str, pos: ast.Pos = ast.NOPOS) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


# -- lists ----------------------------------------------------------------------------------------

def resolve_lists(node: ast.Node, lists: Mapping[str, list[str]], used: set[str] | None = None) -> ast.Node:
    """Substitute list names on the right of `in`, `intersects` and `pmatch` with their items.

    `lists` holds already-flattened lists (a list naming a list defined before it was expanded when
    it was defined). A name that is no list stays a one-item literal, as Falco reads it.
    """

    def fix(n: ast.Node) -> ast.Node | None:
        if not (isinstance(n, ast.BinaryCheck) and n.op in LIST_OPS):
            return None
        r = n.right
        if isinstance(r, ast.Value):
            items = _expand_items((r.text,), lists, used)
            return ast.BinaryCheck(n.left, n.op, ast.ListValue(items, pos=r.pos), pos=n.pos)
        if isinstance(r, ast.ListValue):
            items = _expand_items(r.items, lists, used)
            if items != r.items:
                return ast.BinaryCheck(n.left, n.op, ast.ListValue(items, pos=r.pos), pos=n.pos)
        return None

    return ast.transform(node, fix)


def _expand_items(items: Iterable[str], lists: Mapping[str, list[str]], used: set[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for it in items:
        sub = lists.get(it)
        if sub is None:
            out.append(it)
        else:
            if used is not None:
                used.add(it)
            out.extend(_unquote(s) for s in sub)
    return tuple(out)


def _unquote(item: str) -> str:
    """A list item written with quotes (`'"10.0.0.0/8"'` in YAML) reads as the quoted token would
    in the condition, because Falco substitutes list items into the condition text."""
    if len(item) >= 2 and item[0] in "\"'" and item[-1] == item[0]:
        from sensor.engine.parser import RuleSyntaxError, unescape

        try:
            return unescape(item, ast.NOPOS)
        except RuleSyntaxError:
            return item
    return item


def flatten_list(items: Iterable[str], lists: Mapping[str, list[str]], used: set[str] | None = None) -> list[str]:
    """A list's items with references to lists defined before it expanded (Falco's list order)."""
    return list(_expand_items(items, lists, used))


# -- macros ---------------------------------------------------------------------------------------

def expand_macros(node: ast.Node, macros: Mapping[str, ast.Node], used: set[str] | None = None,
                  _stack: tuple[str, ...] = ()) -> ast.Node:
    """Replace macro references with their (recursively expanded) trees; loops are errors."""

    def fix(n: ast.Node) -> ast.Node | None:
        if not isinstance(n, ast.Ident):
            return None
        body = macros.get(n.name)
        if body is None:
            raise CompileError(f"Undefined macro '{n.name}' used in filter.", n.pos)
        if n.name in _stack:
            chain = " -> ".join((*_stack, n.name))
            raise CompileError(f"Macro '{n.name}' references itself: {chain}", n.pos)
        if used is not None:
            used.add(n.name)
        return expand_macros(body, macros, used, (*_stack, n.name))

    return ast.transform(node, fix)


def macro_refs(node: ast.Node) -> set[str]:
    return {n.name for n in ast.walk(node) if isinstance(n, ast.Ident)}


# -- folding --------------------------------------------------------------------------------------

def fold(node: ast.Node) -> ast.Node:
    """Remove double negations and constant operands; flatten nested and/or."""

    def fix(n: ast.Node) -> ast.Node | None:
        if isinstance(n, ast.Not):
            i = n.item
            if isinstance(i, ast.Not):
                return i.item
            if isinstance(i, ast.Const):
                return ast.Const(not i.value, pos=n.pos)
            return None
        if isinstance(n, (ast.And, ast.Or)):
            is_and = isinstance(n, ast.And)
            out: list[ast.Node] = []
            for c in n.items:
                if isinstance(c, ast.Const):
                    if c.value != is_and:          # false in and / true in or decides
                        return ast.Const(c.value, pos=n.pos)
                    continue                       # true in and / false in or is neutral
                if type(c) is type(n):
                    out.extend(c.items)            # type: ignore[attr-defined]
                else:
                    out.append(c)
            if not out:
                return ast.Const(is_and, pos=n.pos)
            if len(out) == 1:
                return out[0]
            if len(out) != len(n.items) or any(a is not b for a, b in zip(out, n.items, strict=False)):
                return type(n)(tuple(out), pos=n.pos)
        return None

    return ast.transform(node, fix)


# -- event types ----------------------------------------------------------------------------------

def _is_evt_type(n: ast.Node) -> bool:
    return (isinstance(n, ast.BinaryCheck) and isinstance(n.left, ast.FieldRef)
            and n.left.name == "evt.type" and n.left.arg is None
            and n.op in ("=", "==", "!=", "in") and isinstance(n.right, (ast.Value, ast.ListValue)))


def _type_values(n: ast.BinaryCheck) -> frozenset[str]:
    if isinstance(n.right, ast.ListValue):
        return frozenset(n.right.items)
    return frozenset((n.right.text,))   # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class TypeSet:
    """A set of event types: `names` when `only`, else every type except `names`."""

    only: bool
    names: frozenset[str]

    @staticmethod
    def all() -> TypeSet:
        return TypeSet(False, frozenset())

    def invert(self) -> TypeSet:
        return TypeSet(not self.only, self.names)

    def union(self, o: TypeSet) -> TypeSet:
        if self.only and o.only:
            return TypeSet(True, self.names | o.names)
        if not self.only and not o.only:
            return TypeSet(False, self.names & o.names)
        pos, neg = (self, o) if self.only else (o, self)
        return TypeSet(False, neg.names - pos.names)

    def intersect(self, o: TypeSet) -> TypeSet:
        if self.only and o.only:
            return TypeSet(True, self.names & o.names)
        if not self.only and not o.only:
            return TypeSet(False, self.names | o.names)
        pos, neg = (self, o) if self.only else (o, self)
        return TypeSet(True, pos.names - neg.names)

    @property
    def is_all(self) -> bool:
        return not self.only and not self.names


def event_types(node: ast.Node, negated: bool = False) -> TypeSet:
    """The event types a condition can match, inferred as Falco does: only `evt.type` checks
    restrict; any other check leaves every type possible, negated or not."""
    if isinstance(node, ast.Not):
        return event_types(node.item, not negated)
    if isinstance(node, (ast.And, ast.Or)):
        sets = [event_types(c, negated) for c in node.items]
        combine_and = isinstance(node, ast.And) != negated
        acc = sets[0]
        for s in sets[1:]:
            acc = acc.intersect(s) if combine_and else acc.union(s)
        return acc
    if isinstance(node, ast.Const):
        return TypeSet(True, frozenset()) if node.value == negated else TypeSet.all()
    if _is_evt_type(node):
        assert isinstance(node, ast.BinaryCheck)
        ts = TypeSet(node.op != "!=", _type_values(node))
        return ts.invert() if negated else ts
    return TypeSet.all()


def specialize(node: ast.Node, evt_type: str) -> ast.Node:
    """The condition as it reads for events of one type: every evt.type check becomes a constant."""

    def fix(n: ast.Node) -> ast.Node | None:
        if _is_evt_type(n):
            assert isinstance(n, ast.BinaryCheck)
            hit = evt_type in _type_values(n)
            return ast.Const(hit if n.op != "!=" else not hit, pos=n.pos)
        return None

    return fold(ast.transform(node, fix))
