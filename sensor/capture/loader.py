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

from sensor.capture import bpfsys, kfilter, syscalls
from sensor.capture.syscalls import Syscall

# probe.bpf.c CFG_* and C_* indexes
CFG_SELF_TGID, CFG_KFILTER, CFG_PRESSURE, CFG_STATE_LIMIT = 0, 1, 2, 3
CFG_PROC_BUDGET, CFG_CG_BUDGET, CFG_WINDOW_NS, CFG_CONSUMED = 4, 5, 6, 8
COUNTERS = ("drops", "str_faults", "regs_faults", "records", "filtered", "state_drops", "throttled",
            "state_records", "tail_faults")
MAX_PREFIX = kfilter.MAX_PREFIX
PAGE = os.sysconf("SC_PAGE_SIZE")
WINDOW_NS = 100_000_000            # budgets are counted per 100 ms
SIZES = {"KF_TERMS_MAX": 1024, "COMM_MAX": 8192, "HOST_CGROUPS_MAX": 16384, "PATH_TRIE_MAX": 8192,
         "DFA_STATES": kfilter.DFA_STATES, "NET_MAX": 1024, "PORT_SETS": kfilter.PORT_SETS}


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
    raw: frozenset[str] = frozenset()     # syscalls served by the raw sys_enter hook

    def counters(self) -> dict[str, list[int]]:
        """The probe's per-CPU counters by name (drops, str_faults, ...)."""
        fd = self.maps["counters"]
        return {name: bpfsys.percpu_u64(fd, i) for i, name in enumerate(COUNTERS)}

    def set_config(self, index: int, value: int) -> None:
        bpfsys.update(self.maps["config"], struct.pack("<I", index), struct.pack("<Q", value))

    def forget_fd(self, tgid: int, fd: int) -> None:
        """Tell the kernel a descriptor is gone without a close (exec's O_CLOEXEC)."""
        bpfsys.delete(self.maps["known_fds"], struct.pack("<Q", (tgid << 32) | (fd & 0xFFFFFFFF)))

    def set_kernel_filter(self, tables: kfilter.Tables, selected: list[Syscall], track_fds: bool) -> None:
        """Fill the filter's maps, then point each syscall's spec row at its terms and turn the
        filter on. Until then every event passes."""
        maps = self.maps
        for i, row in enumerate(tables.terms):
            bpfsys.update(maps["kterms"], struct.pack("<I", i), row)
        for comm, bits in tables.comm_entries().items():
            bpfsys.update(maps["comm_sets"], comm, struct.pack("<Q", bits))
        entries = tables.path_entries()
        for key, bits in entries.items():
            bpfsys.update(maps["path_trie"], struct.pack("<I", len(key) * 8) + key.ljust(MAX_PREFIX, b"\0"),
                          struct.pack("<Q", bits))
        for c1, second in enumerate(first_two_table(list(entries))):
            bpfsys.update(maps["path_first2"], struct.pack("<I", c1), struct.pack("<4Q", *second))
        rows, any_bits, end_bits = tables.dfa()
        if len(rows) > 1:
            for state, (nxt, a, e) in enumerate(zip(rows, any_bits, end_bits, strict=True)):
                bpfsys.update(maps["dfa"], struct.pack("<I", state), struct.pack("<256H2Q", *nxt, a, e))
        for (version, addr, prefix), bits in tables.net_entries().items():
            key = struct.pack("<IB16s3x", 8 + prefix, version, addr)
            bpfsys.update(maps["net_trie"], key, struct.pack("<Q", bits))
        for index, words in tables.port_bitmaps():
            for w, word in enumerate(words):
                if word:
                    bpfsys.update(maps["port_sets"], struct.pack("<I", index * 1024 + w), struct.pack("<Q", word))
        for sc in selected:
            row = syscalls.kernel_spec(sc, True, sc.name in self.raw, track_fds, tables.specs.get(sc.name))
            bpfsys.update(maps["specs"], struct.pack("<I", sc.nr), row)
        self.set_config(CFG_KFILTER, 1)

    def mark_host_cgroup(self, cgroup_id: int) -> None:
        """Tell the probe a cgroup is the host's (container.id = host) for good."""
        try:
            bpfsys.update(self.maps["host_cgroups"], struct.pack("<Q", cgroup_id), b"\1")
        except OSError:            # the map is full: the probe then treats it as unknown, which is safe
            pass

    def flooders(self) -> dict[int, tuple[int, int, int, str]]:
        """Processes over their budget: tgid -> (records dropped, cgroup id, uid, comm); emptied."""
        out = {}
        fd = self.maps["flooders"]
        for key in bpfsys.keys(fd, 4):
            raw = bpfsys.lookup(fd, key, 40)
            bpfsys.delete(fd, key)
            if raw is None:
                continue
            dropped, cgroup, uid, _pad, comm = struct.unpack("<QQII16s", raw)
            out[struct.unpack("<I", key)[0]] = (dropped, cgroup, uid, comm.split(b"\0", 1)[0].decode(errors="replace"))
        return out

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


def first_two_table(keys: list[bytes]) -> list[list[int]]:
    """The probe's `path_first2` rows: for each second character of a string (the first after a
    path's '/'), the 256-bit set of third characters with which some trie key could match.

    A key of one byte can match any string; a key of two any string with that second character; a
    longer key only strings that have its own second and third characters.
    """
    rows = [[0] * 4 for _ in range(256)]
    every = (1 << 64) - 1
    for data in keys:
        firsts = range(256) if len(data) < 2 else (data[1],)
        for c1 in firsts:
            if len(data) < 3:
                rows[c1] = [every] * 4
            else:
                rows[c1][data[2] >> 6] |= 1 << (data[2] & 63)
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
         known_fds_max: int = 65536, process_budget: int = 20_000, cgroup_budget: int = 50_000,
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
    per_window = 1_000_000_000 // WINDOW_NS
    req = {
        "macros": {"RINGBUF_PAGES": ringbuf_bytes // PAGE, "MAX_PREFIX": MAX_PREFIX,
                   "KNOWN_FDS_MAX": known_fds_max, **SIZES},
        "config": {str(CFG_SELF_TGID): self_tgid,
                   # budgets start when half the ring is waiting (a busy but honest process rides out
                   # the reader's pauses below that); state-only records stop at three quarters
                   str(CFG_PRESSURE): ringbuf_bytes // 2, str(CFG_STATE_LIMIT): ringbuf_bytes * 3 // 4,
                   str(CFG_PROC_BUDGET): max(1, process_budget // per_window),
                   str(CFG_CG_BUDGET): max(1, cgroup_budget // per_window), str(CFG_WINDOW_NS): WINDOW_NS},
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
                  reply.get("cflags", []), reply.get("text"), frozenset(raw_needed))
    if probe.failed:
        # A hook that did not attach is a blind spot nobody would notice: refuse to run with one.
        probe.close()
        what = "; ".join(f"{tp}: {why}" for tp, why in sorted(reply["failed"].items()))
        raise LoadError(f"{len(reply['failed'])} BPF attachment(s) failed: {what}")
    return probe


__all__ = ["COUNTERS", "LoadError", "Probe", "load", "syscalls"]
