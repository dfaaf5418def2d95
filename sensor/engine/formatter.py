"""Alert rendering: Falco's text line and Falco's JSON alert (DESIGN.md §3).

The compiled output templates (`%field` tokens → renderers) live here too; they are built once per
rule at load time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sensor.event import Alert


@dataclass(frozen=True, slots=True)
class JsonOptions:
    """falco.yaml's json_include_* switches."""

    include_output: bool = True
    include_tags: bool = True
    include_output_fields: bool = True
    include_message: bool = False
    time_iso_8601: bool = False


def iso_time(time_ns: int) -> str:
    """UTC time with nanoseconds and a Z, as Falco's JSON `time`."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def text_time(time_ns: int, iso_8601: bool = False) -> str:
    """The time prefix of a text alert: local HH:MM:SS.nnnnnnnnn, or ISO 8601 UTC."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    if iso_8601:
        return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}+0000"
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{nanos:09d}"


def alert_text(alert: Alert, iso_8601: bool = False) -> str:
    """Falco's text line: `TIME: Priority output`."""
    return f"{text_time(alert.time_ns, iso_8601)}: {alert.priority} {alert.output}"


def alert_dict(alert: Alert, opts: JsonOptions = JsonOptions()) -> dict[str, Any]:
    """Falco's JSON alert as a dict, keys in Falco's (sorted) order, plus Falcosidekick's uuid."""
    out: dict[str, Any] = {"hostname": alert.hostname}
    if opts.include_message:
        out["message"] = alert.output
    if opts.include_output:
        out["output"] = alert_text(alert, opts.time_iso_8601)
    if opts.include_output_fields:
        out["output_fields"] = alert.output_fields
    out["priority"] = alert.priority
    out["rule"] = alert.rule
    out["source"] = alert.source
    if opts.include_tags:
        out["tags"] = sorted(alert.tags)
    out["time"] = iso_time(alert.time_ns)
    out["uuid"] = alert.uuid
    return out


def alert_json(alert: Alert, opts: JsonOptions = JsonOptions()) -> str:
    """One JSON alert, one line."""
    return json.dumps(alert_dict(alert, opts), separators=(",", ":"), ensure_ascii=False, default=str)
