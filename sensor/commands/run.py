"""`falconet run`: capture events, match the rules, send the alerts (Falco's `falco`)."""

from __future__ import annotations

import logging
import sys

import click

from sensor.engine.loader import RulesLoadError
from sensor.runtime import RunOptions, Sensor, prepare
from sensor.status import Exit

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


@click.command("run")
@click.option("-r", "rules_files", multiple=True, metavar="PATH",
              help="Rule file or directory (repeatable); replaces rules_files from the config.")
@click.option("-c", "config_path", metavar="FILE", help="Configuration file.")
@click.option("-o", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Set a configuration key (value parsed as YAML); 'key[]=value' appends to a list.")
@click.option("-M", "duration", type=float, metavar="SECONDS", help="Stop after this many seconds.")
@click.option("-D", "disable", multiple=True, metavar="RULE",
              help="Disable rules whose name contains RULE (or matches it, with * wildcards).")
@click.option("-T", "disable_tags", multiple=True, metavar="TAG", help="Disable rules with this tag.")
@click.option("-t", "enable_tags", multiple=True, metavar="TAG", help="Only run rules with this tag.")
@click.option("-U", "unbuffered", is_flag=True, help="Flush every alert at once (buffered_outputs=false).")
@click.option("--dry-run", is_flag=True, help="Load and check configuration and rules, print what would run.")
@click.option("-v", "verbose", is_flag=True,
              help="Verbose start-up: log, per syscall, what the kernel keeps of its events.")
@click.pass_context
def run(ctx: click.Context, rules_files: tuple[str, ...], config_path: str | None, overrides: tuple[str, ...],
        duration: float | None, disable: tuple[str, ...], disable_tags: tuple[str, ...],
        enable_tags: tuple[str, ...], unbuffered: bool, dry_run: bool, verbose: bool) -> None:
    """Run the sensor until SIGINT/SIGTERM (or -M seconds). SIGHUP reloads configuration and rules
    (keeping the old ones if the new ones fail); SIGUSR1 reopens output files. A summary line goes to
    stderr at the end."""
    root = ctx.find_root().obj or {}
    options = RunOptions(config_path=config_path or root.get("config_path"),
                         overrides=[*root.get("overrides", []), *overrides],
                         rules_files=list(rules_files) or list(root.get("rules_files", [])),
                         disable=disable, disable_tags=disable_tags, enable_tags=enable_tags,
                         unbuffered=unbuffered)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s falconet %(levelname)s %(message)s")
    if verbose:
        logging.getLogger("falconet.capture").setLevel(logging.DEBUG)
    try:
        if dry_run:
            for line in prepare(options).describe():
                click.echo(line)
            return
        sensor = Sensor(options)
        sensor.start()
    except RulesLoadError as e:
        for d in e.errors:
            click.echo(f"falconet: error: {d}", err=True)
        ctx.exit(Exit.FAILED)
    assert sensor.plan is not None
    logging.getLogger().setLevel(_LEVELS[sensor.plan.cfg.get("log_level", "info")])
    summary = sensor.run(duration)
    sys.stdout.flush()
    click.echo(summary.line(), err=True)
