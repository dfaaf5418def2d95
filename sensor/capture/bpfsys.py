"""The few bpf(2) map commands the sensor process needs, without bcc.

The long-lived sensor never imports bcc (it would hold LLVM's pages; docs/capture.md); it
holds map file descriptors handed over by the compile child and reads or updates them directly.
"""

from __future__ import annotations

import ctypes
import os
import struct
from functools import cache

_SYS_BPF = 321                     # x86_64
_MAP_LOOKUP_ELEM, _MAP_UPDATE_ELEM, _MAP_DELETE_ELEM, _MAP_GET_NEXT_KEY = 1, 2, 3, 4
_ATTR = struct.Struct("<IIQQQ")    # map_fd, pad, key ptr, value ptr, flags

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, len(attr))
    rc = _libc.syscall(_SYS_BPF, cmd, buf, len(attr))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


@cache
def possible_cpus() -> int:
    """Number of possible CPUs: the length of a per-CPU map value array."""
    text = open("/sys/devices/system/cpu/possible").read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


def lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value stored at `key`, or None when absent."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    attr = _ATTR.pack(map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    try:
        _bpf(_MAP_LOOKUP_ELEM, attr)
    except FileNotFoundError:
        return None
    return v.raw


def update(map_fd: int, key: bytes, value: bytes) -> None:
    """Create or replace the value at `key` (BPF_ANY)."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    _bpf(_MAP_UPDATE_ELEM, _ATTR.pack(map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))


def delete(map_fd: int, key: bytes) -> bool:
    """Remove `key`; False when it was not there."""
    k = ctypes.create_string_buffer(key, len(key))
    try:
        _bpf(_MAP_DELETE_ELEM, _ATTR.pack(map_fd, 0, ctypes.addressof(k), 0, 0))
    except FileNotFoundError:
        return False
    return True


def keys(map_fd: int, key_size: int) -> list[bytes]:
    """Every key of a hash map, as it is now."""
    out: list[bytes] = []
    cur: bytes | None = None
    while True:
        k = ctypes.create_string_buffer(cur or b"", key_size) if cur is not None else None
        nxt = ctypes.create_string_buffer(key_size)
        attr = _ATTR.pack(map_fd, 0, ctypes.addressof(k) if k is not None else 0, ctypes.addressof(nxt), 0)
        try:
            _bpf(_MAP_GET_NEXT_KEY, attr)
        except FileNotFoundError:
            return out
        cur = nxt.raw
        out.append(cur)
        if len(out) > 1 << 20:
            return out


def percpu_u64(map_fd: int, index: int) -> list[int]:
    """One slot of a per-CPU u64 array: its value on every possible CPU."""
    n = possible_cpus()
    raw = lookup(map_fd, struct.pack("<I", index), 8 * n)
    return list(struct.unpack(f"<{n}Q", raw)) if raw else [0] * n
