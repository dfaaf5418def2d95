"""`falconet explain RULE [EVENTS...]`: why a rule did or did not match recorded events.

EVENTS are capture files (`falconet capture -w`), audit logs (JSON lines of audit Events or
EventLists), `-` for stdin, or one event written as JSON on the command line; with none, events are
read from stdin. Every event of the rule's source and event types is run through the loaded rules
and the rule's condition is printed as a tree, each node with its result and the values it
compared, and the node that decided the result (sensor/engine/explain.py).

A command of its own rather than `replay --explain`: a user asks "explain rule X on this event",
often on a single event pasted from an alert, and gets explanations, not alerts; replay's output
options (--outputs) would mean nothing here.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from sensor.commands import options
from sensor.engine.loader import RulesLoadError
from sensor.errors import ConfigError, FalconetError
from sensor.outputs.settings import sets_an_output_key
from sensor.rulesetup import load_configured, rule_paths
from sensor.settings import RULE_KEYS, RuleSettings
from sensor.status import Exit


def event_filter(ruleset: Any, source: str, text: str | None, flag: str) -> Callable[[Any], bool] | None:
    """A condition selecting the events to explain (it may use the rules' lists and macros)."""
    if not text:
        return None
    from sensor.engine import compile_filter
    from sensor.engine.parser import RuleSyntaxError
    from sensor.engine.passes import CompileError

    try:
        return compile_filter(text, source, ruleset.lists, ruleset.macros, ruleset.context)
    except (RuleSyntaxError, CompileError) as e:
        raise click.BadParameter(f"'{text}': {e}", param_hint=flag) from None


def unknown_rule(ruleset: Any, name: str, where: str) -> FalconetError:
    close = difflib.get_close_matches(name, [r.name for r in ruleset.all_rules], n=3)
    hint = ("did you mean " + " or ".join(f"'{c}'" for c in close) + "?") if close else \
        "`falconet rules list` shows the loaded rules"
    return FalconetError(f"no rule named '{name}' in {where}", hint=hint)


def _refuse_unused_overrides(overrides: list[str]) -> None:
    """An -o for a key explain does not read would do nothing: it loads rules and runs no output."""
    item = options.first_unused_override(overrides, RULE_KEYS)
    if item is not None and sets_an_output_key(item):
        raise ConfigError(f"-o {item}: explain prints explanations and runs no output")
    if item is not None:
        raise ConfigError(f"-o {item}: explain does not read this key", hint="it takes the rules' keys only")


def _events(specs: tuple[str, ...]) -> Iterator[Any]:
    """The events of every spec in turn, numbered from 1 across all of them."""
    num = 0
    for i, spec in enumerate(specs or ("-",), 1):
        for ev in _spec_events(i, spec):
            num += 1
            ev.num = num
            yield ev


def _spec_events(i: int, spec: str) -> Iterator[Any]:
    from sensor.sources.replay import ReplayError, parse_line, read_events

    if spec.lstrip().startswith(("{", "[")):
        from sensor.jsontext import DecodeError, loads

        try:
            obj = loads(spec)
        except DecodeError as e:
            raise ReplayError(f"event argument {i}: {e}") from None
        yield from parse_line(obj, f"event argument {i}", 1)
    elif spec == "-":
        yield from read_events(sys.stdin, "<stdin>")
    else:
        try:
            stream = Path(spec).open()
        except OSError as e:
            raise ReplayError(f"{spec}: cannot open: {e.strerror}") from None
        with stream:
            yield from read_events(stream, spec)


@click.command("explain")
@click.argument("rule")
@click.argument("events", nargs=-1)
@options.config_and_rules
@click.option("--filter", "filter_text", metavar="CONDITION",
              help="Explain only the events this condition selects (e.g. 'proc.name=nc').")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per explained event.")
@click.pass_context
def explain(ctx: click.Context, rule: str, events: tuple[str, ...], rules_files: tuple[str, ...],
            config_path: str | None, overrides: tuple[str, ...], filter_text: str | None, as_json: bool) -> None:
    """Explain why RULE did or did not match each event of its source and event types in EVENTS
    (capture files, audit logs, '-' for stdin, or an event as JSON text; default stdin)."""
    from sensor.engine.explain import RuleExplainer

    settings = options.settings(ctx, config_path, overrides, rules_files)
    _refuse_unused_overrides(settings.overrides)
    cfg = options.load_config(settings)
    paths = settings.rules_files
    try:
        rs = load_configured(RuleSettings.from_config(cfg), paths)
    except RulesLoadError as e:
        for d in e.errors:
            click.echo(f"falconet: error: {d}", err=True)
        ctx.exit(Exit.FAILED)
    compiled = rs.rule(rule)
    if compiled is None:
        raise unknown_rule(rs, rule, ", ".join(map(str, rule_paths(RuleSettings.from_config(cfg), paths))))
    explainer = RuleExplainer(rs, compiled)
    selected = event_filter(rs, compiled.source, filter_text, "--filter")
    seen = explained = matched = alerted = 0
    for ev in _events(events):
        seen += 1
        fired = [a.rule for a in rs.process(ev)]
        if not explainer.applies(ev) or (selected is not None and not selected(ev)):
            continue
        why_not = explainer.explain(ev, fired)
        explained += 1
        matched += why_not.matched
        alerted += bool(why_not.alerted)
        if as_json:
            click.echo(json.dumps(why_not.as_json(), ensure_ascii=False, default=str))
        else:
            click.echo(why_not.text())
    kinds = f"{compiled.source} events of type {explainer.types_text()}"
    if not explained:
        why = " selected by --filter" if selected is not None else ""
        click.echo(f"falconet: error: none of the {seen} events read is among the {kinds} that the rule "
                   f"can match{why}: nothing to explain", err=True)
        ctx.exit(Exit.FAILED)
    click.echo(f"Explained {explained} of {seen} events ({kinds}): the condition held for {matched}, "
               f"the rule alerted on {alerted}", err=True)
