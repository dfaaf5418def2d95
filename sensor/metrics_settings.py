"""What the sensor reports about itself can be told: the `event_drops.*` keys (internal alerts when
a source loses events) and the `metrics.*` keys (periodic metrics snapshots), and the settings
built from them. sensor/metrics.py does the reporting.

Light on purpose: sensor/config.py reads these keys to build its schema, so nothing here imports
prometheus_client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sensor.alert import NAMES as PRIORITY_NAMES
from sensor.alert import Priority
from sensor.config_keys import Key, parse_duration, priority_name

if TYPE_CHECKING:
    from sensor.config import Config

EVENT_DROP_KEYS: tuple[Key, ...] = (
    Key("event_drops.alerts", bool, True,
        "Emit \"Falconet internal: <source> event drop\" alerts when a source loses events "
        "(kernel ring buffer full, webhook queue full)."),
    Key("event_drops.interval", str, "60s",
        "At most one event-drop alert per source per interval, carrying the drops since the last one.",
        check=parse_duration),
    Key("event_drops.priority", str, "Critical", "Priority of event-drop alerts (any case).",
        choices=PRIORITY_NAMES, parse=priority_name),
)

METRICS_KEYS: tuple[Key, ...] = (
    Key("metrics.enabled", bool, False,
        "Emit a metrics snapshot every interval (the /metrics endpoint does not need this)."),
    Key("metrics.interval", str, "1h", "Time between metrics snapshots.", check=parse_duration),
    Key("metrics.output_rule", bool, True,
        "Emit each snapshot as the internal alert \"Falconet internal: metrics snapshot\"."),
    Key("metrics.output_file", str, "", "Also append each snapshot as a JSON line to this file."),
)

MIN_INTERVAL = 1.0     # seconds: snapshots are taken on the engine loop's one-second tick


@dataclass(frozen=True, slots=True)
class EventDropSettings:
    """`event_drops.*`: whether, how often (seconds) and at what priority drops are reported."""

    alerts: bool = True
    interval: float = 60.0
    priority: Priority = Priority.CRITICAL

    @classmethod
    def from_config(cls, cfg: Config) -> EventDropSettings:
        return cls(alerts=bool(cfg.get("event_drops.alerts")), interval=cfg.duration("event_drops.interval"),
                   priority=Priority.parse(cfg.get("event_drops.priority")))


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """`metrics.*`: snapshots every `interval` seconds (at least MIN_INTERVAL), as an internal
    alert (`output_rule`) and/or a JSON line appended to `output_file` (empty: none)."""

    enabled: bool = False
    interval: float = 3600.0
    output_rule: bool = True
    output_file: str = ""

    @classmethod
    def from_config(cls, cfg: Config) -> MetricsSettings:
        return cls(enabled=bool(cfg.get("metrics.enabled")),
                   interval=max(MIN_INTERVAL, cfg.duration("metrics.interval")),
                   output_rule=bool(cfg.get("metrics.output_rule")), output_file=cfg.get("metrics.output_file") or "")
