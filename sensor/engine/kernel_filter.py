"""What an event must look like for some enabled rule to match it, per event type.

For every syscall event type the rules can match, `derive(ruleset)` returns a `Predicate`: a
disjunction of `Term`s, each a conjunction of constraints on an event's own values (its result,
its fd's type and protocol, its addresses, its path, the process's name and user, ...). Every
rule's condition implies the predicate of its event type, so an event the predicate rejects can be
dropped before anyone looks at it without losing an alert. The sources decide which of these values
they can test cheaply: the syscall capture tests them in the kernel (sensor/capture/kfilter.py);
anything it cannot read it leaves untested. The engine knows nothing of how.

A constraint on a fact reads "if the event has this value, it is in this set": an event whose fact
has no value always passes. So a check and its negation both turn into a constraint, and the
predicate of `not (fd.l4proto = tcp)` is `fd.l4proto in everything but tcp`. A check the
derivation cannot read (a field it does not model, a transformer, a comparison with another
field) constrains nothing: its predicate is "any event", never "no event".

The facts, named after the fields they mirror:
  evt.rawres        IntSet   the result (evt.res, evt.failed fold into it)
  fd.num            IntSet   the fd number (-1 for an fd event without an fd)
  user.uid          IntSet   the effective user id
  fd.cport ...      IntSet   fd.cport, fd.sport, fd.lport, fd.rport
  fd.type           Names    Falco's fd.type (fd.typechar and fd.sockfamily fold into it)
  fd.l4proto        Names    tcp, udp, icmp, raw, <NA>
  proc.name         Names    the process name
  container.id      Names    "host" for host processes
  evt.arg.flags     Flags    open-family events: access mode, flags that must (not) be set
  fd.name           Strs     the resolved path of the fd (open-family events)
  fd.nameraw        Strs     the path as the process passed it
  evt.arg.NAME      Strs     a path or string argument, as evt.arg.NAME renders it
  fd.cip ...        Nets     fd.cip, fd.sip, fd.lip, fd.rip (fd.*net and fd.ip/fd.net fold into them)
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sensor.engine import ast, passes
from sensor.engine.fields import resolve
from sensor.engine.fields.fd import TYPECHARS
from sensor.syscalls import BY_NAME, FD_EVENT, INFO

S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
MAX_TERMS = 64                     # per event type; beyond, the event type keeps every event

# -- constraint values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntSet:
    """A set of integers as sorted, disjoint, closed intervals."""

    spans: tuple[tuple[int, int], ...]

    @staticmethod
    def of(*spans: tuple[int, int]) -> IntSet:
        return IntSet(()).union(IntSet(tuple(spans)))

    @staticmethod
    def point(v: int) -> IntSet:
        return IntSet(((v, v),))

    @property
    def empty(self) -> bool:
        return not self.spans

    @property
    def everything(self) -> bool:
        return self.spans == ((S64_MIN, S64_MAX),)

    def union(self, o: IntSet) -> IntSet:
        out: list[tuple[int, int]] = []
        for lo, hi in sorted(self.spans + o.spans):
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return IntSet(tuple(out))

    def intersect(self, o: IntSet) -> IntSet:
        out = []
        for a_lo, a_hi in self.spans:
            for b_lo, b_hi in o.spans:
                lo, hi = max(a_lo, b_lo), min(a_hi, b_hi)
                if lo <= hi:
                    out.append((lo, hi))
        return IntSet(()).union(IntSet(tuple(out)))

    def complement(self) -> IntSet:
        out, nxt = [], S64_MIN
        for lo, hi in self.spans:
            if lo > nxt:
                out.append((nxt, lo - 1))
            nxt = hi + 1
        if nxt <= S64_MAX:
            out.append((nxt, S64_MAX))
        return IntSet(tuple(out))

    def __contains__(self, v: int) -> bool:
        return any(lo <= v <= hi for lo, hi in self.spans)

    def text(self) -> str:
        parts = []
        for lo, hi in self.spans:
            if lo == hi:
                parts.append(str(lo))
            elif lo == S64_MIN:
                parts.append(f"<= {hi}")
            elif hi == S64_MAX:
                parts.append(f">= {lo}")
            else:
                parts.append(f"{lo}..{hi}")
        return " or ".join(parts) or "nothing"


INT_ALL = IntSet(((S64_MIN, S64_MAX),))


class _OnlyWithout:
    """What Names and Nets share: the values in `only` (None: any value) and in none of `without`."""

    __slots__ = ()
    only: frozenset[Any] | None
    without: frozenset[Any]

    @property
    def empty(self) -> bool:
        return self.only is not None and not self.only

    @property
    def everything(self) -> bool:
        return self.only is None and not self.without


@dataclass(frozen=True, slots=True)
class Names(_OnlyWithout):
    """A set of names: `only` (when given) minus `without`."""

    only: frozenset[str] | None = None
    without: frozenset[str] = frozenset()

    @staticmethod
    def of(*names: str) -> Names:
        return Names(frozenset(names))

    def allows(self, name: str) -> bool:
        return name not in self.without and (self.only is None or name in self.only)

    def intersect(self, o: Names) -> Names:
        if self.only is not None and o.only is not None:
            only: frozenset[str] | None = self.only & o.only
        else:
            only = self.only if self.only is not None else o.only
        without = self.without | o.without
        return Names(only - without, frozenset()) if only is not None else Names(None, without)

    def union(self, o: Names) -> Names:
        if self.only is not None and o.only is not None:
            return Names(self.only | o.only)
        if self.only is None and o.only is None:
            return Names(None, self.without & o.without)
        pos, neg = (self, o) if self.only is not None else (o, self)
        return Names(None, neg.without - pos.only)  # type: ignore[operator]

    def complement(self) -> Names:
        return Names(self.without, frozenset()) if self.only is None else Names(None, self.only)

    def text(self) -> str:
        if self.only is not None:
            return "in (" + ", ".join(sorted(self.only)) + ")"
        return "not in (" + ", ".join(sorted(self.without)) + ")"


@dataclass(frozen=True, slots=True)
class Str:
    """One string pattern: equal to `exact`, or starting with `prefix`, ending with `suffix` and
    containing every one of `contains`."""

    exact: str | None = None
    prefix: str = ""
    suffix: str = ""
    contains: tuple[str, ...] = ()

    def meet(self, o: Str) -> Str | None:
        """Both patterns at once, or None when no string matches both."""
        if self.exact is not None or o.exact is not None:
            if self.exact is not None and o.exact is not None:
                return self if self.exact == o.exact else None
            e, p = (self, o) if self.exact is not None else (o, self)
            return e if p.matches(e.exact) else None  # type: ignore[arg-type]
        prefix = _longer_compatible(self.prefix, o.prefix, str.startswith)
        suffix = _longer_compatible(self.suffix, o.suffix, str.endswith)
        if prefix is None or suffix is None:
            return None
        return Str(None, prefix, suffix, tuple(sorted(set(self.contains) | set(o.contains))))

    def matches(self, s: str) -> bool:
        if self.exact is not None:
            return s == self.exact
        return s.startswith(self.prefix) and s.endswith(self.suffix) and all(c in s for c in self.contains)

    def text(self) -> str:
        if self.exact is not None:
            return repr(self.exact)
        parts = []
        if self.prefix:
            parts.append(f"starts {self.prefix!r}")
        if self.suffix:
            parts.append(f"ends {self.suffix!r}")
        parts += [f"contains {c!r}" for c in self.contains]
        return " and ".join(parts) or "anything"


def _longer_compatible(a: str, b: str, test: Any) -> str | None:
    long, short = (a, b) if len(a) >= len(b) else (b, a)
    return long if test(long, short) else None


STR_ANY = Str()


@dataclass(frozen=True, slots=True)
class Strs:
    """A string matching one of `alternatives`."""

    alternatives: frozenset[Str]

    @property
    def empty(self) -> bool:
        return not self.alternatives

    @property
    def everything(self) -> bool:
        return STR_ANY in self.alternatives

    def union(self, o: Strs) -> Strs:
        return Strs(self.alternatives | o.alternatives)

    def intersect(self, o: Strs) -> Strs:
        out = set()
        for a in self.alternatives:
            for b in o.alternatives:
                m = a.meet(b)
                if m is not None:
                    out.add(m)
        return Strs(frozenset(out))

    def text(self) -> str:
        return " or ".join(sorted(a.text() for a in self.alternatives)) or "nothing"


Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Nets(_OnlyWithout):
    """Addresses in one of `only` (when given) and in none of `without`."""

    only: frozenset[Net] | None = None
    without: frozenset[Net] = frozenset()

    def intersect(self, o: Nets) -> Nets:
        if self.only is not None and o.only is not None:
            only: frozenset[Net] | None = frozenset(m for a in self.only for b in o.only
                                                    if (m := _net_meet(a, b)) is not None)
        else:
            only = self.only if self.only is not None else o.only
        without = self.without | o.without
        if only is not None:
            # a network wholly excluded goes; an exclusion outside every network left says nothing
            only = frozenset(n for n in only if not any(_net_meet(n, w) == n for w in without))
            without = frozenset(w for w in without if any(_net_meet(w, n) is not None for n in only))
        return Nets(only, without)

    def union(self, o: Nets) -> Nets:
        if self.only is not None and o.only is not None and not self.without and not o.without:
            return Nets(self.only | o.only)
        if self.only is None and o.only is None:
            # outside X or outside Y = outside (X and Y)
            return Nets(None, frozenset(m for a in self.without for b in o.without
                                        if (m := _net_meet(a, b)) is not None))
        if self.only is not None and o.only is not None:
            return Nets()               # both restricted and both with holes: give up precision
        pos, neg = (self, o) if self.only is not None else (o, self)
        # in A (minus holes) or outside Y: at most outside the parts of Y that A does not touch
        assert pos.only is not None
        return Nets(None, frozenset(y for y in neg.without
                                    if not any(_net_meet(y, a) is not None for a in pos.only)))

    def complement(self) -> Nets:
        if self.only is None:
            return Nets(self.without) if self.without else Nets(frozenset())
        if not self.without:
            return Nets(None, self.only)
        return Nets()

    def text(self) -> str:
        parts = []
        if self.only is not None:
            parts.append("in " + ", ".join(sorted(str(n) for n in self.only)))
        if self.without:
            parts.append("not in " + ", ".join(sorted(str(n) for n in self.without)))
        return " and ".join(parts) or "any"


def _net_meet(a: Net, b: Net) -> Net | None:
    if a.version != b.version:
        return None
    if a.subnet_of(b):             # type: ignore[arg-type]
        return a
    if b.subnet_of(a):             # type: ignore[arg-type]
        return b
    return None


@dataclass(frozen=True, slots=True)
class Flags:
    """Open flags: the access mode (O_RDONLY, O_WRONLY, O_RDWR; O_ACCMODE for the fourth value)
    in `access` when given, every flag of `all` set, none of `none`."""

    access: frozenset[str] | None = None
    all: frozenset[str] = frozenset()
    none: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return (self.access is not None and not self.access) or bool(self.all & self.none)

    @property
    def everything(self) -> bool:
        return self.access is None and not self.all and not self.none

    def intersect(self, o: Flags) -> Flags:
        if self.access is not None and o.access is not None:
            access: frozenset[str] | None = self.access & o.access
        else:
            access = self.access if self.access is not None else o.access
        return Flags(access, self.all | o.all, self.none | o.none)

    def union(self, o: Flags) -> Flags:
        access = None if self.access is None or o.access is None else self.access | o.access
        return Flags(access, self.all & o.all, self.none & o.none)

    def text(self) -> str:
        parts = []
        if self.access is not None:
            parts.append("access " + "|".join(sorted(self.access)))
        parts += [f"with {f}" for f in sorted(self.all)] + [f"without {f}" for f in sorted(self.none)]
        return ", ".join(parts)


Constraint = IntSet | Names | Strs | Nets | Flags

# -- terms and predicates ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A conjunction of constraints, one per fact; a fact not named is unconstrained."""

    facts: tuple[tuple[str, Constraint], ...] = ()

    @staticmethod
    def of(**facts: Constraint) -> Term:
        return Term(tuple(sorted(facts.items())))

    @staticmethod
    def one(fact: str, c: Constraint) -> Term:
        return Term(((fact, c),))

    def get(self, fact: str) -> Constraint | None:
        for k, v in self.facts:
            if k == fact:
                return v
        return None

    def meet(self, o: Term) -> Term | None:
        """Both terms at once; None when no event satisfies both."""
        out = dict(self.facts)
        for k, v in o.facts:
            if k in out:
                v = out[k].intersect(v)  # type: ignore[arg-type]
            if v.empty:
                return None
            out[k] = v
        return Term(tuple(sorted((k, v) for k, v in out.items() if not v.everything)))

    def text(self) -> str:
        return "; ".join(f"{k} {_text(v)}" for k, v in self.facts) or "any event"


