"""`falconet generate [ACTION...]`: harmless versions of what the bundled rules detect (the actions
live in sensor/generate/)."""

from __future__ import annotations

import json
import os

import click

from sensor.errors import UnavailableError
from sensor.status import Exit


@click.command("generate")
@click.argument("actions", nargs=-1, metavar="[ACTION]...")
@click.option("--list", "list_only", is_flag=True, help="List the actions and the rules they trigger.")
@click.option("--json", "as_json", is_flag=True,
              help="Print what each action did as one JSON object per line.")
@click.option("--sleep", "pause", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
              help="Pause between actions.")
@click.pass_context
def generate(ctx: click.Context, actions: tuple[str, ...], list_only: bool, as_json: bool, pause: float) -> None:
    """Do harmless versions of what the bundled rules detect (all actions when none is named). An
    action this host does not allow says why; the exit code is 1 when any could not run."""
    from sensor.generate import ACTIONS, BY_NAME, NOT_GENERATED, perform

    if list_only:
        width = max(len(a.name) for a in ACTIONS)
        for a in ACTIONS:
            click.echo(f"{a.name:<{width}}  {a.rule}: {a.desc}")
        for rule, why in NOT_GENERATED.items():
            click.echo(f"{'(none)':<{width}}  {rule}: not generated here, {why}")
        return
    unknown = [n for n in actions if n not in BY_NAME]
    if unknown:
        raise click.UsageError(f"unknown action(s): {', '.join(unknown)}; see `falconet generate --list`")
    if os.geteuid() != 0:
        raise UnavailableError("falconet generate needs root: it reads /etc/shadow, writes below /etc and "
                               "creates cgroups; run it as root")
    failed = 0
    for result in perform(actions, pause):
        failed += not result["ok"]
        if as_json:
            click.echo(json.dumps(result, sort_keys=True))
        elif result["ok"]:
            note = f"; note: {result['note']}" if "note" in result else ""
            click.echo(f"{result['action']}: done ({result['rule']}){note}")
        else:
            click.echo(f"{result['action']}: cannot run here: {result['error']}", err=True)
    ctx.exit(Exit.FAILED if failed else Exit.OK)
