"""What the generated matchers call at run time, and how rule values become Python values.

Everything here is plain Python over field values; codegen.py decides which of these a check
needs and puts them (and the converted values) into the matcher's namespace as constants.
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
from sensor.engine.fields.base import IP_TYPES, NUMERIC_TYPES
from sensor.engine.passes import CompileError, Problem

STRING_OPS = frozenset({"contains", "icontains", "bcontains", "startswith", "bstartswith", "endswith", "glob",
                        "iglob", "regex", "pmatch"})
STRING_TRANSFORMERS = frozenset({"tolower", "toupper", "b64", "basename"})

# Operators each kind of field value supports (libsinsp's per-type operator tables).
OPS_BY_KIND: dict[str, frozenset[str]] = {
    "num": frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "intersects"}),
    "bool": frozenset({"=", "!=", "in", "intersects"}),
    "ip": frozenset({"=", "!=", "in", "intersects"}),
    "net": frozenset({"=", "!=", "in", "intersects"}),
    "str": frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "intersects", *STRING_OPS}),
}


# -- helpers the generated code calls ---------------------------------------------------------------

def any_of(fn: Callable[[Any], bool], v: Any) -> bool:
    """A multi-valued field matches when one of its values does."""
    if isinstance(v, (list, tuple)):
        return any(fn(x) for x in v if x is not None)
    return fn(v)


def all_of(fn: Callable[[Any], bool], v: Any) -> bool:
    """A list field is `in` a set when every one of its values is."""
    if isinstance(v, (list, tuple)):
        return bool(v) and all(x is not None and fn(x) for x in v)
    return fn(v)


def as_bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogateescape")


def b64(v: Any) -> str | None:
    try:
        return base64.b64decode(as_bytes(v), validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None


def basename(v: Any) -> str:
    s = str(v)
    return s[s.rfind("/") + 1:] if "/" in s else s


def length(v: Any) -> int:
    return len(v) if isinstance(v, (list, tuple, str, bytes)) else len(str(v))


def tolower(v: Any) -> str:
    return str(v).lower()


def toupper(v: Any) -> str:
    return str(v).upper()


def map_values(fn: Callable[[Any], Any], v: Any) -> Any:
    """A transformer over a value, or over each value of a multi-valued field; None stays None."""
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        out = [y for y in (fn(x) for x in v if x is not None) if y is not None]
        return out or None
    return fn(v)


def whole(fn: Callable[[Any], Any], v: Any) -> Any:
    """A transformer over a list field as a whole (`len(ka.req.pod.containers.image)`)."""
    return None if v is None else fn(v)


def pmatch(prefixes: tuple[str, ...], v: Any) -> bool:
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


def in_net(nets: tuple[tuple[int, int, int], ...], v: Any) -> bool:
    """Whether `v` lies in one of `nets`, given as (version, network int, netmask int)."""
    key = _ip_key(v) if isinstance(v, str) else None
    if key is None:
        return False
    version, n = key
    for nv, net, mask in nets:
        if nv == version and n & mask == net:
            return True
    return False


def join_values(sep: str, values: tuple[Any, ...]) -> str | None:
    """join(SEP, (a, b, ...)): every value (each value of a multi-valued field) as text, joined by
    SEP; operands with no value are left out, and nothing at all is no value."""
    parts: list[str] = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            parts.extend(str(x) for x in v if x is not None)
        else:
            parts.append(str(v))
    return sep.join(parts) if parts else None


def concat_values(values: tuple[Any, ...]) -> str | None:
    """concat(a, "x", b): the operands as text, one after the other; no value if one has none."""
    parts: list[str] = []
    for v in values:
        if v is None:
            return None
        parts.append("".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v))
    return "".join(parts)


def getopt_values(args: Any, optstring: str) -> list[str] | None:
    """getopt(ARGS, "nt:"): the options of `optstring` that the arguments carry, in order, read as
    glibc's getopt(3) does (options may follow operands; `--` ends them; `t:` takes an argument,
    attached or the next word)."""
    if args is None:
        return None
    words = args.split() if isinstance(args, str) else [str(a) for a in args]
    found: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w == "--":
            break
        if len(w) < 2 or w[0] != "-" or w[1] == "-":
            continue
        for j, c in enumerate(w[1:], 1):
            k = optstring.find(c)
            if c == ":" or k < 0:
                continue
            found.append(c)
            if optstring[k + 1:k + 2] == ":":
                if j == len(w) - 1:
                    i += 1           # the argument is the next word
                break                # the rest of this word is the argument
    return found or None


TRANSFORMS: dict[str, Callable[[Any], Any]] = {"tolower": tolower, "toupper": toupper, "b64": b64,
                                               "basename": basename, "len": length}

# Names every generated matcher may use, bound once into its namespace.
RUNTIME: dict[str, Any] = {"_any": any_of, "_all": all_of, "_bytes": as_bytes, "_pmatch": pmatch,
                           "_in_net": in_net, "_map": map_values, "_whole": whole, "_join": join_values,
                           "_concat": concat_values, "_getopt": getopt_values}


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


# -- rule values → Python values ----------------------------------------------------------------------

def kind_of(typ: str) -> str:
    """The comparison family of a Falco field type: num, bool, net, ip or str."""
    if typ in NUMERIC_TYPES or typ == "DOUBLE":
        return "num"
    if typ == "BOOL":
        return "bool"
    if typ == "IPNET":
        return "net"
    if typ == "IPADDR":
        return "ip"
    return "str"


def is_textual(typ: str) -> bool:
    return not (typ in NUMERIC_TYPES or typ in IP_TYPES or typ in ("BOOL", "DOUBLE"))


def convert(text: str, kind: str, typ: str, pos: ast.Pos) -> Any:
    """A value written in a rule as the Python value a field of `typ` is compared with."""
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
            raise CompileError(f"'{_short(text)}' is not a valid number for a field of type {typ}", pos,
                               Problem.VALUE) from None
    if kind == "bool":
        low = text.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise CompileError(f"'{_short(text)}' is not a valid boolean (true or false)", pos, Problem.VALUE)
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(text.strip()))
        except ValueError:
            raise CompileError(f"'{_short(text)}' is not a valid IP address", pos, Problem.VALUE) from None
    return text


def convert_net(text: str, pos: ast.Pos) -> tuple[int, int, int]:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise CompileError(f"'{_short(text)}' is not a valid IP network", pos, Problem.VALUE) from None
    return net.version, int(net.network_address), int(net.netmask)


def _short(text: str, limit: int = 80) -> str:
    """A value as quoted in an error message: whole if short, else its start (a message stays one line)."""
    one_line = text.replace("\n", "\\n")
    return one_line if len(one_line) <= limit else one_line[:limit] + "..."
