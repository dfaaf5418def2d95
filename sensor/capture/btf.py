"""Kernel struct offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).

The installed kernel headers do not match the running kernel here, so every offset the BPF program
needs is resolved from BTF at start-up and passed into the program text as a `-D` macro
(DESIGN.md §6). BTF is a documented binary format (kernel Documentation/bpf/btf.rst): a header, a
type section of variable-length records, and a string section. Only the struct/union member
offsets and type sizes are read here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_MAGIC = 0xEB9F
# kind -> bytes that follow the 12-byte common header (per member when the value is a tuple).
_KIND_INT, _KIND_PTR, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM = 1, 2, 3, 4, 5, 6
_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT, _KIND_TYPE_TAG = 8, 9, 10, 11, 18
_FIXED_EXTRA = {_KIND_INT: 4, _KIND_ARRAY: 12, 14: 4, 17: 4}           # INT, ARRAY, VAR, DECL_TAG
_PER_MEMBER = {_KIND_STRUCT: 12, _KIND_UNION: 12, _KIND_ENUM: 8, 13: 8, 15: 12, 19: 12}
_MODIFIERS = {_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT, _KIND_TYPE_TAG}


class BTFError(Exception):
    """BTF is missing, malformed, or lacks a struct member the capture needs."""


@dataclass(frozen=True, slots=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    vlen: int
    kind_flag: bool
    data: int           # offset of the kind-specific data in the blob


class BTF:
    """The types of one BTF blob, indexed by id and by struct/union name."""

    def __init__(self, blob: bytes, source: str = "<btf>") -> None:
        self.source = source
        if len(blob) < 24:
            raise BTFError(f"{source}: too short to be BTF")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
        if magic != _MAGIC:
            raise BTFError(f"{source}: not BTF (magic {magic:#x})")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
        self._blob = blob
        self._strings = hdr_len + str_off
        self._strings_end = self._strings + str_len
        self._types: list[_Type | None] = [None]          # id 0 is void
        self._by_name: dict[str, list[int]] = {}
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = struct.Struct("<III").unpack_from
        while pos < end:
            name_off, info, size_or_type = unpack(blob, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            data = pos + 12
            extra = _FIXED_EXTRA.get(kind, 0) + vlen * _PER_MEMBER.get(kind, 0)
            name = self._str(name_off) if kind in (_KIND_STRUCT, _KIND_UNION, _KIND_ENUM) else ""
            self._types.append(_Type(kind, name, size_or_type, vlen, bool(info >> 31), data))
            if name:
                self._by_name.setdefault(name, []).append(len(self._types) - 1)
            pos = data + extra

    @classmethod
    def vmlinux(cls, path: Path = VMLINUX) -> BTF:
        """The running kernel's BTF."""
        try:
            return cls(path.read_bytes(), str(path))
        except OSError as e:
            raise BTFError(f"{path}: cannot read kernel BTF ({e.strerror}); the kernel needs "
                           "CONFIG_DEBUG_INFO_BTF=y") from e

    def _str(self, off: int) -> str:
        start = self._strings + off
        end = self._blob.index(b"\0", start, self._strings_end)
        return self._blob[start:end].decode()

    def _struct_id(self, name: str) -> int:
        # Several entries may share a name (a forward declaration, a same-named union); take the
        # struct that has members.
        for tid in self._by_name.get(name, ()):
            t = self._types[tid]
            if t is not None and t.kind in (_KIND_STRUCT, _KIND_UNION) and t.vlen:
                return tid
        raise BTFError(f"{self.source}: no struct '{name}' in kernel BTF")

    def _resolve(self, tid: int) -> int:
        while True:
            t = self._types[tid]
            if t is None or t.kind not in _MODIFIERS:
                return tid
            tid = t.size_or_type

    def _find_member(self, tid: int, member: str) -> tuple[int, int] | None:
        """(byte offset, type id) of a member, looking inside anonymous structs and unions."""
        t = self._types[tid]
        assert t is not None
        for i in range(t.vlen):
            name_off, mtype, moff = struct.unpack_from("<III", self._blob, t.data + 12 * i)
            bit_off = moff & 0xFFFFFF if t.kind_flag else moff
            name = self._str(name_off)
            if name == member:
                if bit_off % 8:
                    raise BTFError(f"{self.source}: {t.name}.{member} is a bitfield")
                return bit_off // 8, mtype
            if not name:
                inner = self._resolve(mtype)
                it = self._types[inner]
                if it is not None and it.kind in (_KIND_STRUCT, _KIND_UNION):
                    found = self._find_member(inner, member)
                    if found is not None:
                        return bit_off // 8 + found[0], found[1]
        return None

    def offset(self, struct_name: str, member_path: str) -> int:
        """Byte offset of `member_path` ("loginuid.val", "__sk_common.skc_num") in the struct."""
        tid = self._struct_id(struct_name)
        total = 0
        for part in member_path.split("."):
            found = self._find_member(tid, part)
            if found is None:
                raise BTFError(f"{self.source}: struct {struct_name} has no member '{member_path}' "
                               f"(missing '{part}'); this kernel's layout is not supported")
            off, mtype = found
            total += off
            tid = self._resolve(mtype)
        return total

    def has_member(self, struct_name: str, member_path: str) -> bool:
        """True when the struct has the member (kernels differ; callers pick an alternative)."""
        try:
            self.offset(struct_name, member_path)
        except BTFError:
            return False
        return True

    def size(self, struct_name: str) -> int:
        """sizeof(struct struct_name)."""
        t = self._types[self._struct_id(struct_name)]
        assert t is not None
        return t.size_or_type

    def enum_value(self, enum_name: str, member: str) -> int:
        """The value of an enumerator (e.g. pid_type PIDTYPE_SID)."""
        for tid in self._by_name.get(enum_name, ()):
            t = self._types[tid]
            if t is None or t.kind != _KIND_ENUM:
                continue
            for i in range(t.vlen):
                name_off, val = struct.unpack_from("<Ii", self._blob, t.data + 8 * i)
                if self._str(name_off) == member:
                    return val
        raise BTFError(f"{self.source}: no enumerator {enum_name}.{member} in kernel BTF")
