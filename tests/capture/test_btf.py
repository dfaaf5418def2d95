"""sensor/capture/btf.py: member offsets from BTF, checked on a hand-built blob and on this kernel."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sensor.capture.btf import BTF, BTFError
from sensor.capture.offsets import MEMBERS, macros

KIND_INT, KIND_PTR, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_TYPEDEF = 1, 2, 4, 5, 6, 8


class Blob:
    """Builds a BTF blob the way the kernel lays it out: header, types, strings."""

    def __init__(self) -> None:
        self.strings = b"\0"
        self.types = b""
        self.next_id = 1

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, kind: int, name: str, size_or_type: int, members: list[tuple] = (), kflag: bool = False,
            extra: bytes = b"") -> int:
        info = (kind << 24) | len(members) | (1 << 31 if kflag else 0)
        rec = struct.pack("<III", self.s(name), info, size_or_type) + extra
        for m in members:
            if kind == KIND_ENUM:
                rec += struct.pack("<Ii", self.s(m[0]), m[1])
            else:
                rec += struct.pack("<III", self.s(m[0]), m[1], m[2])
        self.types += rec
        tid = self.next_id
        self.next_id += 1
        return tid

    def bytes(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings))
        return hdr + self.types + self.strings


def sample() -> bytes:
    b = Blob()
    u32 = b.add(KIND_INT, "unsigned int", 4, extra=struct.pack("<I", 32))
    u64 = b.add(KIND_INT, "unsigned long", 8, extra=struct.pack("<I", 64))
    kuid = b.add(KIND_STRUCT, "kuid_t_s", 4, [("val", u32, 0)])
    td = b.add(KIND_TYPEDEF, "kuid_t", kuid)
    # an anonymous union holding an anonymous struct, as task_struct and sock_common have
    inner = b.add(KIND_STRUCT, "", 8, [("lo", u32, 0), ("hi", u32, 32)])
    anon = b.add(KIND_UNION, "", 8, [("", inner, 0), ("both", u64, 0)])
    b.add(KIND_STRUCT, "widget", 4)                       # a forward-ish empty namesake
    ptr = b.add(KIND_PTR, "", 0)
    b.add(KIND_STRUCT, "widget", 40, [("flags", u32, 0), ("", anon, 64), ("owner", td, 128),
                                      ("next", ptr, 192), ("bits", u32, (3 << 24) | 260)], kflag=True)
    b.add(KIND_ENUM, "color", 4, [("RED", 0), ("GREEN", 7)])
    return b.bytes()


def test_members_inside_anonymous_unions_and_typedefs() -> None:
    btf = BTF(sample())
    assert btf.offset("widget", "flags") == 0
    assert btf.offset("widget", "lo") == 8
    assert btf.offset("widget", "hi") == 12
    assert btf.offset("widget", "both") == 8
    assert btf.offset("widget", "owner.val") == 16
    assert btf.offset("widget", "next") == 24
    assert btf.size("widget") == 40          # the namesake without members is skipped
    assert btf.enum_value("color", "GREEN") == 7


def test_errors_name_what_is_missing() -> None:
    btf = BTF(sample())
    with pytest.raises(BTFError, match=r"struct widget has no member 'owner\.uid'"):
        btf.offset("widget", "owner.uid")
    with pytest.raises(BTFError, match="no struct 'gadget'"):
        btf.offset("gadget", "x")
    with pytest.raises(BTFError, match="bitfield"):
        btf.offset("widget", "bits")
    assert not btf.has_member("widget", "nope")
    with pytest.raises(BTFError, match="not BTF"):
        BTF(b"\0" * 64)


@pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="this kernel has no BTF")
def test_every_offset_the_probe_needs_resolves_on_this_kernel() -> None:
    m = macros(BTF.vmlinux())
    assert set(MEMBERS) <= set(m)
    # Values the kernel ABI fixes, whatever the struct layout around them.
    assert m["SIZEOF_UPID"] == 16
    assert (m["PIDTYPE_PGID"], m["PIDTYPE_SID"]) == (2, 3)
    # pid and tgid are adjacent ints in task_struct on every kernel.
    assert m["OFF_TASK_TGID"] == m["OFF_TASK_PID"] + 4
    assert m["OFF_CRED_EGID"] == m["OFF_CRED_EUID"] + 4
