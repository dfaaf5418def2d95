"""The configured rules: LoadOptions from falconet.yaml and CLI flags, then load_rules().

`run`, `replay` and `rules` all load rules this way, so rule selection (`rules:`, `-D/-T/-t`,
`priority`, `append_output`) means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sensor.config import Config
from sensor.engine.loader import LoadOptions, load_rules
from sensor.engine.ruleset import Ruleset


def rule_paths(cfg: Config, override: Sequence[str] = ()) -> list[Path]:
    """`-r` paths when given, else `rules_files` from the config. A configured directory that does not
    exist (the default /etc/falconet/rules.d on a fresh host) is skipped; a missing file is an error."""
    if override:
        return [Path(p) for p in override]
    out = []
    for p in cfg.rules_files():
        if not p.exists() and p.suffix not in (".yaml", ".yml"):
            continue
        out.append(p)
    return out


def load_options(cfg: Config, *, disable: Sequence[str] = (), disable_tags: Sequence[str] = (),
                 enable_tags: Sequence[str] = ()) -> LoadOptions:
    return LoadOptions(
        rule_matching=cfg.get("rule_matching", "first"),
        min_priority=cfg.get("priority", "Debug"),
        selection=list(cfg.get("rules", []) or []),
        disable_rules=list(disable),
        disable_tags=list(disable_tags),
        enable_tags=list(enable_tags),
        append_output=list(cfg.get("append_output", []) or []),
        hostname=cfg.hostname(),
    )


def load_configured(cfg: Config, rules_files: Sequence[str] = (), **selection: Any) -> Ruleset:
    """Load the rules the configuration names (or `rules_files`), with its selection applied."""
    return load_rules(rule_paths(cfg, rules_files), load_options(cfg, **selection))
