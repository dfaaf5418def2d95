"""AST → Python expression source, with constants in a namespace (sqlglot's generator style).

The generator type-checks as it goes: an unknown field, an operator the field's type does not
support, or a value that does not convert is a CompileError with the check's position. The text it
produces reads fields through one of two accessors, chosen by the event kind the function is built
for: `_get(key)` (a recorded event's dict) or `_xN(e, arg)` (a structured event's extractor).
Semantics (Falco's): a field with no value makes every comparison on it false, `!=` included.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from sensor.engine import ast
from sensor.engine.fields import resolve
from sensor.engine.fields.base import IP_TYPES, NUMERIC_TYPES, Field
from sensor.engine.passes import CompileError
from sensor.event import field_key

STRING_OPS = frozenset({"contains", "icontains", "bcontains", "startswith", "bstartswith", "endswith", "glob",
                        "iglob", "regex", "pmatch"})
ORDER_OPS = frozenset({"<", "<=", ">", ">="})
STRING_TRANSFORMERS = frozenset({"tolower", "toupper", "b64", "basename"})


# -- runtime helpers the generated code calls -----------------------------------------------------

def _any(fn: Callable[[Any], bool], v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return any(fn(x) for x in v if x is not None)
    return fn(v)


def _all(fn: Callable[[Any], bool], v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return bool(v) and all(x is not None and fn(x) for x in v)
    return fn(v)


def _bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogateescape")


def _b64(v: Any) -> str | None:
    try:
        return base64.b64decode(_bytes(v), validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None


def _basename(v: Any) -> str:
    s = str(v)
    return s[s.rfind("/") + 1:] if "/" in s else s


def _len(v: Any) -> int:
    return len(v) if isinstance(v, (list, tuple, str, bytes)) else len(str(v))


def _map(fn: Callable[[Any], Any], v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        out = [y for y in (fn(x) for x in v if x is not None) if y is not None]
        return out or None
    return fn(v)


def _tolower(v: Any) -> str:
    return str(v).lower()


def _toupper(v: Any) -> str:
    return str(v).upper()


def _pmatch(prefixes: tuple[str, ...], v: Any) -> bool:
    """Falco's path-prefix match: `v` is one of the paths or lies below one of them."""
    s = str(v)
    for p in prefixes:
        if s == p or (s.startswith(p) and (p.endswith("/") or s[len(p):len(p) + 1] == "/")):
            return True
    return False


@functools.lru_cache(maxsize=65536)
def _ip_key(v: str) -> tuple[int, int] | None:
    """(version, integer) of an address; cached, because parsing dominates network checks."""
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        return None
    return ip.version, int(ip)


def _in_net(nets: tuple[tuple[int, int, int], ...], v: Any) -> bool:
    """Whether `v` lies in one of `nets`, given as (version, network int, netmask int)."""
    key = _ip_key(v) if isinstance(v, str) else None
    if key is None:
        return False
    version, n = key
    for nv, net, mask in nets:
        if nv == version and n & mask == net:
            return True
    return False


RUNTIME: dict[str, Any] = {"_any": _any, "_all": _all, "_bytes": _bytes, "_pmatch": _pmatch,
                           "_in_net": _in_net, "_map": _map}
_TRANSFORM_FNS = {"tolower": _tolower, "toupper": _toupper, "b64": _b64, "basename": _basename, "len": _len}


