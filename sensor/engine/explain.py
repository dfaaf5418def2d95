"""Why a rule did or did not match an event: its condition as a tree, every node evaluated.

The tree is the rule's condition as written, with its macros expanded under their names, its list
names kept beside their items, and its exceptions (`and not (...)`, as the compiler adds them)
grouped by exception item and value tuple. Every check is compiled once, by the same generator the
hot path uses (codegen.py), into its own function, and every value a check compares is read by a
function that generator also makes (`Codegen.value_function`): an explanation cannot disagree with
the rule about what a check means. `and`, `or` and `not` only combine their children's results,
and every node is evaluated, so short-circuit evaluation never hides a result.

Nothing here runs unless an explanation is asked for (`falconet explain`, `rules test`,
`run --explain`); the ruleset's per-event functions are not touched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensor.engine import ast, passes
from sensor.engine.access import access_for
from sensor.engine.codegen import Codegen, Program
from sensor.engine.compiler import build_exceptions
from sensor.engine.parser import parse_condition

if TYPE_CHECKING:
    from sensor.engine.compiler import CompiledRule
    from sensor.engine.ruleset import Ruleset

TRUE, FALSE, NO_VALUE = "true", "false", "no value"
MAX_ITEM_CHECKS = 256      # lists longer than this are not checked item by item
MAX_SHOWN_ITEMS = 8
MAX_VALUE_TEXT = 160


class _Compiled:
    """A generated function bound lazily, once per kind of event (live, recorded, ...)."""

    __slots__ = ("bound", "context", "program")

    def __init__(self, program: Program, context: Mapping[str, Any]) -> None:
        self.program = program
        self.context = context
        self.bound: dict[type, Callable[[Any], Any]] = {}

    def __call__(self, event: Any) -> Any:
        fn = self.bound.get(event.__class__)
        if fn is None:
            fn = self.bound[event.__class__] = self.program.bind(access_for(event.__class__), self.context)
        return fn(event)


@dataclass
class Operand:
    """A value a check compares, shown beside it: the left-hand side, a field inside it, or the
    right-hand side when that is read from the event (`val()`, transformers)."""

    text: str
    read: _Compiled
    role: str            # "left", "right" or "field" (a field inside a transformed left side)


@dataclass
class Step:
    """One node of a rule's explanation tree, compiled once; evaluated per event by `evaluate`."""

    kind: str                        # and, or, not, macro, check, exceptions, exception, rule
    node: ast.Node                   # what this node means, macros expanded and lists resolved
    text: str                        # how it reads in the explanation
    children: list[Step] = field(default_factory=list)
    test: _Compiled | None = None    # checks: the compiled check
    operands: list[Operand] = field(default_factory=list)
    items: list[tuple[str, ast.Node]] = field(default_factory=list)   # list checks: one check per item
    item_tests: list[_Compiled] | None = None                         # compiled on first need
    compile: Callable[[ast.Node], _Compiled] | None = None
    name: str | None = None          # macro or exception item name
    values: Any = None               # exception items: the value tuple


@dataclass
class Result:
    """A Step evaluated on one event."""

    step: Step
    value: bool
    status: str                      # true, false or no value (false because a compared value is missing)
    values: list[tuple[Operand, Any]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)     # list items the check held for
    item_note: str = ""
    children: list[Result] = field(default_factory=list)
    decided: bool = False

    def as_json(self) -> dict[str, Any]:
        s = self.step
        doc: dict[str, Any] = {"kind": s.kind, "text": s.text, "result": self.status, "value": self.value}
        if s.name is not None:
            doc["name"] = s.name
        if s.kind == "exception":
            doc["values"] = s.values
        if s.kind == "check":
            doc["condition"] = ast.to_text(s.node)
            doc["values"] = {op.text: v for op, v in self.values}
        if self.item_note:
            doc["items"] = {"note": self.item_note, "items": self.items}
        if self.decided:
            doc["decided"] = True
        if self.children:
            doc["children"] = [c.as_json() for c in self.children]
        return doc


