"""The configured rules: LoadOptions from RuleSettings and CLI flags, then load_rules().

`run`, `replay` and `rules` all load rules this way, so rule selection (`rules:`, `-D/-T/-t`,
`priority`, `append_output`) means the same everywhere. A selector that selects nothing (`-t
nosuchtag`, `-D` matching no rule) is a ConfigError naming it, and so is a selection that leaves an
enabled event source without any rule (`check_sources`): the sensor would run for nothing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

from sensor.alert import Priority
from sensor.engine.loader import LoadOptions, load_rules
from sensor.engine.ruleset import Ruleset
from sensor.errors import ConfigError
from sensor.settings import RuleSettings


def rule_paths(rules: RuleSettings, override: Sequence[str] = ()) -> list[Path]:
    """`-r` paths when given, else `rules_files` from the config. A configured directory that does not
    exist (the default /etc/falconet/rules.d on a fresh host) is skipped; a missing file is an error."""
    if override:
        return [Path(p) for p in override]
    out = []
    for p in rules.files:
        if not p.exists() and p.suffix not in (".yaml", ".yml"):
            continue
        out.append(p)
    return out


def load_options(rules: RuleSettings, *, disable: Sequence[str] = (), disable_tags: Sequence[str] = (),
                 enable_tags: Sequence[str] = ()) -> LoadOptions:
    return LoadOptions(
        rule_matching=rules.rule_matching,
        min_priority=rules.min_priority.label,
        selection=[dict(item) for item in rules.selection],
        disable_rules=list(disable),
        disable_tags=list(disable_tags),
        enable_tags=list(enable_tags),
        append_output=[dict(item) for item in rules.append_output],
        hostname=rules.hostname,
    )


def load_configured(rules: RuleSettings, rules_files: Sequence[str] = (), **selection: Sequence[str]) -> Ruleset:
    """Load the rules the settings name (or `rules_files`), with their selection applied.
    Raises RulesLoadError, or ConfigError for a -D/-T/-t that selects no rule."""
    ruleset = load_rules(rule_paths(rules, rules_files), load_options(rules, **selection))
    check_selectors(ruleset, **selection)
    return ruleset


def _name_matches(pattern: str, name: str) -> bool:
    # -D as the engine applies it (sensor/engine/loader.py _select): a * wildcard, else a substring.
    return fnmatch.fnmatchcase(name, pattern) or ("*" not in pattern and pattern in name)


def check_selectors(ruleset: Ruleset, *, disable: Sequence[str] = (), disable_tags: Sequence[str] = (),
                    enable_tags: Sequence[str] = ()) -> None:
    """ConfigError naming every -D, -T and -t that matches no loaded rule (a typo selects nothing)."""
    rules = ruleset.all_rules
    tags = sorted({t for r in rules for t in r.tags})
    known = f"the loaded rules' tags: {', '.join(tags[:30])}{' ...' if len(tags) > 30 else ''}" if tags \
        else "no loaded rule has tags"
    problems = [f"-D {p}: no loaded rule's name contains or matches it ({len(rules)} rules loaded; "
                f"`falconet -L` lists them)" for p in disable if not any(_name_matches(p, r.name) for r in rules)]
    for flag, wanted in (("-T", disable_tags), ("-t", enable_tags)):
        problems += [f"{flag} {t}: no loaded rule has this tag ({known})" for t in wanted if t not in tags]
    if problems:
        raise ConfigError("\n".join(problems))


def check_sources(rules: RuleSettings, sources: Sequence[str], ruleset: Ruleset,
                  selectors: Sequence[str] = ()) -> None:
    """ConfigError when an enabled event source (of `sources`) has no enabled rule, naming what
    left it without."""
    problems = []
    for source in sources:
        if any(r.source == source for r in ruleset.rules):
            continue
        loaded = sum(r.source == source for r in ruleset.all_rules)
        fix = (f"select some of its rules, or turn the source off (--disable-source {source})")
        if not loaded:
            problems.append(f"the {source} source is enabled but no loaded rule file has a {source} rule; "
                            f"load rules for it, or turn the source off (--disable-source {source})")
            continue
        used = list(selectors)
        if rules.selection:
            used.append(f"rules: ({rules.origins('rules')})")
        if rules.min_priority != Priority.DEBUG:
            used.append(f"priority: {rules.min_priority} ({rules.origins('priority')})")
        by = " and ".join(used) if used else "the rules' own enabled: false"
        problems.append(f"the {source} source is enabled but {by} leave(s) none of its {loaded} rules "
                        f"enabled; {fix}")
    if problems:
        raise ConfigError("\n".join(problems))