def _text(c: Constraint) -> str:
    if isinstance(c, (Names, Nets)):
        return c.text()
    if isinstance(c, Flags):
        return c.text()
    if isinstance(c, Strs):
        return "is " + c.text()
    return c.text() if c.text().startswith(("<", ">")) else "= " + c.text()


TOP = Term()


@dataclass(frozen=True, slots=True)
class Predicate:
    """What an event of one type must satisfy for some rule to match it.

    `terms` is None when any event may match; an empty tuple when none can (the rules name the
    type, but every condition is false for it).
    """

    terms: tuple[Term, ...] | None

    @property
    def keeps_all(self) -> bool:
        return self.terms is None

    def text(self) -> str:
        if self.terms is None:
            return "every event"
        if not self.terms:
            return "no event (no rule can match it)"
        return " | ".join(f"({t.text()})" for t in self.terms)


ALL = Predicate(None)


def to_data(pred: Predicate) -> list[dict[str, dict[str, Any]]] | None:
    """The predicate as plain data, the form a source translates into its own tests: None for
    every event, else one dict per term mapping each fact to its constraint:
      {"kind": "ints", "spans": [[lo, hi], ...]}
      {"kind": "names", "only": [...] or None, "without": [...]}
      {"kind": "strs", "alternatives": [{"exact": str or None, "prefix", "suffix", "contains": [...]}]}
      {"kind": "nets", "only": ["10.0.0.0/8", ...] or None, "without": [...]}
      {"kind": "flags", "access": [...] or None, "all": [...], "none": [...]}
    """
    if pred.terms is None:
        return None
    return [{k: _constraint_data(v) for k, v in t.facts} for t in pred.terms]


