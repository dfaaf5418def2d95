"""The root command's informational flags, as Falco has them: `--list-events`, `--page-size`,
`--config-schema`, `--support`. Each prints and returns the exit code."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from sensor.commands.options import Settings, load_config
from sensor.credentials import redact
from sensor.status import Exit


def _events() -> list[tuple[str, str, bool]]:
    """(evt.type, Falco's category, traced by the capture) of every syscall event Falconet knows."""
    from sensor.syscalls import TABLE  # the one table of capture and engine

    return [(s.name, s.category, s.captured) for s in TABLE]


def list_events(markdown: bool = False) -> int:
    """`--list-events`: every syscall event type Falconet knows, with Falco's category; the ones
    its capture cannot trace are marked (they still match in recordings)."""
    rows = sorted(_events())
    if markdown:
        click.echo("| Event | Category | Traced |\n| --- | --- | --- |")
        for name, category, traced in rows:
            click.echo(f"| `{name}` | {category} | {'yes' if traced else 'no'} |")
        return Exit.OK
    click.echo("Syscall events (evt.type):")
    for name, category, traced in rows:
        click.echo(f"  {name:<24} {category:<12}{'' if traced else ' (not traced by the capture)'}".rstrip())
    return Exit.OK


def page_size() -> int:
    """`--page-size`, worded as Falco words it."""
    click.echo(f"Your system page size is: {os.sysconf('SC_PAGE_SIZE')} bytes.")
    return Exit.OK


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def schema_document() -> dict[str, Any]:
    """The JSON schema (draft-06, as Falco's --config-schema) of every key Falconet declares."""
    from sensor import config as config_mod

    top: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}
    for key in config_mod.schema().values():
        node = top
        parts = key.path.split(".")
        for p in parts[:-1]:
            node = node["properties"].setdefault(p, {"type": "object", "additionalProperties": False,
                                                     "properties": {}})
        leaf: dict[str, Any] = {"type": _JSON_TYPES[key.type], "description": key.description,
                                "default": key.default}
        if key.nullable:
            leaf["type"] = [leaf["type"], "null"]
        if key.items is not None:
            leaf["items"] = {"type": _JSON_TYPES[key.items]}
        if key.choices:
            leaf["enum"] = list(key.choices)
        node["properties"][parts[-1]] = leaf
    return {"$schema": "http://json-schema.org/draft-06/schema#", "title": "FalconetConfig", **top}


def config_schema() -> int:
    click.echo(json.dumps(schema_document(), indent=2))
    return Exit.OK


def support(settings: Settings) -> int:
    """`--support`: what a bug report needs, as one JSON object (Falco's keys; secrets redacted)."""
    from sensor import ENGINE_VERSION, __version__
    from sensor.engine.loader import expand_paths
    from sensor.rulesetup import rule_paths
    from sensor.settings import RuleSettings

    cfg = load_config(settings)
    files, _ = expand_paths(rule_paths(RuleSettings.from_config(cfg), settings.rules_files))
    u = os.uname()
    doc = {
        "version": __version__,
        "engine_info": {"engine_version": ENGINE_VERSION, "engine_version_semver": ENGINE_VERSION},
        "system_info": {"sysname": u.sysname, "nodename": u.nodename, "release": u.release,
                        "version": u.version, "machine": u.machine},
        "cmdline": " ".join(["falconet", *sys.argv[1:]]),
        "config_file": cfg.path,
        "config": redact(cfg.values),
        "config_warnings": cfg.warnings,
        "rules_files": [{"name": str(f), "variants": [{"content": _read(f)}]} for f in files],
    }
    click.echo(json.dumps(doc))
    return Exit.OK


def _read(path: Any) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as e:
        return f"<cannot read: {e.strerror}>"
