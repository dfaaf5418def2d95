"""The `falconet` command: Falco's command line at the root, and a lazy registry of subcommands.

`falconet [falco flags]` does what `falco [flags]` does: with no subcommand it runs the sensor
(`falconet -r rules.yaml -M 60`, `falconet -c falco.yaml -o json_output=true -U`), and the root's
informational flags (`-V`, `-L`, `-l`, `--list`, `--list-events`, `--support`, `--version`,
`--page-size`, `--config-schema`) print and exit. `falconet run [flags]` is the long form. Falco
flags whose meaning Falconet does not implement fail with one line that says so
(sensor/commands/options.py declares every shared option once).

Subcommands are imported only when invoked, so `falconet --help` and `falconet rules validate` start
fast and work without root or bcc. `FalconetGroup.main` is the one place that turns exceptions into
exit codes (sensor/status.py): one line per problem on stderr, no traceback unless `--debug`; a
closed pipe (`falconet config | head`) ends quietly as Unix tools do.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from sensor import ENGINE_VERSION, __version__
from sensor.commands import options
from sensor.errors import FalconetError
from sensor.status import Exit

# name -> "module:attribute"; each module under sensor/commands/ is thin and owns one command, and is
# imported only when its command runs (FalconetGroup.get_command): lazy on purpose, for start-up.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("sensor.commands.run:run", "Run the sensor: capture, match rules, send alerts (as `falconet [flags]`)."),
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


class StdoutClosed(Exception):
    """The reader of stdout went away (`falconet config | head`)."""


class FalconetGroup(click.Group):
    """A click group whose commands are imported on first use (pip's registry, with click), and
    whose `main` turns every exception into one line and an exit code."""

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

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise StdoutClosed() from e       # click's main would exit 1 for it
            raise

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(args) if args is not None else sys.argv[1:]
        debug = "--debug" in argv or bool(os.environ.get("FALCONET_DEBUG"))
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else Exit.OK
            sys.stdout.flush()              # a reader that went away is seen here, not at exit
        except Exception as e:              # the one place errors become exit codes
            if debug and not isinstance(e, (click.exceptions.Exit, click.ClickException, click.Abort)):
                raise
            code = report(e)
        except KeyboardInterrupt:
            code = Exit.INTERRUPTED
        if standalone_mode:
            sys.exit(code)
        return code


def report(e: BaseException) -> int:
    """Tell the user what went wrong, in one line per problem on stderr; return the exit code."""
    if isinstance(e, click.exceptions.Exit):
        return e.exit_code
    if isinstance(e, click.UsageError):
        # One line, as every other error: what is wrong with the command line and where to look.
        command = e.ctx.command_path if e.ctx is not None else "falconet"
        click.echo(f"falconet: error: {e.format_message()} (see `{command} --help`)", err=True)
        return e.exit_code
    if isinstance(e, click.ClickException):
        e.show()
        return e.exit_code
    if isinstance(e, click.Abort):
        click.echo("Aborted.", err=True)
        return Exit.INTERRUPTED
    if isinstance(e, StdoutClosed) or (isinstance(e, OSError) and e.errno == errno.EPIPE):
        return _broken_pipe()
    if isinstance(e, FalconetError):        # configuration, rules (one line per error), capabilities
        for line in str(e).splitlines() or [type(e).__name__]:
            click.echo(f"falconet: error: {line}", err=True)
        return e.exit_code
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"falconet: error: {where}{e.strerror}", err=True)
        return Exit.UNAVAILABLE
    click.echo(f"falconet: internal error: {type(e).__name__}: {e} (a bug: please report it with the "
               f"output of the same command with --debug, which shows the traceback)", err=True)
    return Exit.FAILED


def _broken_pipe() -> int:
    """The reader of stdout went away (`| head`): stop quietly, as a Unix tool killed by SIGPIPE.
    Python would flush stdout again at exit and complain; point it at /dev/null first."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return Exit.BROKEN_PIPE


@click.group(cls=FalconetGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@options.config_and_rules
@options.run_flags
@click.option("-V", "--validate", "validate", metavar="FILE", multiple=True,
              help="Validate rule files and exit (as `falco -V`).")
@click.option("-L", "list_rules", is_flag=True, help="List the loaded rules and exit (JSON with -o json_output=true).")
@click.option("-l", "describe_rule", metavar="RULE", help="Describe one rule and exit.")
@click.option("--list", "list_source", is_flag=False, flag_value="", default=None, metavar="[SOURCE]",
              help="List the fields of every source, or of SOURCE, and exit.")
@click.option("-N", "names_only", is_flag=True, help="With --list: only the field names.")
@click.option("--markdown", is_flag=True, help="With --list or --list-events: Markdown.")
@click.option("--list-events", "list_events", is_flag=True, help="List the syscall events Falconet knows and exit.")
@click.option("--support", is_flag=True,
              help="Print support information (version, system, command line, configuration, rule files) "
                   "as JSON and exit.")
@click.option("--page-size", "page_size", is_flag=True, help="Print the system page size and exit.")
@click.option("--config-schema", "config_schema", is_flag=True,
              help="Print the configuration's JSON schema and exit.")
@click.option("--version", "show_version", is_flag=True, help="Print the version and exit.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def root(ctx: click.Context, config_path: str | None, overrides: tuple[str, ...], rules_files: tuple[str, ...],
         validate: tuple[str, ...], list_rules: bool, describe_rule: str | None, list_source: str | None,
         names_only: bool, markdown: bool, list_events: bool, support: bool, page_size: bool,
         config_schema: bool, show_version: bool, debug: bool, **run_flags: Any) -> None:
    """Falconet: a Falco-compatible runtime-security sensor on eBPF.

    With Falco's flags and no command it runs the sensor, as `falco` does
    (`falconet -r rules.yaml -M 60`); with no arguments it prints this help.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=config_path, overrides=list(overrides), rules_files=list(rules_files),
                   debug=debug, run=run_flags)
    if show_version:
        click.echo(f"Falconet version: {__version__}")
        click.echo(f"Engine version: {ENGINE_VERSION}")
        ctx.exit(0)
    given = [name for name, value in run_flags.items() if value not in (None, False, ())]
    if ctx.invoked_subcommand is not None:
        if given and ctx.invoked_subcommand != "run":
            flag = _flag(ctx, given[0])
            raise click.UsageError(f"{flag} is a flag for running the sensor, not for "
                                   f"`{ctx.invoked_subcommand}`: use `falconet {flag} ...` or `falconet run "
                                   f"{flag} ...`", ctx)
        return
    settings = options.settings(ctx)
    # The command modules below are imported here on purpose, not at the top: each loads (with the
    # engine, the runtime, ...) only for the flag that needs it, so `falconet --help` and
    # `falconet --version` stay fast; the one lazy registry of the CLI, with COMMANDS above.
    from sensor.commands import info

    if validate:
        from sensor.commands import rules as rules_cmd

        ctx.exit(rules_cmd.validate_files(ctx.obj, list(validate), describe=list_rules))
    if list_rules or describe_rule:
        from sensor.commands import rules as rules_cmd

        ctx.exit(rules_cmd.list_rules(ctx.obj) if list_rules else rules_cmd.describe(ctx.obj, describe_rule or ""))
    if list_source is not None:
        from sensor.commands import fields as fields_cmd

        ctx.exit(fields_cmd.print_fields(list_source or None, markdown=markdown, names_only=names_only))
    if names_only or markdown:
        raise click.UsageError(f"{'-N' if names_only else '--markdown'} goes with --list"
                               + ("" if names_only else " or --list-events"), ctx)
    if list_events:
        ctx.exit(info.list_events(markdown=markdown))
    if page_size:
        ctx.exit(info.page_size())
    if config_schema:
        ctx.exit(info.config_schema())
    if support:
        ctx.exit(info.support(settings))
    if not (given or config_path or overrides or rules_files):
        click.echo(ctx.get_help())
        ctx.exit(0)
    from sensor.commands.run import RunFlags, run_sensor

    ctx.exit(run_sensor(settings, RunFlags(**run_flags)))


def _flag(ctx: click.Context, name: str) -> str:
    for p in ctx.command.params:
        if p.name == name:
            return p.opts[0]
    return name


def main(argv: list[str] | None = None) -> Any:
    """Console entry point (`falconet`)."""
    return root.main(args=argv, prog_name="falconet")


if __name__ == "__main__":
    main()
