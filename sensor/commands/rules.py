"""`falconet rules validate|list|describe|test` and the root flags `-V`, `-L`, `-l` (as in `falco`)."""

from __future__ import annotations

import json
from typing import Any

import click

from sensor import config as config_mod
from sensor.commands import options
from sensor.engine import ast
from sensor.engine.compiler import CompiledRule
from sensor.engine.loader import FileResult, RulesLoadError, load_rules
from sensor.engine.ruleset import Ruleset
from sensor.rulesetup import load_configured, load_options, rule_paths
from sensor.settings import RuleSettings
from sensor.status import Exit


def _cfg(obj: dict[str, Any], json_flag: bool = False) -> config_mod.Config:
    overrides = list(obj.get("overrides", []))
    if json_flag:
        overrides.append("json_output=true")
    return config_mod.load(obj.get("config_path"), overrides)


def _describe_rule(r: CompiledRule) -> dict[str, Any]:
    return {
        "details": {
            "condition_compiled": ast.to_text(r.node),
            "condition_fields": sorted({n.text() for n in ast.walk(r.node) if isinstance(n, ast.FieldRef)}),
            "events": sorted(r.types.names) if r.types.only else [],
            "lists": r.lists,
            "macros": r.macros,
            "output_fields": [f.key for f in r.out.fields],
        },
        "info": {
            "condition": r.condition,
            "description": r.desc,
            "enabled": r.enabled,
            "exceptions": r.exceptions,
            "name": r.name,
            "output": r.output,
            "priority": r.priority.label,
            "source": r.source,
            "tags": r.tags,
        },
    }


def _describe_all(rs: Ruleset) -> dict[str, Any]:
    return {
        "lists": [{"name": n, "items": items} for n, items in rs.lists.items()],
        "macros": [{"name": n, "condition": ast.to_text(node)} for n, node in rs.macros.items()],
        "rules": [_describe_rule(r) for r in rs.all_rules],
    }


def _print_results(results: list[FileResult], as_json: bool, describe: dict[str, Any] | None = None) -> None:
    if as_json:
        doc: dict[str, Any] = {"falco_load_results": [r.as_json() for r in results]}
        if describe is not None:
            doc["falco_describe_results"] = describe
        click.echo(json.dumps(doc, sort_keys=True))
        return
    for r in results:
        status = "Ok" if r.successful else "Invalid"
        if r.successful and r.warnings:
            status = "Ok, with warnings"
        click.echo(f"{r.name}: {status}")
        for d in r.errors:
            click.echo(f"  error: {d}")
        for d in r.warnings:
            click.echo(f"  warning: {d}")
        for w in r.schema_warnings:
            click.echo(f"  schema warning: {w}")


def validate_files(obj: dict[str, Any], files: list[str], describe: bool = False, as_json: bool = False) -> int:
    """Load the files together, as Falco's -V does; print per-file results; return the exit code."""
    cfg = _cfg(obj, as_json)
    as_json = bool(cfg.get("json_output"))
    try:
        rs = load_rules(files, load_options(RuleSettings.from_config(cfg)))
    except RulesLoadError as e:
        _print_results(e.results, as_json)
        return Exit.FAILED
    _print_results(rs.results, as_json, _describe_all(rs) if describe else None)   # type: ignore[attr-defined]
    return Exit.OK


def _load(obj: dict[str, Any], as_json: bool = False) -> tuple[config_mod.Config, Ruleset | None]:
    cfg = _cfg(obj, as_json)
    try:
        return cfg, load_configured(RuleSettings.from_config(cfg), obj.get("rules_files", []))
    except RulesLoadError as e:
        _print_results(e.results, bool(cfg.get("json_output")))
        return cfg, None


def list_rules(obj: dict[str, Any], as_json: bool = False) -> int:
    """`-L`: every loaded rule with its description (JSON: Falco's describe results)."""
    cfg, rs = _load(obj, as_json)
    if rs is None:
        return Exit.FAILED
    if cfg.get("json_output"):
        click.echo(json.dumps(_describe_all(rs), sort_keys=True))
        return Exit.OK
    width = max((len(r.name) for r in rs.all_rules), default=4)
    click.echo(f"{'Rule':<{width}}  Description")
    click.echo(f"{'-' * 4:<{width}}  {'-' * 11}")
    for r in rs.all_rules:
        state = "" if r.enabled else " (disabled)"
        click.echo(f"{r.name:<{width}}  {' '.join(r.desc.split())}{state}")
    return Exit.OK


