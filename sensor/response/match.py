"""Which alerts an action acts on: rule names (globs), minimum priority, tags, sources, condition.

Everything but the condition depends only on the rule that fired, so it is decided once per
(rule, source, priority) and cached; the condition (rules language, over the alert's event) runs
per alert. Internal alerts (source "internal") match only an action that names that source, and
the response's own records never match, so an action can never feed on what it writes.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sensor.alert import Alert, Priority

RECORD_RULE = "Falconet internal: response"


@dataclass(slots=True)
class AlertMatch:
    """A compiled `match:` block. Empty lists mean "any"."""

    rules: tuple[str, ...] = ()
    priority: Priority | None = None
    tags: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    # source -> compiled condition over the alert's event (sensor.engine.compile_filter)
    conditions: dict[str, Callable[[Any], bool]] = field(default_factory=dict)
    condition_text: str | None = None
    _rule_re: re.Pattern[str] | None = None
    _max_severity: Priority = Priority.DEBUG
    _static: dict[tuple[str, str, Priority], bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rules:
            self._rule_re = re.compile("|".join(f"(?:{fnmatch.translate(r)})" for r in self.rules))
        if self.priority is not None:
            self.priority = self._max_severity = Priority.parse(self.priority)

    def _static_match(self, alert: Alert) -> bool:
        key = (alert.rule, alert.source, alert.priority)
        hit = self._static.get(key)
        if hit is None:
            hit = self._decide(alert)
            if len(self._static) < 4096:    # rule names are few; the bound only guards odd inputs
                self._static[key] = hit
        return hit

    def _decide(self, alert: Alert) -> bool:
        if alert.rule == RECORD_RULE:
            return False
        if self.sources:
            if alert.source not in self.sources:
                return False
        elif alert.source == "internal":
            return False
        if self._rule_re is not None and not self._rule_re.match(alert.rule):
            return False
        return alert.priority <= self._max_severity

    def matches(self, alert: Alert) -> bool:
        """True when the action should act on this alert."""
        if not self._static_match(alert):
            return False
        if self.tags and not self.tags.intersection(alert.tags):
            return False
        if self.conditions:
            cond = self.conditions.get(alert.source)
            if cond is None or alert.event is None:
                return False
            return bool(cond(alert.event))
        return True
