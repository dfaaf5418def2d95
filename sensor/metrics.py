"""Metrics: one Prometheus collector that reads the sensor's counters at scrape time.

The hot path keeps plain counters on the objects that own them (the runtime's events by source and
type, the ruleset's matches per rule, each source's and channel's stats); `SensorCollector` reads
them all through one `snapshot()` call when /metrics is scraped. Names follow Falco's metrics
(falcosecurity_falco_*, falcosecurity_scap_*) where Falco has one, so Falco dashboards and alerts
work; the rest are falconet_*. `metrics.enabled` also emits the same numbers every
`metrics.interval` as the internal alert "Falconet internal: metrics snapshot", as Falco does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sensor.alert import Priority
from sensor.config import Key, parse_duration

CONFIG_KEYS: tuple[Key, ...] = (
    Key("metrics.enabled", bool, False,
        "Emit a metrics snapshot every interval (the /metrics endpoint does not need this)."),
    Key("metrics.interval", str, "1h", "Time between metrics snapshots.", check=parse_duration),
    Key("metrics.output_rule", bool, True,
        "Emit each snapshot as the internal alert \"Falconet internal: metrics snapshot\"."),
    Key("metrics.output_file", str, "", "Also append each snapshot as a JSON line to this file."),
)

Snapshot = dict[str, Any]


class SensorCollector:
    """A prometheus_client collector over `snapshot()` (Sensor.snapshot)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []          # no scrape at registration: the families depend on what ran

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        info = GaugeMetricFamily("falcosecurity_falco_version_info", "Falconet version", labels=["version"])
        info.add_metric([s.get("version", "")], 1)
        yield info
        host = GaugeMetricFamily("falcosecurity_evt_hostname_info", "Hostname in alerts", labels=["hostname"])
        host.add_metric([s.get("hostname", "")], 1)
        yield host
        yield GaugeMetricFamily("falcosecurity_falco_start_timestamp_nanoseconds", "Start time",
                                value=s.get("start_ns", 0))
        yield GaugeMetricFamily("falcosecurity_falco_reload_timestamp_nanoseconds", "Last (re)load time",
                                value=s.get("reload_ns", 0))
        yield CounterMetricFamily("falcosecurity_falco_duration_seconds", "Seconds since start",
                                  value=int(s.get("duration_sec", 0)))

        matches = CounterMetricFamily("falcosecurity_falco_rules_matches",
                                      "Alerts per rule (priority is the syslog severity, 0-7)",
                                      labels=["priority", "rule_name", "source"])
        for (rule, priority, source), n in sorted(s.get("matches", {}).items()):
            matches.add_metric([str(int(Priority.parse(priority))), rule, source], n)
        yield matches

        events = CounterMetricFamily("falconet_events", "Events run through the rules, by source and type",
                                     labels=["source", "evt_type"])
        for (source, evt_type), n in sorted(s.get("events", {}).items()):
            events.add_metric([source, evt_type], n)
        yield events

        src_events = CounterMetricFamily("falconet_source_events", "Events a source produced",
                                         labels=["source_name", "evt_source"])
        src_drops = CounterMetricFamily("falconet_source_drops", "Events a source lost before the rules",
                                        labels=["source_name", "evt_source"])
        kernel_evts = kernel_drops = 0
        for name, st in sorted(s.get("sources", {}).items()):
            evt_source = str(st.get("source", name))
            src_events.add_metric([name, evt_source], int(st.get("events", 0)))
            src_drops.add_metric([name, evt_source], int(st.get("drops", 0)))
            if evt_source == "syscall":
                kernel_evts += int(st.get("events", 0))
                kernel_drops += int(st.get("drops", 0))
        yield src_events
        yield src_drops
        yield CounterMetricFamily("falcosecurity_scap_n_evts", "Syscall events read from the kernel",
                                  value=kernel_evts)
        yield CounterMetricFamily("falcosecurity_scap_n_drops", "Syscall events the kernel side dropped",
                                  value=kernel_drops)

        out = s.get("outputs") or {}
        channels = out.get("channels", {})
        yield CounterMetricFamily("falcosecurity_falco_outputs_queue_num_drops",
                                  "Alerts dropped by the outputs (every channel, every reason)",
                                  value=int(out.get("drops", 0)))
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
        for name, st in sorted(channels.items()):
            store = "spool" if st.get("spooled") else "memory"
            sent.add_metric([name], st.get("sent", 0))
            errors.add_metric([name], st.get("errors", 0))
            for reason, n in sorted(st.get("drops", {}).items()):
                drops.add_metric([name, reason], n)
            depth.add_metric([name, store], st.get("pending", 0))
            age.add_metric([name, store], st.get("oldest_age", 0.0))
            if st.get("spooled"):
                spool_bytes.add_metric([name], st.get("spool_bytes", 0))
            up.add_metric([name], 1 if st.get("up", True) else 0)
            restarts.add_metric([name], st.get("restarts", 0))
            store_errors.add_metric([name], st.get("store_errors", 0))
        yield from (sent, errors, drops, depth, age, spool_bytes, up, restarts, store_errors)

        flood = out.get("flood") or {}
        suppressed = CounterMetricFamily("falconet_flood_suppressed", "Alerts folded into flood summaries",
                                         labels=["rule_name"])
        for rule, n in sorted(flood.get("by_rule", {}).items()):
            suppressed.add_metric([rule], n)
        yield suppressed

        reloads = CounterMetricFamily("falconet_reloads", "SIGHUP reloads", labels=["result"])
        reloads.add_metric(["ok"], s.get("reloads", 0))
        reloads.add_metric(["failed"], s.get("reload_failures", 0))
        yield reloads

        actions = CounterMetricFamily("falconet_response_actions", "Response outcomes per action",
                                      labels=["action", "outcome"])
        for action, st in sorted((s.get("response_actions") or {}).items()):
            for outcome in ("done", "skipped", "failed", "drops"):
                actions.add_metric([action, outcome], int(st.get(outcome, 0)))
        yield actions


