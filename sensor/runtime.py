"""Wires sources → engine → outputs (and response) for `falconet run` and `falconet replay`.

`Runtime` is the engine loop: one thread polls every source in turn, runs each event through the
ruleset and hands the alerts to a sink, which never blocks it (sensor/outputs/ queues per channel).
`replay` uses it alone. `Sensor` is everything `falconet run` starts around it: configuration and
rules (`prepare`, also the dry run), sources, outputs, response, the webserver and internal
alerts; on SIGHUP it prepares the new configuration and rules as a dry run and swaps them in, or
keeps running on the old ones and says why in a Critical internal alert. It keeps only the
wiring: each part is built from its typed settings (sensor/settings.py), a reload rebuilds a part
exactly when its settings differ, and what the sensor reports about itself is sensor/metrics.py's.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sensor import ENGINE_VERSION, __version__
from sensor.alert import Alert, Priority
from sensor.config import Config
from sensor.config import load as load_config
from sensor.engine.ruleset import Ruleset
from sensor.errors import ConfigError, UnavailableError
from sensor.metrics import Lifecycle, Reports, SensorCollector, Snapshot, SourceStats, take_snapshot
from sensor.outputs import fluentlog
from sensor.outputs.build import Serializer, build_outputs, describe_outputs
from sensor.outputs.dispatch import Outputs
from sensor.outputs.internal import RELOAD_FAILED, RELOADED, internal_alert
from sensor.response.build import build_response, describe_response
from sensor.response.worker import ResponseWorker
from sensor.rulesetup import check_sources, load_configured
from sensor.settings import SensorSettings
from sensor.sources import Source, syscall
from sensor.sources.k8s_audit.build import build_sources as k8s_audit_sources
from sensor.sources.settings import SourceSettings
from sensor.webserver import WebServer
from sensor.webserver_settings import WebServerSettings

log = logging.getLogger("falconet")

TICK = 1.0          # seconds between housekeeping passes of the engine loop


@dataclass
class Summary:
    """What a run did, for the closing line and for tests."""

    events: int = 0
    alerts: int = 0
    seconds: float = 0.0
    by_source: dict[str, SourceStats] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)             # Outputs.stats()
    reloads: int = 0
    reload_failures: int = 0
    matches: dict[tuple[str, Priority, str], int] = field(default_factory=dict)   # (rule, priority, source)

    @property
    def source_drops(self) -> int:
        return sum(s.drops for s in self.by_source.values())

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
        for (rule, p, _source), n in self.matches.items():
            by_priority[p] = by_priority.get(p, 0) + n
            by_rule[rule] = by_rule.get(rule, 0) + n
        lines = [f"Events detected: {sum(by_rule.values())}", "Rule counts by severity:"]
        lines += [f"   {p.name}: {n}" for p, n in sorted(by_priority.items())]
        lines.append("Triggered rules by rule name:")
        lines += [f"   {rule}: {n}" for rule, n in sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))]
        return lines


class Runtime:
    """Drives sources through a ruleset into a sink of alerts until stopped."""

    def __init__(self, ruleset: Ruleset, sources: Sequence[Source], sink: Callable[[Alert], None], *,
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
        self._retired_matches: dict[tuple[str, Priority, str], int] = {}
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

    def swap(self, ruleset: Ruleset | None = None, sources: Sequence[Source] | None = None,
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

    def source_stats(self) -> list[SourceStats]:
        """Each source's counters since the start: those of sources a reload replaced are added in,
        so counters never go back."""
        counters: dict[str, dict[str, Any]] = {name: dict(st) for name, st in self._retired_sources.items()}
        kinds: dict[str, str] = {}
        for s in self.sources:
            merged = counters.setdefault(s.name, {})
            for k, v in s.stats().items():
                merged[k] = merged.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v
            kinds[s.name] = getattr(s, "source", None) or _event_source(s.name)
        return [SourceStats.of(name, kinds.get(name) or _event_source(name), c) for name, c in counters.items()]

    @staticmethod
    def rule_matches(ruleset: Ruleset) -> dict[tuple[str, Priority, str], int]:
        out: dict[tuple[str, Priority, str], int] = {}
        for r, n in zip(ruleset.rules, ruleset.match_counts, strict=False):
            if n:
                k = (r.name, r.priority, r.source)
                out[k] = out.get(k, 0) + n
        return out

    def matches(self) -> dict[tuple[str, Priority, str], int]:
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
                       by_source={st.name: st for st in self.source_stats()}, matches=self.matches())

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
        current: str | None = None
        by_type: dict[str, int] = {}
        for ev in events:
            # Counting by type keyed on the (hash-cached) type string alone costs a third of a
            # (source, type) tuple key; the source rarely changes within a batch.
            if ev.source is not current:
                current = ev.source
                by_type = counts.setdefault(current, {})
            t = ev.type
            by_type[t] = by_type.get(t, 0) + 1
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
    settings: SensorSettings
    ruleset: Ruleset
    rule_files: list[str]
    outputs: list[str]

    def describe(self) -> list[str]:
        enabled = len(self.ruleset.rules)
        total = len(self.ruleset.all_rules)
        lines = [f"Configuration: {self.cfg.path or 'defaults'}"
                 + (f" (with {len(self.cfg.overrides)} -o overrides)" if self.cfg.overrides else "")]
        lines += [f"Rules file: {f}" for f in self.rule_files]
        lines.append(f"Rules: {enabled} enabled of {total} loaded, sources "
                     f"{', '.join(sorted({r.source for r in self.ruleset.rules})) or 'none'}")
        for d in self.ruleset.warnings[:20]:
            lines.append(f"Warning: {d}")
        lines.append("Sources: " + (", ".join(self.settings.sources.planned()) or "none"))
        lines.append(f"Buffered outputs: {str(self.settings.outputs.buffered).lower()} "
                     f"({self.cfg.origin('buffered_outputs')})")
        if self.settings.sources.syscall.enabled:
            lines += syscall.describe(self.settings.sources.syscall, self.ruleset)
        lines += [f"Output {line}" for line in self.outputs] or ["Outputs: none"]
        # Checks the actions as `run` would build them.
        lines += describe_response(self.settings.response, self.ruleset)
        return lines


def prepare(options: RunOptions, serializer: Serializer | None = None) -> Plan:
    """Load and check configuration, rules and outputs without starting anything.

    Raises ConfigError, RulesLoadError or UnavailableError.
    """
    cfg = load_config(options.config_path, options.all_overrides())
    settings = SensorSettings.from_config(cfg)
    ruleset = load_configured(settings.rules, list(options.rules_files), disable=list(options.disable),
                              disable_tags=list(options.disable_tags), enable_tags=list(options.enable_tags))
    if options.require_source:
        check_sources(settings.rules, settings.sources.enabled(), ruleset,
                      [*(f"-D {d}" for d in options.disable), *(f"-T {t}" for t in options.disable_tags),
                       *(f"-t {t}" for t in options.enable_tags)])
    return Plan(cfg, settings, ruleset, list(ruleset.files), describe_outputs(settings.outputs, serializer))


def announce(plan: Plan, verbose: bool = False) -> None:
    """What Falco says at start-up: the version, the configuration file, the system, the rule
    files loaded (with their rule counts)."""
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
    for r in rs.all_rules:
        f = r.item.loc.name
        loaded[f] = loaded.get(f, 0) + 1
        enabled[f] = enabled.get(f, 0) + int(r.enabled)
    log.info("Loading rules from:")
    for f in plan.rule_files:
        log.info("   %s | %d rules, %d enabled", f, loaded.get(f, 0), enabled.get(f, 0))
    warnings = rs.warnings
    if warnings:
        log.info("%d rule warnings%s", len(warnings), "" if verbose else " (-v prints them; "
                 "`falconet -V FILE` explains each)")
        if verbose:
            for d in warnings:
                log.warning("%s", d)
    log.info("%d rules enabled of %d loaded", len(rs.rules), len(rs.all_rules))


SourceFactory = Callable[[SourceSettings, Ruleset], list[Source]]


def configured_sources(settings: SourceSettings, ruleset: Ruleset) -> list[Source]:
    """The sources the settings enable: syscall capture, Kubernetes audit webhook and files."""
    sources: list[Source] = []
    if settings.syscall.enabled:
        why = syscall.preflight()
        if why:
            raise UnavailableError(why)
        sources.append(syscall.SyscallSource(settings.syscall, ruleset))
    sources += k8s_audit_sources(settings.k8s_audit)
    if not sources:
        raise ConfigError("no event source is enabled: syscall.enabled is false and no k8s_audit source "
                          "is configured", hint="set syscall.enabled=true, k8s_audit.webhook.enabled=true "
                          "or k8s_audit.files")
    return sources


class Sensor:
    """Everything `falconet run` runs; `run()` blocks until SIGINT/SIGTERM or the duration ends."""

    def __init__(self, options: RunOptions, *, make_sources: SourceFactory = configured_sources,
                 stdout: BinaryIO | None = None, serializer: Serializer | None = None) -> None:
        self.options = options
        self.make_sources = make_sources
        self.stdout = stdout
        self.serializer = serializer
        self.plan: Plan | None = None
        self.outputs: Outputs | None = None
        self.response: ResponseWorker | None = None
        self.webserver: WebServer | None = None
        self.runtime: Runtime | None = None
        self.reports: Reports | None = None
        self.start_ns = time.time_ns()
        self.reload_ns = self.start_ns
        self.reloads = 0
        self.reload_failures = 0
        self.hostname = ""
        self.log_handler: fluentlog.FluentLogHandler | None = None

    # -- building ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare and build everything; sources start when `run` begins."""
        plan = self.plan = prepare(self.options, self.serializer)
        settings = plan.settings
        self.hostname = settings.hostname
        sources = self.make_sources(settings.sources, plan.ruleset)   # fails first when capture cannot run here
        announce(plan, self.options.verbose)
        self.outputs = build_outputs(settings.outputs, stdout=self.stdout, serializer=self.serializer)
        try:
            self.log_handler = fluentlog.attach(settings.outputs.fluent, self.hostname)
            self.response = build_response(settings.response, self.submit, plan.ruleset)
            self.webserver = self._build_webserver(settings.webserver)
        except BaseException:
            self.close()
            raise
        log.info("Enabled event sources: %s", ", ".join(sorted({_event_source(s.name) for s in sources})))
        self.runtime = Runtime(plan.ruleset, sources, self.sink, on_tick=self.tick, on_reload=self.reload)
        self.reports = Reports(self.submit, settings.metrics)

    def _build_webserver(self, settings: WebServerSettings) -> WebServer | None:
        if not settings.enabled:
            return None
        return WebServer.from_settings(settings, healthy=self.healthy,
                                       collector=SensorCollector(self.snapshot)).start()

    def sink(self, alert: Alert) -> None:
        """Every alert of the engine: to the outputs, and to the response worker."""
        self.submit(alert)
        if self.response is not None:
            self.response.submit(alert)

    def submit(self, alert: Alert) -> None:
        """To the outputs of the moment (a reload may replace them): for response records and
        internal alerts."""
        outputs = self.outputs
        assert outputs is not None, "the sensor is not started"
        outputs.submit(alert)

    # -- running -----------------------------------------------------------------------------------

    def run(self, duration: float | None = None, install_signals: bool = True) -> Summary:
        if self.runtime is None:
            self.start()
        rt = self.runtime
        assert rt is not None
        if install_signals:
            rt.install_signal_handlers(reopen=self._reopen)
        try:
            summary = rt.run(duration)
            self._report_event_drops(final=True)
        finally:
            self.close()
        summary.outputs = self.outputs.stats() if self.outputs is not None else {}
        summary.reloads = self.reloads
        summary.reload_failures = self.reload_failures
        return summary

    def _reopen(self) -> None:
        if self.outputs is not None:
            self.outputs.reopen()

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
            fluentlog.detach(self.log_handler)
            self.log_handler = None

    def healthy(self) -> bool:
        """The engine loop went round in the last 10 seconds and no output channel's worker died."""
        rt = self.runtime
        outputs_ok = self.outputs is None or not self.outputs.dead_channels()
        return rt is not None and time.monotonic() - rt.heartbeat < 10.0 and outputs_ok

    # -- reload (engine thread, on SIGHUP) ---------------------------------------------------------

    def reload(self) -> None:
        """Dry-run the configuration and rules as they are now on disk; swap them in, or keep the old.
        Each part is rebuilt exactly when its settings differ from the running ones."""
        rt, old, outputs = self.runtime, self.plan, self.outputs
        assert rt is not None and old is not None and outputs is not None
        log.info("SIGHUP: reloading configuration and rules")
        try:
            plan = prepare(self.options, self.serializer)
            new = plan.settings
            new_sources = None
            if (new.sources != old.settings.sources
                    or plan.ruleset.event_types("syscall") != old.ruleset.event_types("syscall")
                    or _kernel_filter(plan) != _kernel_filter(old)):
                new_sources = self.make_sources(new.sources, plan.ruleset)
        except Exception as e:
            self._reload_failed(e)
            return
        if new.outputs != old.settings.outputs:
            # The old channels stop at once; what their memory queues hold moves to the new ones,
            # what their spools hold stays on disk for the new ones to deliver.
            left = outputs.close(timeout=0, keep=True)
            try:
                self.outputs = build_outputs(new.outputs, stdout=self.stdout, serializer=self.serializer)
            except Exception as e:
                self.outputs = build_outputs(old.settings.outputs, stdout=self.stdout, serializer=self.serializer)
                self.outputs.adopt(left)
                self._reload_failed(e)
                return
            self.outputs.adopt(left)
        # A match.condition may use the rules' lists and macros: new ones rebuild it too.
        if (new.response != old.settings.response
                or (plan.ruleset.lists, plan.ruleset.macros) != (old.ruleset.lists, old.ruleset.macros)):
            if self.response is not None:
                self.response.stop()
            self.response = build_response(new.response, self.submit, plan.ruleset)
        if new.webserver != old.settings.webserver:
            if self.webserver is not None:
                self.webserver.stop()
            self.webserver = self._build_webserver(new.webserver)
        rt.swap(ruleset=plan.ruleset, sources=new_sources)
        self.plan = plan
        self.hostname = new.hostname
        self.reloads += 1
        self.reload_ns = time.time_ns()
        text = (f"Configuration and rules reloaded: {len(plan.ruleset.rules)} rules enabled from "
                f"{len(plan.rule_files)} files" + ("; sources restarted" if new_sources is not None else ""))
        log.info("%s", text)
        self.submit(internal_alert(RELOADED, Priority.INFORMATIONAL, text,
                                   {"falconet.reload.rules": len(plan.ruleset.rules),
                                    "falconet.reload.files": plan.rule_files}, hostname=self.hostname))

    def _reload_failed(self, e: Exception) -> None:
        self.reload_failures += 1
        why = _error_text(e)
        log.error("reload failed, still running the previous configuration and rules: %s", why)
        self.submit(internal_alert(
            RELOAD_FAILED, Priority.CRITICAL,
            f"Reloading configuration and rules failed; still running the previous ones: {why}",
            {"falconet.reload.error": why, "falconet.reload.config": plan_path(self.options)},
            hostname=self.hostname))

    # -- housekeeping (engine thread, every second) --------------------------------------------------

    def tick(self) -> None:
        self._report_event_drops()
        self._report_notices()
        if self.reports is not None and self.plan is not None:
            self.reports.metrics(self.snapshot, self.plan.settings.metrics, self.hostname)

    def _report_event_drops(self, final: bool = False) -> None:
        if self.reports is not None and self.runtime is not None and self.plan is not None:
            self.reports.event_drops(self.runtime.source_stats(), self.plan.settings.event_drops, self.hostname,
                                     final)

    def _report_notices(self) -> None:
        """Internal alerts a source raised about itself (the syscall source: a process that
        flooded the capture and was throttled)."""
        rt = self.runtime
        if rt is None:
            return
        for src in rt.sources:
            notices = getattr(src, "notices", None)
            if notices is None:
                continue
            for rule, priority, output, fields in notices():
                self.submit(internal_alert(rule, priority, output, fields, hostname=self.hostname))

    # -- what /metrics reads -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every counter the sensor keeps, read at once (by /metrics and metrics snapshots)."""
        plan = self.plan
        life = Lifecycle(__version__, self.hostname, self.start_ns, self.reload_ns, self.reloads,
                         self.reload_failures, tuple(plan.rule_files) if plan else (),
                         plan.cfg.path if plan else None)
        return take_snapshot(life, self.runtime, self.outputs, self.response)


def _kernel_filter(plan: Plan) -> object:
    """What the syscall capture filters in the kernel for a plan's rules: new rules that change it
    need a new capture."""
    settings = plan.settings.sources.syscall
    return syscall.predicates(settings, plan.ruleset) if settings.enabled else None


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