def _constraint_data(c: Constraint) -> dict[str, Any]:
    if isinstance(c, IntSet):
        return {"kind": "ints", "spans": [list(s) for s in c.spans]}
    if isinstance(c, Names):
        return {"kind": "names", "only": None if c.only is None else sorted(c.only), "without": sorted(c.without)}
    if isinstance(c, Strs):
        return {"kind": "strs", "alternatives": [
            {"exact": a.exact, "prefix": a.prefix, "suffix": a.suffix, "contains": list(a.contains)}
            for a in sorted(c.alternatives, key=lambda a: (a.exact or "", a.prefix, a.suffix, a.contains))]}
    if isinstance(c, Nets):
        return {"kind": "nets", "only": None if c.only is None else sorted(str(n) for n in c.only),
                "without": sorted(str(n) for n in c.without)}
    return {"kind": "flags", "access": None if c.access is None else sorted(c.access), "all": sorted(c.all),
            "none": sorted(c.none)}

# -- the derivation --------------------------------------------------------------------------------


def derive(ruleset: Any, source: str = "syscall") -> dict[str, Predicate]:
    """The predicate of every event type the enabled rules of `source` can match.

    Types the rules cannot name (a rule matching any type) are absent: the caller keeps every
    event of a type it finds no predicate for.
    """
    types = ruleset.event_types(source)
    if types is None:
        return {}
    out = {}
    for t in sorted(types):
        out[t] = predicate([ruleset.rules[i].node for i in ruleset.candidates(source, t)], t)
    return out


