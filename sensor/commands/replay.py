"""`falconet replay FILE`: run recorded events (or Kubernetes audit events) through the rules."""

from __future__ import annotations

import sys
from typing import Any

import click

from sensor import config as config_mod
from sensor.alert import Alert
from sensor.commands import options
from sensor.outputs.render import Renderer
from sensor.rulesetup import load_configured
from sensor.sources.replay import ReplaySource


def _printer(cfg: config_mod.Config) -> Any:
    render = Renderer(cfg).render
    out = sys.stdout

    def emit(alert: Alert) -> None:
        out.write(render(alert) + "\n")

    return emit


@click.command("replay")
@click.argument("file")
@options.config_and_rules
@options.selection
@options.as_json
@click.pass_context
def replay(ctx: click.Context, file: str, config_path: str | None, overrides: tuple[str, ...],
           rules_files: tuple[str, ...], disable: tuple[str, ...], disable_tags: tuple[str, ...],
           enable_tags: tuple[str, ...], as_json: bool) -> None:
    """Run the events recorded in FILE (JSON lines of `falconet capture`, or Kubernetes audit events;
    `-` for stdin) through the rules and print the alerts. A summary line goes to stderr."""
    settings = options.settings(ctx, config_path, overrides, rules_files)
    cfg = options.load_config(settings, ("json_output=true",) if as_json else ())
    rs = load_configured(cfg, settings.rules_files, disable=disable, disable_tags=disable_tags,
                         enable_tags=enable_tags)
    from sensor.runtime import Runtime

    rt = Runtime(rs, [ReplaySource(file)], _printer(cfg))
    summary = rt.run()
    sys.stdout.flush()
    click.echo(f"Events detected: {summary.alerts}; events processed: {summary.events}", err=True)
