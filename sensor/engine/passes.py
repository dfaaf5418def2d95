"""AST → AST passes, each a pure function: resolve lists, expand macros, fold constants,
specialise a condition for one event type, and infer the event types a condition can match.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sensor.engine import ast

LIST_OPS = frozenset({"in", "intersects", "pmatch"})

# Limits on a condition once its macros are expanded. Falco has none (C++ recursion goes deep); ours
# keep every pass and the generated Python within the interpreter's limits, far above what rules
# need (Falco's official rules nest at most 8 levels and a few hundred nodes).
MAX_DEPTH = 100
MAX_NODES = 100_000


class Problem(enum.Enum):
    """What kind of compile error a CompileError is (the loader decides codes and skips by kind)."""

    UNKNOWN_FIELD = "unknown field"
    FIELD_ARGUMENT = "field argument"
    UNDEFINED_MACRO = "undefined macro"
    MACRO_LOOP = "macro loop"
    TOO_DEEP = "too deep"
    OPERATOR = "operator"
    VALUE = "value"
    TRANSFORMER = "transformer"
    EXCEPTION = "exception"


class CompileError(ValueError):
    """A condition that parses but cannot be compiled (unknown macro or field, bad value, ...)."""

    def __init__(self, message: str, pos: ast.Pos = ast.NOPOS, kind: Problem = Problem.VALUE) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.kind = kind


# -- lists ----------------------------------------------------------------------------------------

def resolve_lists(node: ast.Node, lists: Mapping[str, list[str]], used: set[str] | None = None) -> ast.Node:
    """Substitute list names on the right of `in`, `intersects`, `pmatch` and of the modified
    operators (`= oneof`, `startswith anyof`, ...) with their items.

    `lists` holds already-flattened lists (a list naming a list defined before it was expanded when
    it was defined). A name that is no list stays a one-item literal, as Falco reads it.
    """

    def fix(n: ast.Node) -> ast.Node | None:
        if not (isinstance(n, ast.BinaryCheck) and (n.op in LIST_OPS or n.modifier)):
            return None
        r = n.right
        if isinstance(r, ast.Value):
            items = _expand_items((r.text,), lists, used)
            return ast.BinaryCheck(n.left, n.op, ast.ListValue(items, (r.text,), pos=r.pos), n.modifier, pos=n.pos)
        if isinstance(r, ast.ListValue):
            items = _expand_items(r.items, lists, used)
            if items != r.items:
                written = ast.ListValue(items, r.written or r.items, pos=r.pos)
                return ast.BinaryCheck(n.left, n.op, written, n.modifier, pos=n.pos)
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

class Macros:
    """Macro bodies (lists resolved), each expanded once on first use and kept.

    Expansion never recurses from one macro into the next: a macro's references are expanded first,
    in dependency order, with an explicit stack, so a chain of thousands of macros costs no Python
    recursion. Nested `and`/`or` are flattened as macros are spliced in (as `fold` would), and the
    depth and size of every expansion are known before it is built: past MAX_DEPTH or MAX_NODES the
    condition is refused with a CompileError instead of exhausting the interpreter.
    """

    def __init__(self, bodies: Mapping[str, ast.Node]) -> None:
        self.bodies = bodies
        self._done: dict[str, _Expansion] = {}

    def expand(self, node: ast.Node, used: set[str] | None = None) -> ast.Node:
        """`node` with every macro reference replaced by the macro's expansion."""
        for name in sorted(macro_refs(node)):
            self._expand_macro(name, node)
        tree, _depth, size = self._substitute(node)
        if size > MAX_NODES:
            raise CompileError(f"condition has more than {MAX_NODES} nodes once its macros are expanded",
                               node.pos, Problem.TOO_DEEP)
        if used is not None:
            used |= self.reachable(macro_refs(node))
        return tree

    def reachable(self, names: Iterable[str]) -> set[str]:
        """`names` and every macro their bodies refer to, directly or not."""
        out: set[str] = set()
        pending = list(names)
        while pending:
            name = pending.pop()
            if name in out or name not in self.bodies:
                continue
            out.add(name)
            pending.extend(macro_refs(self.bodies[name]))
        return out

    def _expand_macro(self, name: str, where: ast.Node) -> None:
        if name in self._done:
            return
        if name not in self.bodies:
            ident = next(n for n in ast.walk(where) if isinstance(n, ast.Ident) and n.name == name)
            raise CompileError(f"Undefined macro '{name}' used in filter.", ident.pos, Problem.UNDEFINED_MACRO)
        # Depth-first over the reference graph with an explicit stack; a name met again while still
        # on the stack is a loop.
        stack: list[tuple[str, list[str]]] = [(name, sorted(macro_refs(self.bodies[name])))]
        on_stack = {name}
        while stack:
            current, pending = stack[-1]
            while pending and pending[-1] in self._done:
                pending.pop()
            if not pending:
                stack.pop()
                on_stack.discard(current)
                self._done[current] = self._build(current)
                continue
            ref = pending.pop()
            if ref in on_stack:
                chain = " -> ".join([*(n for n, _ in stack[[n for n, _ in stack].index(ref):]), ref])
                raise CompileError(f"Macro '{ref}' references itself: {chain}",
                                   self.bodies[current].pos, Problem.MACRO_LOOP)
            if ref not in self.bodies:
                body = self.bodies[current]
                ident = next(n for n in ast.walk(body) if isinstance(n, ast.Ident) and n.name == ref)
                raise CompileError(f"Undefined macro '{ref}' used in filter.", ident.pos,
                                   Problem.UNDEFINED_MACRO)
            stack.append((ref, sorted(macro_refs(self.bodies[ref]))))
            on_stack.add(ref)

    def _build(self, name: str) -> _Expansion:
        body = self.bodies[name]
        tree, depth, size = self._substitute(body)
        if depth > MAX_DEPTH:
            raise CompileError(f"macro '{name}' nests more than {MAX_DEPTH} levels deep once the macros it "
                               "uses are expanded", body.pos, Problem.TOO_DEEP)
        if size > MAX_NODES:
            raise CompileError(f"macro '{name}' has more than {MAX_NODES} nodes once the macros it uses are "
                               "expanded", body.pos, Problem.TOO_DEEP)
        return _Expansion(tree, depth, size)

    def _substitute(self, node: ast.Node) -> tuple[ast.Node, int, int]:
        """(tree, depth, size) of `node` with expanded macros spliced in. Recurses only over the
        node's own structure, never into a macro's expansion."""
        if isinstance(node, ast.Ident):
            done = self._done[node.name]
            return done.tree, done.depth, done.size
        if isinstance(node, (ast.And, ast.Or)):
            items: list[ast.Node] = []
            depth, size, changed = 0, 1, False
            for child in node.items:
                new, d, n = self._substitute(child)
                changed |= new is not child
                if type(new) is type(node):          # splice: (a and b) and c is a and b and c
                    items.extend(new.items)
                    changed = True
                    d -= 1
                    n -= 1
                else:
                    items.append(new)
                depth, size = max(depth, d), size + n
            out = type(node)(tuple(items), pos=node.pos) if changed else node
            return out, depth + 1, size
        if isinstance(node, ast.Not):
            inner, d, n = self._substitute(node.item)
            return (node if inner is node.item else ast.Not(inner, pos=node.pos)), d + 1, n + 1
        return node, _depth(node), _size(node)


