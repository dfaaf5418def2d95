"""Load the probe for a set of syscalls without ever importing bcc in this process.

`load()` starts `python -m sensor.capture.compile` with one end of a Unix socket pair, asks it for
the program, and receives the map and attachment file descriptors back (SCM_RIGHTS). The
attachments stay alive as long as this process holds the fds; `Probe.close()` drops them.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sensor.capture import bpfsys, syscalls
from sensor.capture.syscalls import Syscall

# probe.bpf.c CFG_* and C_* indexes
CFG_SELF_TGID, CFG_OPEN_FILTER = 0, 1
COUNTERS = ("drops", "str_faults", "regs_faults", "records", "filtered")
MAX_PREFIX = 128
PAGE = os.sysconf("SC_PAGE_SIZE")


class LoadError(Exception):
    """The probe could not be built or attached; the message says why and what would fix it."""


@dataclass
class Probe:
    """The loaded program: map fds, attachment fds, and what was (not) attached."""

    maps: dict[str, int]
    attach_fds: list[int]
    attached: list[str]
    failed: dict[str, str]
    ringbuf_bytes: int
    cflags: list[str] = field(default_factory=list)
    text: str | None = None

    def counters(self) -> dict[str, list[int]]:
        """The probe's per-CPU counters by name (drops, str_faults, ...)."""
        fd = self.maps["counters"]
        return {name: bpfsys.percpu_u64(fd, i) for i, name in enumerate(COUNTERS)}

    def set_config(self, index: int, value: int) -> None:
        bpfsys.update(self.maps["config"], struct.pack("<I", index), struct.pack("<Q", value))

    def forget_fd(self, tgid: int, fd: int) -> None:
        """Tell the kernel a descriptor is gone without a close (exec's O_CLOEXEC)."""
        bpfsys.delete(self.maps["known_fds"], struct.pack("<Q", (tgid << 32) | (fd & 0xFFFFFFFF)))

    def set_open_filter(self, entries: dict[tuple[bytes, bool], int] | None) -> None:
        """Install the in-kernel open filter: {(path, is_prefix): access classes}, None = off.

        A longest-prefix match returns only the longest entry, so every entry carries the classes
        of every shorter entry that is a prefix of it.
        """
        if entries is None:
            self.set_config(CFG_OPEN_FILTER, 0)
            return
        fd = self.maps["open_filter"]
        keys = []
        for (path, is_prefix), classes in entries.items():
            data = path if is_prefix else path + b"\0"
            if len(data) >= MAX_PREFIX:
                raise ValueError(f"open filter path longer than {MAX_PREFIX - 1} bytes: {path!r}")
            keys.append((data, classes))
        for data, classes in keys:
            total = classes
            for other, oclasses in keys:
                if len(other) < len(data) and data.startswith(other):
                    total |= oclasses
            key = struct.pack("<I", len(data) * 8) + data.ljust(MAX_PREFIX, b"\0")
            bpfsys.update(fd, key, bytes([total]))
        for c1, row in enumerate(first_two_table(keys)):
            bpfsys.update(self.maps["open_first2"], struct.pack("<I", c1), struct.pack("<16Q", *row))
        self.set_config(CFG_OPEN_FILTER, 1)

    def close_attachments(self) -> None:
        """Detach every program: no new records after this; the maps stay readable."""
        for fd in self.attach_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.attach_fds = []

    def close(self) -> None:
        # Attachments first, so nothing writes into maps that are going away.
        self.close_attachments()
        for fd in self.maps.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.maps = {}


def first_two_table(keys: list[tuple[bytes, int]]) -> list[list[int]]:
    """The probe's `open_first2` rows: for each first character after the '/', one 256-bit set of
    second characters per access class (4 words each), set wherever some trie key could match.

    A key of one byte ("/", a prefix) can match any path; a key of two ("/x" prefix, or "/" exact
    with its NUL) any path with that first character; a longer key only paths that begin with its
    own first two characters.
    """
    rows = [[0] * 16 for _ in range(256)]
    every = (1 << 64) - 1
    for data, classes in keys:
        firsts = range(256) if len(data) < 2 else (data[1],)
        for cls in range(4):
            if not (classes >> cls) & 1:
                continue
            for c1 in firsts:
                if len(data) < 3:
                    rows[c1][cls * 4:cls * 4 + 4] = [every] * 4
                else:
                    rows[c1][cls * 4 + (data[2] >> 6)] |= 1 << (data[2] & 63)
    return rows


