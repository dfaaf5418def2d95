"""Items → definitions: define, append, override and enable in file order (Falco's
rule_loader_collector). Conditions stay text here; compiling them is the next stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sensor import ENGINE_VERSION, ENGINE_VERSION_LEGACY
from sensor.alert import Priority
from sensor.engine.reader import Item
from sensor.errors import Diagnostic, DiagnosticList

# Plugins whose fields Falconet provides built in, with the version we are compatible with.
BUILTIN_PLUGINS = {"container": "0.4.0", "k8saudit": "0.18.0", "json": "0.7.0"}

OVERRIDE_APPEND_KEYS = frozenset({"condition", "output", "desc", "tags", "exceptions"})
OVERRIDE_REPLACE_KEYS = frozenset({"condition", "output", "desc", "priority", "tags", "exceptions", "enabled",
                                   "warn_evttypes", "skip-if-unknown-filter", "capture", "capture_duration"})

@dataclass
class ListDef:
    name: str
    items: list[Any]
    item: Item
    used: bool = False


@dataclass
class MacroDef:
    name: str
    condition: str
    item: Item
    appended: list[Item] = field(default_factory=list)    # items whose condition text was appended
    used: bool = False


@dataclass
class RuleDef:
    name: str
    item: Item
    condition: str = ""
    output: str = ""
    desc: str = ""
    priority: Priority = Priority.DEBUG
    source: str = "syscall"
    enabled: bool = True
    tags: list[str] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    skip_if_unknown_filter: bool = False
    warn_evttypes: bool = True
    capture: bool = False
    capture_duration: int | None = None
    order: int = 0


@dataclass
class Collection:
    lists: dict[str, ListDef] = field(default_factory=dict)
    macros: dict[str, MacroDef] = field(default_factory=dict)
    rules: dict[str, RuleDef] = field(default_factory=dict)       # insertion order = load order
    required_engine_version: str | None = None


def _semver(v: Any) -> tuple[int, int, int] | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return (0, v, 0)                      # Falco maps legacy integer N to 0.N.0
    if isinstance(v, float):
        v = str(v)
    if not isinstance(v, str):
        return None
    parts = v.strip().split(".")
    if len(parts) == 1 and parts[0].isdigit():
        return (0, int(parts[0]), 0)
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return (int(parts[0]), int(parts[1]), int(parts[2]))


class Collector:
    """Feeds items in load order into a Collection, recording diagnostics."""

    def __init__(self, diags: DiagnosticList) -> None:
        self.c = Collection()
        self.diags = diags
        self._order = 0

    def _err(self, code: str, msg: str, item: Item, key: str | None = None) -> None:
        self.diags.errors.append(Diagnostic(code, msg, (item.where(key),)))

    def _warn(self, code: str, msg: str, item: Item, key: str | None = None) -> None:
        self.diags.warnings.append(Diagnostic(code, msg, (item.where(key),)))

    def add(self, item: Item) -> None:
        getattr(self, "_" + item.kind)(item)

    # -- requirements ---------------------------------------------------------------------------

    def _required_engine_version(self, item: Item) -> None:
        want = _semver(item.data["required_engine_version"])
        if want is None:
            self._err("LOAD_ERR_YAML_VALIDATE", "Unable to parse engine version "
                      f"'{item.data['required_engine_version']}' as a semver string. Expected \"x.y.z\" semver "
                      "format.", item, "required_engine_version")
            return
        have = _semver(ENGINE_VERSION)
        assert have is not None
        legacy = want[0] == 0 and want[2] == 0 and isinstance(item.data["required_engine_version"], int)
        if (legacy and want[1] > ENGINE_VERSION_LEGACY) or (not legacy and want > have):
            self._err("LOAD_ERR_VALIDATE", f"Rules require engine version {item.data['required_engine_version']}, "
                      f"but engine version is {ENGINE_VERSION}", item, "required_engine_version")

    def _required_plugin_versions(self, item: Item) -> None:
        reqs = item.data["required_plugin_versions"]
        if not isinstance(reqs, list):
            self._err("LOAD_ERR_YAML_VALIDATE", "Value of required_plugin_versions must be a sequence", item)
            return
        for req in reqs:
            if not isinstance(req, dict) or "name" not in req or "version" not in req:
                self._err("LOAD_ERR_YAML_VALIDATE",
                          "required_plugin_versions entries need 'name' and 'version'", item)
                continue
            candidates = [req, *(req.get("alternatives") or [])]
            if not any(self._plugin_ok(c) for c in candidates if isinstance(c, dict)):
                names = ", ".join(f"{c.get('name')} {c.get('version')}" for c in candidates if isinstance(c, dict))
                self._err("LOAD_ERR_VALIDATE", f"Plugin requirement not satisfied: {names} (Falconet provides "
                          + ", ".join(f"{k} {v}" for k, v in BUILTIN_PLUGINS.items()) + " built in)", item)

    @staticmethod
    def _plugin_ok(req: dict[str, Any]) -> bool:
        have = BUILTIN_PLUGINS.get(str(req.get("name")))
        if have is None:
            return False
        h, w = _semver(have), _semver(str(req.get("version")))
        if h is None or w is None:
            return False
        # Semver compatibility as Falco checks plugins: same major, and not older.
        return h[0] == w[0] and h >= w

    # -- override/append helpers ----------------------------------------------------------------

    def _override_spec(self, item: Item, allowed_append: frozenset[str],
                       allowed_replace: frozenset[str]) -> dict[str, str] | None:
        """Validate an item's `override` block; return {key: append|replace} or None on error."""
        ov = item.data.get("override")
        if ov is None:
            return {}
        if "append" in item.data:
            self._err("LOAD_ERR_YAML_VALIDATE", "Keys 'override' and 'append: true' cannot be used together.",
                      item, "override")
            return None
        if not isinstance(ov, dict) or not ov:
            self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'override' must be a non-empty map", item, "override")
            return None
        for key, how in ov.items():
            if how not in ("append", "replace"):
                self._err("LOAD_ERR_YAML_VALIDATE", f"Invalid override value '{how}' for key '{key}': "
                          "must be 'append' or 'replace'", item, "override")
                return None
            allowed = allowed_append if how == "append" else allowed_replace
            if key not in allowed:
                self._err("LOAD_ERR_YAML_VALIDATE", f"Key '{key}' cannot be overridden with '{how}'", item,
                          "override")
                return None
            if key not in item.data:
                self._err("LOAD_ERR_YAML_VALIDATE", f"An override is defined for '{key}' but no value was "
                          "given for it", item, "override")
                return None
        kind_key = item.kind
        for key in item.data:
            if key not in (kind_key, "override", "source") and key not in ov:
                self._err("LOAD_ERR_YAML_VALIDATE", f"Key '{key}' is not listed in the 'override' block and "
                          "cannot be used with it", item, key)
                return None
        return {str(k): str(v) for k, v in ov.items()}

    def _append_flag(self, item: Item) -> bool:
        ap = item.data.get("append", False)
        if ap is True:
            self._warn("LOAD_DEPRECATED_ITEM", "The 'append' key is deprecated; use 'override' with 'append' "
                       "for each key instead", item, "append")
        return ap is True

    # -- lists ------------------------------------------------------------------------------------

    def _list(self, item: Item) -> None:
        items = item.data.get("items")
        if "items" not in item.data:
            self._err("LOAD_ERR_YAML_VALIDATE", "Item has no mapping for key 'items'", item)
            return
        if items is None:
            items = []
        if not isinstance(items, list):
            self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'items' must be a sequence", item, "items")
            return
        if any(isinstance(i, (list, dict)) for i in items):
            self._err("LOAD_ERR_YAML_VALIDATE", "List items must be scalars", item, "items")
            return
        values = [_scalar_text(i) for i in items]
        spec = self._override_spec(item, frozenset({"items"}), frozenset({"items"}))
        if spec is None:
            return
        append = spec.get("items") == "append" or (not spec and self._append_flag(item))
        prev = self.c.lists.get(item.name)
        if append:
            if prev is None:
                self._err("LOAD_ERR_VALIDATE", "List has 'append' key or an append override but no list by that "
                          "name already exists", item)
                return
            prev.items.extend(values)
            return
        # `override: {items: replace}` with nothing defined before defines the list, as in Falco.
        if prev is not None:
            prev.items = values
            prev.item = item
        else:
            self.c.lists[item.name] = ListDef(item.name, values, item)

    # -- macros -----------------------------------------------------------------------------------

    def _macro(self, item: Item) -> None:
        cond = item.data.get("condition")
        if "condition" not in item.data:
            self._err("LOAD_ERR_YAML_VALIDATE", "Item has no mapping for key 'condition'", item)
            return
        if not isinstance(cond, str):
            self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'condition' must be a string", item, "condition")
            return
        spec = self._override_spec(item, frozenset({"condition"}), frozenset({"condition"}))
        if spec is None:
            return
        append = spec.get("condition") == "append" or (not spec and self._append_flag(item))
        prev = self.c.macros.get(item.name)
        if append:
            if prev is None:
                self._err("LOAD_ERR_VALIDATE", "Macro has 'append' key or an append override but no macro by "
                          "that name already exists", item)
                return
            prev.condition = f"{prev.condition} {cond}"
            prev.appended.append(item)
            return
        # `override: {condition: replace}` with nothing defined before defines the macro, as in Falco.
        if prev is not None:
            prev.condition, prev.item, prev.appended = cond, item, []
        else:
            self.c.macros[item.name] = MacroDef(item.name, cond, item)

    # -- rules ------------------------------------------------------------------------------------

    def _rule(self, item: Item) -> None:
        d = item.data
        keys = set(d) - {"rule"}
        prev = self.c.rules.get(item.name)
        if keys == {"enabled"}:
            # A rule item with only `enabled`: the old way to switch a rule on or off.
            if prev is None:
                self._err("LOAD_ERR_VALIDATE", "Rule has 'enabled' key but no rule by that name already exists",
                          item)
                return
            self._warn("LOAD_DEPRECATED_ITEM", "Rule items with only 'enabled' are deprecated; use "
                       "'override: {enabled: replace}'", item, "enabled")
            if not self._check_bool(item, "enabled"):
                return
            prev.enabled = d["enabled"]
            return
        spec = self._override_spec(item, OVERRIDE_APPEND_KEYS, OVERRIDE_REPLACE_KEYS)
        if spec is None:
            return
        if spec:
            if prev is None:
                self._err("LOAD_ERR_VALIDATE", "An override is requested for rule "
                          f"'{item.name}' but no rule by that name already exists", item, "override")
                return
            how = "replaced" if "replace" in spec.values() else "appended to"
            if not self._same_source(prev, item, f"Rule has been {how} with a different source"):
                return
            self._apply(prev, item, {k: v for k, v in spec.items()})
            return
        if self._append_flag(item):
            if prev is None:
                self._err("LOAD_ERR_VALIDATE", "Rule has 'append' key but no rule by that name already exists",
                          item)
                return
            if not self._same_source(prev, item, "Rule has been appended to with a different source"):
                return
            self._apply(prev, item, {k: "append" for k in keys - {"append", "source"} if k in OVERRIDE_APPEND_KEYS})
            return
        for key in ("condition", "output", "desc", "priority"):
            if key not in d:
                self._err("LOAD_ERR_YAML_VALIDATE", f"Item has no mapping for key '{key}'", item)
                return
        rule = RuleDef(item.name, item)
        if not self._set_fields(rule, item, {k: "replace" for k in keys}):
            return
        if prev is not None and prev.source != rule.source:
            self._err("LOAD_ERR_VALIDATE", "Rule has been re-defined with a different source", item)
            return
        if prev is not None:
            rule.order = prev.order               # a redefined rule keeps its place
        else:
            rule.order = self._order
            self._order += 1
        self.c.rules[item.name] = rule

    def _same_source(self, prev: RuleDef, item: Item, message: str) -> bool:
        src = item.data.get("source")
        if src is not None and src != prev.source:
            self._err("LOAD_ERR_VALIDATE", message, item, "source")
            return False
        return True

    def _check_bool(self, item: Item, key: str) -> bool:
        if not isinstance(item.data.get(key), bool):
            self._err("LOAD_ERR_YAML_VALIDATE", f"Value of '{key}' must be a boolean", item, key)
            return False
        return True

    def _apply(self, rule: RuleDef, item: Item, how: dict[str, str]) -> None:
        appends = {k for k, v in how.items() if v == "append"}
        replaces = {k: v for k, v in how.items() if v == "replace"}
        for key in appends:
            val = item.data[key]
            if key in ("condition", "output", "desc"):
                if not isinstance(val, str):
                    self._err("LOAD_ERR_YAML_VALIDATE", f"Value of '{key}' must be a string", item, key)
                    return
                joined = f"{getattr(rule, key)} {val}" if getattr(rule, key) else val
                setattr(rule, key, joined.strip() if key == "output" else joined)
            elif key == "tags":
                if not isinstance(val, list):
                    self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'tags' must be a sequence", item, key)
                    return
                rule.tags.extend(str(t) for t in val if str(t) not in rule.tags)
            elif key == "exceptions":
                self._append_exceptions(rule, item)
        if replaces:
            self._set_fields(rule, item, replaces)
        if "condition" in how:
            rule.item = _merged_condition_item(rule.item, item, how["condition"])

    def _append_exceptions(self, rule: RuleDef, item: Item) -> None:
        new = item.data.get("exceptions")
        if not isinstance(new, list):
            self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'exceptions' must be a sequence", item, "exceptions")
            return
        by_name = {e.get("name"): e for e in rule.exceptions}
        for ex in new:
            if not isinstance(ex, dict) or not ex.get("name"):
                self._err("LOAD_ERR_YAML_VALIDATE", "Item has no mapping for key 'name'", item, "exceptions")
                continue
            if "values" not in ex:
                self._warn("LOAD_APPEND_NO_VALUES", "Overriding/appending exception with no values", item,
                           "exceptions")
            old = by_name.get(ex["name"])
            if old is not None:
                if "fields" in ex:
                    self._err("LOAD_ERR_VALIDATE", "Can not append exception fields to existing exception, only "
                              "values", item, "exceptions")
                    continue
                if "comps" in ex:
                    self._err("LOAD_ERR_VALIDATE", "Can not append exception comps to existing exception, only "
                              "values", item, "exceptions")
                    continue
                old.setdefault("values", [])
                old["values"] = list(old["values"] or []) + list(ex.get("values") or [])
            else:
                if "fields" not in ex:
                    self._err("LOAD_ERR_VALIDATE", "Rule exception must have fields property with a list of "
                              "fields", item, "exceptions")
                    continue
                if not ex.get("values"):
                    self._err("LOAD_ERR_VALIDATE", "Rule exception must have values property with a list of "
                              "values", item, "exceptions")
                    continue
                rule.exceptions.append(dict(ex))
                by_name[ex["name"]] = rule.exceptions[-1]

    def _set_fields(self, rule: RuleDef, item: Item, how: dict[str, str]) -> bool:
        d = item.data
        for key in how:
            val = d.get(key)
            if key in ("condition", "output", "desc"):
                if key == "desc" and val is None:
                    val = ""
                if not isinstance(val, str):
                    self._err("LOAD_ERR_YAML_VALIDATE", f"Value of '{key}' must be a string", item, key)
                    return False
                # Falco trims outputs (a folded `output: >` would otherwise end the alert with "\n").
                setattr(rule, key, val.strip() if key == "output" else val)
            elif key == "priority":
                p = Priority.lookup(val)
                if p is None:
                    self._err("LOAD_ERR_VALIDATE", f"Invalid priority level: {val}", item, key)
                    return False
                rule.priority = p
            elif key == "source":
                if not isinstance(val, str) or not val:
                    self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'source' must be a string", item, key)
                    return False
                rule.source = val
            elif key == "capture":
                # A non-boolean fails schema validation (reported by the reader) and is ignored.
                rule.capture = val if isinstance(val, bool) else False
            elif key in ("enabled", "skip-if-unknown-filter", "warn_evttypes"):
                if not self._check_bool(item, key):
                    return False
                setattr(rule, key.replace("-", "_"), val)
            elif key == "tags":
                if val is None:
                    val = []
                if not isinstance(val, list) or any(isinstance(t, (list, dict)) for t in val):
                    self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'tags' must be a sequence of strings", item, key)
                    return False
                rule.tags = [str(t) for t in val]
            elif key == "exceptions":
                if val is None:
                    val = []
                if not isinstance(val, list):
                    self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'exceptions' must be a sequence", item, key)
                    return False
                seen: set[str] = set()
                exs = []
                for ex in val:
                    if not isinstance(ex, dict) or not ex.get("name"):
                        self._err("LOAD_ERR_YAML_VALIDATE", "Item has no mapping for key 'name'", item, key)
                        return False
                    if "fields" not in ex:
                        self._err("LOAD_ERR_YAML_VALIDATE", "Item has no mapping for key 'fields'", item, key)
                        return False
                    if how[key] == "replace" and "override" in d and "values" not in ex:
                        self._warn("LOAD_APPEND_NO_VALUES", "Overriding/appending exception with no values",
                                   item, key)
                    if ex["name"] in seen:
                        self._warn("LOAD_EXCEPTION_NAME_NOT_UNIQUE", f"Multiple definitions of exception "
                                   f"'{ex['name']}' in the same rule", item, key)
                    seen.add(ex["name"])
                    exs.append(dict(ex))
                rule.exceptions = exs
            elif key == "capture_duration":
                if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                    self._err("LOAD_ERR_YAML_VALIDATE", "Value of 'capture_duration' must be a non-negative "
                              "integer (milliseconds)", item, key)
                    return False
                rule.capture_duration = val
        return True


def _merged_condition_item(old: Item, new: Item, how: str) -> Item:
    # Errors in an appended condition should point at the item that was defined first; replaced
    # conditions at the new item. Keep the original item for positions unless replaced.
    return new if how == "replace" else old


def _scalar_text(v: Any) -> str:
    """A YAML scalar as the text Falco would see (true → "true", 1 → "1")."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)