@dataclass(frozen=True, slots=True)
class _Expansion:
    tree: ast.Node
    depth: int
    size: int


def _depth(node: ast.Node) -> int:
    return 1 + max((_depth(c) for c in node.children()), default=0)


def _size(node: ast.Node) -> int:
    return 1 + sum(_size(c) for c in node.children())


def expand_macros(node: ast.Node, macros: Mapping[str, ast.Node] | Macros, used: set[str] | None = None) -> ast.Node:
    """Replace macro references with their expanded trees; loops and undefined names are errors."""
    table = macros if isinstance(macros, Macros) else Macros(macros)
    return table.expand(node, used)


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
                    out.extend(c.items)
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
    if not (isinstance(n, ast.BinaryCheck) and isinstance(n.left, ast.FieldRef)
            and n.left.name == "evt.type" and n.left.arg is None
            and isinstance(n.right, (ast.Value, ast.ListValue))):
        return False
    if n.modifier is not None:       # `evt.type = anyof (a, b)` restricts as `in` does
        items = n.right.items if isinstance(n.right, ast.ListValue) else ()
        distinct = len(set(items)) == len(items)      # `= oneof (a, a)` never holds
        return n.op in ("=", "==") and (n.modifier == "anyof" or (n.modifier == "oneof" and distinct))
    return n.op in ("=", "==", "!=", "in")


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


def evt_type_names(node: ast.Node) -> set[str]:
    """Every event type an `evt.type` check of the condition names."""
    out: set[str] = set()
    for n in ast.walk(node):
        if _is_evt_type(n):
            out |= _type_values(n)  # type: ignore[arg-type]
    return out


def specialize(node: ast.Node, evt_type: str | None) -> ast.Node:
    """The condition as it reads for events of one type: every evt.type check becomes a constant.
    With `evt_type` None, for events of any type that no evt.type check names."""

    def fix(n: ast.Node) -> ast.Node | None:
        if _is_evt_type(n):
            assert isinstance(n, ast.BinaryCheck)
            hit = evt_type in _type_values(n)
            return ast.Const(hit if n.op != "!=" else not hit, pos=n.pos)
        return None

    return fold(ast.transform(node, fix))
