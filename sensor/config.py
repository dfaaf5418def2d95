"""falconet.yaml: one schema, assembled from the keys each part declares next to its code.

A part declares `CONFIG_KEYS = (Key("file_output.filename", str, "", "..."), ...)` in its own module
and that module is named in `KEY_MODULES`. Keys follow Falco's falco.yaml where Falco has one.
Loading checks every key against the schema: an unknown key or a value of the wrong type is a
`ConfigError` that names the key and the file line (or the `-o` override) that set it.

Overrides: `-o key=value` sets a dotted key (the value parsed as YAML), `-o 'key[]=value'` appends
to a list, `-o 'group={a: 1}'` sets several keys of a group. String values expand `${VAR}` and
`${VAR:-default}` from the environment (a key that is not a string parses the expanded text).

The bundled default file (sensor/falconet.yaml) is generated from the schema by `default_yaml()`
(`falconet config --default`), so it documents every declared key.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sensor.alert import CHOICES as PRIORITY_CHOICES
from sensor.alert import resolve_hostname
from sensor.assets import asset_dir
from sensor.errors import ConfigError

DEFAULT_PATH = Path("/etc/falconet/falconet.yaml")
BUNDLED_PATH = Path(__file__).resolve().parent / "falconet.yaml"


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: dotted path, type, default and what it does.

    `type` is one of str, int, float, bool, list, dict. A `dict` or `list` key is a leaf whose
    contents its owner validates (e.g. `static_fields`, `response.actions`); `items` checks the
    type of every element of a list. `choices` restricts a str key; `nullable` allows an explicit
    null. `check` validates further (a duration, a size): it raises ValueError with the reason.
    """

    path: str
    type: type
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    items: type | None = None
    check: Callable[[Any], Any] | None = None


# ---------------------------------------------------------------------------------------------
# Value formats shared by several keys: durations ("500ms", "15m", "1h30m") and sizes ("256MiB").
# ---------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4,
               "tb": 1000**4, "tib": 1024**4}


def parse_duration(value: Any) -> float:
    """Seconds of a duration: a number (seconds) or text like `500ms`, `30s`, `15m`, `1h30m`, `1d`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 15m or 1h, got {value!r}")
    text = value.strip()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        try:
            return parse_duration(float(text))
        except ValueError:
            pass
        raise ValueError(f"expected a duration like 500ms, 30s, 15m or 1h, got {value!r}")
    return total


def parse_size(value: Any) -> int:
    """Bytes of a size: an integer (bytes) or text like `512KiB`, `256MiB`, `1GB`, `64M`."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    m = _SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected a size like 64MiB or 1GB (or a number of bytes), got {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])