def describe(obj: dict[str, Any], name: str, as_json: bool = False) -> int:
    """`-l RULE`: one rule's description, compiled condition and output."""
    cfg, rs = _load(obj, as_json)
    if rs is None:
        return Exit.FAILED
    r = rs.rule(name)
    if r is None:
        where = ", ".join(map(str, rule_paths(RuleSettings.from_config(cfg), obj.get("rules_files", []))))
        click.echo(f"falconet: error: no rule named '{name}' in {where}", err=True)
        return Exit.FAILED
    if cfg.get("json_output"):
        click.echo(json.dumps(_describe_rule(r), sort_keys=True))
        return Exit.OK
    d = _describe_rule(r)
    click.echo(f"Rule: {r.name}")
    click.echo(f"Description: {' '.join(r.desc.split())}")
    click.echo(f"Priority: {r.priority}   Source: {r.source}   Enabled: {str(r.enabled).lower()}")
    click.echo(f"Tags: {', '.join(r.tags)}")
    click.echo(f"Condition: {' '.join(r.condition.split())}")
    click.echo(f"Compiled: {d['details']['condition_compiled']}")
    click.echo(f"Event types: {', '.join(d['details']['events']) or '(all)'}")
    click.echo(f"Output: {' '.join(r.output.split())}")
    return Exit.OK


@click.group("rules")
def rules() -> None:
    """Validate, list, describe and test rule files."""


_rules_opt = options.rules_files
_json_opt = options.as_json


def _merge(ctx: click.Context, rules_files: tuple[str, ...]) -> dict[str, Any]:
    obj = dict(ctx.find_root().obj or {})
    if rules_files:
        obj["rules_files"] = list(rules_files)
    return obj


@rules.command("validate")
@_rules_opt
@click.option("-L", "describe_too", is_flag=True, help="Also describe every rule (falco_describe_results).")
@_json_opt
@click.argument("files", nargs=-1)
@click.pass_context
def validate_cmd(ctx: click.Context, rules_files: tuple[str, ...], describe_too: bool, as_json: bool,
                 files: tuple[str, ...]) -> None:
    """Check that rule files load (exit 0, warnings allowed) or print every error (exit 1)."""
    obj = _merge(ctx, rules_files)
    paths = list(files) + list(rules_files)
    if not paths:
        paths = [str(p) for p in rule_paths(RuleSettings.from_config(_cfg(obj)), ())]
    ctx.exit(validate_files(obj, paths, describe=describe_too, as_json=as_json))


@rules.command("list")
@_rules_opt
@_json_opt
@click.pass_context
def list_cmd(ctx: click.Context, rules_files: tuple[str, ...], as_json: bool) -> None:
    """List the loaded rules (as `falco -L`)."""
    ctx.exit(list_rules(_merge(ctx, rules_files), as_json))


@rules.command("describe")
@_rules_opt
@_json_opt
@click.argument("name")
@click.pass_context
def describe_cmd(ctx: click.Context, rules_files: tuple[str, ...], as_json: bool, name: str) -> None:
    """Describe one rule (as `falco -l RULE`)."""
    ctx.exit(describe(_merge(ctx, rules_files), name, as_json))


@rules.command("test")
@click.argument("files", nargs=-1, required=True)
@click.pass_context
def test_cmd(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Run rule test files (YAML cases of events and the alerts they must and must not fire; a
    directory runs its *.yaml files). Exit 0 when every case passes, 1 otherwise; a failure prints
    the explanation of the rule at fault. The root's -c and -o apply to every case."""
    from pathlib import Path

    from sensor.ruletest import RuleTestError, Runner, run_files

    root = ctx.find_root().obj or {}
    paths: list[Path] = []
    for f in map(Path, files):
        paths.extend(sorted(p for p in f.iterdir() if p.suffix in (".yaml", ".yml")) if f.is_dir() else [f])
    runner = Runner(root.get("config_path"), root.get("overrides", []))
    passed = failed = 0
    try:
        for res in run_files(paths, runner):
            if isinstance(res, RuleTestError):
                failed += 1
                click.echo(f"ERROR {res}")
            elif res.passed:
                passed += 1
                click.echo(f"PASS  {res.case.where}")
            else:
                failed += 1
                click.echo(f"FAIL  {res.case.where}")
                for text in res.failures:
                    click.echo("\n".join("  " + line for line in text.splitlines()))
    finally:
        runner.close()
    click.echo(f"{passed} passed, {failed} failed")
    ctx.exit(Exit.OK if failed == 0 and passed else Exit.FAILED)
