"""Rule tests: YAML files of cases, each a set of rules, some events and the alerts they must
(and must not) produce; `falconet rules test FILE...` runs them.

A case passes when running its events through its rules, as `falconet replay` would, fires every
rule in `must_fire` (with the output fields given) and none in `must_not_fire`. A failure carries
the explanation (sensor/engine/explain.py) of the rule at fault on the case's events.

    rules: [../falconet_rules.yaml]    # rule files for every case, relative to this file
    options: [rule_matching=all]       # -o KEY=VALUE for every case (optional)
    tests:
      - name: a shell in a container
        rules: [...]                   # optional: instead of the file's
        overrides:                     # optional: rule items loaded after the rule files
          - macro: falconet_user_known_container_shell
            condition: (container.image.repository = my-registry/debug)
            override: {condition: replace}
        options: [...]                 # optional: more -o for this case
        events:                        # recorded events (capture format) or audit Events
          - {source: syscall, fields: {evt.type: execve, proc.name: bash, ...}}
        events_file: capture.jsonl     # optional: more events from a file (relative to this file)
        must_fire:
          - rule: Shell spawned in container
            output_fields: {proc.name: bash}
        must_not_fire: [Package manager run in container]   # names, or patterns with * ("*": any other)

Keys starting with `x-` are ignored, to hold YAML anchors that cases merge (`<<: *base`).
"""

from __future__ import annotations

import fnmatch
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sensor import config as config_mod
from sensor.engine.explain import RuleExplainer
from sensor.engine.loader import RulesLoadError, load_rules
from sensor.errors import FalconetError
from sensor.rulesetup import load_options
from sensor.settings import RuleSettings

FILE_KEYS = frozenset({"rules", "options", "tests"})
CASE_KEYS = frozenset({"name", "rules", "overrides", "options", "events", "events_file", "must_fire",
                       "must_not_fire"})
FIRE_KEYS = frozenset({"rule", "output_fields"})
MAX_EXPLAINED = 3          # events explained per failure


class RuleTestError(FalconetError):
    """A rule test file that cannot be run: names the file, the case and the key at fault."""


@dataclass
class Case:
    file: Path
    name: str
    rules: list[Path]
    overrides: list[Any]
    options: list[str]
    events: list[Any]
    must_fire: list[dict[str, Any]]
    must_not_fire: list[str]

    @property
    def where(self) -> str:
        return f"{self.file}: case '{self.name}'"


@dataclass
class Outcome:
    case: Case
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


# -- reading --------------------------------------------------------------------------------------

