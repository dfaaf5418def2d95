"""Internal alerts: what the sensor reports about itself, through the same outputs as rule alerts.

They use source "internal" and rule names in Falco's style ("Falco internal: syscall event drop"
becomes "Falconet internal: syscall event drop"); they have no event.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sensor.alert import Alert, Priority

EVENT_DROP = "Falconet internal: {source} event drop"
RELOAD_FAILED = "Falconet internal: rules reload failed"
RELOADED = "Falconet internal: rules reloaded"
SUPPRESSED = "Falconet internal: alerts suppressed"
ALERTS_DROPPED = "Falconet internal: alerts dropped"
METRICS_SNAPSHOT = "Falconet internal: metrics snapshot"


def internal_alert(rule: str, priority: Priority | str, output: str, fields: dict[str, Any], *, hostname: str,
                   tags: Iterable[str] = (), time_ns: int | None = None) -> Alert:
    """An alert about the sensor itself (source "internal")."""
    return Alert(rule=rule, priority=Priority.parse(priority), source="internal",
                 time_ns=time.time_ns() if time_ns is None else time_ns, output=output,
                 output_fields=dict(fields), tags=list(tags), hostname=hostname)
