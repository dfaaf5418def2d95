"""`falconet replay FILE`: run recorded events (or Kubernetes audit events) through the rules."""

from __future__ import annotations

import sys
from typing import Any

import click

from sensor import config as config_mod
from sensor.alert import Alert
from sensor.engine.loader import RulesLoadError
from sensor.outputs.render import Renderer
from sensor.rulesetup import load_configured
from sensor.sources.replay import ReplaySource
from sensor.status import Exit


def _printer(cfg: config_mod.Config) -> Any:
    render = Renderer(cfg).render
    out = sys.stdout

    def emit(alert: Alert) -> None:
        out.write(render(alert) + "\n")

    return emit


@click.command("replay")
@click.argument("file")
@click.option("-r", "rules_files", multiple=True, metavar="PATH", help="Rule file or directory (repeatable).")
@click.option("-c", "config_path", metavar="FILE", help="Configuration file.")
@click.option("-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Set a configuration key.")
@click.option("-D", "disable", multiple=True, metavar="PATTERN", help="Disable rules matching the name.")
@click.option("-T", "disable_tags", multiple=True, metavar="TAG", help="Disable rules with this tag.")
@click.option("-t", "enable_tags", multiple=True, metavar="TAG", help="Only run rules with this tag.")
@click.option("--json", "as_json", is_flag=True, help="One JSON alert per line (-o json_output=true).")
@click.pass_context
def replay(ctx: click.Context, file: str, rules_files: tuple[str, ...], config_path: str | None,
           overrides: tuple[str, ...], disable: tuple[str, ...], disable_tags: tuple[str, ...],
           enable_tags: tuple[str, ...], as_json: bool) -> None:
    """Run the events recorded in FILE (JSON lines; `-` for stdin) through the rules and print the
    alerts. A summary line goes to stderr."""
    root = ctx.find_root().obj or {}
    ovr = [*root.get("overrides", []), *overrides] + (["json_output=true"] if as_json else [])
    cfg = config_mod.load(config_path or root.get("config_path"), ovr)
    try:
        rs = load_configured(cfg, list(rules_files) or root.get("rules_files", []), disable=disable,
                             disable_tags=disable_tags, enable_tags=enable_tags)
    except RulesLoadError as e:
        for d in e.errors:
            click.echo(f"falconet: error: {d}", err=True)
        ctx.exit(Exit.FAILED)
    from sensor.runtime import Runtime

    rt = Runtime(rs, [ReplaySource(file)], _printer(cfg))
    summary = rt.run()
    sys.stdout.flush()
    click.echo(f"Events detected: {summary.alerts}; events processed: {summary.events}", err=True)
