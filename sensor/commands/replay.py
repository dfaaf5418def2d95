"""`falconet replay FILE`: run recorded events (or Kubernetes audit events) through the rules.

By default the alerts are printed. With `--outputs` they go through the configured outputs
(stdout_output, file_output, fluent_output, ...) as in `falconet run`, the way Falco runs its
outputs when it reads a capture file (Falco 0.44: `falco -o engine.kind=replay -o
engine.replay.capture_file=FILE`; its old `-e FILE` is gone), so a capture can be sent through the
whole pipeline again. Without `--outputs` an `-o` for an output key would do nothing and is refused.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from sensor import config as config_mod
from sensor.alert import Alert, add_static_fields
from sensor.engine.loader import RulesLoadError
from sensor.errors import ConfigError
from sensor.outputs.render import Renderer
from sensor.rulesetup import load_configured
from sensor.sources.replay import ReplaySource
from sensor.status import Exit


def _printer(cfg: config_mod.Config) -> Any:
    render = Renderer(cfg).render
    out = sys.stdout
    static = dict(cfg.get("static_fields") or {})

    def emit(alert: Alert) -> None:
        out.write(render(add_static_fields(alert, static)) + "\n")

    return emit


def _output_keys() -> list[str]:
    """Every key the outputs declare (the channels, outputs_queue, flood_control)."""
    from sensor import outputs

    modules = [outputs, *(importlib.import_module(f"sensor.outputs.{m}") for m in outputs.CHANNEL_MODULES)]
    return [k.path for mod in modules for k in mod.CONFIG_KEYS]


def refuse_output_overrides(overrides: list[str]) -> None:
    """ConfigError for the first `-o` that sets an output key: printing alerts runs no output."""
    keys = _output_keys()
    for item in overrides:
        dotted = item.split("=", 1)[0].strip().removesuffix("[]")
        if any(k == dotted or k.startswith(dotted + ".") for k in keys):
            raise ConfigError(f"-o {item}: replay prints the alerts and runs no output",
                              hint="add --outputs to send them through the configured outputs")


@click.command("replay")
@click.argument("file")
@click.option("-r", "rules_files", multiple=True, metavar="PATH", help="Rule file or directory (repeatable).")
@click.option("-c", "config_path", metavar="FILE", help="Configuration file.")
@click.option("-o", "overrides", multiple=True, metavar="KEY=VALUE", help="Set a configuration key.")
@click.option("-D", "disable", multiple=True, metavar="PATTERN", help="Disable rules matching the name.")
@click.option("-T", "disable_tags", multiple=True, metavar="TAG", help="Disable rules with this tag.")
@click.option("-t", "enable_tags", multiple=True, metavar="TAG", help="Only run rules with this tag.")
@click.option("--json", "as_json", is_flag=True, help="One JSON alert per line (-o json_output=true).")
@click.option("--outputs", "run_outputs", is_flag=True,
              help="Send the alerts through the configured outputs (stdout_output, file_output, "
                   "fluent_output, ...) as `falconet run` does, instead of printing them.")
@click.pass_context
def replay(ctx: click.Context, file: str, rules_files: tuple[str, ...], config_path: str | None,
           overrides: tuple[str, ...], disable: tuple[str, ...], disable_tags: tuple[str, ...],
           enable_tags: tuple[str, ...], as_json: bool, run_outputs: bool) -> None:
    """Run the events recorded in FILE (JSON lines; `-` for stdin) through the rules and print the
    alerts, or with --outputs deliver them as `falconet run` would. A summary line goes to stderr."""
    root = ctx.find_root().obj or {}
    ovr = [*root.get("overrides", []), *overrides] + (["json_output=true"] if as_json else [])
    if not run_outputs:
        refuse_output_overrides(ovr)
    cfg = config_mod.load(config_path or root.get("config_path"), ovr)
    try:
        rs = load_configured(cfg, list(rules_files) or root.get("rules_files", []), disable=disable,
                             disable_tags=disable_tags, enable_tags=enable_tags)
    except RulesLoadError as e:
        for d in e.errors:
            click.echo(f"falconet: error: {d}", err=True)
        ctx.exit(Exit.FAILED)
    from sensor.runtime import Runtime

    if not run_outputs:
        summary = Runtime(rs, [ReplaySource(file)], _printer(cfg)).run()
        sys.stdout.flush()
        click.echo(f"Events detected: {summary.alerts}; events processed: {summary.events}", err=True)
        return
    ctx.exit(_replay_through_outputs(cfg, rs, file))


def _replay_through_outputs(cfg: config_mod.Config, rs: Any, file: str) -> int:
    """Deliver the alerts as `falconet run` does (the sensor's own log included); 0 when every
    alert was delivered or spooled for the next run, FAILED when some were dropped."""
    from sensor import outputs
    from sensor.outputs import fluentlog
    from sensor.runtime import Runtime

    out = outputs.build(cfg)
    log_handler = None
    try:
        log_handler = fluentlog.attach(cfg, cfg.hostname())
        summary = Runtime(rs, [ReplaySource(file)], out.submit).run()
    finally:
        out.close()
        fluentlog.detach(log_handler)
    summary.outputs = out.stats()
    click.echo(summary.line(), err=True)
    return Exit.FAILED if summary.output_drops else Exit.OK