def predicate(nodes: Iterable[ast.Node], evt_type: str) -> Predicate:
    """The predicate of these conditions (one per rule) for events of type `evt_type`."""
    terms: list[Term] = []
    for node in nodes:
        got = _dnf(passes.specialize(node, evt_type), False, evt_type)
        if got is None:
            return ALL
        terms = _merge(terms + got)
        if len(terms) > MAX_TERMS or TOP in terms:
            return ALL
    return Predicate(tuple(terms))


def _dnf(node: ast.Node, neg: bool, t: str) -> list[Term] | None:
    """Terms whose disjunction `node` (negated when `neg`) implies; None for "any event"."""
    if isinstance(node, ast.Not):
        return _dnf(node.item, not neg, t)
    if isinstance(node, ast.Const):
        return None if node.value != neg else []
    if isinstance(node, (ast.And, ast.Or)):
        conj = isinstance(node, ast.And) != neg
        parts = [_dnf(c, neg, t) for c in node.items]
        return _conjoin(parts) if conj else _disjoin(parts)
    if isinstance(node, ast.BinaryCheck):
        return _atom(node, neg, t)
    return None


def _disjoin(parts: list[list[Term] | None]) -> list[Term] | None:
    out: list[Term] = []
    for p in parts:
        if p is None:
            return None
        out.extend(p)
    out = _merge(out)
    return None if len(out) > MAX_TERMS or TOP in out else out


