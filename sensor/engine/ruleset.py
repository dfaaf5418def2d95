"""The loaded rules, indexed by (source, evt.type), and the per-event hot path.

For each event type that a rule names, and once for all other types, the index generates ONE Python
function that evaluates, in load order, every enabled rule that can match that type, with each
rule's `evt.type` checks folded to constants for it (codegen.py). All of them are generated and
compiled when the rules load; the first event of a kind (live, recorded, ...) only binds the
compiled code to that kind's field accessor (access.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sensor.alert import Alert, resolve_hostname
from sensor.engine import ast, passes
from sensor.engine.access import access_for
from sensor.engine.codegen import Codegen, Program
from sensor.errors import Diagnostic

if TYPE_CHECKING:
    from sensor.engine.compiler import CompiledRule

MAX_CACHED_TYPES = 4096   # per event class and source; a replay of odd types must not grow memory


class IndexedRule(Protocol):
    """What the index needs of a rule (CompiledRule has it)."""

    source: str
    node: ast.Node
    types: passes.TypeSet


class RuleIndex:
    """Rules indexed by (source, evt.type), with one compiled matcher per type they name and one
    for every other type. `match(event)` returns the indexes of the matching rules: the first only
    with rule_matching "first", all of them with "all". `context` holds the values of context fields
    (evt.hostname) for every event."""

    def __init__(self, rules: Sequence[IndexedRule], rule_matching: str = "first",
                 context: Mapping[str, Any] | None = None) -> None:
        if rule_matching not in ("first", "all"):
            raise ValueError(f"rule_matching must be 'first' or 'all', not {rule_matching!r}")
        self.rules = rules
        self.context = dict(context or {})
        self.first = rule_matching == "first"
        self.by_source: dict[str, list[int]] = {}   # source -> indexes of its rules, in order
        for i, r in enumerate(rules):
            self.by_source.setdefault(r.source, []).append(i)
        # source -> evt.type (None: any type no rule names) -> compiled matcher
        self.programs: dict[str, dict[str | None, Program | None]] = {
            source: self._programs(source, idx) for source, idx in self.by_source.items()}
        # event class -> source -> evt.type -> bound matcher: the only lookup on the hot path
        self.fns: dict[type, dict[str, dict[str, Callable[[Any], Any]]]] = {}
        self._bound: dict[tuple[int, type], Callable[[Any], Any]] = {}

    def _programs(self, source: str, idx: list[int]) -> dict[str | None, Program | None]:
        names: set[str] = set()
        for i in idx:
            names |= passes.evt_type_names(self.rules[i].node)
        return {t: self._program(source, t) for t in (*sorted(names), None)}

    def _program(self, source: str, evt_type: str | None) -> Program | None:
        idx = self.candidates(source, evt_type)
        if not idx:
            return None
        gen = Codegen(source)
        checks = [(i, passes.specialize(self.rules[i].node, evt_type)) for i in idx]
        return gen.function(checks, self.first, f"<rules {source}:{evt_type or '*'}>")

    def candidates(self, source: str, evt_type: str | None) -> list[int]:
        """Indexes of the rules that can match events of this source and type, in order
        (evt_type None: a type no rule names)."""
        out = []
        for i in self.by_source.get(source, ()):
            ts = self.rules[i].types
            if (evt_type in ts.names) == ts.only:
                out.append(i)
        return out

    def match(self, event: Any) -> Any:
        try:
            fn = self.fns[event.__class__][event.source][event.type]
        except KeyError:
            fn = self.bind(event)
        return fn(event)

    def bind(self, event: Any) -> Callable[[Any], Any]:
        """The matcher for this event's class, source and type; kept for the next such event."""
        cls = event.__class__
        programs = self.programs.get(event.source)
        program = None
        fn: Callable[[Any], Any]
        if programs is not None:
            program = programs.get(event.type, programs[None])
        if program is None:
            fn = _no_match
        else:
            key = (id(program), cls)
            bound = self._bound.get(key)
            if bound is None:
                bound = self._bound[key] = program.bind(access_for(cls), self.context)
            fn = bound
        by_type = self.fns.setdefault(cls, {}).setdefault(event.source, {})
        if len(by_type) < MAX_CACHED_TYPES:
            by_type[event.type] = fn
        return fn


class Ruleset:
    """Enabled rules ready to match events; `process(event)` returns the alerts."""

    def __init__(self, rules: list[CompiledRule], *, rule_matching: str = "first", hostname: str = "",
                 warnings: Iterable[Diagnostic] = (), lists: dict[str, list[str]] | None = None,
                 macros: dict[str, Any] | None = None, files: Iterable[str] = ()) -> None:
        self.all_rules = rules
        self.rules = [r for r in rules if r.enabled]
        self.rule_matching = rule_matching
        self.hostname = resolve_hostname(hostname)
        # evt.hostname says what the alerts say, for this ruleset only (a reload that fails after
        # building a new ruleset leaves the running one as it was).
        self.context: dict[str, Any] = {"evt.hostname": self.hostname}
        self.warnings = list(warnings)
        self.lists = lists or {}
        self.macros = macros or {}
        self.files = list(files)
        self.match_counts = [0] * len(self.rules)
        self.index = RuleIndex(self.rules, rule_matching, self.context)
        self._fns = self.index.fns

    # -- what the capture needs ---------------------------------------------------------------------

    def event_types(self, source: str = "syscall") -> frozenset[str] | None:
        """The evt.type values enabled rules of `source` can match; None when some rule matches any."""
        names: set[str] = set()
        for i in self.index.by_source.get(source, ()):
            ts = self.rules[i].types
            if not ts.only:
                return None
            names |= ts.names
        return frozenset(names)

    def sources(self) -> set[str]:
        return set(self.index.by_source)

    # -- the hot path -------------------------------------------------------------------------------

    def process(self, event: Any) -> list[Alert]:
        """Match one event; return its alerts (at most one with rule_matching: first)."""
        try:
            fn = self._fns[event.__class__][event.source][event.type]
        except KeyError:
            fn = self.index.bind(event)
        hits = fn(event)
        if not hits:
            return []
        return [self._alert(i, event) for i in hits]

    def _alert(self, i: int, event: Any) -> Alert:
        r = self.rules[i]
        self.match_counts[i] += 1
        text, fields = r.out.render(event, self.context)
        return Alert(rule=r.name, priority=r.priority, source=r.source, time_ns=event.time_ns, output=text,
                     output_fields=fields, tags=list(r.tags), hostname=self.hostname, event=event)

    def candidates(self, source: str, evt_type: str | None) -> list[int]:
        """Indexes of the enabled rules that can match events of this source and type, in order."""
        return self.index.candidates(source, evt_type)

    # -- description --------------------------------------------------------------------------------

    def rule(self, name: str) -> CompiledRule | None:
        return next((r for r in self.all_rules if r.name == name), None)


def _no_match(_e: Any) -> tuple[()]:
    return ()
