"""What the event sources can be told: the syscall source's keys, its SyscallSettings, and
SourceSettings, the settings of every source.

The syscall source's switch (`syscall.enabled`) is a top-level key (sensor/settings.py); the
audit sources' keys and K8sAuditSettings are in sensor/sources/k8s_audit/settings.py.

Light on purpose: sensor/config.py reads the keys through these modules, so nothing here imports
the capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sensor.config_keys import Key, Origins, parse_size
from sensor.sources.k8s_audit.settings import K8sAuditSettings
from sensor.syscalls import BY_NAME

if TYPE_CHECKING:
    from sensor.config import Config

def _known_syscalls(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in BY_NAME or BY_NAME[n].nr is None]
    if unknown:
        raise ValueError(f"not syscalls the capture knows: {', '.join(unknown)}")
    return names


def _positive(v: int) -> int:
    if v <= 0:
        raise ValueError("must be a positive number")
    return v


SYSCALL_KEYS: tuple[Key, ...] = (
    Key("syscall.ring_buffer_size", str, "16MiB",
        "Kernel ring buffer for syscall events (a power of two, at least 64KiB). Records that do "
        "not fit are dropped in the kernel, counted per CPU and reported as event drops.",
        check=parse_size),
    Key("syscall.batch", int, 4096, "Most records read from the ring buffer per poll."),
    Key("syscall.read_env", bool, True,
        "Read each program's environment at exec (proc.env); false saves memory and time."),
    Key("syscall.kernel_filter", bool, True,
        "Drop in the kernel the events no loaded rule can match, judged from the rules' conditions "
        "by what the probe can read (result, open flags, euid, process name, host or container, "
        "the fd's type, protocol, addresses and ports, paths); events the process and fd state "
        "need are kept. false sends every event of every attached syscall to the rules."),
    Key("syscall.unfiltered_syscalls", list, [],
        "Syscalls whose every event reaches the rules even with the kernel filter on (e.g. "
        "[connect, sendto]).", items=str, check=_known_syscalls),
    Key("syscall.process_budget", int, 20000,
        "Records per second one process may add to the ring buffer once half of it is "
        "waiting; what is over is dropped, counted, and reported in an alert that names the "
        "process, so that one process cannot blind the sensor to the others.", check=_positive),
    Key("syscall.cgroup_budget", int, 50000,
        "The same budget for all processes of one cgroup (container) together.", check=_positive),
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


@dataclass(frozen=True, slots=True)
class SyscallSettings:
    """`syscall.*`, sizes in bytes. `capture_unimplemented`: syscalls without a tracepoint here
    are captured through the raw sys_enter hook (unimplemented_syscalls: capture)."""

    enabled: bool = True
    ring_buffer_size: int = 16 * 1024 * 1024
    batch: int = 4096
    read_env: bool = True
    kernel_filter: bool = True
    unfiltered_syscalls: tuple[str, ...] = ()
    process_budget: int = 20000
    cgroup_budget: int = 50000
    capture_unimplemented: bool = False
    container_sockets: tuple[str, ...] = ()
    print_bpf: bool = False
    origins: Origins = field(default=Origins(), compare=False, repr=False)

    @classmethod
    def from_config(cls, cfg: Config) -> SyscallSettings:
        return cls(enabled=bool(cfg.get("syscall.enabled")), ring_buffer_size=cfg.size("syscall.ring_buffer_size"),
                   batch=int(cfg.get("syscall.batch")), read_env=bool(cfg.get("syscall.read_env")),
                   kernel_filter=bool(cfg.get("syscall.kernel_filter")),
                   unfiltered_syscalls=tuple(cfg.get("syscall.unfiltered_syscalls") or ()),
                   process_budget=int(cfg.get("syscall.process_budget")),
                   cgroup_budget=int(cfg.get("syscall.cgroup_budget")),
                   capture_unimplemented=cfg.get("syscall.unimplemented_syscalls") == "capture",
                   container_sockets=tuple(cfg.get("syscall.container_sockets") or ()),
                   print_bpf=bool(cfg.get("syscall.print_bpf")), origins=cfg.origins)


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Every source's settings; a reload starts the sources again exactly when these differ (or
    when the rules need other syscalls)."""

    syscall: SyscallSettings
    k8s_audit: K8sAuditSettings

    @classmethod
    def from_config(cls, cfg: Config) -> SourceSettings:
        """Raises ConfigError naming the key of a value a source cannot use."""
        return cls(syscall=SyscallSettings.from_config(cfg), k8s_audit=K8sAuditSettings.from_config(cfg))

    def enabled(self) -> list[str]:
        """The event sources these settings turn on."""
        return [name for name, on in (("syscall", self.syscall.enabled), ("k8s_audit", self.k8s_audit.enabled))
                if on]

    def planned(self) -> list[str]:
        """What `falconet run --dry-run` says it would start, one line per source."""
        out = ["syscall (eBPF)"] if self.syscall.enabled else []
        hook = self.k8s_audit.webhook
        if hook is not None:
            out.append(f"k8s_audit webhook on {hook.listen}")
        out += [f"k8s_audit file {f}" for f in self.k8s_audit.files]
        return out
