"""`response.actions` → validated ActionSpecs, or one ConfigError naming the file and line of every
mistake (the line of the item, or of the offending key inside it when the config file has it).

An item: {name, match: {rules, priority, tags, sources, condition}, do, with, cooldown,
max_per_minute}. `do` names an action class in ACTIONS; `with` is checked against its PARAMS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sensor.alert import Priority
from sensor.config_keys import Origins, parse_duration
from sensor.engine import compile_filter
from sensor.errors import ConfigError
from sensor.response.kill import KillProcess
from sensor.response.kube import DeletePod, IsolatePod, LabelPod
from sensor.response.match import AlertMatch
from sensor.response.params import coerce
from sensor.response.program import RunProgram
from sensor.response.settings import ResponseSettings
from sensor.response.webhook import HttpPost

ACTIONS: dict[str, Any] = {cls.do: cls for cls in
                           (KillProcess, DeletePod, LabelPod, IsolatePod, HttpPost, RunProgram)}
ITEM_KEYS = ("name", "match", "do", "with", "cooldown", "max_per_minute")
MATCH_KEYS = ("rules", "priority", "tags", "sources", "condition")
DEFAULT_MAX_PER_MINUTE = 60


@dataclass(slots=True)
class ActionSpec:
    """One configured action, validated; `where` is the file:line it came from."""

    name: str
    do: str
    match: AlertMatch
    params: dict[str, Any]
    cooldown: float
    max_per_minute: int
    where: str


class RuleVocabulary(Protocol):
    """What a match.condition may use of the loaded rules (a sensor.engine Ruleset): their lists,
    macros and context values (evt.hostname)."""

    @property
    def lists(self) -> Mapping[str, list[str]]: ...

    @property
    def macros(self) -> Mapping[str, Any]: ...

    @property
    def context(self) -> Mapping[str, Any]: ...


class _Locator:
    """Where an action item, or a key or list element inside it, was written: its file and line
    (sensor.config records the position of every value), or the `-o` that set it and the item."""

    def __init__(self, origins: Origins) -> None:
        self.origins = origins

    def item(self, i: int, *path: str | int) -> str:
        dotted = f"response.actions[{i}]" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        where = self.origins(dotted)
        return where if Origins.in_file(where) else f"{where} (response.actions[{i}])"


def parse_actions(settings: ResponseSettings, ruleset: RuleVocabulary | None = None) -> list[ActionSpec]:
    """Every item of response.actions as an ActionSpec; ConfigError listing every invalid one.

    `ruleset`: the loaded rules, whose lists and macros a match.condition may use as a rule's
    condition can.
    """
    raw = settings.actions
    loc = _Locator(settings.origins)
    errors: list[str] = []
    specs: list[ActionSpec] = []
    names: dict[str, str] = {}
    for i, item in enumerate(raw):
        before = len(errors)
        spec = _parse_item(i, item, loc, errors, ruleset)
        if spec is None or len(errors) > before:
            continue
        if spec.name in names:
            errors.append(f"{loc.item(i, 'name')}: response action name '{spec.name}' is already used "
                          f"at {names[spec.name]}; give each action its own name")
            continue
        names[spec.name] = spec.where
        specs.append(spec)
    if errors:
        raise ConfigError("invalid response actions:\n  " + "\n  ".join(errors))
    return specs


def _parse_item(i: int, item: Any, loc: _Locator, errors: list[str],
                ruleset: RuleVocabulary | None = None) -> ActionSpec | None:
    where = loc.item(i)
    if not isinstance(item, dict):
        errors.append(f"{where}: response action must be a mapping with name, match and do; "
                      f"got {type(item).__name__} {item!r}")
        return None
    for key in item:
        if key not in ITEM_KEYS:
            errors.append(f"{loc.item(i, key)}: unknown key '{key}' in response action; "
                          f"allowed: {', '.join(ITEM_KEYS)}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        errors.append(f"{where}: response action needs a `name` (a non-empty string)")
        name = f"#{i}"
    label = f"response action '{name}'"
    do = item.get("do")
    cls = ACTIONS.get(do) if isinstance(do, str) else None
    if cls is None:
        errors.append(f"{loc.item(i, 'do') if 'do' in item else where}: {label}: "
                      + (f"unknown `do` value {do!r}" if do is not None else "`do` is missing")
                      + f"; one of {', '.join(ACTIONS)}")
    params = _parse_with(i, item.get("with"), cls, label, loc, errors) if cls else {}
    match = _parse_match(i, item.get("match"), label, loc, errors, ruleset)
    cooldown = 0.0
    try:
        cooldown = parse_duration(item.get("cooldown", 0))
    except ValueError as e:
        errors.append(f"{loc.item(i, 'cooldown')}: {label}: cooldown {e}")
    max_pm = item.get("max_per_minute", DEFAULT_MAX_PER_MINUTE)
    if not isinstance(max_pm, int) or isinstance(max_pm, bool) or max_pm < 0:
        errors.append(f"{loc.item(i, 'max_per_minute')}: {label}: max_per_minute must be an integer "
                      f"0 or more (0: no limit), got {max_pm!r}")
        max_pm = DEFAULT_MAX_PER_MINUTE
    if (cls is not None and match is not None and getattr(cls, "AUDIT_OPT_IN", False)
            and "k8s_audit" in match.sources and not params.get("audit_rules")):
        errors.append(f"{loc.item(i, 'match', 'sources')}: {label}: {do} acts on audit alerts only for the "
                      "rules named in with.audit_rules (an audit event is what its sender claims); name "
                      "them, or drop k8s_audit from match.sources")
        return None
    if cls is None or match is None:
        return None
    return ActionSpec(name=name, do=cls.do, match=match, params=params, cooldown=cooldown,
                      max_per_minute=max_pm, where=where)


def _parse_with(i: int, given: Any, cls: Any, label: str, loc: _Locator,
                errors: list[str]) -> dict[str, Any]:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        errors.append(f"{loc.item(i, 'with')}: {label}: `with` must be a mapping, got {given!r}")
        return {}
    params: dict[str, Any] = {}
    for key, value in given.items():
        param = cls.PARAMS.get(key)
        if param is None:
            allowed = ", ".join(cls.PARAMS) or "none"
            errors.append(f"{loc.item(i, 'with', key)}: {label}: {cls.do} has no parameter '{key}'; "
                          f"allowed: {allowed}")
            continue
        try:
            params[key] = coerce(param, value)
        except ValueError as e:
            errors.append(f"{loc.item(i, 'with', key)}: {label}: with.{key} {e}")
    for key, param in cls.PARAMS.items():
        if key in params:
            continue
        if param.required:
            errors.append(f"{loc.item(i, 'with') if 'with' in given or given else loc.item(i)}: "
                          f"{label}: {cls.do} needs with.{key} ({param.description})")
        else:
            params[key] = param.check(param.default) if param.check else param.default
    return params


def _parse_match(i: int, given: Any, label: str, loc: _Locator, errors: list[str],
                 ruleset: RuleVocabulary | None = None) -> AlertMatch | None:
    if given is None:
        errors.append(f"{loc.item(i)}: {label} needs a `match` block (rules, priority, tags, sources, "
                      "condition); an action never runs on every alert by accident")
        return None
    if not isinstance(given, dict):
        errors.append(f"{loc.item(i, 'match')}: {label}: `match` must be a mapping, got {given!r}")
        return None
    before = len(errors)
    for key in given:
        if key not in MATCH_KEYS:
            errors.append(f"{loc.item(i, 'match', key)}: {label}: unknown key '{key}' in match; "
                          f"allowed: {', '.join(MATCH_KEYS)}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("rules", "tags", "sources"):
        value = given.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            errors.append(f"{loc.item(i, 'match', key)}: {label}: match.{key} must be a list of "
                          f"non-empty strings, got {value!r}")
            value = []
        lists[key] = tuple(value)
    priority = given.get("priority")
    if priority is not None:
        try:
            priority = Priority.parse(str(priority))
        except ValueError as e:
            errors.append(f"{loc.item(i, 'match', 'priority')}: {label}: match.priority: {e}")
            priority = None
    condition = given.get("condition")
    conditions: dict[str, Any] = {}
    if condition is not None:
        if not isinstance(condition, str) or not condition.strip():
            errors.append(f"{loc.item(i, 'match', 'condition')}: {label}: match.condition must be a "
                          "condition in the rules language")
        elif not lists["sources"]:
            errors.append(f"{loc.item(i, 'match', 'condition')}: {label}: match.condition needs "
                          "match.sources, so its fields can be checked against each source")
        else:
            conditions = _compile(condition, lists["sources"], loc.item(i, "match", "condition"),
                                  label, errors, ruleset)
    if len(errors) > before:
        return None
    return AlertMatch(rules=lists["rules"], priority=priority,
                      tags=frozenset(lists["tags"]), sources=frozenset(lists["sources"]),
                      conditions=conditions, condition_text=condition)


def _compile(text: str, sources: tuple[str, ...], where: str, label: str,
             errors: list[str], ruleset: RuleVocabulary | None = None) -> dict[str, Any]:
    out = {}
    for source in sources:
        if source == "internal":
            errors.append(f"{where}: {label}: match.condition cannot apply to internal alerts "
                          "(they have no event); drop 'internal' from match.sources")
            continue
        try:
            out[source] = compile_filter(text, source, lists=ruleset.lists if ruleset else None,
                                         macros=ruleset.macros if ruleset else None,
                                         context=ruleset.context if ruleset else None)
        except Exception as e:  # the engine's errors vary by stage; all of them mean "fix the text"
            errors.append(f"{where}: {label}: match.condition does not compile for source "
                          f"{source}: {e}")
    return out
