"""One live capture: the probe, the ring reader, the process table and the decoder, together.

`Capture.start()` attaches (in a child, see loader.py), then reads /proc, so that nothing started
between the two is missed; `poll()` drains the ring buffer in batches; `stats()` reads the
kernel's per-CPU counters. Nothing here knows about rules or configuration files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from sensor.capture import accounts, kfilter, loader, syscalls
from sensor.capture.containers import ContainerResolver
from sensor.capture.decoder import Decoder
from sensor.capture.procstate import ProcessTable
from sensor.capture.ring import RingReader
from sensor.event import HOST, Process, SyscallEvent


@dataclass
class CaptureOptions:
    """What to capture and how much memory to give it."""

    event_types: frozenset[str] | None          # evt.types the rules need; None: every known one
    emit: frozenset[str] | None = None          # evt.types to hand out; None: all captured
    ringbuf_bytes: int = 16 << 20
    batch: int = 4096                            # records per poll at most
    tick_s: float = 0.01                         # how often an idle poll looks at the ring
    read_env: bool = True
    runtime_sockets: tuple[str, ...] = ("/var/run/docker.sock", "/run/podman/podman.sock",
                                        "/var/run/crio/crio.sock")
    # what the rules can match, per event type (sensor/engine/kernel_filter.py's plain data);
    # None: every event of every attached syscall reaches user space
    predicates: dict[str, kfilter.Data] | None = None
    unfiltered: tuple[str, ...] = ()             # syscalls whose every event reaches user space
    process_budget: int = 20_000                 # records/s one process may add to a filling ring
    cgroup_budget: int = 50_000                  # ... one cgroup
    ignore_self: bool = True
    raw_hook: bool = False                       # syscalls without a tracepoint: via raw sys_enter
    print_bpf: bool = False


@dataclass
class Flood:
    """A process whose records the kernel dropped for being over its budget while the ring filled."""

    pid: int
    comm: str
    uid: int
    cgroup_id: int
    dropped: int                                 # since the last report
    fields: dict[str, Any] = field(default_factory=dict)   # what the process table knows of it


class Capture:
    """Live syscall events from the kernel, decoded into `SyscallEvent`s."""

    def __init__(self, opts: CaptureOptions) -> None:
        self.opts = opts
        Process.accounts = accounts.account          # user.name and the like, from the files the process sees
        selected, self.unknown_types = syscalls.select(opts.event_types)
        if not opts.raw_hook:
            self.skipped = [s.name for s in selected if not loader.has_tracepoint(s.tracepoint)]
            selected = [s for s in selected if s.name not in self.skipped]
        else:
            self.skipped = []
        self.tables = kfilter.build(selected, opts.predicates or {}, enabled=opts.predicates is not None,
                                    unfiltered=opts.unfiltered)
        # a syscall no rule can match and no state needs is not attached at all
        self.selected = [s for s in selected if s.name not in self.tables.detached]
        self.probe: loader.Probe | None = None
        self.ring: RingReader | None = None
        self.table = ProcessTable(ContainerResolver(opts.runtime_sockets), read_env=opts.read_env)
        # The kernel remembers the fds user space knows only for close's filter.
        tracks_fds = any(s.closes_fd for s in selected)
        self.decoder = Decoder(self.table, opts.emit, on_cloexec=self._cloexec if tracks_fds else None,
                               on_host_cgroup=self._host_cgroup)
        self.bpf_text: str | None = None
        self.floods: list[Flood] = []              # processes over their budget, for the source to report
        self._next_flood_check = 0.0
        self._final: dict[str, int] | None = None      # stats as they were when stopped

    @property
    def raw_syscalls(self) -> list[str]:
        """Syscalls the rules need that have no tracepoint here (served by raw sys_enter)."""
        if self.probe is None:
            return []
        return [s.name for s in self.selected if f"syscalls:sys_exit_{s.tracepoint}" not in self.probe.attached]

    def start(self) -> None:
        """Attach the probe, read /proc, and start reading. Raises loader.LoadError."""
        self.probe = loader.load(self.selected, ringbuf_bytes=self.opts.ringbuf_bytes,
                                 self_tgid=os.getpid() if self.opts.ignore_self else 0,
                                 process_budget=self.opts.process_budget, cgroup_budget=self.opts.cgroup_budget,
                                 want_text=self.opts.print_bpf)
        self.bpf_text = self.probe.text
        try:
            if self.opts.predicates is not None:
                self.probe.set_kernel_filter(self.tables, self.selected, any(s.closes_fd for s in self.selected))
            self.ring = RingReader(self.probe.maps["events"], self.opts.ringbuf_bytes)
            self.table.bootstrap()
            for p in list(self.table):
                if p.container is HOST:
                    self._host_cgroup(p.cgroup_id)
        except BaseException:
            self.probe.close()
            self.probe = None
            raise

    def poll(self, timeout: float) -> list[SyscallEvent]:
        """Events decoded from the ring, waiting up to `timeout` seconds for the first record."""
        ring = self.ring
        if ring is None:
            return []
        deadline = time.monotonic() + timeout
        while not ring.pending():
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            # The probe never wakes us (BPF_RB_NO_WAKEUP): look again after a short tick.
            time.sleep(min(self.opts.tick_s, left))
        dec = self.decoder
        dec.events = []
        ring.consume(dec.handle, self.opts.batch)
        if self.probe is not None:
            # how far the ring is read: with what it wrote, the probe knows how full the ring is
            self.probe.set_config(loader.CFG_CONSUMED, ring.consumed())
        if time.monotonic() >= self._next_flood_check:
            self._collect_floods()
        return dec.events

    def _collect_floods(self) -> None:
        self._next_flood_check = time.monotonic() + 1.0
        if self.probe is None:
            return
        for pid, (dropped, cgroup, uid, comm) in self.probe.flooders().items():
            p = self.table.procs.get(pid)
            fields: dict[str, Any] = {"proc.pid": pid, "proc.name": comm, "user.uid": uid}
            if p is not None:
                fields.update({"proc.exepath": p.exepath, "proc.cmdline": " ".join([p.name, *p.args]),
                               "proc.ppid": p.ppid, "container.id": p.container.id})
            self.floods.append(Flood(pid, comm, uid, cgroup, dropped, fields))

    def _host_cgroup(self, cgroup_id: int) -> None:
        if self.probe is not None and cgroup_id:
            self.probe.mark_host_cgroup(cgroup_id)

    def _cloexec(self, tgid: int, fds: list[int]) -> None:
        if self.probe is not None:
            for fd in fds:
                self.probe.forget_fd(tgid, fd)

    def kernel_counters(self) -> dict[str, list[int]]:
        """The probe's per-CPU counters (drops, records, ...); empty when not attached."""
        return self.probe.counters() if self.probe is not None else {}

    def stats(self) -> dict[str, int]:
        """events handed out, records read, drops (ring buffer full, counted in the kernel),
        unread (records still in the ring when the capture stopped), and the probe's counters."""
        if self._final is not None:
            return dict(self._final)
        counters = {k: sum(v) for k, v in self.kernel_counters().items()}
        ring, regs = counters.get("drops", 0), counters.get("regs_faults", 0)
        state, throttled = counters.get("state_drops", 0), counters.get("throttled", 0)
        tail = counters.get("tail_faults", 0)
        return {
            "events": self.decoder.num,
            "records": self.decoder.records,
            # every syscall the kernel saw and could not hand over: the ring buffer had no room,
            # its arguments could not be read, a process or cgroup was over its budget, the ring
            # was too full for a record only the state needed, or a stage of the probe failed
            "drops": ring + regs + state + throttled + tail,
            "drops_ring": ring,
            "drops_regs": regs,
            "drops_budget": throttled,
            "drops_state": state,
            "drops_stage": tail,
            "kernel_records": counters.get("records", 0),
            "state_records": counters.get("state_records", 0),
            "filtered": counters.get("filtered", 0),
            "str_faults": counters.get("str_faults", 0),
            "decode_errors": self.decoder.decode_errors,
            "processes": len(self.table),
            "pending_bytes": self.ring.pending() if self.ring is not None else 0,
            "unread": 0,
        }

    def stop(self) -> None:
        """Detach, then count what the kernel wrote that nobody will read; keep the last counters."""
        if self.probe is not None and self._final is None:
            self.probe.close_attachments()
            final = self.stats()
            if self.ring is not None:
                final["unread"] = self.ring.consume(lambda _v, _o, _n: True, 1 << 62)
            final["drops_by_cpu"] = self.kernel_counters().get("drops", [])  # type: ignore[assignment]
            self._final = final
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.probe is not None:
            self.probe.close()
            self.probe = None