@dataclass
class Explanation:
    """Why `rule` did or did not match `event`."""

    rule: CompiledRule
    event: Any
    matched: bool                    # the condition holds (the compiled rule's own answer)
    alerted: bool | None             # the ruleset alerted with this rule (None: not known)
    note: str                        # why it did not alert although it matched, or ""
    root: Result
    path: list[Result]               # root → the node that decided the result

    @property
    def consistent(self) -> bool:
        """The tree's result is the compiled rule's (always, unless the engine has a bug)."""
        return self.root.value == self.matched

    @property
    def decided_by(self) -> Result:
        return self.path[-1]

    def as_json(self) -> dict[str, Any]:
        ev = self.event
        return {"rule": self.rule.name, "source": self.rule.source,
                "event": {"num": getattr(ev, "num", 0), "source": ev.source, "type": ev.type},
                "matched": self.matched, "alerted": self.alerted, "note": self.note or None,
                "decided_by": [_path_text(r) for r in self.path], "tree": self.root.as_json()}

    def decided_text(self) -> str:
        """The decisive node, after the `not`s and macros that lead to it."""
        last = self.path[-1]
        if last.step.kind not in ("check", "exception"):
            which = "every" if last.value else "no"
            return f"{which} operand of \"{last.step.text}\" holds → {last.status}"
        steps = [r.step.text for r in self.path[:-1] if r.step.kind in ("not", "macro", "exception")]
        return " ▸ ".join([*steps, _path_text(last)])

    def text(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        ev = self.event
        verdict = "matched" if self.matched else "did not match"
        head = f"Rule \"{self.rule.name}\" {verdict} event #{getattr(ev, 'num', 0)} ({ev.source} {ev.type or '-'})"
        out = [head]
        if self.note:
            out.append(f"  note: {self.note}")
        out.append("  decided by: " + self.decided_text())
        if not self.consistent:
            out.append("  WARNING: this explanation disagrees with the compiled rule; please report it")
        _render(self.root, 1, out)
        return out


def _path_text(r: Result) -> str:
    return f"{_head(r)} → {r.status}"


def _head(r: Result) -> str:
    s = r.step
    if s.kind != "check":
        return s.text
    return _check_text(r)


def _render(r: Result, depth: int, out: list[str]) -> None:
    line = f"{'  ' * depth}{_head(r)} → {r.status}"
    if r.items or r.item_note:
        line += f" ({r.item_note or 'matched'}{': ' + ', '.join(r.items) if r.items else ''})"
    if r.decided:
        line += "   ◀ decided"
    out.append(line)
    for c in r.children:
        _render(c, depth + 1, out)


def show_value(v: Any) -> str:
    """A field value as an explanation shows it: JSON, `<no value>` for a missing one."""
    if v is None:
        return "<no value>"
    if isinstance(v, bytes):
        v = v.decode("utf-8", "backslashreplace")
    try:
        text = json.dumps(v, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= MAX_VALUE_TEXT else text[:MAX_VALUE_TEXT] + "…"


def _check_text(r: Result) -> str:
    """`proc.name "bash" in (falconet_shell_binaries)`: the check with the values it compared."""
    n = r.step.node
    got = {op.role: (op, v) for op, v in r.values if op.role != "field"}
    inner = [f"{op.text} {show_value(v)}" for op, v in r.values if op.role == "field"]

    def side(role: str, node: ast.Node) -> str:
        text = _side_text(node)
        if role in got:
            text += " " + show_value(got[role][1])
        return text

    if isinstance(n, ast.UnaryCheck):
        text = f"{side('left', n.left)} {n.op}"
    elif isinstance(n, ast.BinaryCheck):
        op = f"{n.op} {n.modifier}" if n.modifier else n.op
        text = f"{side('left', n.left)} {op} {side('right', n.right)}"
    else:
        text = ast.to_text(n)
    if inner:
        text += f" [{', '.join(inner)}]"
    return text


def _side_text(node: ast.Node) -> str:
    if isinstance(node, ast.ListValue):
        return "(" + ", ".join(ast.quote(i) for i in (node.written or node.items)) + ")"
    return ast.to_text(node)


# -- building the tree ----------------------------------------------------------------------------

class RuleExplainer:
    """Explains one rule of a loaded ruleset on any number of events; compiles once."""

    def __init__(self, ruleset: Ruleset, rule: CompiledRule) -> None:
        from sensor.engine.ruleset import RuleIndex

        self.ruleset = ruleset
        self.rule = rule
        self.source = rule.source
        self.context = ruleset.context
        # The rule's own compiled matcher (the hot path's generator and index, for this rule alone).
        self._match = RuleIndex([rule], context=ruleset.context).match
        self.root = self._build()

    # -- which events --------------------------------------------------------------------------------

    def applies(self, event: Any) -> bool:
        """The event is of the rule's source and one of its event types."""
        if event.source != self.source:
            return False
        ts = self.rule.types
        return (event.type in ts.names) == ts.only

    def types_text(self) -> str:
        ts = self.rule.types
        if ts.only:
            return ", ".join(sorted(ts.names)) or "(none)"
        return "any" if not ts.names else "any but " + ", ".join(sorted(ts.names))

    # -- explaining ---------------------------------------------------------------------------------

    def matches(self, event: Any) -> bool:
        """Whether the rule's condition holds, by its compiled matcher (cheap)."""
        return bool(self._match(event))

    def explain(self, event: Any, fired: Iterable[str] | None = None) -> Explanation:
        """Explain the rule on `event`; `fired` names the rules the ruleset alerted with for it
        (when known), to say why a matching rule did not alert."""
        root = evaluate(self.root, event)
        matched = self.matches(event)
        path = decide(root)
        path[-1].decided = True
        alerted: bool | None = None
        note = ""
        if fired is not None:
            names = list(fired)
            alerted = self.rule.name in names
            if matched and not alerted:
                if not self.rule.enabled:
                    note = "the condition holds, but the rule is disabled"
                elif names:
                    note = (f"the condition holds, but rule \"{names[0]}\" matched first "
                            f"(rule_matching: {self.ruleset.rule_matching})")
                else:
                    note = "the condition holds, but the ruleset did not alert"
        elif not self.rule.enabled:
            note = "the rule is disabled: it never alerts"
        return Explanation(self.rule, event, matched, alerted, note, root, path)

    # -- compile --------------------------------------------------------------------------------------

    def _build(self) -> Step:
        tree = passes.resolve_lists(parse_condition(self.rule.condition), self.ruleset.lists)
        cond = self._step(tree)
        exc = self._exceptions()
        if exc is None:
            return cond
        negated = Step("not", ast.Not(exc.node), "not", [exc])
        return Step("rule", ast.And((cond.node, negated.node)), "condition and not exceptions", [cond, negated])

    def _step(self, node: ast.Node) -> Step:
        if isinstance(node, ast.Ident):
            body = self._step(self.ruleset.macros[node.name])
            return Step("macro", body.node, f"macro {node.name}", [body], name=node.name)
        if isinstance(node, (ast.And, ast.Or)):
            kids = [self._step(c) for c in node.items]
            kind = "and" if isinstance(node, ast.And) else "or"
            return Step(kind, type(node)(tuple(k.node for k in kids), pos=node.pos), kind, kids)
        if isinstance(node, ast.Not):
            kid = self._step(node.item)
            return Step("not", ast.Not(kid.node, pos=node.pos), "not", [kid])
        return self._check(node)

    def _check(self, node: ast.Node) -> Step:
        step = Step("check", node, ast.to_text(node), test=self._compile(node), compile=self._compile)
        if isinstance(node, (ast.UnaryCheck, ast.BinaryCheck)):
            step.operands = self._operands(node)
        if isinstance(node, ast.BinaryCheck) and isinstance(node.right, ast.ListValue):
            step.items = self._item_checks(node)
        return step

    def _compile(self, node: ast.Node) -> _Compiled:
        return _Compiled(Codegen(self.source).function([(0, node)], name="<explain>"), self.context)

    def _value(self, node: ast.Node) -> _Compiled:
        return _Compiled(Codegen(self.source).value_function(node, "<explain value>"), self.context)

    def _operands(self, node: ast.UnaryCheck | ast.BinaryCheck) -> list[Operand]:
        left = node.left
        if isinstance(left, ast.Transform) and left.op == "val" and isinstance(left.item, ast.FieldRef):
            left = left.item
        ops = [Operand(ast.to_text(left), self._value(left), "left")]
        if not isinstance(left, ast.FieldRef):
            seen: set[str] = set()
            for ref in ast.walk(left):
                if isinstance(ref, ast.FieldRef) and ref.text() not in seen:
                    seen.add(ref.text())
                    ops.append(Operand(ref.text(), self._value(ref), "field"))
        right = getattr(node, "right", None)
        if isinstance(right, ast.Transform) and right.op == "val" and isinstance(right.item, ast.FieldRef):
            ops.append(Operand(ast.to_text(right), self._value(right.item), "right"))
        elif isinstance(right, (ast.Transform, ast.Call)):
            ops.append(Operand(ast.to_text(right), self._value(right), "right"))
        return ops

    def _item_checks(self, node: ast.BinaryCheck) -> list[tuple[str, ast.Node]]:
        """One check per list item, to say which items held; none where an item alone means
        something else than "this item matched" (`in`/`pmatch` and `allof` over a list field
        need every value of the field)."""
        right = node.right
        assert isinstance(right, ast.ListValue)
        if len(right.items) > MAX_ITEM_CHECKS or not (node.modifier or node.op in passes.LIST_OPS):
            return []
        is_list = Codegen(self.source).lhs(node.left).is_list
        if is_list and (node.op in ("in", "pmatch") or node.modifier == "allof"):
            return []
        out = []
        for item in right.items:
            if node.modifier:
                one: ast.Node = ast.BinaryCheck(node.left, node.op, ast.Value(item, pos=right.pos), pos=node.pos)
            else:
                one = ast.BinaryCheck(node.left, node.op, ast.ListValue((item,), pos=right.pos), pos=node.pos)
            out.append((item, one))
        return out

    def _exceptions(self) -> Step | None:
        """`exceptions` as the compiler builds them, one alternative per item and value tuple."""
        alts: list[Step] = []
        for ex in self.rule.exceptions:
            built = build_exceptions([ex], self.source)
            if built is None:
                continue
            built = passes.resolve_lists(built, self.ruleset.lists)
            tuples = list(built.items) if isinstance(built, ast.Or) else [built]
            fields_ = ex.get("fields")
            values = ex.get("values") or []
            # Tuple form: one alternative per values entry; single-field form: one for all values.
            per_value = values if isinstance(fields_, list) else [values]
            for alt, vals in zip(tuples, per_value, strict=False):
                kids = [self._step(c) for c in (alt.items if isinstance(alt, ast.And) else (alt,))]
                node = kids[0].node if len(kids) == 1 else ast.And(tuple(k.node for k in kids))
                text = f"exception {ex.get('name')}: fields {_fields_text(fields_)} values {show_value(vals)}"
                alts.append(Step("exception", node, text, kids, name=str(ex.get("name")), values=vals))
        if not alts:
            return None
        return Step("exceptions", ast.Or(tuple(a.node for a in alts)) if len(alts) > 1 else alts[0].node,
                    "exceptions (any item)", alts)


def _fields_text(fields_: Any) -> str:
    if isinstance(fields_, list):
        return "(" + ", ".join(str(f) for f in fields_) + ")"
    return str(fields_)


# -- evaluating -----------------------------------------------------------------------------------

def evaluate(step: Step, event: Any) -> Result:
    """Every node of `step` on `event`: no short-circuit, so every result is there to read."""
    if step.kind == "check":
        return _evaluate_check(step, event)
    kids = [evaluate(c, event) for c in step.children]
    if step.kind in ("and", "rule", "exception"):
        value = all(k.value for k in kids)
    elif step.kind in ("or", "exceptions"):
        value = any(k.value for k in kids)
    elif step.kind == "not":
        value = not kids[0].value
    else:                                   # macro: its body's result
        value = kids[0].value
    return Result(step, value, TRUE if value else FALSE, children=kids)


def _evaluate_check(step: Step, event: Any) -> Result:
    assert step.test is not None
    value = bool(step.test(event))
    values = [(op, op.read(event)) for op in step.operands]
    missing = any(v is None for op, v in values if op.role != "field")
    status = TRUE if value else (NO_VALUE if missing else FALSE)
    r = Result(step, value, status, values)
    if step.items and not missing:
        _item_results(step, r, event)
    return r


def _item_results(step: Step, r: Result, event: Any) -> None:
    """Which list items held: for `in`-like checks and anyof/oneof, those that did (when the check
    held, or for oneof always); for allof, those that did not (when it failed)."""
    n = step.node
    assert isinstance(n, ast.BinaryCheck)
    modifier = n.modifier
    if not r.value and modifier not in ("allof", "oneof"):
        return
    if r.value and modifier == "allof":
        return
    if step.item_tests is None:
        assert step.compile is not None
        step.item_tests = [step.compile(node) for _text, node in step.items]
    held = [text for (text, _), test in zip(step.items, step.item_tests, strict=True) if test(event)]
    if modifier == "allof":
        failed = [text for text, _ in step.items if text not in held]
        r.items, r.item_note = _few(failed), "did not hold for"
    elif modifier == "oneof":
        r.items, r.item_note = _few(held), f"held for {len(held)} item{'s' if len(held) != 1 else ''}"
    else:
        r.items, r.item_note = _few(held), "matched"


def _few(items: list[str]) -> list[str]:
    shown = [ast.quote(i) for i in items[:MAX_SHOWN_ITEMS]]
    if len(items) > MAX_SHOWN_ITEMS:
        shown.append(f"… {len(items) - MAX_SHOWN_ITEMS} more")
    return shown


def decide(root: Result) -> list[Result]:
    """The path from the root to the node that decided the result: the first false operand of a
    false `and`, the first true one of a true `or`, through `not` and macros, down to a check; it
    stops where every operand counted (a true `and`, a false `or`)."""
    path = [root]
    r = root
    while r.children:
        kind = r.step.kind
        if kind in ("not", "macro"):
            r = r.children[0]
        elif kind in ("and", "rule", "exception") and not r.value:
            r = next(c for c in r.children if not c.value)
        elif kind in ("or", "exceptions") and r.value:
            r = next(c for c in r.children if c.value)
        else:
            break
        path.append(r)
    return path


# -- live: `falconet run --explain RULE` ------------------------------------------------------------

class NearMisses:
    """Logs why RULE did not match live events of its source and types (those `filter_text`
    selects, when given): the runtime calls it with every event, its ruleset and its alerts.

    At most `burst` explanations are logged, then one every `period / burst` seconds; the others
    are counted and the count is given with the next one logged and by `summary()`. A reload that
    drops the rule pauses the explanations (said once in the log) until a reload brings it back.
    """

    def __init__(self, rule: str, filter_text: str | None, log: logging.Logger, *, burst: int = 5,
                 period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rule_name = rule
        self.filter_text = filter_text
        self.log = log
        self.burst = burst
        self.rate = burst / period
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()
        self.seen = self.misses = self.logged = self.suppressed = 0
        self._unreported = 0
        self._ruleset: Any = None
        self._explainer: RuleExplainer | None = None
        self._filter: Callable[[Any], bool] | None = None

    def bind(self, ruleset: Ruleset) -> RuleExplainer:
        """Build the explainer (and the filter) for `ruleset`; ValueError when the rule is not
        there or is disabled, or the filter does not compile."""
        from sensor.engine.compiler import compile_filter
        from sensor.engine.parser import RuleSyntaxError

        self._ruleset = ruleset
        self._explainer = None
        rule = ruleset.rule(self.rule_name)
        if rule is None:
            raise ValueError(f"no rule named '{self.rule_name}' is loaded")
        if not rule.enabled:
            raise ValueError(f"rule '{self.rule_name}' is disabled: the sensor would not capture the events it "
                             "needs; enable it to explain it live")
        self._filter = None
        if self.filter_text:
            try:
                self._filter = compile_filter(self.filter_text, rule.source, ruleset.lists, ruleset.macros,
                                              ruleset.context)
            except (RuleSyntaxError, passes.CompileError) as e:
                raise ValueError(f"--explain-filter '{self.filter_text}': {e}") from None
        self._explainer = RuleExplainer(ruleset, rule)
        return self._explainer

    def __call__(self, ruleset: Any, event: Any, alerts: list[Any]) -> None:
        if ruleset is not self._ruleset:
            try:
                self.bind(ruleset)
                self.log.info("explain: explaining near misses of rule '%s' with the reloaded rules", self.rule_name)
            except ValueError as e:
                self.log.warning("explain: %s; near misses are not explained until a reload brings it back", e)
        x = self._explainer
        if x is None or not x.applies(event) or (self._filter is not None and not self._filter(event)):
            return
        self.seen += 1
        if x.matches(event):
            return
        self.misses += 1
        if not self._take():
            self.suppressed += 1
            self._unreported += 1
            return
        self.logged += 1
        explanation = x.explain(event, [a.rule for a in alerts])
        skipped = f" ({self._unreported} more not explained: rate limit)" if self._unreported else ""
        self._unreported = 0
        self.log.info("explain: near miss of rule '%s'%s\n%s", self.rule_name, skipped, explanation.text())

    def _take(self) -> bool:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def summary(self) -> str:
        return (f"explain: rule '{self.rule_name}': {self.seen} events of its types seen"
                f"{' (selected by --explain-filter)' if self.filter_text else ''}, {self.misses} near misses, "
                f"{self.logged} explained, {self.suppressed} not explained (rate limit)")
