"""The loaded rules, indexed by (source, evt.type), and the per-event hot path.

For each event type and event kind the ruleset generates ONE Python function that evaluates, in load
order, every enabled rule that can match that type, with each rule's `evt.type` checks folded to
constants for that type. Field reads shared by several rules are cached in locals for structured
(live) events. Functions are generated on the first event of a type and kept.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

from sensor.alert import Alert
from sensor.engine import passes
from sensor.engine.codegen import Codegen
from sensor.engine.compiler import CompiledRule
from sensor.errors import Diagnostic
from sensor.event import AuditEvent, RecordedEvent, SyscallEvent

_U = object()   # "not read yet" marker for cached field locals

_MODES: dict[type, str] = {RecordedEvent: "recorded", SyscallEvent: "structured", AuditEvent: "structured"}


class Ruleset:
    """Enabled rules ready to match events; `process(event)` returns the alerts."""

    def __init__(self, rules: list[CompiledRule], *, rule_matching: str = "first", hostname: str = "",
                 warnings: Iterable[Diagnostic] = (), lists: dict[str, list[str]] | None = None,
                 macros: dict[str, Any] | None = None, static_fields: dict[str, Any] | None = None,
                 files: Iterable[str] = ()) -> None:
        if rule_matching not in ("first", "all"):
            raise ValueError(f"rule_matching must be 'first' or 'all', not {rule_matching!r}")
        self.all_rules = rules
        self.rules = [r for r in rules if r.enabled]
        self.rule_matching = rule_matching
        self.hostname = hostname or socket.gethostname()
        # evt.hostname must say what the alerts say.
        from sensor.engine.fields import evt as evt_fields

        evt_fields.set_hostname(self.hostname)
        self.warnings = list(warnings)
        self.lists = lists or {}
        self.macros = macros or {}
        self.static_fields = static_fields or None
        self.files = list(files)
        self.match_counts = [0] * len(self.rules)
        self._by_source: dict[str, list[int]] = {}
        for i, r in enumerate(self.rules):
            self._by_source.setdefault(r.source, []).append(i)
        # (event class) -> source -> evt.type -> matcher
        self._fns: dict[type, dict[str, dict[str, Callable[[Any], Any]]]] = {}

    # -- what the capture needs ---------------------------------------------------------------------

    def event_types(self, source: str = "syscall") -> frozenset[str] | None:
        """The evt.type values enabled rules of `source` can match; None when some rule matches any."""
        names: set[str] = set()
        for i in self._by_source.get(source, ()):
            ts = self.rules[i].types
            if not ts.only:
                return None
            names |= ts.names
        return frozenset(names)

    def sources(self) -> set[str]:
        return set(self._by_source)

    # -- the hot path -------------------------------------------------------------------------------

    def process(self, event: Any) -> list[Alert]:
        """Match one event; return its alerts (at most one with rule_matching: first)."""
        try:
            fn = self._fns[event.__class__][event.source][event.type]
        except KeyError:
            fn = self._matcher(event.__class__, event.source, event.type)
        hits = fn(event)
        if not hits:
            return []
        return [self._alert(i, event) for i in hits]

    def _alert(self, i: int, event: Any) -> Alert:
        r = self.rules[i]
        self.match_counts[i] += 1
        text, fields = r.out.render(event, self.static_fields)
        return Alert(rule=r.name, priority=r.priority, source=r.source, time_ns=event.time_ns, output=text,
                     output_fields=fields, tags=list(r.tags), hostname=self.hostname, event=event)

    def _matcher(self, cls: type, source: str, evt_type: str) -> Callable[[Any], Any]:
        mode = _MODES.get(cls)
        if mode is None:
            mode = "value"
        fn = self.build_matcher(source, evt_type, mode)
        self._fns.setdefault(cls, {}).setdefault(source, {})[evt_type] = fn
        return fn

    def candidates(self, source: str, evt_type: str) -> list[int]:
        """Indexes of the enabled rules that can match events of this source and type, in order."""
        out = []
        for i in self._by_source.get(source, ()):
            ts = self.rules[i].types
            if (evt_type in ts.names) == ts.only:
                out.append(i)
        return out

    def build_matcher(self, source: str, evt_type: str, mode: str) -> Callable[[Any], Any]:
        """Generate the function that matches events of one source and type."""
        idx = self.candidates(source, evt_type)
        if not idx:
            return _no_match
        gen = Codegen(source, "recorded" if mode == "recorded" else "structured")
        exprs = []
        for i in idx:
            node = passes.specialize(self.rules[i].node, evt_type)
            exprs.append((i, gen.expr(node)))
        first = self.rule_matching == "first"
        body: list[str] = []
        finished = []
        for i, text in exprs:
            if text == "False":
                continue
            code, _ = gen.finish(text, cache=True)
            finished.append(code)
            body.append(f"    if {code}:\n" + (f"        return ({i},)\n" if first else f"        _r.append({i})\n"))
        lines = ["def _match(e):"]
        if mode == "recorded":
            lines.append("    _get = e.fields.get")
        else:
            cached = [u.var for u in gen.fields.values() if u.uses > 1]
            if cached:
                lines.append("    " + " = ".join(cached) + " = _U")
        if not first:
            lines.append("    _r = []")
        src = "\n".join(lines) + "\n" + "".join(body) + ("    return ()\n" if first else "    return _r\n")
        ns = dict(gen.ns)
        ns["_U"] = _U
        exec(compile(src, f"<rules {source}:{evt_type}>", "exec"), ns)
        fn = ns["_match"]
        fn.source_text = src   # for --print and debugging
        return fn   # type: ignore[no-any-return]

    # -- description --------------------------------------------------------------------------------

    def rule(self, name: str) -> CompiledRule | None:
        return next((r for r in self.all_rules if r.name == name), None)


def _no_match(_e: Any) -> tuple[()]:
    return ()
