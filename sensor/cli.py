"""The `falconet` command: a root group with Falco's own flags and a lazy registry of subcommands.

Subcommands are imported only when invoked, so `falconet --help` and `falconet rules validate` start
fast and work without root or bcc. Errors become one line on stderr and a named exit code
(sensor/status.py); `--debug` shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from sensor import ENGINE_VERSION, __version__
from sensor.errors import FalconetError
from sensor.status import Exit

# name -> "module:attribute"; each module under sensor/commands/ is thin and owns one command.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("sensor.commands.run:run", "Run the sensor: capture, match rules, send alerts."),
    "rules": ("sensor.commands.rules:rules", "Validate, list, describe and test rule files."),
    "fields": ("sensor.commands.fields:fields", "List the fields conditions and outputs can use."),
    "replay": ("sensor.commands.replay:replay", "Run recorded events through the rules."),
    "explain": ("sensor.commands.explain:explain", "Explain why a rule did or did not match events."),
    "capture": ("sensor.commands.capture:capture", "Record live events for replay."),
    "generate": ("sensor.commands.generate:generate",
                 "Perform harmless versions of what the bundled rules detect."),
    "provision": ("sensor.commands.provision:provision",
                  "Install templates, ILM, pipelines and dashboards in Elasticsearch and Kibana."),
    "export": ("sensor.commands.export:export", "Write every Elasticsearch and Kibana asset to a directory."),
    "certs": ("sensor.commands.certs:certs", "Generate the audit webhook's TLS certificate."),
    "config": ("sensor.commands.config:config", "Show the configuration keys and effective values."),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use (pip's registry, with click)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the registry, so --help imports no command module.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "config_path", metavar="FILE", envvar="FALCONET_CONFIG",
              help="Configuration file (default /etc/falconet/falconet.yaml, else the bundled one).")
@click.option("-o", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Set a configuration key (value parsed as YAML); 'key[]=value' appends to a list.")
@click.option("-r", "rules_files", metavar="PATH", multiple=True,
              help="Rule file or directory (repeatable); replaces rules_files from the config.")
@click.option("-V", "validate", metavar="FILE", multiple=True,
              help="Validate rule files and exit (as `falco -V`).")
@click.option("-L", "list_rules", is_flag=True, help="List the loaded rules and exit.")
@click.option("-l", "describe_rule", metavar="RULE", help="Describe one rule and exit.")
@click.option("--list", "list_source", is_flag=False, flag_value="", default=None, metavar="[SOURCE]",
              help="List the fields of every source, or of SOURCE, and exit.")
@click.option("--version", "show_version", is_flag=True, help="Print the version and exit.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def root(ctx: click.Context, config_path: str | None, overrides: tuple[str, ...],
         rules_files: tuple[str, ...], validate: tuple[str, ...], list_rules: bool,
         describe_rule: str | None, list_source: str | None, show_version: bool, debug: bool) -> None:
    """Falconet: a Falco-compatible runtime-security sensor on eBPF."""
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=config_path, overrides=list(overrides), rules_files=list(rules_files),
                   debug=debug)
    if show_version:
        click.echo(f"Falconet version: {__version__}")
        click.echo(f"Engine version: {ENGINE_VERSION}")
        ctx.exit(0)
    if ctx.invoked_subcommand is not None:
        return
    from sensor.commands import rules as rules_cmd

    if validate:
        ctx.exit(rules_cmd.validate_files(ctx.obj, list(validate), describe=list_rules))
    if list_rules:
        ctx.exit(rules_cmd.list_rules(ctx.obj))
    if describe_rule:
        ctx.exit(rules_cmd.describe(ctx.obj, describe_rule))
    if list_source is not None:
        from sensor.commands import fields as fields_cmd

        ctx.exit(fields_cmd.print_fields(list_source or None, markdown=False))
    click.echo(ctx.get_help())


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: run the CLI, turning FalconetError into one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = root.main(args=argv, prog_name="falconet", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(Exit.INTERRUPTED)
    except FalconetError as e:
        if debug or os.environ.get("FALCONET_DEBUG"):
            raise
        click.echo(f"falconet: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(Exit.INTERRUPTED)
    # standalone_mode=False hands back ctx.exit() codes and command return values.
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
