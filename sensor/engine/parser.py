"""Condition text → AST (sensor.engine.ast), with positions. Nothing else happens here.

The grammar lives in grammar.lark. Lark runs LALR with the tree builder replaced by `_Build`, so the
AST is made during parsing without an intermediate parse tree (several times faster, see STYLE.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import cast

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from sensor.engine import ast

MAX_DEPTH = 100   # Falco's parser recursion limit (parser::m_max_depth)


class RuleSyntaxError(ValueError):
    """Invalid condition text. `pos` is where the problem is (1-based line and column)."""

    def __init__(self, message: str, pos: ast.Pos = ast.NOPOS, text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.text = text

    def __str__(self) -> str:
        return f"{self.message} at line {self.pos.line} column {self.pos.col}"


def _pos(tok: Token) -> ast.Pos:
    return ast.Pos(tok.line or 1, tok.column or 1, tok.start_pos or 0)


_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "\\": "\\", " ": "\\", "/": "/"}


def unescape(quoted: str, pos: ast.Pos) -> str:
    """Resolve escapes inside a quoted string, as Falco's unescape_str does.

    `\\"` is valid only inside double quotes and `\\'` only inside single quotes; `\\xHH` is a byte
    given in hex; `\\ ` yields a backslash (Falco keeps that for old rules). Anything else is an error.
    """
    delim = quoted[0]
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            raise RuleSyntaxError("unterminated escape sequence at the end of a quoted string", pos)
        e = body[i + 1]
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e in "\"'":
            if e != delim:
                raise RuleSyntaxError(f"invalid \\{e} escape in {delim}-quoted string", pos)
            out.append(e)
            i += 2
        elif e == "x":
            hexpart = body[i + 2:i + 4]
            if len(hexpart) != 2 or any(h not in "0123456789abcdefABCDEF" for h in hexpart):
                raise RuleSyntaxError("invalid \\x escape: expected two hex digits", pos)
            out.append(chr(int(hexpart, 16)))
            i += 4
        else:
            raise RuleSyntaxError(f"unsupported string escape sequence: \\{e}", pos)
    return "".join(out)


def _string(tok: Token) -> str:
    s = str(tok)
    if s[:1] in "\"'":
        return unescape(s, _pos(tok))
    return s


class _Build(Transformer):
    """Builds AST nodes, each paired with the recursion depth Falco's parser would reach for it
    (relative to the parse_check that starts it), so the depth limit matches Falco's."""

    def or_(self, c):
        (a, da), _tok, (b, db) = c
        a_items = a.items if isinstance(a, ast.Or) else (_ungroup(a),)
        return ast.Or((*a_items, _ungroup(b)), pos=_ungroup(a).pos), max(da, db)

    def and_(self, c):
        (a, da), _tok, (b, db) = c
        a_items = a.items if isinstance(a, ast.And) else (_ungroup(a),)
        return ast.And((*a_items, _ungroup(b)), pos=_ungroup(a).pos), max(da, db)

    def not_(self, c):
        tok, (inner, d) = c[0], c[1]
        if str(tok) == "not(":
            d += 4
        elif isinstance(inner, ast.Not):
            # Falco toggles one flag for a run of `not ` tokens: `not not a` is just `a`.
            return inner.item, d
        return ast.Not(_ungroup(inner), pos=_pos(tok)), d

    def group(self, c):
        _, (inner, d), _ = c
        return _Group(_ungroup(inner)), d + 5

    def ident(self, c):
        tok = c[0]
        return ast.Ident(str(tok), pos=_pos(tok)), 0

    def field(self, c):
        tok = c[0]
        text = str(tok)
        name, arg = text, None
        if text.endswith("]") and "[" in text:
            name, raw = text.split("[", 1)
            raw = raw[:-1]
            arg = unescape(raw, _pos(tok)) if raw[:1] in "\"'" else raw
        return ast.FieldRef(name, arg, pos=_pos(tok)), 1

    def transformer(self, c):
        tok, (inner, d), _ = c
        return ast.Transform(str(tok)[:-1], inner, pos=_pos(tok)), d + 1

    def val(self, c):
        tok, ftok, _ = c
        ref, _depth = self.field([ftok])
        return ast.Transform("val", ref, pos=_pos(tok)), 2

    def join(self, c):
        tok, sep, *rest = c
        items = [x for x in rest if isinstance(x, tuple)]
        sep_node = ast.Value(_string(sep), pos=_pos(sep))
        return (ast.Call("join", (sep_node, *(_ungroup(n) for n, _ in items)), pos=_pos(tok)),
                2 + max(d for _, d in items))

    def concat(self, c):
        tok, *rest = c
        items = [x for x in rest if isinstance(x, tuple)]
        return (ast.Call("concat", tuple(_ungroup(n) for n, _ in items), pos=_pos(tok)),
                2 + max(d for _, d in items))

    def getopt(self, c):
        tok, (inner, d), _comma, opts, _ = c
        return ast.Call("getopt", (inner, ast.Value(_string(opts), pos=_pos(opts))), pos=_pos(tok)), d + 1

    def modified(self, c):
        (left, dl), op, modifier, (right, dr) = c
        return (ast.BinaryCheck(_ungroup(left), str(op).strip(), right, str(modifier), pos=left.pos),
                max(3, dl, 2 + dr))

    def value(self, c):
        tok = c[0]
        return ast.Value(_string(tok), pos=_pos(tok)), 0

    def list_(self, c):
        lpar = c[0]
        items = tuple(_string(t) for t in c[1:-1] if t is not None and t.type in ("QUOTED", "BARESTR"))
        return ast.ListValue(items, pos=_pos(lpar)), 1

    def list_name(self, c):
        tok = c[0]
        return ast.Value(str(tok), pos=_pos(tok)), 0

    def unary(self, c):
        (left, dl), op = c
        return ast.UnaryCheck(_ungroup(left), str(op).strip(), pos=left.pos), max(1, dl)

    def binary(self, c):
        (left, dl), op, (right, dr) = c
        # parse_check → parse_condition → parse_*_value_or_transformer → try_parse_transformer_or_val
        return ast.BinaryCheck(_ungroup(left), str(op).strip(), right, pos=left.pos), max(3, dl, 2 + dr)


