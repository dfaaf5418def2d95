"""The sensor's settings: Falco's top-level keys, and every part's typed settings in one value.

`SensorSettings.from_config(cfg)` turns a loaded Config into frozen dataclasses, one per part, each
built by that part's own settings module (sensor/outputs/settings.py, sensor/response/settings.py,
sensor/sources/settings.py, sensor/webserver_settings.py, sensor/metrics_settings.py), with values
converted once: durations in seconds, sizes in bytes, priorities as sensor.alert.Priority, paths
resolved. Parts are built from their settings, never from the Config, and a reload rebuilds a
part exactly when its settings differ (`new.outputs != old.outputs`).

This module also declares the top-level keys, Falco's, in falco.yaml's order (the bundled
falconet.yaml lists them first): rule loading (RuleSettings), rendering (read by the outputs'
RenderSettings), static_fields, hostname, state_dir, log_level and the syscall source's switch.
Light on purpose: sensor/config.py reads these keys to build its schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensor.alert import CHOICES as PRIORITY_CHOICES
from sensor.alert import Priority
from sensor.config_keys import Key, Origins, priority_name
from sensor.metrics_settings import EventDropSettings, MetricsSettings
from sensor.outputs.settings import OutputSettings
from sensor.response.settings import ResponseSettings
from sensor.sources.settings import SourceSettings
from sensor.webserver_settings import WebServerSettings

if TYPE_CHECKING:
    from sensor.config import Config

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

# The engine cannot import the configuration (DESIGN.md's import rules), so its keys live here.
CONFIG_KEYS: tuple[Key, ...] = (
    Key("rules_files", list, ["${bundled}", "${bundled}/rules.d", "/etc/falconet/rules.d"],
        "Rule files and directories, loaded in order (a directory: its *.yaml files, sorted). "
        "${bundled} is the directory of the rules that ship with Falconet.", items=str),
    Key("rules", list, [],
        "Rule selection as in Falco: a list of {enable: {rule|tag: NAME}} / {disable: {...}} items, "
        "applied in order; names may use * wildcards."),
    Key("priority", str, "Debug", "Minimum priority of rules to load (Falco's `priority`, any case).",
        choices=PRIORITY_CHOICES, parse=priority_name),
    Key("rule_matching", str, "first",
        "first: an event triggers at most one rule (the first in load order); all: every match.",
        choices=("first", "all")),
    Key("json_output", bool, False, "Print alerts as JSON objects (one per line)."),
    Key("json_include_output_property", bool, True, "Include `output` in JSON alerts."),
    Key("json_include_tags_property", bool, True, "Include `tags` in JSON alerts."),
    Key("json_include_output_fields_property", bool, True, "Include `output_fields` in JSON alerts."),
    Key("json_include_message_property", bool, False,
        "Include `message` (the output without the time and priority prefix) in JSON alerts."),
    Key("time_format_iso_8601", bool, False,
        "Text alerts start with an ISO 8601 UTC time instead of the local time."),
    Key("append_output", list, [],
        "Extra output text or fields appended to matching rules' output: items "
        "{match: {source, tags, rule}, extra_output: TEXT, extra_fields: [FIELD | {NAME: FIELD}]}."),
    Key("static_fields", dict, {}, "Constant fields added to every alert's output_fields."),
    Key("hostname", str, "", "Hostname written in alerts; empty: FALCONET_HOSTNAME, else the host's name."),
    Key("state_dir", str, "/var/lib/falconet",
        "Spools, audit-log positions and generated certificates live here."),
    Key("log_level", str, "info", "The sensor's own log level (Falco's levels).",
        choices=LOG_LEVELS),
    Key("syscall.enabled", bool, True, "Capture syscalls with eBPF."),
)


# The keys RuleSettings reads: what a command that loads rules and runs nothing else takes in `-o`.
RULE_KEYS = frozenset({"rules_files", "rules", "priority", "rule_matching", "append_output", "hostname"})


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """What loading the rules reads: the files (`${bundled}` resolved), Falco's selection
    (`rules:`, `priority`), `rule_matching`, `append_output`, and the hostname alerts carry."""

    files: tuple[Path, ...] = ()
    selection: tuple[Mapping[str, Any], ...] = ()
    min_priority: Priority = Priority.DEBUG
    rule_matching: str = "first"
    append_output: tuple[Mapping[str, Any], ...] = ()
    hostname: str = ""
    origins: Origins = field(default=Origins(), compare=False, repr=False)

    @classmethod
    def from_config(cls, cfg: Config) -> RuleSettings:
        return cls(files=tuple(cfg.rules_files()), selection=tuple(cfg.get("rules") or ()),
                   min_priority=Priority.parse(cfg.get("priority")), rule_matching=cfg.get("rule_matching"),
                   append_output=tuple(cfg.get("append_output") or ()), hostname=cfg.hostname(),
                   origins=cfg.origins)


@dataclass(frozen=True, slots=True)
class SensorSettings:
    """Every part's settings, from one Config. `config_path` is the file read (None: defaults)."""

    config_path: str | None
    hostname: str
    log_level: str
    rules: RuleSettings
    sources: SourceSettings
    outputs: OutputSettings
    response: ResponseSettings
    webserver: WebServerSettings
    metrics: MetricsSettings
    event_drops: EventDropSettings

    @classmethod
    def from_config(cls, cfg: Config) -> SensorSettings:
        """Raises ConfigError naming the key (and where it was set) of a value a part cannot use."""
        return cls(config_path=cfg.path, hostname=cfg.hostname(), log_level=cfg.get("log_level"),
                   rules=RuleSettings.from_config(cfg), sources=SourceSettings.from_config(cfg),
                   outputs=OutputSettings.from_config(cfg), response=ResponseSettings.from_config(cfg),
                   webserver=WebServerSettings.from_config(cfg), metrics=MetricsSettings.from_config(cfg),
                   event_drops=EventDropSettings.from_config(cfg))
