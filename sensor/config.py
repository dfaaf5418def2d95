"""falconet.yaml: one schema, assembled from the keys each part declares next to its code.

A part declares its keys (`Key("file_output.filename", str, "", "...")`, sensor/config_keys.py) in a
light settings module of its own, beside the frozen settings dataclass it builds from a Config
(sensor/settings.py lists them); `KEY_GROUPS` below puts them in order. This module imports those
settings modules and nothing heavier. Keys follow Falco's falco.yaml where Falco has one.
Loading checks every key against the schema and reports every problem of a file at once: an
unknown key or a value of the wrong type is one line of a `ConfigError`, naming the key and the
file line (or the `-o` override) that set it. Falco's own falco.yaml keys load too
(sensor/config_falco.py): mapped to Falconet's where it has the equivalent, else a warning naming
the key (`Config.warnings`). `Config.origin()` tells where any value was set: every key, every item
of a list and every key inside a mapping value (`response.actions[0].match.rules[1]`).

Overrides: `-o key=value` sets a dotted key (the value parsed as YAML), `-o 'key[]=value'` appends
to a list, `-o 'key[N]=value'` replaces its item N (Falco's form), `-o 'group={a: 1}'` sets several
keys of a group. String values expand `${VAR}` and
`${VAR:-default}` from the environment (a key that is not a string parses the expanded text).

The bundled default file (sensor/falconet.yaml) is generated from the schema by `default_yaml()`
(`falconet config --default`), so it documents every declared key.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from sensor import config_falco, metrics_settings, webserver_settings
from sensor import settings as core
from sensor.alert import resolve_hostname
from sensor.assets import asset_dir
from sensor.config_keys import Key, Origins, parse_duration, parse_size
from sensor.errors import ConfigError
from sensor.outputs import settings as outputs_settings
from sensor.response import settings as response_settings
from sensor.sources import settings as sources_settings
from sensor.sources.k8s_audit import settings as k8s_audit_settings

DEFAULT_PATH = Path("/etc/falconet/falconet.yaml")
BUNDLED_PATH = Path(__file__).resolve().parent / "falconet.yaml"


# Every declared key, in the order the bundled falconet.yaml lists them: each part declares its keys
# in a light settings module of its own, next to the typed settings it builds from them.
KEY_GROUPS: tuple[tuple[Key, ...], ...] = (
    core.CONFIG_KEYS,
    metrics_settings.EVENT_DROP_KEYS,
    *outputs_settings.KEY_GROUPS,
    sources_settings.SYSCALL_KEYS,
    k8s_audit_settings.CONFIG_KEYS,
    response_settings.CONFIG_KEYS,
    webserver_settings.CONFIG_KEYS,
    metrics_settings.METRICS_KEYS,
)

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


def schema() -> dict[str, Key]:
    """Every declared key by dotted path, in declaration order."""
    keys: dict[str, Key] = {}
    for group in KEY_GROUPS:
        for key in group:
            if key.path in keys:
                raise RuntimeError(f"configuration key {key.path} declared twice")
            keys[key.path] = key
    return keys


def defaults(keys: dict[str, Key] | None = None) -> dict[str, Any]:
    """The nested dict of every key's default."""
    out: dict[str, Any] = {}
    for key in (keys or schema()).values():
        _set(out, key.path.split("."), copy.deepcopy(key.default))
    return out


