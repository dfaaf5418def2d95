"""Metrics: a typed snapshot of the sensor's counters, the Prometheus collector that reads it, and
the internal alerts the sensor sends about itself (event drops, periodic metrics snapshots).

The hot path keeps plain counters on the objects that own them (the runtime's events by source and
type, the ruleset's matches per rule, each source's, channel's and response action's counters);
`take_snapshot` reads them all at once into frozen dataclasses (`Snapshot`), and `SensorCollector`
turns a snapshot into metric families when /metrics is scraped, as prometheus_client's custom
collectors read their owners. Names follow Falco's metrics (falcosecurity_falco_*,
falcosecurity_scap_*) where Falco has one, so Falco dashboards and alerts work; the rest are
falconet_*.

`Reports`, on the engine thread's one-second tick, turns the same counters into internal alerts:
"Falconet internal: <source> event drop" when a source lost events (`event_drops.*`), and every
`metrics.interval` "Falconet internal: metrics snapshot" (`metrics.*`, as Falco does).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sensor.alert import Alert, Priority
from sensor.metrics_settings import EventDropSettings, MetricsSettings
from sensor.outputs.channel import Channel
from sensor.outputs.dispatch import Outputs
from sensor.outputs.internal import EVENT_DROP, METRICS_SNAPSHOT, internal_alert
from sensor.outputs.spool import DiskSpool

log = logging.getLogger("falconet")

# -- the snapshot ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceStats:
    """One source's counters since the start (a reload's replaced sources included). `name` is
    the source ("syscall", "k8s_audit_webhook", "k8s_audit_file", "replay"), `source` the event
    source it feeds; `counters` everything it counts, by its names (drops_* are drops by reason)."""

    name: str
    source: str
    events: int = 0
    drops: int = 0
    counters: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, source: str, counters: Mapping[str, Any]) -> SourceStats:
        return cls(name, source, int(counters.get("events", 0)), int(counters.get("drops", 0)), dict(counters))

    def drop_reasons(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.counters.items() if k.startswith("drops_")}


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """One output channel: what it delivered, failed, dropped (by reason) and holds."""

    name: str
    spooled: bool
    sent: int
    errors: int
    drops: Mapping[str, int]
    pending: int
    oldest_age: float
    spool_bytes: int
    up: bool
    restarts: int
    store_errors: int

    @classmethod
    def of(cls, ch: Channel) -> ChannelStats:
        spool_bytes = ch.store.bytes_used() if isinstance(ch.store, DiskSpool) else 0
        return cls(ch.name, ch.spooled, ch.sent, ch.errors, ch.drop_counts(), ch.pending(), ch.store.oldest_age(),
                   spool_bytes, not ch.dead, ch.restarts, ch.store_errors)


@dataclass(frozen=True, slots=True)
class OutputStats:
    """The outputs: every channel, all their drops, and the alerts flood control folded by rule."""

    drops: int = 0
    channels: tuple[ChannelStats, ...] = ()
    flood_suppressed: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, outputs: Outputs) -> OutputStats:
        flood = dict(outputs.flood.by_rule) if outputs.flood is not None else {}
        return cls(outputs.drops(), tuple(ChannelStats.of(ch) for ch in outputs.channels), flood)


@dataclass(frozen=True, slots=True)
class ActionStats:
    """One response action's outcomes."""

    name: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    drops: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every counter the sensor keeps, read at one moment. `events` by (source, evt.type);
    `matches` by (rule, priority, source)."""

    version: str = ""
    hostname: str = ""
    start_ns: int = 0
    reload_ns: int = 0
    duration_sec: float = 0.0
    events_total: int = 0
    alerts_total: int = 0
    events: Mapping[tuple[str, str], int] = field(default_factory=dict)
    matches: Mapping[tuple[str, Priority, str], int] = field(default_factory=dict)
    sources: tuple[SourceStats, ...] = ()
    outputs: OutputStats = OutputStats()
    actions: tuple[ActionStats, ...] = ()
    reloads: int = 0
    reload_failures: int = 0
    rule_files: tuple[str, ...] = ()
    config_path: str | None = None


class Counted(Protocol):
    """What a snapshot reads of the engine loop (sensor.runtime.Runtime)."""

    events: int
    alerts: int

    @property
    def event_counts(self) -> dict[tuple[str, str], int]: ...

    def matches(self) -> dict[tuple[str, Priority, str], int]: ...

    def source_stats(self) -> list[SourceStats]: ...


class Acting(Protocol):
    """What a snapshot reads of the response worker (sensor.response.worker.ResponseWorker)."""

    def action_stats(self) -> dict[str, dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The sensor's own facts a snapshot carries."""

    version: str
    hostname: str
    start_ns: int
    reload_ns: int
    reloads: int
    reload_failures: int
    rule_files: tuple[str, ...] = ()
    config_path: str | None = None


