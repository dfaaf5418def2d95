"""`falconet replay FILE`: run recorded events (or Kubernetes audit events) through the rules.

By default the alerts are printed. With `--outputs` they go through the configured outputs
(stdout_output, file_output, fluent_output, ...) as in `falconet run`, the way Falco runs its
outputs when it reads a capture file (Falco 0.44: `falco -o engine.kind=replay -o
engine.replay.capture_file=FILE`; its old `-e FILE` is gone), so a capture can be sent through the
whole pipeline again. An `-o` for a key replay does not read (an output key without `--outputs`,
response, capture or webserver keys) would do nothing and is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import click

from sensor.alert import Alert, add_static_fields
from sensor.commands import options
from sensor.engine.ruleset import Ruleset
from sensor.errors import ConfigError
from sensor.outputs import fluentlog
from sensor.outputs.build import build_outputs
from sensor.outputs.render import Renderer
from sensor.outputs.settings import (
    OUTPUT_KEYS,
    RENDER_KEYS,
    OutputSettings,
    RenderSettings,
    sets_an_output_key,
)
from sensor.rulesetup import load_configured
from sensor.runtime import Runtime
from sensor.settings import RULE_KEYS, RuleSettings
from sensor.sources.replay import ReplaySource
from sensor.status import Exit


def _printer(settings: RenderSettings, static_fields: Mapping[str, Any]) -> Callable[[Alert], None]:
    render = Renderer(settings).render
    out = sys.stdout
    static = dict(static_fields)

    def emit(alert: Alert) -> None:
        out.write(render(add_static_fields(alert, static)) + "\n")

    return emit


# What replay reads: the rules, how alerts are printed and their static fields; with --outputs also
# the outputs and state_dir (their spools). Any other `-o` would do nothing.
PRINT_KEYS = RULE_KEYS | RENDER_KEYS | {"static_fields"}
DELIVERY_KEYS = OUTPUT_KEYS | {"state_dir"}


def refuse_unused_overrides(overrides: list[str], run_outputs: bool) -> None:
    """ConfigError for the first `-o` that sets a key replay does not read."""
    item = options.first_unused_override(overrides, PRINT_KEYS | DELIVERY_KEYS if run_outputs else PRINT_KEYS)
    if item is None:
        return
    if not run_outputs and sets_an_output_key(item):
        raise ConfigError(f"-o {item}: replay prints the alerts and runs no output",
                          hint="add --outputs to send them through the configured outputs")
    read = ("rules_files, rules, priority, rule_matching, append_output, hostname, json_output, "
            "json_include_*, time_format_iso_8601 and static_fields")
    raise ConfigError(f"-o {item}: replay does not read this key",
                      hint=f"replay reads {read}" + ("; the outputs' keys and state_dir with --outputs"
                                                     if run_outputs else "; with --outputs also the outputs' keys"))


@click.command("replay")
@click.argument("file")
@options.config_and_rules
@options.selection
@options.as_json
@click.option("--outputs", "run_outputs", is_flag=True,
              help="Send the alerts through the configured outputs (stdout_output, file_output, "
                   "fluent_output, ...) as `falconet run` does, instead of printing them.")
@click.pass_context
def replay(ctx: click.Context, file: str, config_path: str | None, overrides: tuple[str, ...],
           rules_files: tuple[str, ...], disable: tuple[str, ...], disable_tags: tuple[str, ...],
           enable_tags: tuple[str, ...], as_json: bool, run_outputs: bool) -> None:
    """Run the events recorded in FILE (JSON lines of `falconet capture`, or Kubernetes audit events;
    `-` for stdin) through the rules and print the alerts, or with --outputs deliver them as
    `falconet run` would. A summary line goes to stderr."""
    settings = options.settings(ctx, config_path, overrides, rules_files)
    extra = ("json_output=true",) if as_json else ()
    refuse_unused_overrides([*settings.overrides, *extra], run_outputs)
    cfg = options.load_config(settings, extra)
    rs = load_configured(RuleSettings.from_config(cfg), settings.rules_files, disable=disable,
                         disable_tags=disable_tags, enable_tags=enable_tags)
    if not run_outputs:
        printer = _printer(RenderSettings.from_config(cfg), cfg.get("static_fields") or {})
        summary = Runtime(rs, [ReplaySource(file)], printer).run()
        sys.stdout.flush()
        click.echo(f"Events detected: {summary.alerts}; events processed: {summary.events}", err=True)
        return
    ctx.exit(_replay_through_outputs(OutputSettings.from_config(cfg), rs, file))


def _replay_through_outputs(settings: OutputSettings, rs: Ruleset, file: str) -> int:
    """Deliver the alerts as `falconet run` does (the sensor's own log included); 0 when every
    alert was delivered or spooled for the next run, FAILED when some were dropped."""
    out = build_outputs(settings)
    log_handler = None
    try:
        log_handler = fluentlog.attach(settings.fluent, settings.hostname)
        summary = Runtime(rs, [ReplaySource(file)], out.submit).run()
    finally:
        out.close()
        fluentlog.detach(log_handler)
    summary.outputs = out.stats()
    click.echo(summary.line(), err=True)
    return Exit.FAILED if summary.output_drops else Exit.OK