class Config:
    """The effective configuration: nested values, where each value was set, and the warnings that
    loading it gave (Falco keys Falconet does not use). Parts do not read it: each builds its typed
    settings from it once (sensor/settings.py).

    `origins` knows, by dotted path, where every value was set (`file:line`, `-o key=value` or
    `default`): every key, every item of a list (`rules_files[1]`) and every key inside a mapping
    value (`response.actions[0].match`).
    """

    def __init__(self, values: dict[str, Any], origins: dict[str, str], path: str | None,
                 overrides: tuple[str, ...] = (), warnings: list[str] | None = None) -> None:
        self.values = values
        self.origins = Origins(origins)
        self.path = path
        self.overrides = tuple(overrides)
        self.warnings = list(warnings or [])
        self._hostname: str | None = None

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
        """Where a value was set: `file:line`, `-o key=value`, or `default`. A path inside a value
        (`response.actions[0].match.rules[1]`) that was not recorded answers with its nearest
        recorded parent."""
        return self.origins(dotted)

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
        """The hostname alerts carry: `hostname`, else $FALCONET_HOSTNAME, else the host's name;
        decided once per loaded configuration."""
        if self._hostname is None:
            self._hostname = resolve_hostname(self.get("hostname") or "")
        return self._hostname

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
    """Read the config file (default: `default_config_path()`), apply `-o` overrides, validate.

    Every problem of the file and the overrides is reported at once, in one ConfigError whose
    lines each name the file and line (or the override) at fault; its `problems` lists them.
    """
    explicit = path is not None or bool(os.environ.get("FALCONET_CONFIG"))
    cfg_path = Path(path) if path else default_config_path()
    loader = _Loader(schema())
    found = cfg_path.exists()
    if found:
        loader.read_file(cfg_path)
    elif explicit:
        loader.problems.append(f"{cfg_path}: no such configuration file (pass an existing file to -c, "
                               f"or to FALCONET_CONFIG)")
    overrides = tuple(overrides)
    for item in overrides:
        loader.override(item)
    if loader.problems:
        err = ConfigError("\n".join(loader.problems))
        err.problems = list(loader.problems)           # type: ignore[attr-defined]
        raise err
    return Config(loader.values, loader.origins, str(cfg_path) if found else None, overrides, loader.warnings)


class _Where:
    """Where the values being read come from: a file (each node's line) or one `-o`."""

    def __init__(self, fname: str | None = None, override: str | None = None) -> None:
        self.fname = fname
        self.override = override

    def __call__(self, node: yaml.Node) -> str:
        if self.override is not None:
            return f"-o {self.override}"
        return f"{self.fname}:{node.start_mark.line + 1}"


