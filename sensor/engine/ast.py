"""The condition AST: small node classes with positions and one generic walk.

The parser produces these and nothing else; passes (passes.py) rewrite them; the code generator
(codegen.py) turns them into Python source. Nodes are immutable in spirit: passes build new trees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Pos:
    """1-based line and column, 0-based character offset, within the condition text."""

    line: int = 1
    col: int = 1
    offset: int = 0


NOPOS = Pos()


@dataclass(frozen=True, slots=True)
class Node:
    pos: Pos = field(default=NOPOS, compare=False, repr=False, kw_only=True)

    def children(self) -> Iterator[Node]:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Node):
                yield v
            elif isinstance(v, tuple):
                yield from (c for c in v if isinstance(c, Node))


@dataclass(frozen=True, slots=True)
class And(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not(Node):
    item: Node


@dataclass(frozen=True, slots=True)
class Ident(Node):
    """A bare identifier where a check is expected: a macro reference."""

    name: str


@dataclass(frozen=True, slots=True)
class FieldRef(Node):
    """A field as written: `proc.aname[2]` → name "proc.aname", arg "2"."""

    name: str
    arg: str | None = None

    def text(self) -> str:
        if self.arg is None:
            return self.name
        bare = self.arg and not (set(self.arg) & _ARG_BAD)
        return f"{self.name}[{self.arg if bare else quote(self.arg, force=True)}]"


@dataclass(frozen=True, slots=True)
class Transform(Node):
    """A transformer applied to a field or another transformer: tolower, toupper, b64, basename,
    len; or `val`, which on the right-hand side means "the value of this field"."""

    op: str
    item: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A transformer over several operands (libs 0.25): `join(SEP, (a, b))` has args (Value(SEP), a, b),
    `concat(a, "x", b)` its items (literals as Value), `getopt(proc.args, "nt:")` (field, Value)."""

    op: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Value(Node):
    """A literal on the right-hand side (quotes removed, escapes resolved)."""

    text: str


@dataclass(frozen=True, slots=True)
class ListValue(Node):
    """A list literal `(a, b)`; after list resolution, also what a list name expands to."""

    items: tuple[str, ...]
    # The items as written, list names unexpanded, when resolution changed them (explanations show
    # `in (falconet_shell_binaries)`); never compared, so it changes nothing a pass or the generator does.
    written: tuple[str, ...] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class UnaryCheck(Node):
    left: Node
    op: str                      # "exists"


@dataclass(frozen=True, slots=True)
class BinaryCheck(Node):
    left: Node
    op: str
    right: Node                  # Value, ListValue, Transform (incl. val), or a list name (Value)
    modifier: str | None = None  # oneof, anyof, allof: `op` applies to each item of the list `right`


@dataclass(frozen=True, slots=True)
class Const(Node):
    """A folded truth value (passes produce these; the parser never does)."""

    value: bool


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    yield node
    for c in node.children():
        yield from walk(c)


def transform(node: Node, fn: Callable[[Node], Node | None]) -> Node:
    """Rebuild the tree bottom-up; `fn` returns a replacement or None to keep the node."""
    changes: dict[str, Any] = {}
    for f in fields(node):
        if f.name == "pos":
            continue
        v = getattr(node, f.name)
        if isinstance(v, Node):
            nv = transform(v, fn)
            if nv is not v:
                changes[f.name] = nv
        elif isinstance(v, tuple) and v and isinstance(v[0], Node):
            nt = tuple(transform(c, fn) for c in v)
            if any(a is not b for a, b in zip(nt, v, strict=True)):
                changes[f.name] = nt
    if changes:
        node = replace(node, **changes)
    out = fn(node)
    return node if out is None else out


def to_text(node: Node) -> str:
    """Render a tree back to condition text (for -L descriptions and error messages)."""
    if isinstance(node, And):
        return " and ".join(_paren(c, (And, Or)) for c in node.items)
    if isinstance(node, Or):
        return " or ".join(_paren(c, (And, Or)) for c in node.items)
    if isinstance(node, Not):
        return f"not {_paren(node.item, (And, Or))}"
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, FieldRef):
        return node.text()
    if isinstance(node, Transform):
        return f"{node.op}({to_text(node.item)})"
    if isinstance(node, Call):
        args = [quote(a.text, force=True) if isinstance(a, Value) else to_text(a) for a in node.args]
        if node.op == "join":
            return f"join({args[0]}, ({', '.join(args[1:])}))"
        return f"{node.op}({', '.join(args)})"
    if isinstance(node, Value):
        return quote(node.text)
    if isinstance(node, ListValue):
        return "(" + ", ".join(quote(i) for i in node.items) + ")"
    if isinstance(node, UnaryCheck):
        return f"{to_text(node.left)} {node.op}"
    if isinstance(node, BinaryCheck):
        op = f"{node.op} {node.modifier}" if node.modifier else node.op
        return f"{to_text(node.left)} {op} {to_text(node.right)}"
    if isinstance(node, Const):
        return "true" if node.value else "false"
    raise TypeError(node)


def _paren(node: Node, kinds: tuple[type, ...]) -> str:
    text = to_text(node)
    return f"({text})" if isinstance(node, kinds) else text


_BARE_BAD = set(" \t\r\n\b()\"'=,")
_ARG_BAD = set(" \t\r\n\b[]\"'")


def quote(s: str, force: bool = False) -> str:
    """A value as condition text: bare when the lexer would read it back unchanged."""
    if s and not force and not (set(s) & _BARE_BAD):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
