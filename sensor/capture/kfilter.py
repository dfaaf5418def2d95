"""The kernel filter: the rules' predicates (plain data from sensor/engine/kernel_filter.py) as the
probe's tables.

For each syscall the probe attaches, `build()` keeps of each term only the facts the probe can read
for that syscall exactly as the decoder will compute them (`readable`), and turns them into rows of
the `kterms` map and entries of the sets the rows point at: process names (`comm_sets`), paths (an
LPM trie of exact names and prefixes, and an Aho-Corasick automaton for "contains" and "ends
with"), networks (an LPM trie) and ports (bitmaps). A term whose facts the probe cannot read at all
makes the syscall keep every event; a syscall no rule can match and no state needs is not attached.
Nothing here imports bcc: `falconet run --dry-run` describes the same tables without loading them.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sensor.capture import render
from sensor.capture.layout import FT, KC, KF_ALL, KF_TERMS, L4, LAYOUTS, pack
from sensor.capture.syscalls import BASE, OPENS
from sensor.syscalls import FD_ARG0, FD_NONE, Syscall

MAX_PREFIX = 256                 # the probe's path key: judged paths are shorter (with their NUL)
MAX_TERMS_PER_SYSCALL = 64
MAX_SETS = 64                    # bits in a set mask (comm, path, net)
PORT_SETS = 16
DFA_STATES = 1024
S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
U32_MAX = (1 << 32) - 1

# evt.arg.flags names as the probe tests them: the bits that must all be set for the name to show.
_FLAG_BITS = {
    "O_CREAT": render.O_CREAT, "O_EXCL": render.O_EXCL, "O_TRUNC": render.O_TRUNC,
    "O_APPEND": render.O_APPEND, "O_NONBLOCK": render.O_NONBLOCK, "O_DSYNC": render.O_DSYNC,
    "O_DIRECT": render.O_DIRECT, "O_LARGEFILE": render.O_LARGEFILE, "O_DIRECTORY": render.O_DIRECTORY,
    "O_CLOEXEC": render.O_CLOEXEC, "O_SYNC": render.O_SYNC, "O_TMPFILE": render.O_TMPFILE,
}
# ... and those whose absence is one clear bit (O_SYNC and O_TMPFILE show only with all their bits;
# O_DIRECTORY does not show under O_TMPFILE)
_SINGLE_BIT = frozenset({"O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC", "O_DIRECT",
                         "O_LARGEFILE", "O_CLOEXEC"})
_ACCESS_BITS = {"O_RDONLY": 1, "O_WRONLY": 2, "O_RDWR": 4, "O_ACCMODE": 8}
_SOCKET_TYPES = frozenset({"ipv4", "ipv6", "unix", "netlink"})
_FT_TYPES = {"FILE": "file", "DIR": "directory", "PIPE": "pipe", "UNIX": "unix", "IPV4": "ipv4", "IPV6": "ipv6"}
_L4_NAMES = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "RAW": "raw", "NA": "<NA>"}
# The decoder's convention: for these calls the local end is the server (decoder._socket_fd).
_SERVER_SIDE = frozenset({"accept", "accept4", "bind", "listen"})
# fd.num is the result for these (-1 when it failed): the decoder creates their fd from it.
_FD_FROM_RESULT = OPENS | {"socket", "accept", "accept4"}

Data = list[dict[str, dict[str, Any]]] | None


def readable(sc: Syscall) -> dict[str, str]:
    """Facts the probe reads for this syscall exactly as the decoder computes them, each with the
    place the probe reads it: {"evt.rawres": "res", "fd.name": "path0", ...}."""
    out = {"evt.rawres": "res", "user.uid": "uid", "proc.name": "comm", "container.id": "container"}
    if sc.name in _FD_FROM_RESULT:
        out["fd.num"] = "res"
    if sc.name in OPENS:
        out["fd.type"] = "ftype"
        out["fd.name"] = "path0"
        out["fd.nameraw"] = "raw0"
        if sc.open_flags_arg >= 0:
            out["evt.arg.flags"] = "flags"
    elif sc.name == "socket":
        out["fd.type"] = "ftype"
        out["fd.l4proto"] = "l4"
    elif sc.sockfd != FD_NONE:
        out.update({"fd.type": "ftype", "fd.l4proto": "l4"})
        server = sc.name in _SERVER_SIDE
        out.update({"fd.lip": "lnet", "fd.rip": "rnet", "fd.lport": "lport", "fd.rport": "rport",
                    "fd.cip": "rnet" if server else "lnet", "fd.sip": "lnet" if server else "rnet",
                    "fd.cport": "rport" if server else "lport", "fd.sport": "lport" if server else "rport"})
    elif sc.filefd == FD_ARG0 and sc.name.startswith("dup"):
        out["fd.type"] = "ftype"
    for name, kind, src in sc.params:
        if src in ("s0", "s1") and (kind in ("path", "str") or kind.startswith("path@a")):
            out[f"evt.arg.{name}"] = ("raw" if kind == "str" else "path") + src[1]
    return out


# -- the tables ------------------------------------------------------------------------------------


@dataclass
class _Sets:
    """Distinct sets, each one bit of a mask; identical sets share their bit."""

    limit: int = MAX_SETS
    bits: dict[Any, int] = field(default_factory=dict)

    def bit(self, content: Any) -> int | None:
        if content in self.bits:
            return self.bits[content]
        if len(self.bits) >= self.limit:
            return None
        self.bits[content] = 1 << len(self.bits)
        return self.bits[content]


@dataclass
class Tables:
    """Everything the probe's filter maps hold, and what each syscall's spec row says."""

    specs: dict[str, dict[str, int]] = field(default_factory=dict)       # name -> spec fields
    terms: list[bytes] = field(default_factory=list)                       # kterms rows
    detached: list[str] = field(default_factory=list)                      # no rule, no state
    comm: _Sets = field(default_factory=_Sets)
    paths: _Sets = field(default_factory=_Sets)
    nets: _Sets = field(default_factory=_Sets)
    ports: _Sets = field(default_factory=lambda: _Sets(PORT_SETS))
    described: dict[str, list[str]] = field(default_factory=dict)          # name -> kept terms, as text

    def comm_entries(self) -> dict[bytes, int]:
        """comm (16 bytes) -> bits of the comm sets it is in."""
        out: dict[bytes, int] = {}
        for names, bit in self.comm.bits.items():
            for n in names:
                key = n.encode("utf-8", "surrogateescape").ljust(16, b"\0")
                out[key] = out.get(key, 0) | bit
        return out

    def path_entries(self) -> dict[bytes, int]:
        """Trie keys (an exact name with its NUL, or a prefix) -> bits of the path sets that match
        any string starting with the key. A longest-prefix match returns one entry, so each carries
        the bits of every shorter entry that is a prefix of it."""
        own: dict[bytes, int] = {}
        for parts, bit in self.paths.bits.items():
            for kind, text in parts:
                if kind in ("exact", "prefix"):
                    key = text.encode("utf-8", "surrogateescape") + (b"\0" if kind == "exact" else b"")
                    own[key] = own.get(key, 0) | bit
        return {k: v | _or(b for o, b in own.items() if len(o) < len(k) and k.startswith(o))
                for k, v in own.items()}

    def dfa(self) -> tuple[list[list[int]], list[int], list[int]]:
        """The automaton over the "contains" and "ends with" patterns: next-state rows, and per
        state the bits of the sets a pattern ending there makes match (anywhere / at the end)."""
        patterns = []
        for parts, bit in self.paths.bits.items():
            for kind, text in parts:
                if kind in ("contains", "suffix"):
                    patterns.append((text.encode("utf-8", "surrogateescape"), kind, bit))
        return aho_corasick(patterns)

    def net_entries(self) -> dict[tuple[int, bytes, int], int]:
        """(family 4/6, address bytes, prefix bits) -> bits of the net sets containing that network,
        each carrying the bits of the wider networks around it (longest-prefix match)."""
        own: dict[Any, int] = {}
        for nets, bit in self.nets.bits.items():
            for n in nets:
                own[n] = own.get(n, 0) | bit
        out = {}
        for n, b in own.items():
            wider = _or(ob for o, ob in own.items() if o != n and o.version == n.version and n.subnet_of(o))
            out[(n.version, n.network_address.packed, n.prefixlen)] = b | wider
        return out

    def port_bitmaps(self) -> list[tuple[int, list[int]]]:
        """(set index, 1024 words of 64 bits) for every port set."""
        out = []
        for spans, bit in self.ports.bits.items():
            words = [0] * 1024
            for lo, hi in spans:
                for p in range(max(lo, 0), min(hi, 65535) + 1):
                    words[p >> 6] |= 1 << (p & 63)
            out.append((bit.bit_length() - 1, words))
        return out


def _or(values: Iterable[int]) -> int:
    out = 0
    for v in values:
        out |= v
    return out


def aho_corasick(patterns: list[tuple[bytes, str, int]]) -> tuple[list[list[int]], list[int], list[int]]:
    """A DFA for the patterns: (next rows, `any` bits per state, `end` bits per state). A pattern
    of kind "contains" reports its bit in `any` of every state where it ends; "suffix" in `end`,
    which the probe reads only at the last character."""
    goto: list[dict[int, int]] = [{}]
    out_any, out_end = [0], [0]
    for text, kind, bit in patterns:
        s = 0
        for c in text:
            if c not in goto[s]:
                goto.append({})
                out_any.append(0)
                out_end.append(0)
                goto[s][c] = len(goto) - 1
            s = goto[s][c]
        if kind == "contains":
            out_any[s] |= bit
        else:
            out_end[s] |= bit
    if len(goto) > DFA_STATES:
        raise ValueError(f"path patterns need {len(goto)} automaton states, more than {DFA_STATES}")
    fail = [0] * len(goto)
    order = list(goto[0].values())
    i = 0
    while i < len(order):
        s = order[i]
        i += 1
        for c, t in goto[s].items():
            order.append(t)
            f = fail[s]
            while f and c not in goto[f]:
                f = fail[f]
            fail[t] = goto[f].get(c, 0) if goto[f].get(c, 0) != t else 0
            out_any[t] |= out_any[fail[t]]
            out_end[t] |= out_end[fail[t]]
    rows = []
    for s in range(len(goto)):
        row = [0] * 256
        for c in range(256):
            t = s
            while t and c not in goto[t]:
                t = fail[t]
            row[c] = goto[t].get(c, 0)
        rows.append(row)
    return rows, out_any, out_end


# -- translating the predicates --------------------------------------------------------------------


def build(selected: Iterable[Syscall], predicates: Mapping[str, Data], *, enabled: bool = True,
          unfiltered: Iterable[str] = ()) -> Tables:
    """The tables for these syscalls. `predicates` maps an event type to its predicate's data
    (types it does not name keep every event); `unfiltered` names syscalls that keep every event."""
    tables = Tables()
    skip = set(unfiltered)
    for sc in selected:
        state = sc.name in BASE
        spec = {"state": int(state), "kf_mode": KF_ALL, "kf_count": 0, "kf_first": 0, "kf_needs": 0}
        tables.specs[sc.name] = spec
        data = predicates.get(sc.name)
        why = "every event (the process and fd state need it)" if state else "every event"
        if not enabled or sc.name in skip or sc.name not in predicates or data is None:
            tables.described[sc.name] = [why]
            continue
        rows, texts = _terms(sc, data, tables)
        if rows is None:
            tables.described[sc.name] = [why if state else "every event (a rule tests what the probe cannot read)"]
            continue
        if not rows and not state and sc.name not in OPENS:
            tables.detached.append(sc.name)
            tables.described[sc.name] = ["nothing: no rule can match it, so it is not attached"]
            continue
        spec.update(kf_mode=KF_TERMS, kf_count=len(rows), kf_first=len(tables.terms),
                    kf_needs=_or(struct.unpack_from("<I", r)[0] for r in rows), **class_masks(rows))
        tables.terms.extend(rows)
        if state:
            texts = ["every event (the process and fd state need it); rules can match only: " + " | ".join(texts)
                     if texts else "every event (the process and fd state need it); no rule can match it"]
        tables.described[sc.name] = texts
    return tables


def class_masks(rows: list[bytes]) -> dict[str, int]:
    """spec.kf_mask0..7: for each class (result < 0) * 4 + (flags & 3), the terms whose result
    ranges and access modes admit an event of that class; the probe tests only those."""
    lay = LAYOUTS["kterm"]
    out = {}
    for cls in range(8):
        negative, acc = bool(cls & 4), cls & 3
        mask = 0
        for i, raw in enumerate(rows):
            t = dict(zip(lay.names, lay.struct.unpack(raw), strict=True))
            c = t["checks"]
            if c & KC["RES"]:
                spans = ((t["res_lo0"], t["res_hi0"]), (t["res_lo1"], t["res_hi1"]))
                if not any(lo <= hi and (lo < 0 if negative else hi >= 0) for lo, hi in spans):
                    continue
            if c & KC["ACC"] and not t["acc"] >> acc & 1:
                continue
            mask |= 1 << i
        out[f"kf_mask{cls}"] = mask
    return out


def _terms(sc: Syscall, data: list[dict[str, dict[str, Any]]],
           tables: Tables) -> tuple[list[bytes] | None, list[str]]:
    rows: list[bytes] = []
    texts: list[str] = []
    read = readable(sc)
    for term in data:
        kept = {k: v for k, v in term.items() if k in read}
        row = _row(sc, kept, read, tables)
        if row is _IMPOSSIBLE:
            continue
        if row is None:
            return None, []
        rows.append(row[0])
        texts.append(row[1])
    if len(rows) > MAX_TERMS_PER_SYSCALL:
        return None, []
    return rows, texts


_IMPOSSIBLE = object()


def _row(sc: Syscall, facts: dict[str, dict[str, Any]], read: dict[str, str], tables: Tables) -> Any:
    """One kterm row and its text; None when it tests nothing (every event); _IMPOSSIBLE when no
    event can pass it."""
    f: dict[str, Any] = {"checks": 0}
    text: list[str] = []
    res = _spans(facts.get("evt.rawres"), S64_MIN, S64_MAX)
    if "fd.num" in facts:
        num = _spans(facts["fd.num"], S64_MIN, S64_MAX)
        # fd.num is the result when it succeeded, -1 when it failed
        as_res = [(max(lo, 0), hi) for lo, hi in num if hi >= 0]
        if any(lo <= -1 <= hi for lo, hi in num):
            as_res.append((S64_MIN, -1))
        res = _intersect(res, sorted(as_res))
    if not res:
        return _IMPOSSIBLE
    if res != [(S64_MIN, S64_MAX)]:
        (f["res_lo0"], f["res_hi0"]), (f["res_lo1"], f["res_hi1"]) = _two(res)
        f["checks"] |= KC["RES"]
        text.append("result " + _spans_text(res))
    if "user.uid" in facts:
        uid = _spans(facts["user.uid"], 0, U32_MAX)
        if not uid:
            return _IMPOSSIBLE
        if uid != [(0, U32_MAX)]:
            (f["uid_lo0"], f["uid_hi0"]), (f["uid_lo1"], f["uid_hi1"]) = _two(uid)
            f["checks"] |= KC["UID"]
            text.append("euid " + _spans_text(uid))
    if "evt.arg.flags" in facts:
        if _flags(facts["evt.arg.flags"], f, text) is _IMPOSSIBLE:
            return _IMPOSSIBLE
    if "container.id" in facts:
        c = facts["container.id"]
        if (c["only"] is not None and "host" not in c["only"]) or "host" in c["without"]:
            f["checks"] |= KC["CONTAINER"]
            text.append("in a container")
    if "proc.name" in facts:
        if _comm(facts["proc.name"], f, text, tables) is _IMPOSSIBLE:
            return _IMPOSSIBLE
    if "fd.type" in facts:
        mask = _ftype_mask(facts["fd.type"])
        if mask == 0:
            return _IMPOSSIBLE
        if mask != _or(FT.values()):
            f["ftype"] = mask
            f["checks"] |= KC["FTYPE"]
            text.append("fd.type " + _names_text(facts["fd.type"]))
    if "fd.l4proto" in facts:
        n = facts["fd.l4proto"]
        mask = _or(v for k, v in L4.items() if _allows(n, _L4_NAMES[k]))
        if mask == 0:
            return _IMPOSSIBLE
        if mask != _or(L4.values()):
            f["l4"] = mask
            f["checks"] |= KC["L4"]
            text.append("fd.l4proto " + _names_text(n))
    for side in ("lnet", "rnet"):
        if _nets(side, [v for k, v in facts.items() if read[k] == side], f, text, tables) is _IMPOSSIBLE:
            return _IMPOSSIBLE
    for side in ("lport", "rport"):
        if _ports(side, [v for k, v in facts.items() if read[k] == side], f, text, tables) is _IMPOSSIBLE:
            return _IMPOSSIBLE
    for k, v in facts.items():
        place = read[k]
        if place.startswith(("path", "raw")):
            if _path(place, k, v, f, text, tables) is _IMPOSSIBLE:
                return _IMPOSSIBLE
    if not f["checks"]:
        return None
    return pack("kterm", **f), "; ".join(text)


def _spans(c: dict[str, Any] | None, lo: int, hi: int) -> list[tuple[int, int]]:
    if c is None:
        return [(lo, hi)]
    return [(max(a, lo), min(b, hi)) for a, b in c["spans"] if max(a, lo) <= min(b, hi)]


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b if max(x0, y0) <= min(x1, y1)]
    return sorted(out)


def _two(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    """At most two ranges for the probe: the first, and the hull of the rest (a wider test, so
    still only a necessary one)."""
    if len(spans) == 1:
        return spans[0], spans[0]
    return spans[0], (spans[1][0], spans[-1][1])


def _spans_text(spans: list[tuple[int, int]]) -> str:
    parts = []
    for lo, hi in spans:
        if lo == hi:
            parts.append(str(lo))
        elif lo <= S64_MIN:
            parts.append(f"<= {hi}")
        elif hi >= S64_MAX or hi == U32_MAX:
            parts.append(f">= {lo}")
        else:
            parts.append(f"{lo}..{hi}")
    return " or ".join(parts)


def _names_text(c: dict[str, Any]) -> str:
    if c["only"] is not None:
        return "in " + _few(c["only"])
    return "not in " + _few(c["without"])


def _allows(names: dict[str, Any], name: str) -> bool:
    return name not in names["without"] and (names["only"] is None or name in names["only"])


def _flags(c: dict[str, Any], f: dict[str, Any], text: list[str]) -> object:
    if c["access"] is not None:
        acc = _or(_ACCESS_BITS[a] for a in c["access"] if a in _ACCESS_BITS)
        if acc == 0:
            return _IMPOSSIBLE
        if acc != 15:
            f["acc"] = acc
            f["checks"] |= KC["ACC"]
            text.append("opened " + "|".join(a for a in ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")
                                              if acc & _ACCESS_BITS[a]))
    need = _or(_FLAG_BITS[n] for n in c["all"] if n in _FLAG_BITS)
    never = _or(_FLAG_BITS[n] for n in c["none"] if n in _SINGLE_BIT)
    if need & never:
        return _IMPOSSIBLE
    if need or never:
        f["fl_all"], f["fl_none"] = need, never
        f["checks"] |= KC["FLAGS"]
        text += [f"with {n}" for n in c["all"] if n in _FLAG_BITS]
        text += [f"without {n}" for n in c["none"] if n in _SINGLE_BIT]
    return None


def _comm_name(n: str) -> bytes | None:
    b = n.encode("utf-8", "surrogateescape")
    return b if 0 < len(b) <= 15 and b"\0" not in b else None


def _comm(c: dict[str, Any], f: dict[str, Any], text: list[str], tables: Tables) -> object:
    # A comm holds at most 15 bytes: a longer name is never a process's name.
    if c["only"] is not None:
        names = frozenset(n for n in c["only"] if _comm_name(n) is not None and n not in c["without"])
        if not names:
            return _IMPOSSIBLE
        _comm_check(f, text, tables, names, "COMM_IN", "process named ")
        return None
    names = frozenset(n for n in c["without"] if _comm_name(n) is not None)
    if names:
        _comm_check(f, text, tables, names, "COMM_OUT", "process not named ")
    return None


def _comm_check(f: dict[str, Any], text: list[str], tables: Tables, names: frozenset[str], check: str,
                label: str) -> None:
    """Test the comm against `names` (one bit of the comm table) when the table has room for it;
    without room the term keeps every process, which is never a false negative."""
    bit = tables.comm.bit(names)
    if bit is not None:
        f[check.lower()] = bit
        f["checks"] |= KC[check]
        text.append(label + _few(names))


def _few(items: Iterable[str], n: int = 4) -> str:
    items = sorted(items)
    shown = ", ".join(items[:n])
    return f"({shown}, +{len(items) - n} more)" if len(items) > n else f"({shown})"


def _ftype_mask(c: dict[str, Any]) -> int:
    mask = _or(FT[k] for k, t in _FT_TYPES.items() if _allows(c, t))
    # a non-socket fd whose kind the probe does not know passes when the rules allow any such kind
    if c["only"] is None or any(t not in _SOCKET_TYPES for t in c["only"]):
        mask |= FT["NONSOCK"]
    return mask


def _nets(side: str, cs: list[dict[str, Any]], f: dict[str, Any], text: list[str], tables: Tables) -> object:
    if not cs:
        return None
    c = cs[0]            # two constraints on one end: testing one of them is still necessary
    only = None if c["only"] is None else frozenset(ipaddress.ip_network(n) for n in c["only"])
    without = frozenset(ipaddress.ip_network(n) for n in c["without"])
    if only is not None and not only:
        return _IMPOSSIBLE
    where = "local" if side == "lnet" else "remote"
    if only is not None:
        bit = tables.nets.bit(only)
        if bit is not None:
            f[f"{side}_in"] = bit
            f["checks"] |= KC[side.upper()]
            text.append(f"{where} address in " + _few(str(n) for n in only))
    if without:
        bit = tables.nets.bit(without)
        if bit is not None:
            f[f"{side}_out"] = bit
            f["checks"] |= KC[side.upper()]
            text.append(f"{where} address not in " + _few(str(n) for n in without))
    return None


def _ports(side: str, cs: list[dict[str, Any]], f: dict[str, Any], text: list[str], tables: Tables) -> object:
    if not cs:
        return None
    spans = _spans(cs[0], 0, 65535)
    if not spans:
        return _IMPOSSIBLE
    if spans == [(0, 65535)]:
        return None
    bit = tables.ports.bit(tuple(spans))
    if bit is not None:
        f[side] = bit.bit_length()           # index + 1
        f["checks"] |= KC[side.upper()]
        text.append(f"{'local' if side == 'lport' else 'remote'} port " + _spans_text(spans))
    return None


def _path(place: str, fact: str, c: dict[str, Any], f: dict[str, Any], text: list[str], tables: Tables) -> object:
    """A path test: each alternative kept as one part the probe can look up (an exact name, a
    prefix, an ending or a piece it contains), the most selective one."""
    raw = place.startswith("raw")
    slot = place[-1]
    parts = []
    for a in c["alternatives"]:
        part = _part(a, absolute=not raw)
        if part is _IMPOSSIBLE:
            continue
        if part is None:
            return None                      # this alternative matches anything: no test
        parts.append(part)
    if not parts:
        return _IMPOSSIBLE
    bit = tables.paths.bit(frozenset(parts))
    if bit is None:
        return None
    name = f"{'raw' if raw else 'path'}{slot}"
    f[name] = bit
    f["checks"] |= KC[name.upper()]
    if any(kind in ("contains", "suffix") for kind, _t in parts):
        f["dfa"] = f.get("dfa", 0) | (1 << int(slot))
    what = {"exact": "is", "prefix": "starts", "suffix": "ends", "contains": "contains"}
    text.append(f"{fact} " + _few((f"{what[k]} {t!r}" for k, t in parts), 3))
    return None


def _part(a: dict[str, Any], absolute: bool) -> Any:
    """The one lookup that stands for a string pattern: None when the pattern matches anything the
    probe judges; _IMPOSSIBLE when it matches nothing the probe judges (the probe does not judge
    strings of MAX_PREFIX bytes or more, and a path rules see is absolute)."""
    limit = MAX_PREFIX - 2
    if a["exact"] is not None:
        e = a["exact"]
        if len(e.encode("utf-8", "surrogateescape")) > limit or (absolute and not e.startswith("/")):
            return _IMPOSSIBLE
        return ("exact", e)
    prefix, suffix, contains = a["prefix"], a["suffix"], a["contains"]
    if absolute and prefix and not prefix.startswith("/"):
        return _IMPOSSIBLE
    if len(prefix) > 1:
        return ("prefix", prefix.encode("utf-8", "surrogateescape")[:limit].decode("utf-8", "surrogateescape"))
    if suffix:
        return ("suffix", suffix)
    if contains:
        return ("contains", max(contains, key=len))
    if prefix and prefix != "/":
        return ("prefix", prefix)
    return None