def exposition(collector: SensorCollector) -> bytes:
    """The Prometheus text exposition of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)          # type: ignore[arg-type]
    return generate_latest(registry)


def snapshot_fields(s: Snapshot) -> dict[str, Any]:
    """The flat output_fields of a metrics snapshot alert (Falco's falco.*/scap.* names where they exist)."""
    out = s.get("outputs") or {}
    sources = s.get("sources", {})
    fields: dict[str, Any] = {
        "falco.version": s.get("version"),
        "evt.hostname": s.get("hostname"),
        "falco.start_ts": s.get("start_ns"),
        "falco.reload_ts": s.get("reload_ns"),
        "falco.duration_sec": int(s.get("duration_sec", 0)),
        "falco.num_evts": s.get("events_total", 0),
        "falco.outputs_queue_num_drops": int(out.get("drops", 0)),
        "falconet.num_alerts": s.get("alerts_total", 0),
        "falconet.reloads": s.get("reloads", 0),
        "falconet.reload_failures": s.get("reload_failures", 0),
    }
    syscall = [st for st in sources.values() if st.get("source") == "syscall"]
    if syscall:
        fields["scap.n_evts"] = sum(int(st.get("events", 0)) for st in syscall)
        fields["scap.n_drops"] = sum(int(st.get("drops", 0)) for st in syscall)
    for name, st in sorted(sources.items()):
        fields[f"falconet.source.{name}.events"] = int(st.get("events", 0))
        fields[f"falconet.source.{name}.drops"] = int(st.get("drops", 0))
    for name, st in sorted(out.get("channels", {}).items()):
        fields[f"falconet.output.{name}.sent"] = st.get("sent", 0)
        fields[f"falconet.output.{name}.pending"] = st.get("pending", 0)
        fields[f"falconet.output.{name}.drops"] = sum(st.get("drops", {}).values())
    return fields
