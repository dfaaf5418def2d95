"""falconet.yaml: one schema, assembled from the keys each part declares next to its code.

A part declares `CONFIG_KEYS = (Key("file_output.filename", str, "", "..."), ...)` in its own module
and that module is named in `KEY_MODULES`. Keys follow Falco's falco.yaml where Falco has one.
Loading checks every key against the schema: an unknown key or a value of the wrong type is a
`ConfigError` that names the key and the file line (or the `-o` override) that set it.

Overrides: `-o key=value` sets a dotted key (the value parsed as YAML), `-o 'key[]=value'` appends
to a list. String values expand `${VAR}` and `${VAR:-default}` from the environment.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sensor.assets import asset_dir
from sensor.errors import ConfigError

DEFAULT_PATH = Path("/etc/falconet/falconet.yaml")


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: dotted path, type, default and what it does.

    `type` is one of str, int, float, bool, list, dict. A `dict` or `list` key is a leaf whose
    contents its owner validates (e.g. `static_fields`, `response.actions`). `choices` restricts
    a str key; `nullable` allows an explicit null.
    """

    path: str
    type: type
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    nullable: bool = False


# The keys of the engine and the runtime; the engine cannot import this module, so they live here.
CONFIG_KEYS: tuple[Key, ...] = (
    Key("rules_files", list, ["${bundled}/rules", "/etc/falconet/rules.d"],
        "Rule files and directories, loaded in order (a directory: its *.yaml files, sorted). "
        "${bundled} is the directory of the rules that ship with Falconet."),
    Key("rules", list, [],
        "Rule selection as in Falco: a list of {enable: {rule|tag: NAME}} / {disable: {...}} items, "
        "applied in order; names may use * wildcards."),
    Key("priority", str, "Debug", "Minimum priority of rules to load (Falco's `priority`).",
        choices=("Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational",
                 "Info", "Debug")),
    Key("rule_matching", str, "first",
        "first: an event triggers at most one rule (the first in load order); all: every match.",
        choices=("first", "all")),
    Key("json_output", bool, False, "Print alerts as JSON objects (one per line)."),
    Key("json_include_output_property", bool, True, "Include `output` in JSON alerts."),
    Key("json_include_tags_property", bool, True, "Include `tags` in JSON alerts."),
    Key("json_include_output_fields_property", bool, True, "Include `output_fields` in JSON alerts."),
    Key("json_include_message_property", bool, False,
        "Include `message` (the output without the time and priority prefix) in JSON alerts."),
    Key("time_format_iso_8601", bool, False,
        "Text alerts start with an ISO 8601 UTC time instead of the local time."),
    Key("append_output", list, [],
        "Extra output text or fields appended to matching rules' output: items "
        "{match: {source, tags, rule}, extra_output: TEXT, extra_fields: [FIELD | {NAME: FIELD}]}."),
    Key("static_fields", dict, {}, "Constant fields added to every alert's output_fields."),
    Key("hostname", str, "", "Hostname written in alerts; empty: FALCONET_HOSTNAME, else the host's name."),
    Key("state_dir", str, "/var/lib/falconet",
        "Spools, audit-log positions and generated certificates live here."),
    Key("log_level", str, "info", "The sensor's own log level.",
        choices=("debug", "info", "notice", "warning", "error", "critical")),
    Key("syscall.enabled", bool, True, "Capture syscalls with eBPF."),
)

# Modules that declare CONFIG_KEYS (next to the code that reads them).
KEY_MODULES: tuple[str, ...] = (
    "sensor.config",
    "sensor.outputs",
    "sensor.sources.syscall",
    "sensor.sources.k8s_audit",
    "sensor.response",
    "sensor.metrics",
)

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


def schema() -> dict[str, Key]:
    """Every declared key by dotted path."""
    keys: dict[str, Key] = {}
    for mod_name in KEY_MODULES:
        mod = importlib.import_module(mod_name)
        for key in getattr(mod, "CONFIG_KEYS", ()):
            if key.path in keys:
                raise RuntimeError(f"configuration key {key.path} declared twice ({mod_name})")
            keys[key.path] = key
    return keys


def defaults(keys: dict[str, Key] | None = None) -> dict[str, Any]:
    """The nested dict of every key's default."""
    out: dict[str, Any] = {}
    for key in (keys or schema()).values():
        _set(out, key.path.split("."), copy.deepcopy(key.default))
    return out


class Config:
    """The effective configuration: nested values plus where each key was set."""

    def __init__(self, values: dict[str, Any], origins: dict[str, str], path: str | None) -> None:
        self.values = values
        self.origins = origins
        self.path = path

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def __getitem__(self, dotted: str) -> Any:
        sentinel = object()
        v = self.get(dotted, sentinel)
        if v is sentinel:
            raise KeyError(dotted)
        return v

    def origin(self, dotted: str) -> str:
        """Where a key was set: `file:line`, `-o`, or `default`."""
        return self.origins.get(dotted, "default")

    def rules_files(self) -> list[Path]:
        bundled = str(asset_dir("rules"))
        return [Path(p.replace("${bundled}", bundled)) for p in self.get("rules_files", [])]