def read_file(path: Path) -> list[Case]:
    """The cases of one test file; RuleTestError for anything malformed."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise RuleTestError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise RuleTestError(f"{path}{at}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list) or not doc["tests"]:
        raise RuleTestError(f"{path}: a rule test file is a mapping with a non-empty 'tests' list")
    _no_unknown(doc, FILE_KEYS, str(path))
    base = path.parent
    rules = _paths(doc.get("rules", []), base, f"{path}: rules")
    options = _strings(doc.get("options", []), f"{path}: options")
    cases = []
    names: set[str] = set()
    for i, item in enumerate(doc["tests"], 1):
        case = _case(path, i, item, rules, options)
        if case.name in names:
            raise RuleTestError(f"{path}: two cases are named '{case.name}'")
        names.add(case.name)
        cases.append(case)
    return cases


def _case(path: Path, i: int, item: Any, rules: list[Path], options: list[str]) -> Case:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
        raise RuleTestError(f"{path}: test {i} must be a mapping with a 'name'")
    where = f"{path}: case '{item['name']}'"
    _no_unknown(item, CASE_KEYS, where)
    base = path.parent
    case_rules = _paths(item["rules"], base, f"{where}: rules") if "rules" in item else rules
    if not case_rules:
        raise RuleTestError(f"{where}: no rule files (give 'rules' in the file or the case)")
    overrides = item.get("overrides", [])
    if not isinstance(overrides, list):
        raise RuleTestError(f"{where}: 'overrides' must be a list of rule items (lists, macros, rules)")
    events = _events(item, base, where)
    must_fire = [_fire(x, f"{where}: must_fire") for x in _list(item.get("must_fire", []), f"{where}: must_fire")]
    must_not = _strings(item.get("must_not_fire", []), f"{where}: must_not_fire")
    if not must_fire and not must_not:
        raise RuleTestError(f"{where}: expects nothing (give must_fire, must_not_fire or both)")
    return Case(path, item["name"], case_rules, overrides,
                [*options, *_strings(item.get("options", []), f"{where}: options")], events, must_fire, must_not)


def _events(item: dict[str, Any], base: Path, where: str) -> list[Any]:
    from sensor.sources.replay import ReplayError, parse_line, read_events

    out: list[Any] = []
    try:
        for j, obj in enumerate(_list(item.get("events", []), f"{where}: events"), 1):
            out.extend(parse_line(obj, f"{where}: event {j}", len(out) + 1))
        if "events_file" in item:
            name = base / str(item["events_file"])
            try:
                with name.open() as stream:
                    out.extend(read_events(stream, str(name)))
            except OSError as e:
                raise RuleTestError(f"{where}: events_file {name}: cannot open: {e.strerror}") from None
    except ReplayError as e:
        raise RuleTestError(str(e)) from None
    if not out:
        raise RuleTestError(f"{where}: no events (give 'events' or 'events_file')")
    for n, ev in enumerate(out, 1):
        ev.num = n
    return out


def _fire(x: Any, where: str) -> dict[str, Any]:
    if isinstance(x, str):
        return {"rule": x, "output_fields": {}}
    if not isinstance(x, dict) or not isinstance(x.get("rule"), str):
        raise RuleTestError(f"{where}: each entry is a rule name or a mapping with 'rule' (and 'output_fields')")
    _no_unknown(x, FIRE_KEYS, f"{where}: {x['rule']}")
    fields_ = x.get("output_fields", {})
    if not isinstance(fields_, dict):
        raise RuleTestError(f"{where}: {x['rule']}: output_fields must be a mapping of field to value")
    return {"rule": x["rule"], "output_fields": fields_}


def _no_unknown(d: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    # `x-` keys are free for YAML anchors (as in Compose files).
    unknown = sorted(str(k) for k in d if k not in allowed and not str(k).startswith("x-"))
    if unknown:
        raise RuleTestError(f"{where}: unknown key '{unknown[0]}' (expected one of {', '.join(sorted(allowed))})")


def _list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise RuleTestError(f"{where}: must be a list")
    return v


def _strings(v: Any, where: str) -> list[str]:
    items = _list(v, where)
    if not all(isinstance(s, str) for s in items):
        raise RuleTestError(f"{where}: must be a list of strings")
    return items


def _paths(v: Any, base: Path, where: str) -> list[Path]:
    return [base / p for p in _strings(v, where)]


# -- running --------------------------------------------------------------------------------------

class Runner:
    """Runs cases; rule sets are loaded once per distinct (rules, overrides, options)."""

    def __init__(self, config_path: str | None = None, overrides: list[str] | None = None) -> None:
        self.config_path = config_path
        self.overrides = list(overrides or [])
        self._loaded: dict[str, Any] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="falconet-rules-test-")

    def close(self) -> None:
        self._tmp.cleanup()

    def ruleset(self, case: Case) -> Any:
        key = yaml.safe_dump([[str(p) for p in case.rules], case.overrides, case.options])
        if key not in self._loaded:
            self._loaded[key] = self._load(case, len(self._loaded))
        rs = self._loaded[key]
        if isinstance(rs, RuleTestError):
            raise rs
        return rs

    def _load(self, case: Case, n: int) -> Any:
        paths = list(case.rules)
        tmp = None
        if case.overrides:
            tmp = Path(self._tmp.name) / f"overrides-{n}.yaml"
            tmp.write_text(yaml.safe_dump(case.overrides, sort_keys=False))
            paths.append(tmp)
        try:
            cfg = config_mod.load(self.config_path, [*self.overrides, *case.options])
            return load_rules(paths, load_options(RuleSettings.from_config(cfg)))
        except RulesLoadError as e:
            text = "; ".join(str(d) for d in e.errors[:5])
            if tmp is not None:
                text = text.replace(str(tmp), f"{case.file} (overrides of case '{case.name}')")
            return RuleTestError(f"{case.where}: the rules do not load: {text}")
        except FalconetError as e:
            return RuleTestError(f"{case.where}: options: {e}")

    def run(self, case: Case) -> Outcome:
        out = Outcome(case)
        try:
            rs = self.ruleset(case)
            self._check_names(rs, case)
        except RuleTestError as e:
            out.failures.append(str(e))
            return out
        fired = [(ev, rs.process(ev)) for ev in case.events]
        for want in case.must_fire:
            self._must_fire(rs, case, want, fired, out)
        wanted = {w["rule"] for w in case.must_fire}
        for pattern in case.must_not_fire:
            for ev, alerts in fired:
                for a in alerts:
                    if a.rule not in wanted and fnmatch.fnmatchcase(a.rule, pattern):
                        out.failures.append(f"rule \"{a.rule}\" fired on event #{ev.num} but must not: {a.output}\n"
                                            + _indent(_explain(rs, a.rule, [(ev, alerts)])))
        return out

    def _check_names(self, rs: Any, case: Case) -> None:
        names = {r.name for r in rs.all_rules}
        for want in case.must_fire:
            if want["rule"] not in names:
                raise RuleTestError(f"{case.where}: must_fire names no loaded rule: '{want['rule']}'")
        for pattern in case.must_not_fire:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise RuleTestError(f"{case.where}: must_not_fire names no loaded rule: '{pattern}'")

    def _must_fire(self, rs: Any, case: Case, want: dict[str, Any], fired: list[tuple[Any, list[Any]]],
                   out: Outcome) -> None:
        name = want["rule"]
        alerts = [a for _ev, alerts in fired for a in alerts if a.rule == name]
        if not alerts:
            out.failures.append(f"rule \"{name}\" did not fire\n" + _indent(_explain(rs, name, fired)))
            return
        expected = want["output_fields"]
        rule = rs.rule(name)
        known = {f.key for f in rule.out.fields}
        for key in expected:
            if key not in known:
                out.failures.append(f"rule \"{name}\": output_fields names '{key}', which its output does not "
                                    f"have (it has {', '.join(sorted(known)) or 'none'})")
                return
        if any(all(a.output_fields.get(k) == v for k, v in expected.items()) for a in alerts):
            return
        got = alerts[0].output_fields
        diffs = [f"{k}: expected {v!r}, got {got.get(k)!r}" for k, v in expected.items() if got.get(k) != v]
        out.failures.append(f"rule \"{name}\" fired, but not with the expected output fields: " + "; ".join(diffs))


def _explain(rs: Any, name: str, fired: list[tuple[Any, list[Any]]]) -> str:
    """The explanation of rule `name` on the events of its source and types (the first few)."""
    rule = rs.rule(name)
    x = RuleExplainer(rs, rule)
    events = [(ev, alerts) for ev, alerts in fired if x.applies(ev)]
    if not events:
        return (f"none of the case's {len(fired)} events is among the {rule.source} events of type "
                f"{x.types_text()} that the rule can match")
    texts = [x.explain(ev, [a.rule for a in alerts]).text() for ev, alerts in events[:MAX_EXPLAINED]]
    if len(events) > MAX_EXPLAINED:
        texts.append(f"({len(events) - MAX_EXPLAINED} more events of the rule's types not shown)")
    return "\n".join(texts)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def run_files(files: list[Path], runner: Runner) -> Iterator[Outcome | RuleTestError]:
    """Every case of every file, in order; a file that cannot be read yields its error."""
    for f in files:
        try:
            cases = read_file(f)
        except RuleTestError as e:
            yield e
            continue
        for case in cases:
            yield runner.run(case)