class _Loader:
    """Reads files and overrides into values and origins, collecting every problem and warning."""

    def __init__(self, keys: dict[str, Key]) -> None:
        self.keys = keys
        self.groups = {".".join(k.split(".")[:i]) for k in keys for i in range(1, k.count(".") + 1)}
        self.values = defaults(keys)
        self.origins: dict[str, str] = {}
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._falco: config_falco.Leaves = {}
        self._set_here: dict[str, str] = {}            # key -> where, for the source being read
        self._marks = (0, 0)

    # -- sources ---------------------------------------------------------------------------------

    def read_file(self, cfg_path: Path) -> None:
        try:
            text = cfg_path.read_text()
        except OSError as e:
            self.problems.append(f"{cfg_path}: cannot read: {e.strerror}")
            return
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{cfg_path}:{mark.line + 1}" if mark else str(cfg_path)
            self.problems.append(f"{where}: invalid YAML: {getattr(e, 'problem', e)}")
            return
        if node is None:
            return
        located = _Where(fname=str(cfg_path))
        if not isinstance(node, yaml.MappingNode):
            self.problems.append(f"{located(node)}: the file must be a mapping of keys to values")
            return
        self._begin()
        self._mapping(node, [], located)
        self._end()

    def override(self, item: str) -> None:
        """`-o key=value`, `-o 'key[]=value'` (append), `-o 'key[N]=value'` (replace item N)."""
        where = f"-o {item}"
        if "=" not in item:
            self.problems.append(f"{where}: expected key=value")
            return
        dotted, raw = item.split("=", 1)
        dotted = dotted.strip()
        m = _INDEX_RE.fullmatch(dotted)
        index: int | None = None
        append = False
        if m:
            dotted, idx = m.group(1), m.group(2)
            append, index = idx == "", (int(idx) if idx else None)
        try:
            vnode = yaml.compose(raw) if raw.strip() else yaml.ScalarNode("tag:yaml.org,2002:str", "")
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at column {mark.column + 1}" if mark else ""
            self.problems.append(f"{where}: value is not valid YAML ({getattr(e, 'problem', e)}{at}) "
                                 f"(quote it: -o 'key=\"text\"')")
            return
        if vnode is None:
            vnode = yaml.ScalarNode("tag:yaml.org,2002:null", "")
        loc = _Where(override=item)
        self._begin()
        if append or index is not None:
            self._list_item(dotted, vnode, loc, index)
        else:
            self._assign(dotted.split("."), vnode, loc)
        self._end()

    # -- walking ---------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._falco = {}
        self._set_here = {}
        self._marks = (len(self.problems), len(self.warnings))

    def _end(self) -> None:
        if self._falco:
            self._falco_keys()
        # In the order of the file's lines, whichever check found them.
        p, w = self._marks
        self.problems[p:] = sorted(self.problems[p:], key=_line_of)
        self.warnings[w:] = sorted(self.warnings[w:], key=_line_of)

    def _falco_keys(self) -> None:
        t = config_falco.translate(self._falco)
        self.problems.extend(t.problems)
        self.warnings.extend(t.warnings)
        for key_path, value, where, falco_path in t.sets:
            mine = self._set_here.get(key_path)
            if mine is not None:
                self.problems.append(f"{mine}: '{key_path}' is also set by Falco's '{falco_path}' ({where}); "
                                     f"keep one of them")
                continue
            self._set_value(self.keys[key_path], value, f"{where} ({falco_path})")

    def _mapping(self, node: yaml.MappingNode, prefix: list[str], where: _Where) -> None:
        seen: dict[str, int] = {}
        for knode, vnode in node.value:
            name = str(knode.value)
            dotted = ".".join([*prefix, name])
            if name in seen:
                self.problems.append(f"{where(knode)}: '{dotted}' is set twice (first on line {seen[name]}; "
                                     f"keep one of them)")
            seen[name] = knode.start_mark.line + 1
            self._assign([*prefix, name], vnode, where, knode)

    def _assign(self, parts: list[str], vnode: yaml.Node, where: _Where, knode: yaml.Node | None = None) -> None:
        dotted = ".".join(parts)
        at = where(knode if knode is not None else vnode)
        key = self.keys.get(dotted)
        if key is not None:
            value = _construct(key, vnode)
            if value is _INVALID:
                self.problems.append(f"{at}: '{dotted}' has a value that is not valid here")
                return
            adjust = config_falco.VALUE_ADJUST.get(dotted)
            if adjust is not None:
                value, warning = adjust(value, key.default)
                if warning:
                    self.warnings.append(f"{at}: {warning}")
            if self._set_value(key, value, at):
                self._record(dotted, vnode, where)
            return
        if config_falco.is_falco_key(dotted):
            if isinstance(vnode, yaml.MappingNode) and dotted not in config_falco.LEAVES:
                for k, v in vnode.value:
                    self._assign([*parts, str(k.value)], v, where, k)
            else:
                self._falco[dotted] = (yaml.safe_load(yaml.serialize(vnode)), at)
            return
        if dotted in self.groups:
            if isinstance(vnode, yaml.MappingNode):
                self._mapping(vnode, parts, where)
            elif not (isinstance(vnode, yaml.ScalarNode) and vnode.tag.endswith(":null")):
                self.problems.append(f"{at}: '{dotted}' is a group of keys and must be a mapping "
                                     f"(e.g. {dotted}: {{{self._first_child(dotted)}: ...}})")
            return
        self.problems.append(f"{at}: unknown configuration key '{dotted}' ({self._suggest(dotted)})")

    def _list_item(self, dotted: str, vnode: yaml.Node, where: _Where, index: int | None) -> None:
        at = where(vnode)
        key = self.keys.get(dotted)
        if key is None:
            self.problems.append(f"{at}: unknown configuration key '{dotted}' ({self._suggest(dotted)})")
            return
        if key.type is not list:
            self.problems.append(f"{at}: '{dotted}' is not a list; [] appends and [N] sets items of lists only")
            return
        current = list(_get(self.values, dotted.split(".")) or [])
        item = _expand(key.items or str, yaml.safe_load(yaml.serialize(vnode)))
        if index is None or index == len(current):
            index = len(current)
            current.append(item)
        elif index < len(current):
            current[index] = item
        else:
            self.problems.append(f"{at}: '{dotted}' has {len(current)} items; [{index}] is past its end "
                                 f"(use [] to append)")
            return
        if self._set_value(key, current, at):      # the list, as the -o that changed it last left it
            self.origins[f"{dotted}[{index}]"] = at
            self._record(f"{dotted}[{index}]", vnode, where)

    def _set_value(self, key: Key, value: Any, at: str) -> bool:
        try:
            value = _check(key, _expand(key.type, value))
        except ValueError as e:
            self.problems.append(f"{at}: {e}")
            return False
        for problem in _ITEM_CHECKS.get(key.path, _no_item_check)(value, at, self.warnings):
            self.problems.append(problem)
        _set(self.values, key.path.split("."), value)
        self.origins[key.path] = at
        self._set_here[key.path] = at
        return True

    def _record(self, path: str, vnode: yaml.Node, where: _Where) -> None:
        """The position of every item and key inside a value (those of the value it replaced are
        forgotten, so that no path answers with a line that no longer holds it)."""
        inside = (path + ".", path + "[")
        for stale in [p for p in self.origins if p.startswith(inside)]:
            del self.origins[stale]
        self._record_inside(path, vnode, where)

    def _record_inside(self, path: str, vnode: yaml.Node, where: _Where) -> None:
        if isinstance(vnode, yaml.SequenceNode):
            for i, item in enumerate(vnode.value):
                self.origins[f"{path}[{i}]"] = where(item)
                self._record_inside(f"{path}[{i}]", item, where)
        elif isinstance(vnode, yaml.MappingNode):
            for k, v in vnode.value:
                sub = f"{path}.{k.value}"
                self.origins[sub] = where(k)
                self._record_inside(sub, v, where)

    # -- helping the user ------------------------------------------------------------------------

    def _first_child(self, dotted: str) -> str:
        prefix = dotted + "."
        return next(k[len(prefix):].split(".")[0] for k in self.keys if k.startswith(prefix))

    def _suggest(self, dotted: str) -> str:
        close = suggest(dotted, [*self.keys, *self.groups, *config_falco.KNOWN_PATHS])
        return f"did you mean '{close}'?" if close else "see `falconet config --list` for the keys"