def take_snapshot(life: Lifecycle, runtime: Counted | None, outputs: Outputs | None,
                  response: Acting | None) -> Snapshot:
    """Read every owner's counters now."""
    actions = tuple(ActionStats(name, st["done"], st["skipped"], st["failed"], st["drops"])
                    for name, st in (response.action_stats() if response is not None else {}).items())
    return Snapshot(
        version=life.version, hostname=life.hostname, start_ns=life.start_ns, reload_ns=life.reload_ns,
        duration_sec=(time.time_ns() - life.start_ns) / 1e9,
        events_total=runtime.events if runtime else 0, alerts_total=runtime.alerts if runtime else 0,
        events=runtime.event_counts if runtime else {}, matches=runtime.matches() if runtime else {},
        sources=tuple(runtime.source_stats()) if runtime else (),
        outputs=OutputStats.of(outputs) if outputs is not None else OutputStats(), actions=actions,
        reloads=life.reloads, reload_failures=life.reload_failures, rule_files=life.rule_files,
        config_path=life.config_path)


# -- /metrics --------------------------------------------------------------------------------------


class SensorCollector(Collector):
    """A prometheus_client collector over `snapshot()` (Sensor.snapshot)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []          # no scrape at registration: the families depend on what ran

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        info = GaugeMetricFamily("falcosecurity_falco_version_info", "Falconet version", labels=["version"])
        info.add_metric([s.version], 1)
        yield info
        host = GaugeMetricFamily("falcosecurity_evt_hostname_info", "Hostname in alerts", labels=["hostname"])
        host.add_metric([s.hostname], 1)
        yield host
        yield GaugeMetricFamily("falcosecurity_falco_start_timestamp_nanoseconds", "Start time", value=s.start_ns)
        yield GaugeMetricFamily("falcosecurity_falco_reload_timestamp_nanoseconds", "Last (re)load time",
                                value=s.reload_ns)
        yield CounterMetricFamily("falcosecurity_falco_duration_seconds", "Seconds since start",
                                  value=int(s.duration_sec))
        yield self._matches(s)
        yield self._events(s)
        yield from self._sources(s)
        yield from self._outputs(s.outputs)
        reloads = CounterMetricFamily("falconet_reloads", "SIGHUP reloads", labels=["result"])
        reloads.add_metric(["ok"], s.reloads)
        reloads.add_metric(["failed"], s.reload_failures)
        yield reloads
        actions = CounterMetricFamily("falconet_response_actions", "Response outcomes per action",
                                      labels=["action", "outcome"])
        for a in sorted(s.actions, key=lambda a: a.name):
            for outcome, n in (("done", a.done), ("skipped", a.skipped), ("failed", a.failed), ("drops", a.drops)):
                actions.add_metric([a.name, outcome], n)
        yield actions

    @staticmethod
    def _matches(s: Snapshot) -> Metric:
        matches = CounterMetricFamily("falcosecurity_falco_rules_matches",
                                      "Alerts per rule (priority is the syslog severity, 0-7)",
                                      labels=["priority", "rule_name", "source"])
        for (rule, priority, source), n in sorted(s.matches.items()):
            matches.add_metric([str(int(priority)), rule, source], n)
        return matches

    @staticmethod
    def _events(s: Snapshot) -> Metric:
        events = CounterMetricFamily("falconet_events", "Events run through the rules, by source and type",
                                     labels=["source", "evt_type"])
        for (source, evt_type), n in sorted(s.events.items()):
            events.add_metric([source, evt_type], n)
        return events

    @staticmethod
    def _sources(s: Snapshot) -> Iterator[Metric]:
        src_events = CounterMetricFamily("falconet_source_events", "Events a source produced",
                                         labels=["source_name", "evt_source"])
        src_drops = CounterMetricFamily("falconet_source_drops", "Events a source lost before the rules",
                                        labels=["source_name", "evt_source"])
        for st in sorted(s.sources, key=lambda st: st.name):
            src_events.add_metric([st.name, st.source], st.events)
            src_drops.add_metric([st.name, st.source], st.drops)
        kernel = [st for st in s.sources if st.source == "syscall"]
        yield src_events
        yield src_drops
        yield CounterMetricFamily("falcosecurity_scap_n_evts", "Syscall events read from the kernel",
                                  value=sum(st.events for st in kernel))
        yield CounterMetricFamily("falcosecurity_scap_n_drops", "Syscall events the kernel side dropped",
                                  value=sum(st.drops for st in kernel))

    @staticmethod
    def _outputs(out: OutputStats) -> Iterator[Metric]:
        yield CounterMetricFamily("falcosecurity_falco_outputs_queue_num_drops",
                                  "Alerts dropped by the outputs (every channel, every reason)", value=out.drops)
        sent = CounterMetricFamily("falconet_output_alerts", "Alerts delivered", labels=["channel"])
        errors = CounterMetricFamily("falconet_output_errors", "Failed delivery attempts", labels=["channel"])
        drops = CounterMetricFamily("falconet_output_drops", "Alerts dropped", labels=["channel", "reason"])
        depth = GaugeMetricFamily("falconet_output_queue_depth", "Alerts waiting for delivery",
                                  labels=["channel", "store"])
        age = GaugeMetricFamily("falconet_output_queue_oldest_age_seconds",
                                "How long the oldest waiting alert has waited", labels=["channel", "store"])
        spool_bytes = GaugeMetricFamily("falconet_output_spool_bytes", "Disk used by a channel's spool",
                                        labels=["channel"])
        up = GaugeMetricFamily("falconet_output_up", "1 while the channel's worker runs, 0 once it died",
                               labels=["channel"])
        restarts = CounterMetricFamily("falconet_output_worker_restarts", "Worker restarts after a failure",
                                       labels=["channel"])
        store_errors = CounterMetricFamily("falconet_output_store_errors",
                                           "Failed spool reads and writes (disk full, I/O), each retried",
                                           labels=["channel"])
        for ch in sorted(out.channels, key=lambda ch: ch.name):
            store = "spool" if ch.spooled else "memory"
            sent.add_metric([ch.name], ch.sent)
            errors.add_metric([ch.name], ch.errors)
            for reason, n in sorted(ch.drops.items()):
                drops.add_metric([ch.name, reason], n)
            depth.add_metric([ch.name, store], ch.pending)
            age.add_metric([ch.name, store], ch.oldest_age)
            if ch.spooled:
                spool_bytes.add_metric([ch.name], ch.spool_bytes)
            up.add_metric([ch.name], 1 if ch.up else 0)
            restarts.add_metric([ch.name], ch.restarts)
            store_errors.add_metric([ch.name], ch.store_errors)
        yield from (sent, errors, drops, depth, age, spool_bytes, up, restarts, store_errors)
        suppressed = CounterMetricFamily("falconet_flood_suppressed", "Alerts folded into flood summaries",
                                         labels=["rule_name"])
        for rule, n in sorted(out.flood_suppressed.items()):
            suppressed.add_metric([rule], n)
        yield suppressed


def exposition(collector: Collector) -> bytes:
    """The Prometheus text exposition of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