def _conjoin(parts: list[list[Term] | None]) -> list[Term] | None:
    acc: list[Term] | None = None            # None: any event so far
    for p in sorted((p for p in parts if p is not None), key=len):
        if acc is None:
            acc = list(p)
            continue
        nxt = [m for a in acc for b in p if (m := a.meet(b)) is not None]
        if len(nxt) > MAX_TERMS:
            nxt = _merge(nxt)
            if len(nxt) > MAX_TERMS:
                continue                     # dropping a conjunct loosens: still sound
        acc = nxt
    return acc


def _merge(terms: list[Term]) -> list[Term]:
    """Fewer terms for the same events or more: duplicates and subsumed terms go, and terms that
    differ in one fact become one term with the union of that fact."""
    out: list[Term] = []
    for t in terms:
        if t in out:
            continue
        merged = False
        for i, o in enumerate(out):
            u = _union_one(o, t)
            if u is not None:
                out[i] = u
                merged = True
                break
        if not merged:
            out.append(t)
    return out


def _union_one(a: Term, b: Term) -> Term | None:
    da, db = dict(a.facts), dict(b.facts)
    if da.keys() != db.keys():
        # a term constraining fewer facts subsumes one that adds constraints on the same values
        small, big = (da, db) if len(da) < len(db) else (db, da)
        if small.keys() <= big.keys() and all(small[k] == big[k] for k in small):
            return a if small is da else b
        return None
    diff = [k for k in da if da[k] != db[k]]
    if len(diff) != 1:
        return None
    k = diff[0]
    u = da[k].union(db[k])  # type: ignore[arg-type]
    if u.everything:
        rest = tuple((f, v) for f, v in a.facts if f != k)
        return Term(rest)
    da[k] = u
    return Term(tuple(sorted(da.items())))


# -- atoms -----------------------------------------------------------------------------------------

# Falco's open flag names (libs driver/flags_table.c file_flags), as evt.arg.flags prints them.
OPEN_FLAG_NAMES = ("O_LARGEFILE", "O_DIRECTORY", "O_DIRECT", "O_TRUNC", "O_SYNC", "O_NONBLOCK", "O_EXCL",
                   "O_DSYNC", "O_APPEND", "O_CREAT", "O_RDWR", "O_WRONLY", "O_RDONLY", "O_CLOEXEC",
                   "O_TMPFILE", "O_F_CREATED")
ACCESS_NAMES = frozenset({"O_RDONLY", "O_WRONLY", "O_RDWR"})
# evt.is_open_* answer for these types only (fields/evt.py _OPEN_EVENTS)
OPEN_EVENTS = frozenset({"open", "openat", "openat2", "open_by_handle_at"})
# Flags decided by the result rather than the caller (the file was created).
_RESULT_FLAGS = frozenset({"O_F_CREATED"})

_NET_FIELDS = {"fd.cip": "fd.cip", "fd.sip": "fd.sip", "fd.lip": "fd.lip", "fd.rip": "fd.rip",
               "fd.cnet": "fd.cip", "fd.snet": "fd.sip", "fd.lnet": "fd.lip", "fd.rnet": "fd.rip"}
_EITHER_NET = frozenset({"fd.ip", "fd.net"})
_PORTS = frozenset({"fd.cport", "fd.sport", "fd.lport", "fd.rport"})
_TYPES_BY_CHAR: dict[str, frozenset[str]] = {}
for _t, _c in TYPECHARS.items():
    _TYPES_BY_CHAR[_c] = _TYPES_BY_CHAR.get(_c, frozenset()) | {_t}

Atom = tuple[list[Term] | None, list[Term] | None]     # (when true, when false)


def _atom(n: ast.BinaryCheck, neg: bool, t: str) -> list[Term] | None:
    if not isinstance(n.left, ast.FieldRef) or not isinstance(n.right, (ast.Value, ast.ListValue)):
        return None
    found = resolve("syscall", n.left.name)
    if found is None:
        return None
    f, dot_arg = found
    arg = n.left.arg if n.left.arg is not None else dot_arg
    op = "=" if n.op == "==" else n.op
    values = n.right.items if isinstance(n.right, ast.ListValue) else (n.right.text,)
    if op not in ("in", "intersects", "pmatch") and isinstance(n.right, ast.ListValue):
        return None
    try:
        pos, negt = _check(f.name, arg, op, values, t)
    except ValueError:          # a value the field's type cannot hold: the compiler said so first
        return None
    return negt if neg else pos


