"""The syscall source: live events from the eBPF capture, for the rules that are loaded.

The one module that imports sensor.capture. It turns configuration and a ruleset into what the
capture needs: the event types to attach (the rules' plus the base set for process and fd state),
and what each event type must look like for some rule to match it (the engine's kernel_filter),
which the capture tests in the kernel, so that events no rule can match never leave it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from sensor.errors import ConfigError, UnavailableError
from sensor.event import SyscallEvent
from sensor.sources.settings import SyscallSettings

log = logging.getLogger("falconet.capture")
MIN_RING = 64 * 1024
FLOOD_RULE = "Falconet internal: syscall event flood"


def predicates(settings: SyscallSettings, ruleset: Any) -> dict[str, Any] | None:
    """What each event type must look like for a rule to match it, as plain data (None: the
    kernel filter is off)."""
    if ruleset is None or not settings.kernel_filter:
        return None
    from sensor.engine.kernel_filter import derive, to_data

    return {t: to_data(p) for t, p in derive(ruleset).items()}


def describe(settings: SyscallSettings, ruleset: Any) -> list[str]:
    """What `falconet run --dry-run` prints about the syscall source: per syscall it would attach,
    what the kernel keeps. Needs neither root nor bcc."""
    from sensor.capture import kfilter, loader, syscalls

    types = ruleset.event_types("syscall") if ruleset is not None else None
    selected, _unknown = syscalls.select(types)
    skipped = []
    if not settings.capture_unimplemented:
        skipped = [s.name for s in selected if not loader.has_tracepoint(s.tracepoint)]
        selected = [s for s in selected if s.name not in skipped]
    on = settings.kernel_filter
    tables = kfilter.build(selected, predicates(settings, ruleset) or {}, enabled=on,
                           unfiltered=settings.unfiltered_syscalls)
    head = "Syscall kernel filter: " + ("on" if on else "off (every event reaches the rules)")
    lines = [head] + [f"  {line}" for line in _lines(tables)]
    return lines + [f"  {name}: not captured: this kernel has no tracepoint for it" for name in skipped]


def describe_tables(cap: Any) -> list[str]:
    return _lines(cap.tables)


def _lines(tables: Any) -> list[str]:
    out = []
    for name, terms in tables.described.items():
        if len(terms) == 1:
            out.append(f"{name}: {terms[0]}")
        else:
            out.append(f"{name}: any of")
            out += [f"    - {t}" for t in terms]
    return out




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

    def __init__(self, settings: SyscallSettings, ruleset: Any, *, all_events: bool = False) -> None:
        """`all_events`: hand out every event captured (for `falconet capture`), not only the
        types the rules match; the capture set is the same."""
        from sensor.capture.session import Capture, CaptureOptions

        types = ruleset.event_types("syscall") if ruleset is not None else None
        ring = settings.ring_buffer_size
        if ring < MIN_RING or ring & (ring - 1):
            raise ConfigError(f"{settings.origins('syscall.ring_buffer_size')}: syscall.ring_buffer_size "
                              f"must be a power of two of at least 64KiB, got {ring} bytes",
                              hint="e.g. 8MiB or 16MiB")
        emit = None
        if not all_events and types is not None:
            emit = frozenset(types)
        self.print_bpf = settings.print_bpf or os.environ.get("FALCONET_PRINT_BPF") == "1"
        self.capture = Capture(CaptureOptions(
            event_types=types, emit=emit, ringbuf_bytes=ring, batch=settings.batch,
            raw_hook=settings.capture_unimplemented, read_env=settings.read_env,
            runtime_sockets=settings.container_sockets, predicates=predicates(settings, ruleset),
            unfiltered=settings.unfiltered_syscalls, process_budget=settings.process_budget,
            cgroup_budget=settings.cgroup_budget, print_bpf=self.print_bpf))
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
                 "; kernel filter on" if cap.opts.predicates is not None else "; kernel filter off",
                 f"; without a tracepoint here (built without them, they can only fail with ENOSYS), "
                 f"served by the raw sys_enter hook: {', '.join(cap.raw_syscalls)}" if cap.raw_syscalls else "",
                 f"; rules name event types no syscall produces: {', '.join(self.unknown_types)}"
                 if self.unknown_types else "")
        if cap.skipped:
            log.warning("syscall capture: not capturing %s: this kernel was built without them (no "
                        "tracepoint; every call fails with ENOSYS). -o syscall.unimplemented_syscalls=capture "
                        "sees the attempts through the raw sys_enter hook, at a cost to every syscall",
                        ", ".join(cap.skipped))
        # `falconet run -v` shows these at start-up (and `--dry-run` always)
        for line in self.describe():
            log.debug("kernel keeps %s", line)
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

    def describe(self) -> list[str]:
        """Per syscall, what the kernel keeps of its events ("sendto: nothing: ...")."""
        return describe_tables(self.capture)

    def poll(self, timeout: float) -> list[SyscallEvent]:
        return self.capture.poll(timeout)

    def notices(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Internal alerts the source has for the runtime: (rule, priority, output, fields). One per
        process the kernel throttled since the last call: its records were over its budget while
        the ring filled, so that process, and only it, lost events."""
        out = []
        floods, self.capture.floods = self.capture.floods, []
        for fl in floods:
            fields = {**fl.fields, "n_drops": fl.dropped, "cgroup_id": fl.cgroup_id}
            who = f"{fl.comm} (pid {fl.pid}, uid {fl.uid}"
            if fl.fields.get("container.id") not in (None, "host"):
                who += f", container {fl.fields['container.id']}"
            out.append((FLOOD_RULE, "Warning",
                        f"{who}) flooded the syscall capture: {fl.dropped} of its events were dropped so "
                        "that other processes' events still reach the rules", fields))
        return out

    def stop(self) -> None:
        self.capture.stop()

    def stats(self) -> dict[str, int]:
        """events; drops (what the kernel could not hand over: drops_ring, the ring buffer was
        full, per CPU in drops_cpuN; drops_regs, arguments unreadable); unread (left in the ring
        at stop); filtered; and the capture's other counters. Still answered after stop()."""
        out: dict[str, Any] = self.capture.stats()
        per_cpu: list[int] | None = out.pop("drops_by_cpu", None)      # the capture's final counts
        if per_cpu is None:
            per_cpu = self.capture.kernel_counters().get("drops", [])
        for cpu, n in enumerate(per_cpu):
            if n:
                out[f"drops_cpu{cpu}"] = n
        return out

    @property
    def attached(self) -> list[str]:
        return self.capture.probe.attached if self.capture.probe is not None else []


def cgroup_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (for `falconet generate`, which cannot import capture)."""
    from sensor.capture.containers import cgroup2_root

    return cgroup2_root()


def has_tracepoint(syscall: str) -> bool:
    """Whether this kernel has the syscall's exit tracepoint (for `falconet generate`)."""
    from sensor.capture import loader, syscalls

    return loader.has_tracepoint(syscalls.BY_NAME[syscall].tracepoint)