# -- internal alerts about the sensor itself -------------------------------------------------------


def snapshot_fields(s: Snapshot) -> dict[str, Any]:
    """The flat output_fields of a metrics snapshot alert (Falco's falco.*/scap.* names where they exist)."""
    fields: dict[str, Any] = {
        "falco.version": s.version,
        "evt.hostname": s.hostname,
        "falco.start_ts": s.start_ns,
        "falco.reload_ts": s.reload_ns,
        "falco.duration_sec": int(s.duration_sec),
        "falco.num_evts": s.events_total,
        "falco.outputs_queue_num_drops": s.outputs.drops,
        "falconet.num_alerts": s.alerts_total,
        "falconet.reloads": s.reloads,
        "falconet.reload_failures": s.reload_failures,
    }
    syscall = [st for st in s.sources if st.source == "syscall"]
    if syscall:
        fields["scap.n_evts"] = sum(st.events for st in syscall)
        fields["scap.n_drops"] = sum(st.drops for st in syscall)
    for st in sorted(s.sources, key=lambda st: st.name):
        fields[f"falconet.source.{st.name}.events"] = st.events
        fields[f"falconet.source.{st.name}.drops"] = st.drops
    for ch in sorted(s.outputs.channels, key=lambda ch: ch.name):
        fields[f"falconet.output.{ch.name}.sent"] = ch.sent
        fields[f"falconet.output.{ch.name}.pending"] = ch.pending
        fields[f"falconet.output.{ch.name}.drops"] = sum(ch.drops.values())
    return fields