def default_config_path() -> Path:
    """/etc/falconet/falconet.yaml if present, else the bundled default."""
    env = os.environ.get("FALCONET_CONFIG")
    if env:
        return Path(env)
    if DEFAULT_PATH.is_file():
        return DEFAULT_PATH
    return Path(__file__).resolve().parent / "falconet.yaml"


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read the config file (default: `default_config_path()`), apply `-o` overrides, validate."""
    keys = schema()
    values = defaults(keys)
    origins: dict[str, str] = {}
    cfg_path = Path(path) if path else default_config_path()
    if cfg_path.exists():
        try:
            text = cfg_path.read_text()
        except OSError as e:
            raise ConfigError(f"{cfg_path}: cannot read: {e.strerror}") from e
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{cfg_path}:{mark.line + 1}" if mark else str(cfg_path)
            raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from e
        if node is not None:
            if not isinstance(node, yaml.MappingNode):
                raise ConfigError(f"{cfg_path}:{node.start_mark.line + 1}: the file must be a mapping")
            _merge_node(node, [], keys, values, origins, str(cfg_path))
    elif path:
        raise ConfigError(f"{cfg_path}: no such configuration file")
    for item in overrides:
        _apply_override(item, keys, values, origins)
    return Config(values, origins, str(cfg_path) if cfg_path.exists() else None)


def _merge_node(node: yaml.MappingNode, prefix: list[str], keys: dict[str, Key],
                values: dict[str, Any], origins: dict[str, str], fname: str) -> None:
    for knode, vnode in node.value:
        name = str(knode.value)
        parts = [*prefix, name]
        dotted = ".".join(parts)
        where = f"{fname}:{knode.start_mark.line + 1}"
        key = keys.get(dotted)
        if key is not None:
            value = _expand_env(yaml.safe_load(yaml.serialize(vnode)))
            _set(values, parts, _check(key, value, where))
            origins[dotted] = where
        elif isinstance(vnode, yaml.MappingNode) and any(k.startswith(dotted + ".") for k in keys):
            _merge_node(vnode, parts, keys, values, origins, fname)
        else:
            raise ConfigError(f"{where}: unknown configuration key '{dotted}'",
                              hint=_suggest(dotted, keys))


def _apply_override(item: str, keys: dict[str, Key], values: dict[str, Any],
                    origins: dict[str, str]) -> None:
    if "=" not in item:
        raise ConfigError(f"-o {item}: expected key=value")
    dotted, raw = item.split("=", 1)
    dotted = dotted.strip()
    append = dotted.endswith("[]")
    if append:
        dotted = dotted[:-2]
    key = keys.get(dotted)
    where = f"-o {item}"
    if key is None:
        raise ConfigError(f"{where}: unknown configuration key '{dotted}'", hint=_suggest(dotted, keys))
    try:
        value = _expand_env(yaml.safe_load(raw)) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: value is not valid YAML: {e}") from e
    if append:
        if key.type is not list:
            raise ConfigError(f"{where}: '{dotted}' is not a list; [] appends only to lists")
        current = list(_get(values, dotted.split(".")) or [])
        current.append(value)
        value = current
    _set(values, dotted.split("."), _check(key, value, where))
    origins[dotted] = where


def _check(key: Key, value: Any, where: str) -> Any:
    if value is None:
        if key.nullable:
            return None
        raise ConfigError(f"{where}: '{key.path}' must be {_TYPE_NAMES[key.type]}, not null")
    if key.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if key.type is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    ok = isinstance(value, key.type) and not (key.type is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{where}: '{key.path}' must be {_TYPE_NAMES[key.type]}, "
                          f"got {type(value).__name__} {value!r}")
    if key.choices and value not in key.choices:
        raise ConfigError(f"{where}: '{key.path}' must be one of {', '.join(key.choices)}; got {value!r}")
    return value


def _expand_env(value: Any) -> Any:
    if isinstance(value, str) and "${" in value:
        def sub(m: re.Match[str]) -> str:
            if m.group(1) == "bundled":
                return m.group(0)
            return os.environ.get(m.group(1), m.group(2) if m.group(2) is not None else "")
        return _ENV_RE.sub(sub, value)
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    return value


def _suggest(dotted: str, keys: dict[str, Key]) -> str:
    import difflib

    close = difflib.get_close_matches(dotted, list(keys), n=1)
    return f"did you mean '{close[0]}'?" if close else "see `falconet config --list` for the keys"


def _set(d: dict[str, Any], parts: list[str], value: Any) -> None:
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = value


def _get(d: dict[str, Any], parts: list[str]) -> Any:
    for p in parts:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d
