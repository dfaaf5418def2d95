"""The syscall source: live events from the eBPF capture, for the rules that are loaded.

The one module that imports sensor.capture. It turns configuration and a ruleset into what the
capture needs: the event types to attach (the rules' plus the base set for process and fd state),
and an in-kernel open filter derived from the rules' conditions, so that opens no rule can match
never leave the kernel.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from sensor.config import Config, Key, parse_size
from sensor.errors import ConfigError, UnavailableError
from sensor.event import SyscallEvent

CONFIG_KEYS: tuple[Key, ...] = (
    Key("syscall.ring_buffer_size", str, "16MiB",
        "Kernel ring buffer for syscall events (a power of two, at least 64KiB). Records that do "
        "not fit are dropped in the kernel, counted per CPU and reported as event drops.",
        check=parse_size),
    Key("syscall.batch", int, 4096, "Most records read from the ring buffer per poll."),
    Key("syscall.read_env", bool, True,
        "Read each program's environment at exec (proc.env); false saves memory and time."),
    Key("syscall.open_filter", bool, True,
        "Drop in the kernel the opens no loaded rule can match (judged by path and access mode "
        "from the rules' conditions); directories are always kept for cwd tracking."),
    Key("syscall.unimplemented_syscalls", str, "skip",
        "Syscalls the rules name that this kernel was built without (no tracepoint; they can only "
        "fail with ENOSYS, e.g. init_module without module support): skip them (a warning at "
        "start-up names them), or capture the attempts through the raw sys_enter hook, which every "
        "syscall then passes through (about 10% on a syscall-heavy load such as redis).",
        choices=("capture", "skip")),
    Key("syscall.container_sockets", list, ["/var/run/docker.sock", "/run/podman/podman.sock",
                                            "/var/run/crio/crio.sock"],
        "Container runtime API sockets asked for a container's name, image, pod, privileged flag "
        "and mounts: Docker's Engine API (Podman serves it too), or CRI-O's inspect API on a socket "
        "named crio.sock.", items=str),
    Key("syscall.print_bpf", bool, False,
        "Log the final BPF program text and its -D flags when the capture starts "
        "(also: FALCONET_PRINT_BPF=1)."),
)

OPEN_TYPES = ("open", "openat", "openat2")
log = logging.getLogger("falconet.capture")
MIN_RING = 64 * 1024


def preflight() -> str | None:
    """Why live capture cannot start on this machine, with the fix; None when it can."""
    if os.geteuid() != 0:
        return ("live syscall capture needs root (BPF, PERFMON and SYS_RESOURCE capabilities); "
                "run as root, or use -o syscall.enabled=false for the other sources")
    if importlib.util.find_spec("bcc") is None:
        return ("bcc's Python module is not importable; install python3-bpfcc and link it into the "
                "virtual environment (scripts/setup.sh does both)")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return ("the kernel has no BTF (/sys/kernel/btf/vmlinux); a kernel built with "
                "CONFIG_DEBUG_INFO_BTF=y is needed")
    if not any(Path(p, "events", "syscalls").is_dir() for p in ("/sys/kernel/tracing",
                                                               "/sys/kernel/debug/tracing")):
        return "tracefs is not mounted; run: mount -t tracefs tracefs /sys/kernel/tracing"
    # bcc reads BCC_KERNEL_SOURCE before /lib/modules (the sensor image carries its own headers).
    headers = os.environ.get("BCC_KERNEL_SOURCE") or f"/lib/modules/{os.uname().release}/build"
    if not Path(headers).exists():
        return (f"no kernel headers at {headers} (bcc needs some); "
                "scripts/setup.sh installs and links them")
    return None


class SyscallSource:
    """Implements the Source protocol (sensor/sources/__init__.py) for live syscall events."""

    name = "syscall"
    source = "syscall"

    def __init__(self, cfg: Config, ruleset: Any, *, all_events: bool = False) -> None:
        """`all_events`: hand out every event captured (for `falconet capture`), not only the
        types the rules match; the capture set is the same."""
        from sensor.capture.session import Capture, CaptureOptions

        types = ruleset.event_types("syscall") if ruleset is not None else None
        ring = cfg.size("syscall.ring_buffer_size")
        if ring < MIN_RING or ring & (ring - 1):
            raise ConfigError(f"{cfg.origin('syscall.ring_buffer_size')}: syscall.ring_buffer_size "
                              f"must be a power of two of at least 64KiB, got {ring} bytes",
                              hint="e.g. 8MiB or 16MiB")
        emit = None
        if not all_events and types is not None:
            emit = frozenset(types)
        open_filter = None
        if cfg.get("syscall.open_filter", True) and ruleset is not None:
            open_filter = open_filter_from_rules(ruleset)
        self.print_bpf = bool(cfg.get("syscall.print_bpf")) or os.environ.get("FALCONET_PRINT_BPF") == "1"
        self.capture = Capture(CaptureOptions(
            event_types=types, emit=emit, ringbuf_bytes=ring, batch=int(cfg.get("syscall.batch", 4096)),
            raw_hook=cfg.get("syscall.unimplemented_syscalls", "skip") == "capture",
            read_env=bool(cfg.get("syscall.read_env", True)),
            runtime_sockets=tuple(cfg.get("syscall.container_sockets", ())),
            open_filter=open_filter, print_bpf=self.print_bpf))
        self.unknown_types = self.capture.unknown_types
        self.finished = False
        self._started = False

    def start(self) -> None:
        """Attach the probe; UnavailableError says what is missing and how to get it."""
        why = preflight()
        if why:
            raise UnavailableError(why)
        from sensor.capture.loader import LoadError

        try:
            self.capture.start()
        except LoadError as e:
            raise UnavailableError(f"the eBPF probe could not be loaded: {e}",
                                   hint="FALCONET_PRINT_BPF=1 prints the program") from e
        self._started = True
        cap = self.capture
        log.info("syscall capture attached: %d syscalls, %d processes read from /proc%s%s%s",
                 len(cap.selected), len(cap.table),
                 "; in-kernel open filter on" if cap.opts.open_filter is not None else "",
                 f"; without a tracepoint here (built without them, they can only fail with ENOSYS), "
                 f"served by the raw sys_enter hook: {', '.join(cap.raw_syscalls)}" if cap.raw_syscalls else "",
                 f"; rules name event types no syscall produces: {', '.join(self.unknown_types)}"
                 if self.unknown_types else "")
        if cap.skipped:
            log.warning("syscall capture: not capturing %s: this kernel was built without them (no "
                        "tracepoint; every call fails with ENOSYS). -o syscall.unimplemented_syscalls=capture "
                        "sees the attempts through the raw sys_enter hook, at a cost to every syscall",
                        ", ".join(cap.skipped))
        if self.print_bpf and cap.bpf_text:
            log.info("BPF program:\n%s", self.bpf_program())

    def bpf_program(self) -> str:
        """The final BPF program text with its -D flags (compiled in a child; needs BTF, not root)."""
        from sensor.capture import loader

        if self.capture.bpf_text is not None and self.capture.probe is not None:
            flags = self.capture.probe.cflags
            return "// cflags: " + " ".join(flags) + "\n" + self.capture.bpf_text
        probe = loader.load(self.capture.selected, ringbuf_bytes=self.capture.opts.ringbuf_bytes,
                            self_tgid=0, print_only=True)
        return "// cflags: " + " ".join(probe.cflags) + "\n" + (probe.text or "")

    def poll(self, timeout: float) -> list[SyscallEvent]:
        return self.capture.poll(timeout)

    def stop(self) -> None:
        self.capture.stop()

    def stats(self) -> dict[str, int]:
        """events; drops (what the kernel could not hand over: drops_ring, the ring buffer was
        full, per CPU in drops_cpuN; drops_regs, arguments unreadable); unread (left in the ring
        at stop); filtered; and the capture's other counters. Still answered after stop()."""
        out = self.capture.stats()
        per_cpu = out.pop("drops_by_cpu", None)
        if per_cpu is None:
            per_cpu = self.capture.kernel_counters().get("drops", [])
        for cpu, n in enumerate(per_cpu):         # type: ignore[arg-type]
            if n:
                out[f"drops_cpu{cpu}"] = n
        return out

    @property
    def attached(self) -> list[str]:
        return self.capture.probe.attached if self.capture.probe is not None else []