def _same(terms: list[Term] | None) -> Atom:
    return terms, None


def _terms(*alternatives: Term | None) -> list[Term] | None:
    """Alternatives as a term list: None when one of them is any event; unsatisfiable ones out."""
    out = []
    for t in alternatives:
        if t == TOP:
            return None
        if t is not None:
            out.append(t)
    return out


def _one(fact: str, c: Constraint) -> Term | None:
    """A term constraining one fact; TOP when the constraint allows everything, None when nothing."""
    if c.empty:
        return None
    return TOP if c.everything else Term.one(fact, c)


def _all(*pairs: tuple[str, Constraint]) -> Term | None:
    t: Term | None = TOP
    for fact, c in pairs:
        one = _one(fact, c)
        t = None if one is None or t is None else t.meet(one)
    return t


def _exact(fact: str, c: IntSet | Names | Nets) -> Atom:
    """A constraint whose complement is exact too (the check reads one value, fully modelled)."""
    return _terms(_one(fact, c)), _terms(_one(fact, c.complement()))


def _check(name: str, arg: str | None, op: str, values: tuple[str, ...], t: str) -> Atom:
    if name == "evt.rawres" or (name == "fd.num" and INFO.get(t, ("", 0))[1] & FD_EVENT) \
            or name == "user.uid" or name in _PORTS:
        s = _int_set(op, values)
        return (None, None) if s is None else _exact(name, s)
    if name == "fd.port":
        s = _int_set(op, values)
        return (None, None) if s is None else _either(("fd.cport", "fd.sport"), s, op)
    if name == "evt.res":
        got = _res_set(op, values)
        if got is None:
            return None, None
        s, exact = got
        return _exact("evt.rawres", s) if exact else (_terms(_one("evt.rawres", s)), None)
    if name == "evt.failed":
        b = _bool(op, values)
        return (None, None) if b is None else _exact("evt.rawres", IntSet.of((S64_MIN, -1)) if b
                                                     else IntSet.of((0, S64_MAX)))
    if name in ("evt.is_open_read", "evt.is_open_write"):
        return _is_open(name, op, values, t)
    if name == "evt.arg" and arg == "flags" and t in OPEN_EVENTS - {"open_by_handle_at"}:
        return _open_flags(op, values)
    if name in ("fd.type", "fd.typechar", "fd.sockfamily", "fd.l4proto", "proc.name", "container.id"):
        names = _names(name, op, values)
        fact = "fd.type" if name in ("fd.typechar", "fd.sockfamily") else name
        return (None, None) if names is None else _exact(fact, names)
    if name in _NET_FIELDS:
        nets = _nets(op, values)
        return (None, None) if nets is None else _exact(_NET_FIELDS[name], nets)
    if name in _EITHER_NET:
        nets = _nets(op, values)
        return (None, None) if nets is None else _either(("fd.cip", "fd.sip"), nets, op)
    if name in ("fd.name", "fd.nameraw", "fd.directory", "fd.filename") or (name == "evt.arg" and arg):
        return _same(_strings(name, arg, op, values, t))
    return None, None


def _either(facts: tuple[str, str], s: IntSet | Nets, op: str) -> Atom:
    """fd.ip, fd.net, fd.port: a value of either end. `=`/`in` hold when one end is in the set;
    `!=` when neither end is (the compiler's multi-value semantics)."""
    if op == "!=":
        # s holds "not equal" already: both ends outside the value
        return _terms(_all(*((f, s) for f in facts))), _terms(*(_one(f, s.complement()) for f in facts))
    return _terms(*(_one(f, s) for f in facts)), _terms(_all(*((f, s.complement()) for f in facts)))


def _bool(op: str, values: tuple[str, ...]) -> bool | None:
    if op not in ("=", "!=") or len(values) != 1:
        return None
    low = values[0].strip().lower()
    if low not in ("true", "1", "false", "0"):
        return None
    return (low in ("true", "1")) == (op == "=")


