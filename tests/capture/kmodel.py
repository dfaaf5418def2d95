"""The probe's kernel filter (probe.bpf.c: kf_cheap, kf_facts, kf_costly, unwanted) in Python, for
tests: what the kernel keeps of a record, decided from the same tables and the same record fields.
tests/capture/test_kfilter.py checks this model against the rules through the real decoder, and the
live tests check the probe against it."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from sensor.capture import kfilter, layout
from sensor.capture.layout import FT, KC, KF_ALL, L4
from sensor.capture.syscalls import OPENS
from sensor.syscalls import FD_ARG0, FD_NONE, FD_RES, Syscall

CHEAP = KC["RES"] | KC["ACC"] | KC["FLAGS"] | KC["UID"] | KC["CONTAINER"]
_TERM = layout.LAYOUTS["kterm"]


@dataclass
class Kernel:
    """What the probe reads for one event."""

    res: int
    args: tuple[int, ...]
    comm: bytes = b"cat"
    euid: int = 0
    host: bool = False                    # the cgroup is in host_cgroups
    imode: int = 0o100644                 # the opened file's (opens) or the old fd's (dup) inode
    sock: tuple[int, int, int] | None = None      # family, type, protocol of the fd's socket
    local: tuple[int, bytes, int] | None = None   # family, address, port
    remote: tuple[int, bytes, int] | None = None
    sockaddr: bytes = b""                 # the address argument
    strings: tuple[bytes | None, ...] = ()        # slot 0, 1 as the process passed them
    how_flags: int = 0                    # openat2


class Model:
    def __init__(self, tables: kfilter.Tables) -> None:
        self.t = tables
        self.comm = tables.comm_entries()
        self.paths = tables.path_entries()
        self.dfa_rows, self.dfa_any, self.dfa_end = tables.dfa()
        self.nets = tables.net_entries()
        self.ports = dict(tables.port_bitmaps())
        self.terms = [dict(zip(_TERM.names, _TERM.struct.unpack(r), strict=True)) for r in tables.terms]

    # facts --------------------------------------------------------------------------------------
    def path_bits(self, s: bytes) -> int:
        key = s + b"\0"
        best = max((k for k in self.paths if key.startswith(k)), key=len, default=None)
        bits = self.paths[best] if best is not None else 0
        if len(self.dfa_rows) > 1:
            state = 0
            for c in s:
                bits |= self.dfa_any[state]
                state = self.dfa_rows[state][c]
            bits |= self.dfa_any[state] | self.dfa_end[state]
        return bits

    @staticmethod
    def normal(s: bytes) -> bool:
        if not s.startswith(b"/") or b"//" in s or (s.endswith(b"/") and s != b"/"):
            return False
        return not any(p in (b".", b"..") for p in s.split(b"/"))

    def net_bits(self, fam: int, addr: bytes) -> int:
        if fam == 10 and addr[:10] == b"\0" * 10 and addr[10:12] == b"\xff\xff":
            fam, addr = 2, addr[12:16]
        version = 4 if fam == 2 else 6
        addr = addr[:4] if version == 4 else addr[:16]
        value = int.from_bytes(addr, "big")
        bits, best = 0, -1
        for (v, net, plen), b in self.nets.items():
            width = 32 if v == 4 else 128
            if v == version and plen > best and value >> (width - plen) == int.from_bytes(net, "big") >> (width - plen):
                bits, best = b, plen
        return bits

    def port_ok(self, set_index_plus_one: int, port: int) -> bool:
        words = self.ports.get(set_index_plus_one - 1, [0] * 1024)
        return bool(words[port >> 6] >> (port & 63) & 1)

    def keeps(self, sc: Syscall, k: Kernel) -> bool:
        spec = self.t.specs.get(sc.name)
        if spec is None:
            return False                      # not attached
        if spec["kf_mode"] == KF_ALL:
            return True
        flags = self.flags(sc, k)
        return self.wanted(sc, spec, k, flags) or bool(spec["state"])

    @staticmethod
    def flags(sc: Syscall, k: Kernel) -> int:
        if sc.name not in OPENS:
            return 0
        if sc.name == "openat2":
            return k.how_flags
        return k.args[sc.open_flags_arg] if sc.open_flags_arg >= 0 else 0

    def wanted(self, sc: Syscall, spec: dict[str, int], k: Kernel, flags: int) -> bool:
        comm = self.comm.get(k.comm.ljust(16, b"\0")[:16], 0)
        rows = self.terms[spec["kf_first"]:spec["kf_first"] + spec["kf_count"]]
        mask = spec[f"kf_mask{(k.res < 0) << 2 | (flags & 3)}"]      # as the probe: its class's terms only
        alive = []
        for i, t in enumerate(rows):
            if not mask >> i & 1:
                continue
            c = t["checks"]
            if c & KC["RES"] and not (t["res_lo0"] <= k.res <= t["res_hi0"] or t["res_lo1"] <= k.res <= t["res_hi1"]):
                continue
            if c & KC["ACC"] and not t["acc"] >> (flags & 3) & 1:
                continue
            if c & KC["FLAGS"] and ((flags & t["fl_all"]) != t["fl_all"] or flags & t["fl_none"]):
                continue
            if c & KC["UID"] and not (t["uid_lo0"] <= k.euid <= t["uid_hi0"] or t["uid_lo1"] <= k.euid <= t["uid_hi1"]):
                continue
            if c & KC["CONTAINER"] and k.host:
                continue
            if not c & ~CHEAP:
                return True
            alive.append(t)
        if not alive:
            return False
        f = self.facts(sc, k)
        for t in alive:
            c = t["checks"]
            if c & KC["COMM_IN"] and not comm & t["comm_in"]:
                continue
            if c & KC["COMM_OUT"] and comm & t["comm_out"]:
                continue
            if self.costly_ok(t, f):
                return True
        return False

    def facts(self, sc: Syscall, k: Kernel) -> dict[str, Any]:
        f: dict[str, Any] = {"ftype": 0, "l4": 0, "net": None, "paths": {}}
        if sc.name in OPENS:
            if k.res < 0:
                f["ftype"] = FT["FILE"]
            else:
                m = k.imode & 0o170000
                f["ftype"] = {0o040000: FT["DIR"], 0o010000: FT["PIPE"], 0o140000: FT["UNIX"]}.get(m, FT["FILE"])
        elif sc.name == "socket":
            if k.res >= 0:
                f["ftype"], f["l4"] = _family(k.args[0] & 0xFFFF), _l4(k.args[0] & 0xFFFF, k.args[1] & 0xF, k.args[2])
        elif sc.sockfd != FD_NONE or (sc.filefd == FD_ARG0 and sc.name.startswith("dup")):
            if k.sock is not None:
                fam, stype, proto = k.sock
                f["ftype"], f["l4"] = _family(fam), _l4(fam, stype, proto)
                if fam in (2, 10) and sc.sockfd != FD_NONE and k.local and k.remote:
                    remote = k.remote
                    if remote[2] == 0 and k.sockaddr:
                        peer = _sockaddr(k.sockaddr)
                        if peer is not None:
                            remote = peer
                    f["net"] = (self.net_bits(k.local[0], k.local[1]), k.local[2],
                                self.net_bits(remote[0], remote[1]), remote[2])
            elif sc.filefd == FD_ARG0:
                f["ftype"] = FT["NONSOCK"]
        for slot, s in enumerate(k.strings[:2]):
            if s is not None and len(s) + 1 < kfilter.MAX_PREFIX:
                f["paths"][slot] = (self.path_bits(s), self.normal(s))
        return f

    def costly_ok(self, t: dict[str, int], f: dict[str, Any]) -> bool:
        c = t["checks"]
        if c & KC["FTYPE"] and f["ftype"] and not t["ftype"] & f["ftype"]:
            return False
        if c & KC["L4"] and f["l4"] and not t["l4"] & f["l4"]:
            return False
        if f["net"] is not None:
            lbits, lport, rbits, rport = f["net"]
            if c & KC["LNET"] and ((t["lnet_in"] and not lbits & t["lnet_in"]) or lbits & t["lnet_out"]):
                return False
            if c & KC["RNET"] and ((t["rnet_in"] and not rbits & t["rnet_in"]) or rbits & t["rnet_out"]):
                return False
            if c & KC["LPORT"] and not self.port_ok(t["lport"], lport):
                return False
            if c & KC["RPORT"] and not self.port_ok(t["rport"], rport):
                return False
        for slot, (bits, normal) in f["paths"].items():
            if c & KC[f"RAW{slot}"] and not bits & t[f"raw{slot}"]:
                return False
            if c & KC[f"PATH{slot}"] and normal and not bits & t[f"path{slot}"]:
                return False
        return True


def _family(fam: int) -> int:
    return {2: FT["IPV4"], 10: FT["IPV6"], 1: FT["UNIX"]}.get(fam, 0)


def _l4(fam: int, stype: int, proto: int) -> int:
    if fam not in (2, 10):
        return L4["NA"] if fam == 1 else 0
    by_proto = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMP", 255: "RAW"}
    if proto in by_proto:
        return L4[by_proto[proto]]
    if proto == 0 or proto > 255:
        by_type = {1: "TCP", 2: "UDP", 3: "RAW"}
        if stype in by_type:
            return L4[by_type[stype]]
    return L4["NA"]


def _sockaddr(sa: bytes) -> tuple[int, bytes, int] | None:
    fam = struct.unpack_from("<H", sa)[0] if len(sa) >= 2 else 0
    if fam == 2 and len(sa) >= 8:
        return 2, sa[4:8], struct.unpack_from(">H", sa, 2)[0]
    if fam == 10 and len(sa) >= 24:
        return 10, sa[8:24], struct.unpack_from(">H", sa, 2)[0]
    return None


__all__ = ["FD_RES", "Kernel", "Model"]


def record(sc: Syscall, k: Kernel, *, tgid: int, cgroup: int) -> memoryview:
    """The record the probe writes for this event (layout.SYSCALL, then the address and strings)."""
    lay = layout.LAYOUTS["syscall"]
    v: dict[str, Any] = {n: 0 for n in lay.names}
    v.update(kind=layout.K_SYSCALL, nr=sc.nr, tid=tgid, tgid=tgid, uid=k.euid, gid=k.euid, euid=k.euid,
             egid=k.euid, cpu=0, ts=1000, cgroup=cgroup, comm=k.comm.ljust(16, b"\0")[:16], res=k.res,
             laddr_raw=b"\0" * 16, raddr_raw=b"\0" * 16, kclass=layout.KCLASS_RULE)
    for i, a in enumerate(k.args[:6]):
        v[f"a{i}"] = a & 0xFFFFFFFFFFFFFFFF
    tail = k.sockaddr
    v["laddr"] = len(k.sockaddr)
    for slot, s in enumerate(k.strings[:3]):
        if s is not None:
            tail += s + b"\0"
            v[f"l{slot}"] = len(s) + 1
    fd_ok = (sc.filefd == FD_RES and k.res >= 0) or sc.filefd == FD_ARG0
    if fd_ok and sc.filefd != FD_NONE:
        v.update(xflags=v["xflags"] | layout.X_HAVE_FILE, imode=k.imode, ino=77, dev=0x803)
    if k.sock is not None:
        fam, stype, proto = k.sock
        v.update(xflags=v["xflags"] | layout.X_HAVE_SOCK, sk_family=fam, sk_type=stype, sk_proto=proto,
                 sk_state=1)
        if k.local is not None:
            v.update(laddr_raw=k.local[1].ljust(16, b"\0"), lport=k.local[2])
        if k.remote is not None:
            v.update(raddr_raw=k.remote[1].ljust(16, b"\0"), rport=k.remote[2])
    return memoryview(lay.struct.pack(*(v[n] for n in lay.names)) + tail)