# ---------------------------------------------------------------------------------------------
# The in-kernel open filter: which (path, access mode) an open must have for some rule to match.
# ---------------------------------------------------------------------------------------------

# Access classes, one bit per O_ACCMODE value (the probe tests bit `flags & 3`).
RDONLY, WRONLY, RDWR, BADACC = 1, 2, 4, 8
ALL_CLASSES = RDONLY | WRONLY | RDWR | BADACC
READ_CLASSES = RDONLY | RDWR
WRITE_CLASSES = WRONLY | RDWR
MAX_TERMS = 256
MAX_PATH = 126           # the probe's MAX_PREFIX - 2

Entry = tuple[str, bool]              # (path, is_prefix)
Term = tuple[frozenset[Entry] | None, int]   # (paths or None for any path, access classes)


def open_filter_from_rules(ruleset: Any) -> dict[tuple[bytes, bool], int] | None:
    """The probe's open filter for these rules: {(path, is_prefix): access classes}.

    Sound by construction: for every enabled rule that can match an open-family event, each
    condition it needs is turned into a necessary condition on fd.name and the access mode, and
    anything not understood means "any path". None when no filter can help (a rule matches opens
    of any path in every access mode).
    """
    from sensor.engine import passes

    terms: list[Term] = []
    for t in OPEN_TYPES:
        for i in ruleset.candidates("syscall", t):
            node = passes.specialize(ruleset.rules[i].node, t)
            terms.extend(_necessary(node))
            if len(terms) > MAX_TERMS * 4:
                return None
    out: dict[tuple[bytes, bool], int] = {}
    for paths, classes in terms:
        if paths is None:
            if classes == ALL_CLASSES:
                return None
            paths = frozenset({("/", True)})
        for path, is_prefix in paths:
            key = (path.encode(), is_prefix)
            out[key] = out.get(key, 0) | classes
    return out