def has_tracepoint(tp: str) -> bool:
    """Whether this kernel has the syscalls:sys_exit_<tp> tracepoint.

    Where tracefs cannot be read (not root) the answer is yes: attaching, which needs root
    anyway, is where the missing privilege is reported.
    """
    try:
        return any(Path(root, "events", "syscalls", f"sys_exit_{tp}").is_dir()
                   for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))
    except PermissionError:
        return True


def _tail(f: object, limit: int = 6000) -> str:
    f.seek(0)  # type: ignore[attr-defined]
    return f.read().decode(errors="replace").strip()[-limit:]  # type: ignore[attr-defined]


def _request(sock: socket.socket, req: dict) -> tuple[dict, list[int]]:
    sock.sendall((json.dumps(req) + "\n").encode())
    msg, fds, _flags, _addr = socket.recv_fds(sock, 4, 512)
    if len(msg) < 4:
        raise LoadError("the compile child exited without an answer")
    size = struct.unpack("<I", msg)[0]
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return json.loads(data), list(fds)


def load(selected: list[Syscall], *, ringbuf_bytes: int, self_tgid: int,
         known_fds_max: int = 65536, open_filter_max: int = 4096,
         print_only: bool = False, want_text: bool = False, timeout: float = 120.0) -> Probe:
    """Compile and attach the probe for `selected` syscalls in a child process.

    Syscalls whose tracepoint does not exist on this kernel (built without them: they can only
    fail with ENOSYS) are served by the raw sys_enter hook, filtered by the spec table in the
    kernel, which costs every syscall a little.
    """
    if ringbuf_bytes < PAGE or ringbuf_bytes & (ringbuf_bytes - 1):
        raise LoadError(f"ring buffer size {ringbuf_bytes} must be a power of two >= {PAGE}")
    tracepoints, raw_needed, specs = [], [], []
    track_fds = any(sc.closes_fd for sc in selected)     # known_fds serves only close's filter
    for sc in selected:
        has_tp = has_tracepoint(sc.tracepoint)
        if has_tp:
            # close gets its own program, which asks known_fds before anything else
            tracepoints.append([sc.tracepoint, "sys_exit_closes_fd" if sc.closes_fd else "sys_exit"])
        else:
            raw_needed.append(sc.name)
        specs.append([sc.nr, syscalls.kernel_spec(sc, True, not has_tp, track_fds).hex()])
    req = {
        "macros": {"RINGBUF_PAGES": ringbuf_bytes // PAGE, "MAX_PREFIX": MAX_PREFIX,
                   "KNOWN_FDS_MAX": known_fds_max,
                   "OPEN_FILTER_MAX": open_filter_max},
        "config": {str(CFG_SELF_TGID): self_tgid},
        "specs": specs, "tracepoints": tracepoints, "raw_nrs": [syscalls.BY_NAME[n].nr for n in raw_needed],
        "print_only": print_only, "print": want_text,
    }
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    # The child's stderr (bcc's compiler and verifier messages) goes to a file: a pipe could fill
    # up while this process waits on the socket.
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen([sys.executable, "-m", "sensor.capture.compile", str(child.fileno())],
                                pass_fds=(child.fileno(),), stdout=subprocess.DEVNULL,
                                stderr=errfile, env=env)
        child.close()
        try:
            parent.settimeout(timeout)
            reply, fds = _request(parent, req)
        except (OSError, ValueError, LoadError) as e:
            proc.kill()
            proc.wait()
            raise LoadError(f"compiling the BPF probe failed: {e}; child said: "
                            f"{_tail(errfile) or '(nothing)'}") from e
        finally:
            parent.close()
        proc.wait(timeout=timeout)
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            detail = reply.get("error", "unknown error")
            log = _tail(errfile)
            if log:
                detail += "\n" + log
            raise LoadError(detail)
    if print_only:
        return Probe({}, [], [], {}, ringbuf_bytes, reply.get("cflags", []), reply.get("text"))
    names = reply["maps"]
    maps = dict(zip(names, fds[:len(names)], strict=True))
    probe = Probe(maps, fds[len(names):], reply["attached"], reply["failed"], ringbuf_bytes,
                  reply.get("cflags", []), reply.get("text"))
    if probe.failed:
        # A hook that did not attach is a blind spot nobody would notice: refuse to run with one.
        probe.close()
        what = "; ".join(f"{tp}: {why}" for tp, why in sorted(reply["failed"].items()))
        raise LoadError(f"{len(reply['failed'])} BPF attachment(s) failed: {what}")
    return probe


__all__ = ["COUNTERS", "LoadError", "Probe", "load", "syscalls"]