def _line_of(message: str) -> int:
    """The line number of a `file:line: ...` message (0 for `-o` and file-wide messages)."""
    m = re.match(r"[^:]*:(\d+)[:\s]", message)
    return int(m.group(1)) if m else 0


SUGGEST_CUTOFF = 0.8
"""How alike (difflib's ratio) a name must be to a known key to be proposed: a typo, not a guess."""


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The known name `name` is most likely a typo of, or None when none is alike enough."""
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=1, cutoff=SUGGEST_CUTOFF)
    if close:
        return close[0]
    # A misspelt last part under the right group: file_output.filname -> file_output.filename.
    parent, _, leaf = name.rpartition(".")
    siblings = {c.rpartition(".")[2]: c for c in pool if c.rpartition(".")[0] == parent and parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=SUGGEST_CUTOFF)
    return siblings[close[0]] if close else None


_INDEX_RE = re.compile(r"(.+?)\[(\d*)\]")
_INVALID = object()


def _construct(key: Key, vnode: yaml.Node) -> Any:
    """The Python value of a node for `key`. A string key takes a scalar's text as written, so
    `hostname: on` is the text "on", not YAML 1.1's boolean."""
    if key.type is str and isinstance(vnode, yaml.ScalarNode):
        if vnode.tag.endswith(":null") and vnode.style is None and vnode.value in ("", "~", "null", "Null", "NULL"):
            return None
        return vnode.value
    try:
        return yaml.safe_load(yaml.serialize(vnode))
    except yaml.YAMLError:
        return _INVALID