# The keys of the engine and the runtime; the engine cannot import this module, so they live here.
CONFIG_KEYS: tuple[Key, ...] = (
    Key("rules_files", list, ["${bundled}", "${bundled}/rules.d", "/etc/falconet/rules.d"],
        "Rule files and directories, loaded in order (a directory: its *.yaml files, sorted). "
        "${bundled} is the directory of the rules that ship with Falconet.", items=str),
    Key("rules", list, [],
        "Rule selection as in Falco: a list of {enable: {rule|tag: NAME}} / {disable: {...}} items, "
        "applied in order; names may use * wildcards."),
    Key("priority", str, "Debug", "Minimum priority of rules to load (Falco's `priority`).",
        choices=PRIORITY_CHOICES),
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

# Modules that declare CONFIG_KEYS (next to the code that reads them), in the order the bundled
# falconet.yaml lists their keys.
KEY_MODULES: tuple[str, ...] = (
    "sensor.config",
    "sensor.runtime",
    "sensor.outputs",
    "sensor.outputs.stdout",
    "sensor.outputs.file",
    "sensor.outputs.program",
    "sensor.outputs.http",
    "sensor.outputs.syslog",
    "sensor.outputs.fluent",
    "sensor.sources.syscall",
    "sensor.sources.k8s_audit",
    "sensor.response",
    "sensor.webserver",
    "sensor.metrics",
)

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


def schema() -> dict[str, Key]:
    """Every declared key by dotted path, in declaration order."""
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

    def __init__(self, values: dict[str, Any], origins: dict[str, str], path: str | None,
                 overrides: tuple[str, ...] = ()) -> None:
        self.values = values
        self.origins = origins
        self.path = path
        self.overrides = tuple(overrides)

    def get(self, dotted: str, default: Any = None) -> Any:
        """The value of a key (or of a group, as a dict); `default` when it is not set."""
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
        """Where a key was set: `file:line`, `-o key=value`, or `default`."""
        return self.origins.get(dotted, "default")

    def duration(self, dotted: str) -> float:
        """A duration key in seconds (the value was checked when the file was loaded)."""
        return parse_duration(self[dotted])

    def size(self, dotted: str) -> int:
        """A size key in bytes."""
        return parse_size(self[dotted])

    def rules_files(self) -> list[Path]:
        """`rules_files` with `${bundled}` resolved to the rules that ship with Falconet."""
        bundled = str(asset_dir("rules"))
        return [Path(p.replace("${bundled}", bundled)) for p in self.get("rules_files", [])]

    def hostname(self) -> str:
        """The hostname alerts carry: `hostname`, else $FALCONET_HOSTNAME, else the host's name."""
        return resolve_hostname(self.get("hostname") or "")

    def state_path(self, *parts: str) -> Path:
        """A path under `state_dir`."""
        return Path(self.get("state_dir", "/var/lib/falconet"), *parts)


def default_config_path() -> Path:
    """$FALCONET_CONFIG, else /etc/falconet/falconet.yaml if present, else the bundled default."""
    env = os.environ.get("FALCONET_CONFIG")
    if env:
        return Path(env)
    if DEFAULT_PATH.is_file():
        return DEFAULT_PATH
    return BUNDLED_PATH


def load(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read the config file (default: `default_config_path()`), apply `-o` overrides, validate."""
    keys = schema()
    values = defaults(keys)
    origins: dict[str, str] = {}
    explicit = path is not None or bool(os.environ.get("FALCONET_CONFIG"))
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
    elif explicit:
        raise ConfigError(f"{cfg_path}: no such configuration file",
                          hint="pass an existing file to -c (or FALCONET_CONFIG)")
    overrides = tuple(overrides)
    for item in overrides:
        _apply_override(item, keys, values, origins)
    return Config(values, origins, str(cfg_path) if cfg_path.exists() else None, overrides)


def _is_group(dotted: str, keys: dict[str, Key]) -> bool:
    prefix = dotted + "."
    return any(k.startswith(prefix) for k in keys)


def _merge_node(node: yaml.MappingNode, prefix: list[str], keys: dict[str, Key],
                values: dict[str, Any], origins: dict[str, str], fname: str) -> None:
    seen: dict[str, int] = {}
    for knode, vnode in node.value:
        name = str(knode.value)
        parts = [*prefix, name]
        dotted = ".".join(parts)
        line = knode.start_mark.line + 1
        where = f"{fname}:{line}"
        if name in seen:
            raise ConfigError(f"{where}: '{dotted}' is set twice (first on line {seen[name]})",
                              hint="keep one of them")
        seen[name] = line
        key = keys.get(dotted)
        if key is not None:
            raw = yaml.safe_load(yaml.serialize(vnode))
            _set(values, parts, _check(key, _expand(key, raw), where))
            origins[dotted] = where
        elif _is_group(dotted, keys):
            if isinstance(vnode, yaml.MappingNode):
                _merge_node(vnode, parts, keys, values, origins, fname)
            elif not (isinstance(vnode, yaml.ScalarNode) and vnode.tag.endswith(":null")):
                raise ConfigError(f"{where}: '{dotted}' is a group of keys and must be a mapping",
                                  hint=f"e.g. {dotted}: {{{_first_child(dotted, keys)}: ...}}")
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
    where = f"-o {item}"
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: value is not valid YAML ({getattr(e, 'problem', e)}{at})",
                          hint="quote it: -o 'key=\"text\"'") from e
    key = keys.get(dotted)
    if key is None:
        if _is_group(dotted, keys) and isinstance(value, dict) and not append:
            for name, sub in value.items():
                _apply_value(f"{dotted}.{name}", sub, keys, values, origins, where)
            return
        raise ConfigError(f"{where}: unknown configuration key '{dotted}'", hint=_suggest(dotted, keys))
    if key.type is str and not isinstance(value, str) and value is not None:
        # `-o hostname=on` means the text "on", not YAML's boolean.
        value = raw.strip()
    value = _expand(key, value)
    if append:
        if key.type is not list:
            raise ConfigError(f"{where}: '{dotted}' is not a list; [] appends only to lists")
        current = list(_get(values, dotted.split(".")) or [])
        current.append(value)
        value = current
    _set(values, dotted.split("."), _check(key, value, where))
    origins[dotted] = where


def _apply_value(dotted: str, value: Any, keys: dict[str, Key], values: dict[str, Any],
                 origins: dict[str, str], where: str) -> None:
    key = keys.get(dotted)
    if key is None:
        if _is_group(dotted, keys) and isinstance(value, dict):
            for name, sub in value.items():
                _apply_value(f"{dotted}.{name}", sub, keys, values, origins, where)
            return
        raise ConfigError(f"{where}: unknown configuration key '{dotted}'", hint=_suggest(dotted, keys))
    _set(values, dotted.split("."), _check(key, _expand(key, value), where))
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
    if key.items is not None:
        for i, item in enumerate(value):
            if not isinstance(item, key.items) or (key.items is int and isinstance(item, bool)):
                raise ConfigError(f"{where}: '{key.path}[{i}]' must be {_TYPE_NAMES[key.items]}, "
                                  f"got {type(item).__name__} {item!r}")
    if key.check is not None:
        try:
            key.check(value)
        except ValueError as e:
            raise ConfigError(f"{where}: '{key.path}': {e}") from e
    return value


def _expand(key: Key, value: Any) -> Any:
    expanded = _expand_env(value)
    if key.type is not str and isinstance(value, str) and expanded != value:
        # `port: ${FLUENT_PORT}` is an integer once the variable is substituted.
        try:
            return yaml.safe_load(expanded)
        except yaml.YAMLError:
            return expanded
    return expanded


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


def _first_child(dotted: str, keys: dict[str, Key]) -> str:
    prefix = dotted + "."
    return next(k[len(prefix):].split(".")[0] for k in keys if k.startswith(prefix))


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


# ---------------------------------------------------------------------------------------------
# The bundled default file, generated from the schema.
# ---------------------------------------------------------------------------------------------

_HEADER = """\
# Falconet configuration.
#
# Generated from the declared keys by `falconet config --default`; regenerate it (do not edit it by
# hand) when a key is added or changed:  falconet config --default > sensor/falconet.yaml
# Copy it to /etc/falconet/falconet.yaml (or point -c / FALCONET_CONFIG at a copy) to change it.
# Keys follow Falco's falco.yaml where Falco has one. Any key can be set on the command line with
# -o key=value (dotted; the value is YAML) or appended to with -o 'key[]=value'. String values
# expand ${VAR} and ${VAR:-default} from the environment. Durations: 500ms, 30s, 15m, 1h.
# Sizes: bytes, or 64KiB, 256MiB, 1GiB.
"""


def default_yaml(keys: dict[str, Key] | None = None) -> str:
    """The bundled falconet.yaml: every key with its default, its description as a comment."""
    keys = keys or schema()
    tree: dict[str, Any] = {}
    for key in keys.values():
        node = tree
        parts = key.path.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = key
    lines = [_HEADER.rstrip("\n")]
    _render(tree, 0, lines)
    return "\n".join(lines) + "\n"


def _render(tree: dict[str, Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for name, node in tree.items():
        if indent == 0:
            lines.append("")
        if isinstance(node, Key):
            for text in textwrap.wrap(node.description, 100 - indent - 2):
                lines.append(f"{pad}# {text}")
            if node.choices:
                lines.append(f"{pad}# One of: {', '.join(node.choices)}.")
            lines.extend(_render_value(name, node.default, pad))
        else:
            lines.append(f"{pad}{name}:")
            _render(node, indent + 2, lines)


def _render_value(name: str, value: Any, pad: str) -> list[str]:
    if isinstance(value, (list, dict)) and value:
        body = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=100).rstrip("\n")
        return [f"{pad}{name}:"] + [f"{pad}  {line}" for line in body.splitlines()]
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).rstrip("\n")
    text = text.removesuffix("\n...").removesuffix("...").rstrip()
    return [f"{pad}{name}: {text}"]