class Reports:
    """The internal alerts the sensor sends about itself, handed to `submit` (the outputs of the
    moment). Called on the engine thread; what was reported survives reloads."""

    def __init__(self, submit: Callable[[Alert], None], metrics: MetricsSettings) -> None:
        self.submit = submit
        self._drops_reported: dict[str, int] = {}
        self._drops_last_alert: dict[str, float] = {}
        self._next_snapshot = time.monotonic() + metrics.interval

    def event_drops(self, sources: Iterable[SourceStats], settings: EventDropSettings, hostname: str,
                    final: bool = False) -> None:
        """One alert per source that lost events since its last one, at most one per interval
        (`final`: at exit, whatever the interval)."""
        if not settings.alerts:
            return
        now = time.monotonic()
        for st in sources:
            seen = self._drops_reported.get(st.name, 0)
            if st.drops <= seen:
                continue
            if not final and now - self._drops_last_alert.get(st.name, -1e18) < settings.interval:
                continue
            self._drops_reported[st.name] = st.drops
            self._drops_last_alert[st.name] = now
            delta = st.drops - seen
            fields: dict[str, Any] = {"n_drops": delta, "n_drops_total": st.drops, "n_evts": st.events,
                                      "evt.source": st.source}
            fields.update({f"n_{k}": v for k, v in st.drop_reasons().items()})
            self.submit(internal_alert(
                EVENT_DROP.format(source=st.source), settings.priority,
                f"{delta} {st.source} events dropped by {st.name} since the last report "
                f"({st.drops} in total); rules did not see them", fields, hostname=hostname))

    def metrics(self, snapshot: Callable[[], Snapshot], settings: MetricsSettings, hostname: str) -> None:
        """Every `metrics.interval`: the snapshot as an internal alert and/or a line of output_file."""
        if not settings.enabled or time.monotonic() < self._next_snapshot:
            return
        self._next_snapshot = time.monotonic() + settings.interval
        fields = snapshot_fields(snapshot())
        if settings.output_rule:
            self.submit(internal_alert(METRICS_SNAPSHOT, Priority.INFORMATIONAL, "Falconet metrics snapshot",
                                       fields, hostname=hostname))
        if settings.output_file:
            try:
                with open(settings.output_file, "a") as f:
                    f.write(json.dumps({"time": time.time_ns(), "output_fields": fields}, default=str) + "\n")
            except OSError as e:
                log.error("metrics.output_file %s: %s", settings.output_file, e.strerror)