def _check(key: Key, value: Any) -> Any:
    """The value, converted to the key's canonical form; ValueError saying what is wrong."""
    if value is None:
        if key.nullable:
            return None
        raise ValueError(f"'{key.path}' must be {_TYPE_NAMES[key.type]}, not null")
    if key.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if key.type is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    ok = isinstance(value, key.type) and not (key.type is int and isinstance(value, bool))
    if not ok:
        raise ValueError(f"'{key.path}' must be {_TYPE_NAMES[key.type]}, got {type(value).__name__} {value!r}")
    if key.parse is not None:
        try:
            value = key.parse(value)
        except ValueError as e:
            raise ValueError(f"'{key.path}': {e}") from None
    if key.choices:
        canonical = {c.lower(): c for c in key.choices}
        if str(value).lower() not in canonical:
            raise ValueError(f"'{key.path}' must be one of {', '.join(key.choices)} (any case); got {value!r}")
        value = canonical[str(value).lower()]
    if key.items is not None:
        for i, item in enumerate(value):
            if not isinstance(item, key.items) or (key.items is int and isinstance(item, bool)):
                raise ValueError(f"'{key.path}[{i}]' must be {_TYPE_NAMES[key.items]}, "
                                 f"got {type(item).__name__} {item!r}")
    if key.check is not None:
        try:
            key.check(value)
        except ValueError as e:
            raise ValueError(f"'{key.path}': {e}") from None
    return value


def _expand(kind: type, value: Any) -> Any:
    expanded = _expand_env(value)
    if kind is not str and isinstance(value, str) and expanded != value:
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


# -- checks of the items of list keys whose owner is the engine (it cannot import this module) --

_APPEND_KEYS = ("match", "extra_output", "extra_fields", "suggested_output")
_MATCH_KEYS = ("source", "tags", "rule")


def _check_append_output(value: list[Any], at: str, warnings: list[str]) -> list[str]:
    problems = []
    for i, item in enumerate(value):
        name = f"append_output[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{at}: '{name}' must be a mapping of {', '.join(_APPEND_KEYS)}")
            continue
        for k in item:
            if k not in _APPEND_KEYS:
                problems.append(f"{at}: '{name}' has an unknown key '{k}' (its keys: {', '.join(_APPEND_KEYS)})")
        match = item.get("match", {})
        if not isinstance(match, dict):
            problems.append(f"{at}: '{name}.match' must be a mapping of {', '.join(_MATCH_KEYS)}")
        else:
            problems += [f"{at}: '{name}.match' has an unknown key '{k}' (its keys: {', '.join(_MATCH_KEYS)})"
                         for k in match if k not in _MATCH_KEYS]
        if item.get("suggested_output"):
            warnings.append(f"{at}: Falco key '{name}.suggested_output' is not used by Falconet: no field "
                            f"class suggests output fields; name them in extra_fields")
    return problems


def _check_rules_selection(value: list[Any], at: str, warnings: list[str]) -> list[str]:
    problems = []
    for i, item in enumerate(value):
        name = f"rules[{i}]"
        if not isinstance(item, dict) or not item or set(item) - {"enable", "disable"}:
            problems.append(f"{at}: '{name}' must be {{enable: {{rule|tag: NAME}}}} or {{disable: ...}}")
            continue
        for action, spec in item.items():
            if not isinstance(spec, dict) or not spec or set(spec) - {"rule", "tag"}:
                problems.append(f"{at}: '{name}.{action}' must be {{rule: NAME}} or {{tag: NAME}}")
    return problems


def _no_item_check(value: Any, at: str, warnings: list[str]) -> list[str]:
    return []


_ITEM_CHECKS: dict[str, Callable[[Any, str, list[str]], list[str]]] = {
    "append_output": _check_append_output,
    "rules": _check_rules_selection,
}


def _set(d: dict[str, Any], parts: list[str], value: Any) -> None:
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = value


def _get(d: dict[str, Any], parts: list[str]) -> Any:
    node: Any = d
    for p in parts:
        if not isinstance(node, dict):
            return None
        node = node.get(p)
    return node


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