def glob_regex(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """fnmatch(3) without FNM_PATHNAME, as libsinsp uses it: `*` crosses `/`, `\\` escapes."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                if body[:1] in "!^":
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


# -- the generator --------------------------------------------------------------------------------

class FieldUse:
    """One distinct field reference in a generated function."""

    __slots__ = ("arg", "field", "key", "uses", "var")

    def __init__(self, field: Field, arg: str | None, var: str) -> None:
        self.field = field
        self.arg = arg
        self.key = field_key(field.name, arg)
        self.var = var
        self.uses = 0


class Codegen:
    """Generates expressions for one source; constants and field accessors accumulate in `ns`.

    `mode` is "recorded" (fields read with `_get(key)` from a recorded dict) or "structured"
    (fields read with their extractor, `_xN(e, arg)`, cached in a local when read twice).
    """

    def __init__(self, source: str, mode: str = "recorded") -> None:
        self.source = source
        self.mode = mode
        self.ns: dict[str, Any] = dict(RUNTIME)
        self.fields: dict[str, FieldUse] = {}
        self._consts: dict[Any, str] = {}
        self._n = 0

    # names --------------------------------------------------------------------------------------

    def const(self, value: Any) -> str:
        try:
            key = (type(value), value)
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in self._consts:
            return self._consts[key]
        self._n += 1
        name = f"_k{self._n}"
        self.ns[name] = value
        if key is not None:
            self._consts[key] = name
        return name

    def _tmp(self) -> str:
        self._n += 1
        return f"_v{self._n}"

    # fields -------------------------------------------------------------------------------------

    def resolve_field(self, ref: ast.FieldRef) -> tuple[Field, str | None]:
        found = resolve(self.source, ref.name)
        if found is None:
            raise CompileError(f"filter_check called with nonexistent field {ref.name}", ref.pos)
        f, dot_arg = found
        arg = ref.arg
        if dot_arg is not None:
            if arg is not None:
                raise CompileError(f"field '{ref.name}[{arg}]' has two arguments", ref.pos)
            arg = dot_arg
        if arg is None and f.arg_required:
            raise CompileError(f"field '{f.name}' requires an argument", ref.pos)
        if arg is not None:
            if f.arg is None:
                raise CompileError(f"field '{f.name}' does not accept an argument", ref.pos)
            if f.arg == "index" and not arg.isdigit():
                raise CompileError(f"field '{f.name}' takes a numeric index, not '{arg}'", ref.pos)
        return f, arg

    def field_access(self, ref: ast.FieldRef) -> tuple[str, Field, str | None]:
        f, arg = self.resolve_field(ref)
        key = field_key(f.name, arg)
        use = self.fields.get(key)
        if use is None:
            self._n += 1
            use = self.fields[key] = FieldUse(f, arg, f"_f{self._n}")
            if self.mode == "structured":
                self.ns[f"_x{use.var[2:]}"] = f.extract if f.extract is not None else _none
        use.uses += 1
        return f"@{key}@", f, arg

    def finish(self, expr: str, cache: bool) -> tuple[str, list[str]]:
        """Replace field placeholders with accessors; return the expression and local inits."""
        inits: list[str] = []

        def sub(m: re.Match[str]) -> str:
            use = self.fields[m.group(1)]
            if self.mode == "recorded":
                if use.field.arg == "index" and use.arg is not None:
                    # A recording may hold only the whole list (`proc.aname`); value() indexes it.
                    return f"e.value({self.const(use.field.name)}, {self.const(use.arg)})"
                return f"_get({self.const(use.key)})"
            call = f"_x{use.var[2:]}(e, {self.const(use.arg) if use.arg is not None else 'None'})"
            if cache and use.uses > 1:
                return f"({use.var} if {use.var} is not _U else ({use.var} := {call}))"
            return call

        out = re.sub(r"@([^@]+)@", sub, expr)
        if cache and self.mode == "structured":
            inits = [u.var for u in self.fields.values() if u.uses > 1]
        return out, inits

    # expressions --------------------------------------------------------------------------------

    def expr(self, node: ast.Node) -> str:
        if isinstance(node, ast.And):
            return "(" + " and ".join(self.expr(c) for c in node.items) + ")"
        if isinstance(node, ast.Or):
            return "(" + " or ".join(self.expr(c) for c in node.items) + ")"
        if isinstance(node, ast.Not):
            return f"(not {self.expr(node.item)})"
        if isinstance(node, ast.Const):
            return "True" if node.value else "False"
        if isinstance(node, ast.UnaryCheck):
            acc, _t, _multi, _lst = self.lhs(node.left)
            return f"({acc} is not None)"
        if isinstance(node, ast.BinaryCheck):
            return self.binary(node)
        if isinstance(node, ast.Ident):
            raise CompileError(f"Undefined macro '{node.name}' used in filter.", node.pos)
        raise CompileError(f"unexpected {type(node).__name__} where a check was expected", node.pos)

    def lhs(self, node: ast.Node) -> tuple[str, str, bool, bool]:
        """Accessor text for a left-hand side: (expression, value type, multi-valued, is_list)."""
        if isinstance(node, ast.FieldRef):
            acc, f, arg = self.field_access(node)
            multi = f.is_list or f.multi or (f.arg == "index" and arg is None and not f.arg_required)
            return acc, f.type, multi, f.is_list
        if isinstance(node, ast.Transform):
            if node.op == "val":
                raise CompileError("'val' can only be used on the right-hand side of a comparison", node.pos)
            inner, typ, multi, is_list = self.lhs(node.item)
            if node.op in STRING_TRANSFORMERS:
                if typ in NUMERIC_TYPES or typ in IP_TYPES or typ == "BOOL":
                    raise CompileError(f"transformer '{node.op}' is not supported on fields of type {typ}",
                                       node.pos)
                fn = self.const(_TRANSFORM_FNS[node.op])
                return f"_map({fn}, {inner})", "CHARBUF", multi, is_list
            if node.op == "len":
                fn = self.const(_len)
                if is_list:
                    return f"(None if {inner} is None else {fn}({inner}))", "UINT64", False, False
                return f"_map({fn}, {inner})", "UINT64", multi, False
        raise CompileError("expected a field or a transformer", node.pos)

    def binary(self, n: ast.BinaryCheck) -> str:
        acc, typ, multi, is_list = self.lhs(n.left)
        op = "=" if n.op == "==" else n.op
        kind = _kind(typ)
        self._check_op(op, kind, typ, n)
        v = self._tmp()
        if isinstance(n.right, ast.Transform):
            return self._field_rhs(n, acc, v, op, kind, multi)
        negate = multi and op == "!=" and self._either(n.left)
        # fd.ip/fd.net/fd.port hold both sides of a connection: `!=` means neither side equals.
        test = self._test("=" if negate else op, kind, typ, n.right, v)   # an expression over `v`
        if multi:
            lam = self.const(eval(f"lambda {v}: {test}", dict(self.ns)))
            which = "_all" if is_list and op in ("in", "pmatch") else "_any"
            return f"(({v} := {acc}) is not None and {'not ' if negate else ''}{which}({lam}, {v}))"
        return f"(({v} := {acc}) is not None and {test})"

    def _either(self, left: ast.Node) -> bool:
        ref = ast.field_of(left)
        return ref is not None and self.resolve_field(ref)[0].multi

    def _check_op(self, op: str, kind: str, typ: str, n: ast.BinaryCheck) -> None:
        ok = {
            "num": {"=", "!=", "<", "<=", ">", ">=", "in", "intersects"},
            "bool": {"=", "!=", "in", "intersects"},
            "ip": {"=", "!=", "in", "intersects"},
            "net": {"=", "!=", "in", "intersects"},
            "str": {"=", "!=", "<", "<=", ">", ">=", "in", "intersects", *STRING_OPS},
        }[kind]
        if op not in ok:
            name = ast.to_text(n.left)
            raise CompileError(f"operator '{n.op}' is not supported by field '{name}' of type {typ}", n.pos)

    def _field_rhs(self, n: ast.BinaryCheck, acc: str, v: str, op: str, kind: str, multi: bool) -> str:
        r = n.right
        assert isinstance(r, ast.Transform)
        if r.op == "val":
            assert isinstance(r.item, ast.FieldRef)
            racc, _f, _a = self.field_access(r.item)
        else:
            racc, _t, _m, _l = self.lhs(r)
        w = self._tmp()
        pyop = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}.get(op)
        if pyop:
            test = f"{v} {pyop} {w}"
        elif op in ("in", "intersects"):
            test = f"({v} in {w} if isinstance({w}, (list, tuple)) else {v} == {w})"
        elif op == "contains":
            test = f"str({w}) in str({v})"
        elif op == "icontains":
            test = f"str({w}).lower() in str({v}).lower()"
        elif op == "startswith":
            test = f"str({v}).startswith(str({w}))"
        elif op == "endswith":
            test = f"str({v}).endswith(str({w}))"
        else:
            raise CompileError(f"operator '{n.op}' cannot compare with a field value", n.pos)
        if multi:
            lam = self.const(eval(f"lambda {v}, {w}: {test}", dict(self.ns)))
            return (f"(({v} := {acc}) is not None and ({w} := {racc}) is not None and "
                    f"_any(lambda _x: {lam}(_x, {w}), {v}))")
        return f"(({v} := {acc}) is not None and ({w} := {racc}) is not None and {test})"

    def _test(self, op: str, kind: str, typ: str, right: ast.Node, v: str) -> str:
        if op in ("in", "intersects", "pmatch"):
            items = right.items if isinstance(right, ast.ListValue) else (right.text,)  # type: ignore[attr-defined]
            if op == "pmatch":
                prefixes = tuple(i.rstrip("/") if len(i) > 1 else i for i in items)
                return f"_pmatch({self.const(prefixes)}, {v})"
            if kind == "net":
                nets = tuple(_convert_net(i, right.pos) for i in items)
                return f"_in_net({self.const(nets)}, {v})"
            values = frozenset(_convert(i, kind, typ, right.pos) for i in items)
            return f"{v} in {self.const(values)}"
        if not isinstance(right, ast.Value):
            raise CompileError(f"operator '{op}' expects a single value, not a list", right.pos)
        text = right.text
        if kind == "net":
            net = _convert_net(text, right.pos)
            return f"{'not ' if op == '!=' else ''}_in_net({self.const((net,))}, {v})"
        if op in ("=", "!=", "<", "<=", ">", ">="):
            c = self.const(_convert(text, kind, typ, right.pos))
            return f"{v} {'==' if op == '=' else op} {c}"
        if op == "contains":
            return f"{self.const(text)} in {v}"
        if op == "icontains":
            return f"{self.const(text.lower())} in {v}.lower()"
        if op == "startswith":
            return f"{v}.startswith({self.const(text)})"
        if op == "endswith":
            return f"{v}.endswith({self.const(text)})"
        if op in ("bcontains", "bstartswith"):
            try:
                b = bytes.fromhex(text)
            except ValueError:
                raise CompileError(f"'{op}' expects a hex string of bytes, got '{text}'", right.pos) from None
            if op == "bcontains":
                return f"{self.const(b)} in _bytes({v})"
            return f"_bytes({v}).startswith({self.const(b)})"
        if op in ("glob", "iglob"):
            rx = glob_regex(text, op == "iglob")
            return f"{self.const(rx)}.fullmatch({v}) is not None"
        if op == "regex":
            try:
                rx = re.compile(text, re.DOTALL)
            except re.error as e:
                raise CompileError(f"invalid regular expression '{text}': {e}", right.pos) from None
            return f"{self.const(rx)}.fullmatch({v}) is not None"
        raise CompileError(f"unsupported operator '{op}'", right.pos)


def _none(_e: Any, _a: Any) -> None:
    return None


def _kind(typ: str) -> str:
    if typ in NUMERIC_TYPES or typ == "DOUBLE":
        return "num"
    if typ == "BOOL":
        return "bool"
    if typ == "IPNET":
        return "net"
    if typ == "IPADDR":
        return "ip"
    return "str"


def _convert(text: str, kind: str, typ: str, pos: ast.Pos) -> Any:
    if kind == "num":
        t = text.strip()
        try:
            if t.lower().startswith(("0x", "-0x", "+0x")):
                return int(t, 16)
            if typ == "DOUBLE" or any(c in t for c in ".eE"):
                f = float(t)
                return int(f) if f.is_integer() and typ != "DOUBLE" else f
            return int(t, 10)
        except ValueError:
            raise CompileError(f"'{text}' is not a valid number for a field of type {typ}", pos) from None
    if kind == "bool":
        low = text.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise CompileError(f"'{text}' is not a valid boolean (true or false)", pos)
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(text.strip()))
        except ValueError:
            raise CompileError(f"'{text}' is not a valid IP address", pos) from None
    return text


def _convert_net(text: str, pos: ast.Pos) -> tuple[int, int, int]:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise CompileError(f"'{text}' is not a valid IP network", pos) from None
    return net.version, int(net.network_address), int(net.netmask)

