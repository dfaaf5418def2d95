"""Falco's falco.yaml keys that are not Falconet keys, and what each becomes here.

A Falco user's falco.yaml loads as it is. For every key Falco 0.44.1 knows (its
config_json_schema.h, plus keys of older releases a file may still carry) that Falconet does not
declare itself:

- a key with a Falconet equivalent sets it: `syscall_event_drops.actions/rate` become
  `event_drops.alerts/interval`, `rule_files` is `rules_files`, `engine.kind: nodriver` turns the
  syscall source off, `http_output.ca_bundle` is `http_output.ca_cert`;
- a key whose value asks for what Falconet does anyway is accepted silently
  (`base_syscalls.custom_set: []`, `load_plugins: []`, plugin definitions that are not loaded,
  `engine.kind: modern_ebpf`);
- any other is a warning that names it and says what Falconet does instead ("Falco key
  'engine.modern_ebpf.buf_size_preset' is not used by Falconet: ..."), never a silent no-op.

`translate()` takes the Falco keys a file (or one `-o`) set, as leaves (dotted path → value and
where it was written), and returns what to set, what to warn about and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Top-level Falco keys that Falconet does not declare (the whole section is Falco's).
SECTIONS: frozenset[str] = frozenset({
    "config_files", "watch_config_files", "plugins_hostinfo", "rule_files", "rules_file", "engine",
    "capture", "load_plugins", "plugins", "buffer_format_base64", "log_stderr", "log_syslog",
    "libs_logger", "output_timeout", "syscall_event_timeouts", "syscall_event_drops", "base_syscalls",
    "falco_libs",
    # Older releases (a falco.yaml kept across upgrades still has them).
    "container_engines", "grpc", "grpc_output", "outputs", "metadata_download",
    "syscall_buf_size_preset", "syscall_drop_failed_exit", "modern_bpf",
})

# Falco keys inside sections Falconet shares with Falco (http_output, webserver, metrics).
LEAVES: frozenset[str] = frozenset({
    "http_output.ca_bundle", "http_output.echo", "http_output.max_consecutive_timeouts",
    "webserver.threadiness",
    "metrics.rules_counters_enabled", "metrics.resource_utilization_enabled",
    "metrics.state_counters_enabled", "metrics.kernel_event_counters_enabled",
    "metrics.kernel_event_counters_per_cpu_enabled", "metrics.libbpf_stats_enabled",
    "metrics.plugins_metrics_enabled", "metrics.jemalloc_stats_enabled", "metrics.convert_memory_to_mb",
    "metrics.include_empty_values",
})

# Every Falco path a suggestion ("did you mean") may name.
KNOWN_PATHS: tuple[str, ...] = (
    *sorted(SECTIONS), *sorted(LEAVES),
    "engine.kind", "engine.kmod.buf_size_preset", "engine.kmod.drop_failed_exit",
    "engine.modern_ebpf.cpus_for_each_buffer", "engine.modern_ebpf.buf_size_preset",
    "engine.modern_ebpf.drop_failed_exit", "engine.modern_ebpf.disable_iterators",
    "engine.replay.capture_file", "capture.enabled", "capture.path_prefix", "capture.mode",
    "capture.default_duration", "syscall_event_drops.threshold", "syscall_event_drops.actions",
    "syscall_event_drops.rate", "syscall_event_drops.max_burst", "syscall_event_drops.simulate_drops",
    "syscall_event_timeouts.max_consecutives", "base_syscalls.custom_set", "base_syscalls.repair",
    "base_syscalls.all", "falco_libs.thread_table_size", "falco_libs.snaplen",
    "libs_logger.enabled", "libs_logger.severity",
)

DROP_ACTIONS = ("ignore", "log", "alert", "exit")
ENGINE_KINDS = ("modern_ebpf", "kmod", "replay", "nodriver")
REMOVED_ENGINE_KINDS = ("ebpf", "gvisor")

Leaves = dict[str, tuple[Any, str]]          # Falco dotted path -> (value, "file:line" or "-o ...")


def is_falco_key(dotted: str) -> bool:
    """True for a Falco key (or a key inside a Falco section) that Falconet does not declare."""
    return dotted.split(".", 1)[0] in SECTIONS or dotted in LEAVES


@dataclass
class Translation:
    """What a set of Falco keys means for Falconet."""

    sets: list[tuple[str, Any, str, str]] = field(default_factory=list)   # (key, value, where, Falco path)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def use(self, key: str, value: Any, where: str, falco_path: str) -> None:
        self.sets.append((key, value, where, falco_path))

    def unused(self, found: list[tuple[str, str]], why: str) -> None:
        """One warning naming every Falco key in `found` ((path, where) pairs)."""
        if not found:
            return
        where = found[0][1]
        if len(found) == 1:
            self.warnings.append(f"{where}: Falco key '{found[0][0]}' is not used by Falconet: {why}")
        else:
            names = ", ".join(f"'{p}'" for p, _ in found)
            self.warnings.append(f"{where}: Falco keys {names} are not used by Falconet: {why}")


class _Section:
    """The leaves of one Falco section, read by its handler."""

    def __init__(self, name: str, leaves: Leaves) -> None:
        self.name = name
        self.leaves = leaves

    def get(self, sub: str, default: Any = None) -> Any:
        hit = self.leaves.get(f"{self.name}.{sub}" if sub else self.name)
        return hit[0] if hit else default

    def where(self, sub: str = "") -> str:
        hit = self.leaves.get(f"{self.name}.{sub}" if sub else self.name)
        return hit[1] if hit else next(iter(self.leaves.values()))[1]

    def found(self, keep: Callable[[str, Any], bool] = lambda p, v: True) -> list[tuple[str, str]]:
        """(path, where) of every leaf for which keep(path, value) holds, in file order."""
        return [(p, w) for p, (v, w) in self.leaves.items() if keep(p, v)]

    def not_default(self, defaults: dict[str, Any]) -> list[tuple[str, str]]:
        """Leaves whose value differs from `defaults` (sub path -> the value that changes nothing)."""
        out = []
        for p, (v, w) in self.leaves.items():
            sub = p[len(self.name) + 1:]
            if sub not in defaults or v != defaults[sub]:
                out.append((p, w))
        return out


Handler = Callable[[_Section, Translation], None]


def _unless(defaults: dict[str, Any], why: str) -> Handler:
    """A section Falconet does not implement, harmless when every leaf has the given value."""
    def handle(s: _Section, t: Translation) -> None:
        t.unused(s.not_default(defaults), why)
    return handle


def _scalar_unless(default: Any, why: str) -> Handler:
    def handle(s: _Section, t: Translation) -> None:
        if s.get("") != default:
            t.unused(s.found(), why)
    return handle


def _always(why: str) -> Handler:
    def handle(s: _Section, t: Translation) -> None:
        t.unused(s.found(), why)
    return handle


def _silent(s: _Section, t: Translation) -> None:
    """Settings that only matter to something Falconet does not load (plugin definitions that
    load_plugins does not name, host info for plugins)."""


def _rule_files(s: _Section, t: Translation) -> None:
    value = s.get("")
    t.use("rules_files", [value] if isinstance(value, str) else value, s.where(), s.name)


def _engine(s: _Section, t: Translation) -> None:
    kind = s.get("kind", "modern_ebpf")
    if kind == "nodriver":
        t.use("syscall.enabled", False, s.where("kind"), "engine.kind")
        return
    if kind in REMOVED_ENGINE_KINDS:
        t.unused(s.found(lambda p, v: p == "engine.kind" or p.startswith(f"engine.{kind}.")),
                 f"Falco 0.44 removed the {kind} engine; Falconet always captures with eBPF, "
                 f"as Falco's modern_ebpf does")
        return
    if kind == "kmod":
        t.unused(s.found(lambda p, v: p == "engine.kind" or p.startswith("engine.kmod.")),
                 "it has no kernel module and always captures with eBPF, as Falco's modern_ebpf does")
        return
    if kind == "replay":
        t.unused(s.found(lambda p, v: p == "engine.kind" or p.startswith("engine.replay.")),
                 "`falconet replay FILE` runs a recording through the rules (recordings are JSON "
                 "lines made by `falconet capture`, not .scap files)")
        return
    if kind != "modern_ebpf":
        t.problems.append(f"{s.where('kind')}: 'engine.kind' must be one of {', '.join(ENGINE_KINDS)}; "
                          f"got {kind!r}")
        return
    # modern_ebpf is what Falconet does; the other kinds' subsections are not read by Falco either.
    t.unused(s.found(lambda p, v: p in ("engine.modern_ebpf.buf_size_preset",
                                        "engine.modern_ebpf.cpus_for_each_buffer")),
             "its capture has one ring buffer for every CPU, sized by syscall.ring_buffer_size")
    t.unused(s.found(lambda p, v: p == "engine.modern_ebpf.drop_failed_exit" and v is not False),
             "it keeps failed syscalls (rules test evt.res)")


def _load_plugins(s: _Section, t: Translation) -> None:
    names = s.get("") or []
    if not names:
        return
    built_in = {"container": "container metadata is built in (syscall.container_sockets)",
                "k8saudit": "Kubernetes audit events are a built-in source (k8s_audit.webhook, k8s_audit.files)",
                "json": "the json plugin's jevt fields are built in"}
    said = "; ".join(built_in.get(str(n), f"there is no plugin {n}") for n in names)
    t.unused(s.found(), f"it loads no plugins: {said}")


def _syscall_event_drops(s: _Section, t: Translation) -> None:
    actions = s.get("actions")
    if actions is not None:
        bad = [a for a in actions if a not in DROP_ACTIONS] if isinstance(actions, list) else [actions]
        if bad:
            t.problems.append(f"{s.where('actions')}: 'syscall_event_drops.actions' items must be "
                              f"{', '.join(DROP_ACTIONS)}; got {bad[0]!r}")
        else:
            t.use("event_drops.alerts", "alert" in actions, s.where("actions"), "syscall_event_drops.actions")
            if "exit" in actions:
                t.unused([("syscall_event_drops.actions", s.where("actions"))],
                         "its action 'exit' is not implemented: the sensor keeps running and reports "
                         "the drops (and logs them)")
    rate = s.get("rate")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            t.problems.append(f"{s.where('rate')}: 'syscall_event_drops.rate' must be a number of "
                              f"messages per second above 0; got {rate!r}")
        else:
            t.use("event_drops.interval", f"{round(1 / rate, 1):g}s", s.where("rate"), "syscall_event_drops.rate")
    t.unused(s.not_default({"actions": actions, "rate": rate, "max_burst": 1, "simulate_drops": False,
                            "threshold": 0}),
             "it reports every drop with its count (no threshold), at most once per "
             "event_drops.interval, and cannot simulate drops")


def _metrics(s: _Section, t: Translation) -> None:
    # Falconet's snapshots hold the rule counters and the kernel event and drop counters, every
    # one even when zero; nothing else of what Falco can add.
    t.unused(s.not_default({"rules_counters_enabled": True, "kernel_event_counters_enabled": True,
                            "kernel_event_counters_per_cpu_enabled": False, "libbpf_stats_enabled": False,
                            "resource_utilization_enabled": False, "state_counters_enabled": False,
                            "jemalloc_stats_enabled": False, "plugins_metrics_enabled": True,
                            "convert_memory_to_mb": True, "include_empty_values": True}),
             "its snapshots carry its rule, event and drop counters, each even when zero, and "
             "no resource, state or libbpf counters")


def _http_output(s: _Section, t: Translation) -> None:
    bundle = s.get("ca_bundle")
    if bundle:
        t.use("http_output.ca_cert", bundle, s.where("ca_bundle"), "http_output.ca_bundle")
    t.unused(s.found(lambda p, v: p == "http_output.echo" and v is not False),
             "the http channel does not print the server's responses")
    t.unused(s.found(lambda p, v: p == "http_output.max_consecutive_timeouts"),
             "a delivery that times out is retried with backoff (outputs_queue.retry_initial, "
             "retry_max) while the alerts wait in the channel's spool")


HANDLERS: dict[str, Handler] = {
    "config_files": _unless({"": []}, "it reads one configuration file (-c or FALCONET_CONFIG); "
                                      "put the drop-ins' settings in that file"),
    "watch_config_files": _scalar_unless(False, "it does not watch its files; SIGHUP "
                                                "(systemctl reload falconet) reloads configuration and rules"),
    "plugins_hostinfo": _silent,
    "plugins": _silent,
    "rule_files": _rule_files,
    "rules_file": _rule_files,
    "engine": _engine,
    "capture": _unless({"enabled": False, "path_prefix": "/tmp/falco", "mode": "rules",
                        "default_duration": 5000, "max_file_size_mb": 0},
                       "it writes no .scap captures on alerts; `falconet capture -w FILE` "
                       "records events for replay"),
    "load_plugins": _load_plugins,
    "buffer_format_base64": _scalar_unless(False, "it prints data as escaped text"),
    "log_stderr": _scalar_unless(True, "it always logs to stderr"),
    "log_syslog": _scalar_unless(False, "it logs to stderr (journald keeps that under systemd; "
                                        "fluent_output.log_tag sends its log to Fluentd)"),
    "libs_logger": _unless({"enabled": False, "severity": "info"},
                           "it has no libs logger; its capture logs at log_level"),
    "output_timeout": _always("an output never blocks its engine: each channel has its own "
                              "queue (outputs_queue) or spool"),
    "syscall_event_timeouts": _always("its ring-buffer reader has no timeouts to count"),
    "syscall_event_drops": _syscall_event_drops,
    "base_syscalls": _unless({"custom_set": [], "repair": False, "all": False},
                             "it captures the syscalls its rules name plus the base set it needs "
                             "for process and fd state (`falconet capture --all` records every one)"),
    "falco_libs": _always("its process table keeps every live process (nothing to size or purge) "
                          "and it reads I/O data only where a field needs it"),
    "container_engines": _always("it asks the runtime sockets listed in syscall.container_sockets"),
    "grpc": _unless({"enabled": False, "bind_address": "unix:///run/falco/falco.sock", "threadiness": 0},
                    "Falco 0.44 removed gRPC and Falconet has none: use http_output or fluent_output"),
    "grpc_output": _unless({"enabled": False},
                           "Falco 0.44 removed gRPC and Falconet has none: use http_output or fluent_output"),
    "outputs": _unless({"rate": 0, "max_burst": 1000},
                       "Falco 0.37 removed output throttling; flood_control summarises "
                       "identical alerts"),
    "metadata_download": _always("Falco 0.38 removed it; Falconet asks the container runtime directly"),
    "syscall_buf_size_preset": _always("the ring buffer is syscall.ring_buffer_size"),
    "syscall_drop_failed_exit": _scalar_unless(False, "it keeps failed syscalls"),
    "modern_bpf": _always("the ring buffer is syscall.ring_buffer_size (one for every CPU)"),
    "http_output": _http_output,
    "webserver": _unless({"threadiness": 0}, "its webserver needs no thread count"),
    "metrics": _metrics,
}


def translate(leaves: Leaves) -> Translation:
    """What the Falco keys in `leaves` mean for Falconet (see the module's docstring)."""
    t = Translation()
    by_section: dict[str, Leaves] = {}
    for path, hit in leaves.items():
        by_section.setdefault(path.split(".", 1)[0], {})[path] = hit
    for name, section_leaves in by_section.items():
        HANDLERS[name](_Section(name, section_leaves), t)
    return t


def queue_capacity(value: Any, default: int) -> tuple[Any, str | None]:
    """`outputs_queue.capacity: 0` is Falco's "unbounded"; Falconet keeps its queues bounded."""
    if value == 0:
        return default, (f"'outputs_queue.capacity' 0 means an unbounded queue in Falco; Falconet keeps "
                         f"each channel's queue bounded ({default}, its default); a spooled channel "
                         f"keeps what does not fit on disk")
    return value, None


# Falco values for keys Falconet declares too, adjusted where the meaning differs.
VALUE_ADJUST: dict[str, Callable[[Any, Any], tuple[Any, str | None]]] = {
    "outputs_queue.capacity": queue_capacity,
}
