"""The event types that cross the seam between sources and the engine (alerts: sensor/alert.py).

An event answers `value(field, arg)` with the value of a Falco field, or None when it has none
(absent and null mean the same, and make every comparison on the field false). Three kinds:

- `RecordedEvent`: a replayed line of `falconet capture`; answers from its recorded dict.
- `SyscallEvent`: a live event from the eBPF capture; its values are computed by the field
  registry's extractors (sensor/engine/fields/) from the capture state below, which the capture
  fills: `Process` (the process table), `Fd` (per-process file descriptors), `Container`.
- `AuditEvent`: a Kubernetes audit event (webhook, log file or replay); the `ka.*`/`jevt.*`
  extractors read its JSON object.

Extractors are bound per event class (`extractors`, filled by sensor.engine.fields when the engine is
imported) so the engine never needs to know which kind of event it is evaluating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

Extractor = Any  # Callable[[event, str | None], Any]; Any keeps this module free of typing cycles


class Event(Protocol):
    """What the engine reads. `type` is evt.type; `num` a per-source sequence number."""

    source: str
    type: str
    time_ns: int
    num: int

    def value(self, field: str, arg: str | None = None) -> Any: ...


def field_key(field: str, arg: str | None) -> str:
    """The key a recorded line uses for a field reference: `proc.aname[2]`, `evt.arg.flags`."""
    if arg is None:
        return field
    if field in ("evt.arg", "evt.rawarg") and not arg.isdigit():
        return f"{field}.{arg}"
    return f"{field}[{arg}]"


_ANCESTOR_LISTS = frozenset({"proc.aname", "proc.apid", "proc.aexe", "proc.aexepath", "proc.acmdline"})


class RecordedEvent:
    """An event replayed from its recorded fields (DESIGN.md §4, §6).

    Indexed values are recorded as `proc.aname[2]`; the bare `proc.aname` holds the list of all
    ancestors, so an index missing from the record is answered from that list.
    """

    __slots__ = ("fields", "num", "source", "time_ns", "type")

    def __init__(self, source: str, fields: dict[str, Any], num: int = 0) -> None:
        self.source = source
        self.fields = fields
        self.num = num
        self.type = fields.get("evt.type") or ""
        raw = fields.get("evt.rawtime")
        self.time_ns = int(raw) if isinstance(raw, (int, float)) else 0

    def value(self, field: str, arg: str | None = None) -> Any:
        if arg is None:
            return self.fields.get(field)
        v = self.fields.get(field_key(field, arg))
        if v is None and arg.isdigit() and field in _ANCESTOR_LISTS:
            whole = self.fields.get(field)
            if isinstance(whole, list):
                # [0] is the process itself (recorded as proc.aname[0]); the list starts at the parent.
                i = int(arg) - 1
                return whole[i] if 0 <= i < len(whole) else None
        return v

    def __repr__(self) -> str:
        return f"RecordedEvent({self.source!r}, {self.type!r}, num={self.num})"


# ---------------------------------------------------------------------------------------------
# Live capture state: filled by sensor.capture (through sources/syscall.py), read by extractors.
# ---------------------------------------------------------------------------------------------

@dataclass(slots=True)
class Container:
    """A container, known from the cgroup id of a process (DESIGN.md §6: never a guess).

    `id` is "host" for host processes, the 12-hex short id for containers (Falco's container.id).
    Values nobody could learn stay None and print as <NA>.
    """

    id: str = "host"
    full_id: str = ""
    type: str | None = None                 # docker, containerd, cri-o, podman (container.type)
    name: str | None = None
    image: str | None = None                # repository:tag as the runtime reports it
    image_repository: str | None = None
    image_tag: str | None = None
    image_digest: str | None = None
    privileged: bool | None = None
    mounts: list[dict[str, Any]] | None = None   # [{"source","dest","mode","rdwr","propagation"}]
    labels: dict[str, str] | None = None    # the runtime's labels of the container
    start_ts: int | None = None             # ns since epoch
    pod_uid: str | None = None
    pod_name: str | None = None
    pod_namespace: str | None = None
    pod_labels: dict[str, str] | None = None
    cgroup_path: str | None = None


HOST = Container()


@dataclass(slots=True, eq=False)
class Fd:
    """One open file descriptor of a process, as Falco's fd.* fields describe it.

    `type` uses Falco's names: file, directory, ipv4, ipv6, unix, pipe, event, signalfd,
    eventpoll, inotify, timerfd, netlink, memfd, bpf, userfaultfd, io_uring.
    For sockets: `l4proto` (tcp, udp, raw, icmp), client/server addresses as Falco orders them
    (`cip`/`cport` the connecting side, `sip`/`sport` the accepting side), `local_is_server`
    tells which of them is this process, so lip/rip/lport/rport follow.
    """

    num: int
    type: str = "file"
    name: str = ""
    flags: int = 0                          # open flags (O_*), raw
    nameraw: str | None = None              # the path as the process passed it, before resolving
    name_changed: bool = False
    dev: int | None = None
    ino: int | None = None
    l4proto: str | None = None
    sockfamily: str | None = None           # ip, unix
    cip: str | None = None
    cport: int | None = None
    sip: str | None = None
    sport: int | None = None
    local_is_server: bool | None = None
    connected: bool = False


@dataclass(slots=True, eq=False)
class Process:
    """One entry of the process table (a thread group; `pid` is the tgid as in Falco).

    `parent` points at the parent's entry while it is known (None for init or an unknown parent),
    so `proc.aname[N]` walks the chain. `args` excludes argv[0] (Falco's proc.args).
    """

    pid: int
    ppid: int = 0
    vpid: int | None = None                 # pid in its own namespace
    name: str = ""                          # comm (proc.name)
    exe: str = ""                           # argv[0] as the process was started (proc.exe)
    exepath: str = ""                       # full path of the executable (proc.exepath)
    args: list[str] = field(default_factory=list)
    cwd: str = ""
    tty: int = 0                            # controlling terminal device, 0 when none
    sid: int = 0
    vpgid: int = 0
    loginuid: int = -1                      # -1 (Falco prints 4294967295 as -1) when unset
    uid: int = 0
    gid: int = 0
    euid: int | None = None
    egid: int | None = None
    start_ns: int = 0                       # proc.pid.ts: clone time, ns since epoch
    exe_writable: bool | None = None
    exe_upper_layer: bool | None = None
    exe_from_memfd: bool | None = None
    exe_ino: int | None = None
    exe_ino_ctime: int | None = None
    exe_ino_mtime: int | None = None
    cap_permitted: str | None = None        # Falco renders capability sets as CAP_A|CAP_B
    cap_effective: str | None = None
    cap_inheritable: str | None = None
    env: list[str] | None = None
    cgroup_id: int = 0
    container: Container = field(default_factory=lambda: HOST)
    parent: Process | None = None
    fds: dict[int, Fd] = field(default_factory=dict)
    alive: bool = True

    # Account names (user.name, group.name): (process, "passwd" or "group", id) -> the entry
    # without its id fields, or None. Installed by the capture, which keeps the process state and
    # reads the files the process sees (sensor/capture/accounts.py); None: no names.
    accounts: ClassVar[Any] = None


@dataclass(slots=True, eq=False)
class SyscallEvent:
    """A live syscall event (the exit side for syscalls: `res` is the return value).

    `args` holds Falco's argument names with values as Falco renders them (flags as
    `O_RDONLY|O_CLOEXEC`, paths resolved against cwd/dirfd, `res`/`fd` as integers);
    `rawargs` the raw integers where they differ. `fd` is the descriptor the event acts on or
    creates (openat's result, connect's socket), already in `proc.fds` when it is a new one.
    """

    type: str
    time_ns: int
    num: int
    proc: Process
    tid: int
    res: int | None = None
    dir: str = "<"
    args: dict[str, Any] = field(default_factory=dict)
    rawargs: dict[str, Any] = field(default_factory=dict)
    fd: Fd | None = None
    cpu: int = 0
    source: str = "syscall"

    extractors: ClassVar[dict[str, Extractor]] = {}

    def value(self, field: str, arg: str | None = None) -> Any:
        ex = self.extractors.get(field)
        return ex(self, arg) if ex is not None else None


@dataclass(slots=True, eq=False)
class AuditEvent:
    """A Kubernetes audit event (audit.k8s.io/v1 Event) as a parsed JSON object."""

    obj: dict[str, Any]
    time_ns: int
    num: int = 0
    type: str = "k8s_audit"       # Falco's plugin events have no syscall type; rules match by source
    source: str = "k8s_audit"

    extractors: ClassVar[dict[str, Extractor]] = {}

    def value(self, field: str, arg: str | None = None) -> Any:
        ex = self.extractors.get(field)
        return ex(self, arg) if ex is not None else None
