"""`falconet fields [SOURCE]` and `falconet --list [SOURCE]`: every field conditions and outputs can use."""

from __future__ import annotations

import json

import click

from sensor.status import Exit


def print_fields(source: str | None, markdown: bool = False, as_json: bool = False,
                 names_only: bool = False) -> int:
    """Print the field registry, grouped by field class, for one source or all (`names_only`: one
    field name a line, as `falco --list -N`)."""
    from sensor.engine.fields import SOURCES, classes

    if source is not None and source not in SOURCES:
        click.echo(f"falconet: error: unknown source '{source}' (known: {', '.join(SOURCES)})", err=True)
        return Exit.USAGE
    chosen = [c for c in classes() if source is None or c.source == source]
    if as_json:
        click.echo(json.dumps([{"name": c.name, "source": c.source, "desc": c.desc,
                                "fields": [{"name": f.name, "type": f.type, "desc": f.desc,
                                            "arg": f.arg, "is_list": f.is_list} for f in c.fields]}
                               for c in chosen], indent=2))
        return Exit.OK
    if names_only:
        for c in chosen:
            for f in c.fields:
                click.echo(f.name)
        return Exit.OK
    for c in chosen:
        if not c.fields:
            continue
        if markdown:
            click.echo(f"## Field class: {c.name} (source {c.source})\n\n{c.desc}\n")
            click.echo("| Name | Type | Description |\n| --- | --- | --- |")
            for f in c.fields:
                click.echo(f"| `{f.name}{'[...]' if f.arg else ''}` | {f.type} | {' '.join(f.desc.split())} |")
            click.echo()
            continue
        click.echo(f"Field class: {c.name} (source {c.source})")
        if c.desc:
            click.echo(f"  {c.desc}")
        click.echo()
        for f in c.fields:
            name = f"{f.name}[{'N' if f.arg == 'index' else 'KEY'}]" if f.arg else f.name
            click.echo(f"{name:<34} {f.type:<9} {' '.join(f.desc.split())}")
        click.echo()
    return Exit.OK


@click.command("fields")
@click.argument("source", required=False)
@click.option("--markdown", is_flag=True, help="Markdown tables.")
@click.option("--json", "as_json", is_flag=True, help="JSON.")
@click.option("-N", "names_only", is_flag=True, help="Only the field names.")
@click.pass_context
def fields(ctx: click.Context, source: str | None, markdown: bool, as_json: bool, names_only: bool) -> None:
    """List the fields of every source, or of SOURCE (syscall, k8s_audit)."""
    ctx.exit(print_fields(source, markdown, as_json, names_only))
