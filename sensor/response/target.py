"""What an action acts on, resolved from the alert before any limit or effect applies."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    """`key` identifies the target for cooldowns; `text` names it in records; `namespace` is the
    Kubernetes namespace it lives in, when known (for response.exclude_namespaces); `group` is what
    the target's max_per_minute is counted per (a cgroup, a namespace; None: the whole action)."""

    key: Hashable
    text: str
    namespace: str | None = None
    data: Any = None
    group: Hashable = None


def event_value(alert: Any, field: str) -> Any:
    """A field of the alert's event, or None when the alert has no event or the event no value.

    Falco prints a missing string as <NA>; a recorded event may carry that text, which means None.
    """
    event = getattr(alert, "event", None)
    if event is None:
        return None
    v = event.value(field)
    return None if v in ("<NA>", "") else v