def _int(text: str) -> int:
    t = text.strip()
    if t.lower().startswith(("0x", "-0x", "+0x")):
        return int(t, 16)
    if any(c in t for c in ".eE"):
        f = float(t)
        if not f.is_integer():
            raise ValueError(text)
        return int(f)
    return int(t, 10)


def _int_set(op: str, values: tuple[str, ...]) -> IntSet | None:
    if op in ("in", "intersects"):
        return IntSet.of(*((v, v) for v in map(_int, values)))
    if len(values) != 1:
        return None
    v = _int(values[0])
    spans = {"=": (v, v), "<": (S64_MIN, v - 1), "<=": (S64_MIN, v), ">": (v + 1, S64_MAX),
             ">=": (v, S64_MAX)}
    if op == "!=":
        return IntSet.point(v).complement()
    return IntSet.of(spans[op]) if op in spans else None


def _res_text(names: Iterable[str], test: Any) -> IntSet:
    """The results whose evt.res text passes `test`: SUCCESS for >= 0, else the errno name."""
    s = IntSet(())
    if test("SUCCESS"):
        s = s.union(IntSet.of((0, S64_MAX)))
    for code, name in errno.errorcode.items():
        if test(name):
            s = s.union(IntSet.point(-code))
    return s


def _res_set(op: str, values: tuple[str, ...]) -> tuple[IntSet, bool] | None:
    """evt.res as a set of results, and whether the set is exact (its complement is then the
    set for the negated check). A negative result with no errno name prints as its number."""
    if op in ("=", "in", "!="):
        wanted = set(values)
        s = _res_text(wanted, lambda name: name in wanted)
        for v in wanted:
            if v.startswith("-") and v[1:].isdigit() and int(v[1:]) not in errno.errorcode:
                s = s.union(IntSet.point(int(v)))
        return (s.complement() if op == "!=" else s), True
    if len(values) != 1:
        return None
    v = values[0]
    tests = {"startswith": str.startswith, "endswith": str.endswith, "contains": str.__contains__}
    if op not in tests:
        return None
    s = _res_text((), lambda name: tests[op](name, v))
    if not v or any(c.isdigit() or c == "-" for c in v):
        # an unnamed result's number may pass too: every negative result, and no longer exact
        return s.union(IntSet.of((S64_MIN, -1))), False
    return s, True


def _is_open(name: str, op: str, values: tuple[str, ...], t: str) -> Atom:
    b = _bool(op, values)
    if b is None:
        return None, None
    if t not in OPEN_EVENTS:
        # the field is false for every other type
        return ([], None) if b else (None, [])
    access = frozenset({"O_RDONLY", "O_RDWR"} if name == "evt.is_open_read" else {"O_WRONLY", "O_RDWR"})
    other = frozenset({"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"}) - access
    yes, no = _terms(_one("evt.arg.flags", Flags(access))), _terms(_one("evt.arg.flags", Flags(other)))
    return (yes, no) if b else (no, yes)


def _open_flags(op: str, values: tuple[str, ...]) -> Atom:
    """`evt.arg.flags contains O_TRUNC` and the like. The text holds the names of the flags set
    (O_RDONLY|O_CREAT|O_TRUNC); a needle found in exactly one name stands for that flag."""
    if op != "contains" or len(values) != 1 or "|" in values[0]:
        return None, None
    hits = [n for n in OPEN_FLAG_NAMES if values[0] in n]
    if not hits:
        return [], None
    if len(hits) > 1 or hits[0] in _RESULT_FLAGS:
        return None, None
    name = hits[0]
    if name in ACCESS_NAMES:
        yes = Flags(frozenset({name}))
        no = Flags(frozenset({"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"} - {name}))
    else:
        yes, no = Flags(all=frozenset({name})), Flags(none=frozenset({name}))
    return _terms(_one("evt.arg.flags", yes)), _terms(_one("evt.arg.flags", no))


def _names(name: str, op: str, values: tuple[str, ...]) -> Names | None:
    if op not in ("=", "!=", "in", "intersects"):
        return None
    if name == "fd.typechar":
        types: set[str] = set()
        for c in values:
            types |= _TYPES_BY_CHAR.get(c, frozenset())
        if "o" in values:              # any type the table has no letter for
            s = Names(None, frozenset(TYPECHARS))
        else:
            s = Names(frozenset(types))
        return s.complement() if op == "!=" else s
    if name == "fd.sockfamily":
        fam = {"ip": {"ipv4", "ipv6"}, "unix": {"unix"}}
        s = Names(frozenset(t for v in values for t in fam.get(v, ())))
        return s.complement() if op == "!=" else s
    s = Names(frozenset(values))
    return s.complement() if op == "!=" else s


