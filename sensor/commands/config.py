"""`falconet config`: the configuration keys, the effective values, and the bundled default file."""

from __future__ import annotations

from typing import Any

import click
import yaml

from sensor import config as config_mod
from sensor.commands import options
from sensor.credentials import redact


@click.command("config")
@options.config
@click.option("--default", "show_default", is_flag=True,
              help="Print the bundled default falconet.yaml, generated from every declared key.")
@click.option("--list", "list_keys", is_flag=True, help="List every key: type, default, description.")
@click.pass_context
def config(ctx: click.Context, config_path: str | None, overrides: tuple[str, ...], show_default: bool,
           list_keys: bool) -> None:
    """Show the effective configuration (each key with where it was set; secrets such as passwords,
    tokens and shared keys shown as <redacted>), or the keys themselves."""
    if show_default:
        click.echo(config_mod.default_yaml(), nl=False)
        return
    if list_keys:
        for key in config_mod.schema().values():
            kind = key.type.__name__ + (f" ({'|'.join(key.choices)})" if key.choices else "")
            click.echo(f"{key.path}  {kind}  default {_scalar(key.default)}")
            click.echo(f"    {key.description}")
        return
    cfg = options.load_config(options.settings(ctx, config_path, overrides))
    click.echo(f"# {cfg.path or 'no configuration file: defaults'}")
    for path in config_mod.schema():
        click.echo(f"{path}: {_scalar(redact(cfg.get(path), path))}  # {cfg.origin(path)}")


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