def _necessary(node: Any) -> list[Term]:
    """Terms whose union holds whenever `node` holds (an over-approximation, never an under)."""
    from sensor.engine import ast

    if isinstance(node, ast.Const):
        return [(None, ALL_CLASSES)] if node.value else []
    if isinstance(node, ast.Or):
        out: list[Term] = []
        for item in node.items:
            out.extend(_necessary(item))
            if len(out) > MAX_TERMS:
                return [(None, ALL_CLASSES)]
        return out
    if isinstance(node, ast.And):
        acc: list[Term] = [(None, ALL_CLASSES)]
        for item in node.items:
            acc = [(_meet(p1, p2), c1 & c2) for p1, c1 in acc for p2, c2 in _necessary(item) if c1 & c2]
            if len(acc) > MAX_TERMS:
                return [(None, ALL_CLASSES)]
        return acc
    if isinstance(node, ast.Not):
        inner = node.item
        if isinstance(inner, ast.BinaryCheck):
            classes = _access_classes(inner)
            if classes is not None:
                return [(None, ALL_CLASSES & ~classes)] if ALL_CLASSES & ~classes else []
        return [(None, ALL_CLASSES)]
    if isinstance(node, ast.BinaryCheck):
        classes = _access_classes(node)
        if classes is not None:
            return [(None, classes)] if classes else []
        paths = _paths(node)
        return [(paths, ALL_CLASSES)]
    return [(None, ALL_CLASSES)]


def _meet(a: frozenset[Entry] | None, b: frozenset[Entry] | None) -> frozenset[Entry] | None:
    # Either side alone is a necessary condition; keep the narrower one.
    if a is None:
        return b
    if b is None:
        return a
    return a if len(a) <= len(b) else b


def _access_classes(node: Any) -> int | None:
    """Access classes an `evt.is_open_read/write = true|false` check allows; None for other checks."""
    from sensor.engine import ast

    f = ast.field_of(node.left)
    if f is None or f.name not in ("evt.is_open_read", "evt.is_open_write") or node.left is not f:
        return None
    if node.op not in ("=", "==", "!=") or not isinstance(node.right, ast.Value):
        return None
    truth = node.right.text.lower() in ("true", "1")
    if node.op == "!=":
        truth = not truth
    classes = READ_CLASSES if f.name == "evt.is_open_read" else WRITE_CLASSES
    return classes if truth else ALL_CLASSES & ~classes


def _paths(node: Any) -> frozenset[Entry] | None:
    """The fd.name values (exact or prefix) a check on fd.name/fd.directory allows; None: any."""
    from sensor.engine import ast

    f = node.left
    if not isinstance(f, ast.FieldRef) or f.arg is not None or f.name not in ("fd.name", "fd.directory"):
        return None
    right = node.right
    if isinstance(right, ast.Value):
        values: tuple[str, ...] = (right.text,)
    elif isinstance(right, ast.ListValue):
        values = right.items
    else:
        return None
    op = node.op
    out: set[Entry] = set()
    for v in values:
        if not v.startswith("/") or len(v) > MAX_PATH:
            return None
        if f.name == "fd.name":
            if op in ("=", "==", "in"):
                out.add((v, False))
            elif op == "startswith":
                out.add((v, True))
            elif op == "pmatch":
                out.add((v, False))
                out.add((v.rstrip("/") + "/", True))
            elif op == "glob":
                literal = _glob_literal(v)
                if not literal:
                    return None
                out.add((literal, True))
            else:
                return None
        else:                                   # fd.directory: the file's parent, or the dir itself
            if op in ("=", "==", "in"):
                out.add((v, False))
                out.add((v.rstrip("/") + "/", True))
            elif op in ("startswith", "pmatch"):
                out.add((v, True))
            else:
                return None
    return frozenset(out)


def _glob_literal(pattern: str) -> str:
    for i, ch in enumerate(pattern):
        if ch in "*?[\\":
            return pattern[:i]
    return pattern


def cgroup_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (for `falconet generate`, which cannot import capture)."""
    from sensor.capture.containers import cgroup2_root

    return cgroup2_root()


def has_tracepoint(syscall: str) -> bool:
    """Whether this kernel has the syscall's exit tracepoint (for `falconet generate`)."""
    from sensor.capture import loader, syscalls

    return loader.has_tracepoint(syscalls.BY_NAME[syscall].tracepoint)