def _nets(op: str, values: tuple[str, ...]) -> Nets | None:
    if op not in ("=", "!=", "in", "intersects"):
        return None
    nets = frozenset(ipaddress.ip_network(v.strip(), strict=False) for v in values)
    return Nets(None, nets) if op == "!=" else Nets(nets)


def _glob(pattern: str) -> Str:
    """What a string matching the glob (fnmatch without FNM_PATHNAME) must have: the literal text
    before the first wildcard, after the last, and every literal run between."""
    runs: list[str] = []
    cur: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            cur.append(pattern[i + 1])
            i += 2
        elif c in "*?[":
            runs.append("".join(cur))
            cur = []
            if c == "[":
                j = pattern.find("]", i + 2)
                i = n if j < 0 else j + 1
            else:
                i += 1
        else:
            cur.append(c)
            i += 1
    if not runs:                        # no wildcard at all: an exact string
        return Str(exact="".join(cur))
    runs.append("".join(cur))
    return Str(None, runs[0], runs[-1], tuple(r for r in runs[1:-1] if r))


def _strings(name: str, arg: str | None, op: str, values: tuple[str, ...], t: str) -> list[Term] | None:
    """Positive string tests on a path or string fact; None when the check cannot be read."""
    if name == "evt.arg":
        sc = BY_NAME.get(t)
        kinds = {p[0]: p[1] for p in sc.params} if sc is not None else {}
        kind = kinds.get(arg or "")
        if kind is None or not (kind in ("path", "str") or kind.startswith("path@a")):
            return None
        fact = f"evt.arg.{arg}"
    else:
        fact = "fd.nameraw" if name == "fd.nameraw" else "fd.name"
    alts: set[Str] = set()
    for v in values:
        alt = _string_alts(name, op, v)
        if alt is None:
            return None
        alts |= alt
    return _terms(_one(fact, Strs(frozenset(alts))))


def _string_alts(name: str, op: str, v: str) -> set[Str] | None:
    if name == "fd.directory":
        d = v.rstrip("/") or "/"
        below = d if d == "/" else d + "/"
        if op in ("=", "in"):
            return {Str(exact=d), Str(prefix=below)}
        if op in ("startswith", "pmatch"):
            return {Str(prefix=v)} if op == "startswith" else {Str(exact=d), Str(prefix=below)}
        return None
    if name == "fd.filename":
        if op in ("=", "in"):
            if v == "/":
                return {Str(exact="/")}
            return set() if "/" in v else {Str(suffix="/" + v)}
        if op == "endswith":
            return {Str(suffix=v)}
        if op == "contains":
            return {Str(contains=(v,))}
        return None
    if op in ("=", "in", "intersects"):
        return {Str(exact=v)}
    if op == "startswith":
        return {Str(prefix=v)}
    if op == "endswith":
        return {Str(suffix=v)}
    if op == "contains":
        return {Str(contains=(v,))}
    if op == "pmatch":
        p = v.rstrip("/") if len(v) > 1 else v
        return {Str(exact=p), Str(prefix=p if p.endswith("/") else p + "/")}
    if op == "glob":
        return {_glob(v)}
    return None


# -- reading a predicate ---------------------------------------------------------------------------


def facts(pred: Predicate) -> Iterator[str]:
    """Every fact some term of `pred` constrains."""
    for term in pred.terms or ():
        for k, _v in term.facts:
            yield k


def restrict(pred: Predicate, readable: Mapping[str, object] | Iterable[str]) -> Predicate:
    """The predicate with only the facts in `readable` kept: what a source that can read those
    facts (and no others) can test. Looser, so still implied by every rule."""
    keep = set(readable)
    if pred.terms is None:
        return pred
    terms = []
    for term in pred.terms:
        t = Term(tuple((k, v) for k, v in term.facts if k in keep))
        if t == TOP:
            return ALL
        terms.append(t)
    return Predicate(tuple(_merge(terms)))


__all__ = ["ALL", "Flags", "IntSet", "Names", "Nets", "Predicate", "Str", "Strs", "Term", "derive", "facts",
           "predicate", "restrict", "to_data"]

