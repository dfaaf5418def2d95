"""Wires sources → engine → outputs (and response) for `falconet run` and `falconet replay`.

`Runtime` is the engine loop: one thread polls every source in turn, runs each event through the
ruleset and hands the alerts to a sink, which never blocks it (sensor/outputs/ queues per channel).
`replay` uses it alone. `Sensor` is everything `falconet run` starts around it: configuration and
rules (`prepare`, also the dry run), sources, outputs, response, the webserver and internal
alerts; on SIGHUP it prepares the new configuration and rules as a dry run and swaps them in, or
keeps running on the old ones and says why in a Critical internal alert.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sensor.alert import NAMES as PRIORITY_NAMES
from sensor.alert import Alert, Priority
from sensor.config import Config, Key, parse_duration, priority_name
from sensor.sources import Source

log = logging.getLogger("falconet")

CONFIG_KEYS: tuple[Key, ...] = (
    Key("event_drops.alerts", bool, True,
        "Emit \"Falconet internal: <source> event drop\" alerts when a source loses events "
        "(kernel ring buffer full, webhook queue full)."),
    Key("event_drops.interval", str, "60s",
        "At most one event-drop alert per source per interval, carrying the drops since the last one.",
        check=parse_duration),
    Key("event_drops.priority", str, "Critical", "Priority of event-drop alerts (any case).",
        choices=PRIORITY_NAMES, parse=priority_name),
)

TICK = 1.0          # seconds between housekeeping passes of the engine loop


@dataclass
class Summary:
    """What a run did, for the closing line and for tests."""

    events: int = 0
    alerts: int = 0
    seconds: float = 0.0
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    reloads: int = 0
    reload_failures: int = 0
    matches: dict[tuple[str, Any, str], int] = field(default_factory=dict)   # (rule, priority, source)

    @property
    def source_drops(self) -> int:
        return sum(int(s.get("drops", 0)) for s in self.by_source.values())

    @property
    def output_drops(self) -> int:
        return int(self.outputs.get("drops", 0)) if self.outputs else 0

    def line(self) -> str:
        text = (f"Events detected: {self.alerts}; events processed: {self.events}; "
                f"drops: {self.source_drops} events, {self.output_drops} alerts; "
                f"elapsed: {self.seconds:.1f}s")
        if self.reloads or self.reload_failures:
            text += f"; reloads: {self.reloads} ({self.reload_failures} failed)"
        return text

    def falco_stats(self) -> list[str]:
        """What `falco -v` prints at exit: the alerts, by priority (most severe first) and by rule."""
        by_priority: dict[Priority, int] = {}
        by_rule: dict[str, int] = {}
        for (rule, priority, _source), n in self.matches.items():
            p = Priority.parse(priority)
            by_priority[p] = by_priority.get(p, 0) + n
            by_rule[rule] = by_rule.get(rule, 0) + n
        lines = [f"Events detected: {sum(by_rule.values())}", "Rule counts by severity:"]
        lines += [f"   {p.name}: {n}" for p, n in sorted(by_priority.items())]
        lines.append("Triggered rules by rule name:")
        lines += [f"   {rule}: {n}" for rule, n in sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))]
        return lines


class Runtime:
    """Drives sources through a ruleset into a sink of alerts until stopped."""

    def __init__(self, ruleset: Any, sources: Sequence[Source], sink: Callable[[Alert], None], *,
                 on_tick: Callable[[], None] | None = None,
                 on_reload: Callable[[], None] | None = None) -> None:
        self.ruleset = ruleset
        self.sources = list(sources)
        self.sink = sink
        self.on_tick = on_tick
        self.on_reload = on_reload
        self.events = 0
        self.alerts = 0
        self._counts: dict[str, dict[str, int]] = {}      # source -> evt.type -> events
        self.heartbeat = time.monotonic()
        self._retired_matches: dict[tuple[str, str, str], int] = {}
        self._retired_sources: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._running = False
        self._reload = False
        self._reopen: Callable[[], None] | None = None
        # `run --explain`: sees every event with its ruleset and alerts; None keeps the loop as it is.
        self.observe: Callable[[Any, Any, list[Alert]], None] | None = None

    # -- control (signal-safe: they only set flags) ------------------------------------------------

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def request_reload(self, *_: Any) -> None:
        self._reload = True

    def install_signal_handlers(self, reopen: Callable[[], None] | None = None) -> None:
        """SIGINT/SIGTERM stop, SIGHUP reloads (when there is a reload), SIGUSR1 reopens files."""
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        if self.on_reload is not None:
            signal.signal(signal.SIGHUP, self.request_reload)
        if reopen is not None:
            signal.signal(signal.SIGUSR1, lambda *_: reopen())

    # -- swapping (engine thread only) -------------------------------------------------------------

    def swap(self, ruleset: Any = None, sources: Sequence[Source] | None = None,
             sink: Callable[[Alert], None] | None = None) -> None:
        """Replace the ruleset, the sources (the old ones are stopped, the new started) or the sink."""
        if ruleset is not None and ruleset is not self.ruleset:
            for k, n in self.rule_matches(self.ruleset).items():
                self._retired_matches[k] = self._retired_matches.get(k, 0) + n
            self.ruleset = ruleset
        if sources is not None:
            for s in self.sources:
                if s not in sources:
                    if self._running:   # otherwise `run` starts and stops them all
                        s.stop()
                    self._retire(s)
            if self._running:
                for s in sources:
                    if s not in self.sources:
                        s.start()
            self.sources = list(sources)
        if sink is not None:
            self.sink = sink

    def _retire(self, source: Source) -> None:
        merged = self._retired_sources.setdefault(source.name, {})
        for k, v in source.stats().items():
            if isinstance(v, int) and not isinstance(v, bool):
                merged[k] = merged.get(k, 0) + v

    def source_stats(self) -> dict[str, dict[str, Any]]:
        """Each source's counters since the start: those of sources a reload replaced are added in,
        so counters never go back. `source` is the event source the counters are about."""
        out: dict[str, dict[str, Any]] = {name: dict(st) for name, st in self._retired_sources.items()}
        for s in self.sources:
            merged = out.setdefault(s.name, {})
            for k, v in s.stats().items():
                merged[k] = merged.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v
            merged["source"] = getattr(s, "source", None) or _event_source(s.name)
        for name, st in out.items():
            st.setdefault("source", _event_source(name))
        return out

    @staticmethod
    def rule_matches(ruleset: Any) -> dict[tuple[str, str, str], int]:
        counts = getattr(ruleset, "match_counts", None)
        if counts is None:
            return {}
        out: dict[tuple[str, str, str], int] = {}
        for r, n in zip(ruleset.rules, counts, strict=False):
            if n:
                k = (r.name, r.priority, r.source)
                out[k] = out.get(k, 0) + n
        return out

    def matches(self) -> dict[tuple[str, str, str], int]:
        """Alerts per (rule, priority, source) since the start, across reloads."""
        out = dict(self._retired_matches)
        for k, n in self.rule_matches(self.ruleset).items():
            out[k] = out.get(k, 0) + n
        return out

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, duration: float | None = None) -> Summary:
        """Poll until stopped, `duration` seconds after every source started (capture attached),
        or every source has finished."""
        started = time.monotonic()
        try:
            for s in self.sources:
                self._start(s)
            attached = time.monotonic()
            deadline = attached + duration if duration else None
            next_tick = attached + TICK
            self._running = True
            while not self._stop.is_set():
                now = time.monotonic()
                self.heartbeat = now
                if deadline is not None and now >= deadline:
                    break
                if self._reload:
                    self._reload = False
                    if self.on_reload is not None:
                        self.on_reload()
                if now >= next_tick:
                    next_tick = now + TICK
                    if self.on_tick is not None:
                        self.on_tick()
                live = [s for s in self.sources if not s.finished]
                if not live:
                    break
                timeout = 0.2 if len(live) == 1 else 0.02
                if deadline is not None:
                    timeout = max(0.0, min(timeout, deadline - now))
                for s in live:
                    self._pump(s, timeout)
        finally:
            self._running = False
            for s in self.sources:
                try:
                    s.stop()
                except Exception:
                    log.exception("stopping source %s failed", getattr(s, "name", s))
        return Summary(events=self.events, alerts=self.alerts, seconds=time.monotonic() - started,
                       by_source=self.source_stats(), matches=self.matches())

    @staticmethod
    def _start(source: Source) -> None:
        """Start (attach) a source, saying what takes time and how long it took, as Falco does."""
        name = getattr(source, "name", "source")
        if name == "syscall":
            log.info("Opening 'syscall' source with eBPF: compiling the eBPF program (a few seconds)...")
        began = time.monotonic()
        source.start()
        if name == "syscall":
            log.info("'syscall' source attached in %.1fs", time.monotonic() - began)

    def _pump(self, source: Source, timeout: float) -> None:
        events = source.poll(timeout)
        if not isinstance(events, list):
            events = list(events)
        if not events:
            return
        self.events += len(events)
        process = self.ruleset.process
        if self.observe is not None:
            process = functools.partial(_observed, process, self.observe, self.ruleset)
        sink = self.sink
        counts = self._counts
        current = by_type = None
        for ev in events:
            # Counting by type keyed on the (hash-cached) type string alone costs a third of a
            # (source, type) tuple key; the source rarely changes within a batch.
            if ev.source is not current:
                current = ev.source
                by_type = counts.setdefault(current, {})
            t = ev.type
            by_type[t] = by_type.get(t, 0) + 1           # type: ignore[index]
            for alert in process(ev):
                self.alerts += 1
                sink(alert)

    @property
    def event_counts(self) -> dict[tuple[str, str], int]:
        """Events run through the rules, by (source, evt.type)."""
        return {(src, t): n for src, types in list(self._counts.items()) for t, n in list(types.items())}


# -------------------------------------------------------------------------------------------------
# `falconet run`: the sensor around the runtime
# -------------------------------------------------------------------------------------------------


@dataclass
class RunOptions:
    """The command line of `falconet run` (and the root group's -c/-o/-r)."""

    config_path: str | None = None
    overrides: Sequence[str] = ()
    rules_files: Sequence[str] = ()
    disable: Sequence[str] = ()          # -D
    disable_tags: Sequence[str] = ()     # -T
    enable_tags: Sequence[str] = ()      # -t
    unbuffered: bool = False             # -U
    verbose: bool = False                # -v
    require_source: bool = False         # the command line: an enabled source without rules is an error

    def all_overrides(self) -> list[str]:
        return [*self.overrides, *(["buffered_outputs=false"] if self.unbuffered else [])]


@dataclass
class Plan:
    """A validated configuration and its rules, not started: what a dry run prints and a reload swaps."""

    cfg: Config
    ruleset: Any
    rule_files: list[str]
    outputs: list[str]

    def describe(self) -> list[str]:
        enabled = len(self.ruleset.rules)
        total = len(getattr(self.ruleset, "all_rules", self.ruleset.rules))
        lines = [f"Configuration: {self.cfg.path or 'defaults'}"
                 + (f" (with {len(self.cfg.overrides)} -o overrides)" if self.cfg.overrides else "")]
        lines += [f"Rules file: {f}" for f in self.rule_files]
        lines.append(f"Rules: {enabled} enabled of {total} loaded, sources "
                     f"{', '.join(sorted({r.source for r in self.ruleset.rules})) or 'none'}")
        for d in getattr(self.ruleset, "warnings", [])[:20]:
            lines.append(f"Warning: {d}")
        lines.append("Sources: " + (", ".join(planned_sources(self.cfg)) or "none"))
        lines.append(f"Buffered outputs: {str(bool(self.cfg.get('buffered_outputs'))).lower()} "
                     f"({self.cfg.origin('buffered_outputs')})")
        if self.cfg.get("syscall.enabled"):
            from sensor.sources import syscall

            lines += syscall.describe(self.cfg, self.ruleset)
        lines += [f"Output {line}" for line in self.outputs] or ["Outputs: none"]
        from sensor import response

        lines += response.describe(self.cfg, self.ruleset)   # checks the actions as `run` would build them
        return lines


def prepare(options: RunOptions, serializer: Any = None) -> Plan:
    """Load and check configuration, rules and outputs without starting anything.

    Raises ConfigError, RulesLoadError or UnavailableError.
    """
    from sensor import config as config_mod
    from sensor import outputs
    from sensor.rulesetup import check_sources, load_configured

    cfg = config_mod.load(options.config_path, options.all_overrides())
    ruleset = load_configured(cfg, list(options.rules_files), disable=list(options.disable),
                              disable_tags=list(options.disable_tags), enable_tags=list(options.enable_tags))
    if options.require_source:
        check_sources(cfg, ruleset, [*(f"-D {d}" for d in options.disable),
                                     *(f"-T {t}" for t in options.disable_tags),
                                     *(f"-t {t}" for t in options.enable_tags)])
    return Plan(cfg, ruleset, list(getattr(ruleset, "files", [])), outputs.validate(cfg, serializer))


def announce(plan: Plan, verbose: bool = False) -> None:
    """What Falco says at start-up: the version, the configuration file, the system, the rule
    files loaded (with their rule counts)."""
    from sensor import ENGINE_VERSION, __version__

    u = os.uname()
    log.info("Falconet version: %s (%s), engine %s", __version__, u.machine, ENGINE_VERSION)
    log.info("Falconet initialized with configuration file: %s%s", plan.cfg.path or "none (defaults)",
             f" and {len(plan.cfg.overrides)} -o overrides" if plan.cfg.overrides else "")
    for w in plan.cfg.warnings:
        log.warning("%s", w)
    log.info("System info: %s %s %s %s", u.sysname, u.release, u.version, u.machine)
    rs = plan.ruleset
    loaded: dict[str, int] = {}
    enabled: dict[str, int] = {}
    for r in getattr(rs, "all_rules", rs.rules):
        f = r.item.loc.name if hasattr(r, "item") else "?"
        loaded[f] = loaded.get(f, 0) + 1
        enabled[f] = enabled.get(f, 0) + int(r.enabled)
    log.info("Loading rules from:")
    for f in plan.rule_files:
        log.info("   %s | %d rules, %d enabled", f, loaded.get(f, 0), enabled.get(f, 0))
    warnings = getattr(rs, "warnings", [])
    if warnings:
        log.info("%d rule warnings%s", len(warnings), "" if verbose else " (-v prints them; "
                 "`falconet -V FILE` explains each)")
        if verbose:
            for d in warnings:
                log.warning("%s", d)
    log.info("%d rules enabled of %d loaded", len(rs.rules), len(getattr(rs, "all_rules", rs.rules)))


def planned_sources(cfg: Config) -> list[str]:
    out = []
    if cfg.get("syscall.enabled"):
        out.append("syscall (eBPF)")
    if cfg.get("k8s_audit.webhook.enabled"):
        out.append(f"k8s_audit webhook on {cfg.get('k8s_audit.webhook.listen')}")
    for f in cfg.get("k8s_audit.files") or []:
        out.append(f"k8s_audit file {f}")
    return out


SourceFactory = Callable[[Config, Any], list[Source]]


def configured_sources(cfg: Config, ruleset: Any) -> list[Source]:
    """The sources the configuration enables: syscall capture, Kubernetes audit webhook and files."""
    from sensor.errors import ConfigError, UnavailableError

    sources: list[Source] = []
    if cfg.get("syscall.enabled"):
        try:
            from sensor.sources.syscall import SyscallSource, preflight
        except ImportError as e:
            raise UnavailableError(f"the syscall source is not available in this build ({e}); run with "
                                   f"-o syscall.enabled=false to use other sources") from e
        why = preflight()
        if why:
            raise UnavailableError(why)
        sources.append(SyscallSource(cfg, ruleset))
    from sensor.sources import k8s_audit

    make = getattr(k8s_audit, "make_sources", None)
    if make is not None:
        sources.extend(make(cfg))
    if not sources:
        raise ConfigError("no event source is enabled: syscall.enabled is false and no k8s_audit source "
                          "is configured", hint="set syscall.enabled=true, k8s_audit.webhook.enabled=true "
                          "or k8s_audit.files")
    return sources


_SOURCE_KEYS = ("syscall", "k8s_audit")
_RESPONSE_KEYS = ("response",)
_WEBSERVER_KEYS = ("webserver", "metrics")


def _section(cfg: Config, names: Sequence[str]) -> str:
    return json.dumps({k: v for k, v in cfg.values.items() if k in names}, sort_keys=True, default=str)


def _outputs_section(cfg: Config) -> str:
    # Everything the outputs read: the channels, the queue, flood control, rendering, hostname.
    keep = {k: v for k, v in cfg.values.items()
            if k.endswith("_output") or k.startswith(("outputs_queue", "flood_control", "json_"))
            or k in ("buffered_outputs", "time_format_iso_8601", "hostname", "state_dir", "static_fields")}
    return json.dumps(keep, sort_keys=True, default=str)


class Sensor:
    """Everything `falconet run` runs; `run()` blocks until SIGINT/SIGTERM or the duration ends."""

    def __init__(self, options: RunOptions, *, make_sources: SourceFactory = configured_sources,
                 stdout: Any = None, serializer: Any = None) -> None:
        self.options = options
        self.make_sources = make_sources
        self.stdout = stdout
        self.serializer = serializer
        self.plan: Plan | None = None
        self.outputs: Any = None
        self.response: Any = None
        self.webserver: Any = None
        self.runtime: Runtime | None = None
        self.start_ns = time.time_ns()
        self.reload_ns = self.start_ns
        self.reloads = 0
        self.reload_failures = 0
        self.hostname = ""
        self.log_handler: Any = None
        self._drops_reported: dict[str, int] = {}
        self._drops_last_alert: dict[str, float] = {}
        self._next_metrics = 0.0

    # -- building ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare and build everything; sources start when `run` begins."""
        from sensor import outputs as outputs_mod

        plan = self.plan = prepare(self.options, self.serializer)
        cfg = plan.cfg
        self.hostname = cfg.hostname()
        sources = self.make_sources(cfg, plan.ruleset)     # fails first when capture cannot run here
        announce(plan, self.options.verbose)
        self.outputs = outputs_mod.build(cfg, stdout=self.stdout, serializer=self.serializer)
        try:
            from sensor.outputs import fluentlog

            self.log_handler = fluentlog.attach(cfg, self.hostname)
            self.response = self._build_response(cfg, plan.ruleset)
            self.webserver = self._build_webserver(cfg)
        except BaseException:
            self.close()
            raise
        log.info("Enabled event sources: %s", ", ".join(sorted({_event_source(s.name) for s in sources})))
        self.runtime = Runtime(plan.ruleset, sources, self.sink, on_tick=self.tick, on_reload=self.reload)
        self._next_metrics = time.monotonic() + self._metrics_interval(cfg)

    def _build_response(self, cfg: Config, ruleset: Any) -> Any:
        from sensor import response

        return response.build(cfg, self.submit, ruleset)

    def _build_webserver(self, cfg: Config) -> Any:
        if not cfg.get("webserver.enabled"):
            return None
        from sensor.metrics import SensorCollector
        from sensor.webserver import WebServer

        return WebServer.from_config(cfg, healthy=self.healthy, collector=SensorCollector(self.snapshot)).start()

    def sink(self, alert: Alert) -> None:
        """Every alert of the engine: to the outputs, and to the response worker."""
        self.outputs.submit(alert)
        if self.response is not None:
            self.response.submit(alert)

    def submit(self, alert: Alert) -> None:
        """To the outputs of the moment (a reload may replace them): for response records."""
        self.outputs.submit(alert)

    # -- running -----------------------------------------------------------------------------------

    def run(self, duration: float | None = None, install_signals: bool = True) -> Summary:
        if self.runtime is None:
            self.start()
        rt = self.runtime
        assert rt is not None
        if install_signals:
            rt.install_signal_handlers(reopen=lambda: self.outputs.reopen())
        try:
            summary = rt.run(duration)
            self._report_event_drops(final=True)
        finally:
            self.close()
        summary.outputs = self.outputs.stats() if self.outputs is not None else {}
        summary.reloads = self.reloads
        summary.reload_failures = self.reload_failures
        return summary

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()

    def close(self) -> None:
        """Stop response, webserver and outputs (which deliver or spool what they hold)."""
        if self.response is not None:
            try:
                self.response.stop()
            except Exception:
                log.exception("stopping the response worker failed")
        if self.webserver is not None:
            self.webserver.stop()
            self.webserver = None
        if self.outputs is not None:
            self.outputs.close()
        if self.log_handler is not None:
            from sensor.outputs import fluentlog

            fluentlog.detach(self.log_handler)
            self.log_handler = None

    def healthy(self) -> bool:
        """The engine loop went round in the last 10 seconds and no output channel's worker died."""
        rt = self.runtime
        outputs_ok = self.outputs is None or not self.outputs.dead_channels()
        return rt is not None and time.monotonic() - rt.heartbeat < 10.0 and outputs_ok

    # -- reload (engine thread, on SIGHUP) ---------------------------------------------------------

    def reload(self) -> None:
        """Dry-run the configuration and rules as they are now on disk; swap them in, or keep the old."""
        from sensor import outputs as outputs_mod
        from sensor.outputs.internal import RELOADED, internal_alert

        rt = self.runtime
        old = self.plan
        assert rt is not None and old is not None
        log.info("SIGHUP: reloading configuration and rules")
        try:
            plan = prepare(self.options, self.serializer)
            new_sources = None
            if (_section(plan.cfg, _SOURCE_KEYS) != _section(old.cfg, _SOURCE_KEYS)
                    or plan.ruleset.event_types("syscall") != old.ruleset.event_types("syscall")
                    or _kernel_filter(plan) != _kernel_filter(old)):
                new_sources = self.make_sources(plan.cfg, plan.ruleset)
        except Exception as e:
            self._reload_failed(e)
            return
        cfg = plan.cfg
        if _outputs_section(cfg) != _outputs_section(old.cfg):
            # The old channels stop at once; what their memory queues hold moves to the new ones,
            # what their spools hold stays on disk for the new ones to deliver.
            left = self.outputs.close(timeout=0, keep=True)
            try:
                self.outputs = outputs_mod.build(cfg, stdout=self.stdout, serializer=self.serializer)
            except Exception as e:
                self.outputs = outputs_mod.build(old.cfg, stdout=self.stdout, serializer=self.serializer)
                self.outputs.adopt(left)
                self._reload_failed(e)
                return
            self.outputs.adopt(left)
        # A match.condition may use the rules' lists and macros: new ones rebuild it too.
        if (_section(cfg, _RESPONSE_KEYS) != _section(old.cfg, _RESPONSE_KEYS)
                or (plan.ruleset.lists, plan.ruleset.macros) != (old.ruleset.lists, old.ruleset.macros)):
            if self.response is not None:
                self.response.stop()
            self.response = self._build_response(cfg, plan.ruleset)
        if _section(cfg, _WEBSERVER_KEYS) != _section(old.cfg, _WEBSERVER_KEYS):
            if self.webserver is not None:
                self.webserver.stop()
            self.webserver = self._build_webserver(cfg)
        rt.swap(ruleset=plan.ruleset, sources=new_sources)
        self.plan = plan
        self.hostname = cfg.hostname()
        self.reloads += 1
        self.reload_ns = time.time_ns()
        text = (f"Configuration and rules reloaded: {len(plan.ruleset.rules)} rules enabled from "
                f"{len(plan.rule_files)} files" + ("; sources restarted" if new_sources is not None else ""))
        log.info("%s", text)
        self.outputs.submit(internal_alert(RELOADED, Priority.INFORMATIONAL, text,
                                           {"falconet.reload.rules": len(plan.ruleset.rules),
                                            "falconet.reload.files": plan.rule_files},
                                           hostname=self.hostname))

    def _reload_failed(self, e: Exception) -> None:
        from sensor.outputs.internal import RELOAD_FAILED, internal_alert

        self.reload_failures += 1
        why = _error_text(e)
        log.error("reload failed, still running the previous configuration and rules: %s", why)
        self.outputs.submit(internal_alert(
            RELOAD_FAILED, "Critical",
            f"Reloading configuration and rules failed; still running the previous ones: {why}",
            {"falconet.reload.error": why, "falconet.reload.config": plan_path(self.options)},
            hostname=self.hostname))

    # -- housekeeping (engine thread, every second) --------------------------------------------------

    def tick(self) -> None:
        self._report_event_drops()
        self._report_notices()
        cfg = self.plan.cfg if self.plan else None
        if cfg is not None and cfg.get("metrics.enabled") and time.monotonic() >= self._next_metrics:
            self._next_metrics = time.monotonic() + self._metrics_interval(cfg)
            self._metrics_snapshot(cfg)

    def _report_event_drops(self, final: bool = False) -> None:
        from sensor.outputs.internal import EVENT_DROP, internal_alert

        rt = self.runtime
        cfg = self.plan.cfg if self.plan else None
        if rt is None or cfg is None or not cfg.get("event_drops.alerts"):
            return
        interval = cfg.duration("event_drops.interval")
        now = time.monotonic()
        for name, stats in rt.source_stats().items():
            drops = int(stats.get("drops", 0))
            seen = self._drops_reported.get(name, 0)
            if drops <= seen:
                continue
            if not final and now - self._drops_last_alert.get(name, -1e18) < interval:
                continue
            self._drops_reported[name] = drops
            self._drops_last_alert[name] = now
            source = stats["source"]
            delta = drops - seen
            fields = {"n_drops": delta, "n_drops_total": drops, "n_evts": int(stats.get("events", 0)),
                      "evt.source": source}
            fields.update({f"n_{k}": v for k, v in stats.items() if k.startswith("drops_")})
            self.outputs.submit(internal_alert(
                EVENT_DROP.format(source=source), cfg.get("event_drops.priority"),
                f"{delta} {source} events dropped by {name} since the last report "
                f"({drops} in total); rules did not see them", fields, hostname=self.hostname))

    def _report_notices(self) -> None:
        """Internal alerts a source raised about itself (the syscall source: a process that
        flooded the capture and was throttled)."""
        from sensor.outputs.internal import internal_alert

        rt = self.runtime
        if rt is None:
            return
        for src in rt.sources:
            notices = getattr(src, "notices", None)
            if notices is None:
                continue
            for rule, priority, output, fields in notices():
                self.outputs.submit(internal_alert(rule, priority, output, fields, hostname=self.hostname))

    @staticmethod
    def _metrics_interval(cfg: Config) -> float:
        try:
            return max(1.0, cfg.duration("metrics.interval"))
        except (KeyError, ValueError):
            return 3600.0

    def _metrics_snapshot(self, cfg: Config) -> None:
        from sensor.metrics import snapshot_fields
        from sensor.outputs.internal import METRICS_SNAPSHOT, internal_alert

        fields = snapshot_fields(self.snapshot())
        if cfg.get("metrics.output_rule"):
            self.outputs.submit(internal_alert(METRICS_SNAPSHOT, Priority.INFORMATIONAL, "Falconet metrics snapshot",
                                               fields, hostname=self.hostname))
        path = cfg.get("metrics.output_file")
        if path:
            try:
                with open(path, "a") as f:
                    f.write(json.dumps({"time": time.time_ns(), "output_fields": fields}, default=str) + "\n")
            except OSError as e:
                log.error("metrics.output_file %s: %s", path, e.strerror)

    # -- what /metrics reads -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every counter the sensor keeps, read at once (by /metrics and metrics snapshots)."""
        rt = self.runtime
        return {
            "version": _version(),
            "hostname": self.hostname,
            "start_ns": self.start_ns,
            "reload_ns": self.reload_ns,
            "duration_sec": (time.time_ns() - self.start_ns) / 1e9,
            "events": rt.event_counts if rt else {},
            "events_total": rt.events if rt else 0,
            "alerts_total": rt.alerts if rt else 0,
            "matches": rt.matches() if rt else {},
            "sources": rt.source_stats() if rt else {},
            "outputs": self.outputs.stats() if self.outputs is not None else {},
            "response": self.response.stats() if self.response is not None else {},
            "response_actions": (self.response.action_stats()
                                 if hasattr(self.response, "action_stats") else {}),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "rule_files": self.plan.rule_files if self.plan else [],
            "config_path": self.plan.cfg.path if self.plan else None,
        }


def _kernel_filter(plan: Plan) -> object:
    """What the syscall capture filters in the kernel for a plan's rules: new rules that change it
    need a new capture."""
    if not plan.cfg.get("syscall.enabled"):
        return None
    from sensor.sources.syscall import predicates

    return predicates(plan.cfg, plan.ruleset)


def _observed(process: Callable[[Any], list[Alert]], observe: Callable[[Any, Any, list[Alert]], None],
              ruleset: Any, event: Any) -> list[Alert]:
    alerts = process(event)
    observe(ruleset, event, alerts)
    return alerts


def _event_source(source_name: str) -> str:
    # Source names are "syscall", "k8s_audit_webhook", "k8s_audit_file", "replay".
    return "k8s_audit" if source_name.startswith("k8s_audit") else source_name


def plan_path(options: RunOptions) -> str:
    return options.config_path or os.environ.get("FALCONET_CONFIG") or "default"


def _error_text(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    if errors:
        return "; ".join(str(d) for d in errors[:10]) + (f" (and {len(errors) - 10} more)"
                                                         if len(errors) > 10 else "")
    return str(e) or type(e).__name__


def _version() -> str:
    from sensor import __version__

    return __version__