class _Group:
    """Marks a parenthesised sub-expression while building, so `(a or b) or c` keeps its shape
    the way Falco's AST does; unwrapped before the tree is returned."""

    __slots__ = ("node",)

    def __init__(self, node: ast.Node) -> None:
        self.node = node

    @property
    def pos(self) -> ast.Pos:
        return self.node.pos

    @property
    def items(self) -> tuple[ast.Node, ...]:
        return (self.node,)


def _ungroup(n):
    return n.node if isinstance(n, _Group) else n


@cache
def _grammar() -> str:
    return (Path(__file__).with_name("grammar.lark")).read_text()


_local = threading.local()


def _parser() -> Lark:
    # Lark parser objects are not thread-safe when a transformer is embedded; one per thread.
    p = getattr(_local, "parser", None)
    if p is None:
        p = Lark(_grammar(), parser="lalr", lexer="contextual", transformer=_Build(),
                 maybe_placeholders=True, cache=False)
        _local.parser = p
    return p


_TOKEN_NAMES = {
    "OR": "'or'", "AND": "'and'", "NOT": "'not'", "NOTPAREN": "'not('", "LPAR": "'('", "RPAR": "')'",
    "COMMA": "','", "UNARY_OP": "'exists'", "NUM_OP": "a numeric operator ('<', '<=', '>', '>=')",
    "STR_OP": "a comparison operator ('=', '!=', 'contains', 'startswith', 'glob', 'regex', ...)",
    "LIST_OP": "a list operator ('in', 'intersects', 'pmatch')", "TRANSFORMER": "a field transformer",
    "VAL": "'val('", "JOIN": "'join('", "CONCAT": "'concat('", "GETOPT": "'getopt('",
    "MODIFIER": "a list modifier ('oneof', 'anyof', 'allof')",
    "FIELD": "a field", "IDENT": "an identifier (macro or list name)",
    "QUOTED": "a quoted string", "HEXNUM": "a hex number", "NUMBER": "a number",
    "BARESTR": "a string", "$END": "the end of the condition",
}


def _expected(names: Iterable[str]) -> str:
    shown = sorted({_TOKEN_NAMES.get(str(n), str(n)) for n in names if not str(n).startswith("__")})
    return ", ".join(shown)


def parse_condition(text: str) -> ast.Node:
    """Parse a Falco condition into an AST; raise RuleSyntaxError with the position on bad input."""
    if not text or not text.strip():
        raise RuleSyntaxError("filter input string is empty", ast.NOPOS, text)
    try:
        # The transformer given to Lark makes the result (node, depth), not a Tree.
        node, depth = cast("tuple[ast.Node, int]", _parser().parse(text))
    except UnexpectedCharacters as e:
        at = e.pos_in_stream or 0
        pos = ast.Pos(e.line, e.column, at)
        snippet = text[at:at + 20]
        msg = f"unexpected '{snippet}'"
        if e.allowed:
            msg += f", expecting {_expected(e.allowed)}"
        raise RuleSyntaxError(msg, pos, text) from None
    except UnexpectedEOF as e:
        lines = text.split("\n")
        pos = ast.Pos(len(lines), len(lines[-1]) + 1, len(text))
        raise RuleSyntaxError(f"unexpected end of condition, expecting {_expected(e.expected)}",
                              pos, text) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            lines = text.split("\n")
            pos = ast.Pos(len(lines), len(lines[-1]) + 1, len(text))
            what = "unexpected end of condition"
        else:
            pos = _pos(tok)
            word = str(tok)
            if word in ("and", "or") and word.upper() in e.expected:
                raise RuleSyntaxError(f"expected blank or '(' after '{word}'", pos, text) from None
            what = f"unexpected token '{tok}'"
        raise RuleSyntaxError(f"{what}, expecting {_expected(e.expected)}", pos, text) from None
    except VisitError as e:
        if isinstance(e.orig_exc, RuleSyntaxError):
            err = e.orig_exc
            raise RuleSyntaxError(err.message, err.pos, text) from None
        raise
    except UnexpectedInput as e:  # pragma: no cover - lark's other input errors
        raise RuleSyntaxError(str(e), ast.NOPOS, text) from None
    if 4 + depth >= MAX_DEPTH:
        raise RuleSyntaxError(f"exceeded max depth limit of {MAX_DEPTH}", ast.NOPOS, text)
    return _ungroup(node)
