"""load_rules(): reader → collector → compiler → Ruleset, with Falco's rule selection on top."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensor.alert import Priority
from sensor.engine.collector import Collector, RuleDef
from sensor.engine.compiler import Compiled, CompiledRule, RuleCompiler
from sensor.engine.reader import read_file
from sensor.engine.ruleset import Ruleset
from sensor.errors import Diagnostic, DiagnosticList, Location, RulesLoadError

__all__ = ["FileResult", "LoadOptions", "RulesLoadError", "expand_paths", "load_rules"]


@dataclass
class LoadOptions:
    """Falco's rule selection and output additions (falco.yaml keys and CLI flags)."""

    rule_matching: str = "first"
    min_priority: str = "Debug"                      # `priority`: rules less severe are not loaded
    selection: list[dict[str, Any]] = field(default_factory=list)   # `rules:` enable/disable items
    disable_rules: list[str] = field(default_factory=list)          # -D (names, * wildcards)
    disable_tags: list[str] = field(default_factory=list)           # -T
    enable_tags: list[str] = field(default_factory=list)            # -t: only rules with these tags
    append_output: list[dict[str, Any]] = field(default_factory=list)
    hostname: str = ""


@dataclass
class FileResult:
    """What `falco -V` reports per file."""

    name: str
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    schema_warnings: list[str] = field(default_factory=list)   # the file loads, but breaks the schema

    @property
    def successful(self) -> bool:
        return not self.errors

    @property
    def schema_valid(self) -> bool:
        return not self.schema_warnings

    def as_json(self) -> dict[str, Any]:
        return {"errors": [d.as_json() for d in self.errors], "name": self.name,
                "schema_valid": self.schema_valid, "schema_warnings": list(self.schema_warnings),
                "successful": self.successful, "warnings": [d.as_json() for d in self.warnings]}


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Files in load order: a directory contributes its *.yaml/*.yml files, sorted by name."""
    out: list[Path] = []
    errs: list[Diagnostic] = []
    for p in paths:
        path = Path(p)
        try:
            if path.is_dir():
                out.extend(sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()))
                continue
            exists = path.exists()
        except OSError as e:      # a directory on the way we may not enter
            errs.append(Diagnostic("LOAD_ERR_FILE_READ", f"Could not open file {path}: {e.strerror}",
                                   (Location(str(path), item_type="rules content"),)))
            continue
        if exists:
            out.append(path)
        else:
            errs.append(Diagnostic("LOAD_ERR_FILE_READ", f"Could not open file {path}: No such file or directory",
                                   (Location(str(path), item_type="rules content"),)))
    return out, errs


def load_rules(paths: Sequence[str | Path], options: LoadOptions | None = None, **kw: Any) -> Ruleset:
    """Load rule files in order into a Ruleset; raise RulesLoadError listing every error.

    Keyword arguments are LoadOptions fields (`load_rules(paths, rule_matching="all")`).
    """
    opts = options or LoadOptions(**kw)
    diags = DiagnosticList()
    files, errs = expand_paths(paths)
    diags.errors.extend(errs)
    collector = Collector(diags)
    schema: dict[str, list[str]] = {}
    for f in files:
        schema[str(f)] = _read_into(f, diags, collector)
    compiled = RuleCompiler(collector.c, diags, _extra_output(opts)).run()
    results = _per_file(files, [str(p) for p in paths if not Path(p).exists()], diags)
    for r in results:
        r.schema_warnings = schema.get(r.name, [])
    if diags.errors:
        raise RulesLoadError(diags.errors, diags.warnings, results)
    _select(compiled, opts)
    rs = Ruleset(compiled.rules, rule_matching=opts.rule_matching, hostname=opts.hostname,
                 warnings=diags.warnings, lists=compiled.lists, macros=compiled.macros,
                 files=[str(f) for f in files])
    rs.results = results   # type: ignore[attr-defined]
    return rs


def _read_into(path: Path, diags: DiagnosticList, collector: Collector) -> list[str]:
    """Read one file into the collector; return its schema warnings."""
    res = read_file(path)
    diags.errors.extend(res.diags.errors)
    diags.warnings.extend(res.diags.warnings)
    if res.diags.errors:
        return res.schema_warnings   # Falco does not collect a file whose YAML it could not read
    for item in res.items:
        collector.add(item)
    return res.schema_warnings


def _per_file(files: list[Path], missing: list[str], diags: DiagnosticList) -> list[FileResult]:
    results = {str(f): FileResult(str(f)) for f in files}
    for m in missing:
        results[m] = FileResult(m)
    for kind in ("errors", "warnings"):
        for d in getattr(diags, kind):
            name = d.locations[0].name if d.locations else ""
            res = results.get(name)
            if res is None:
                res = results[name] = FileResult(name)
            getattr(res, kind).append(d)
    return list(results.values())


def _extra_output(opts: LoadOptions) -> Any:
    if not opts.append_output:
        return None

    def extra(rd: RuleDef) -> tuple[str, list[Any]]:
        texts: list[str] = []
        fields: list[Any] = []
        for entry in opts.append_output:
            match = entry.get("match") or {}
            if "source" in match and match["source"] != rd.source:
                continue
            if "rule" in match and not fnmatch.fnmatchcase(rd.name, str(match["rule"])):
                continue
            tags = match.get("tags")
            if tags and not set(tags) & set(rd.tags):
                continue
            if entry.get("extra_output"):
                texts.append(str(entry["extra_output"]))
            for ef in entry.get("extra_fields") or []:
                fields.append(ef)
        return " ".join(texts), fields

    return extra


def _select(compiled: Compiled, opts: LoadOptions) -> None:
    """Apply min priority, the `rules:` selection, -D, -T and -t to the rules' enabled flags."""
    limit = Priority.lookup(opts.min_priority) or Priority.DEBUG
    for r in compiled.rules:
        if r.priority > limit:
            r.enabled = False
    for entry in opts.selection:
        for action in ("enable", "disable"):
            spec = entry.get(action)
            if not spec:
                continue
            on = action == "enable"
            for r in compiled.rules:
                if _selected(r, spec):
                    r.enabled = on
    for pat in opts.disable_rules:
        for r in compiled.rules:
            if fnmatch.fnmatchcase(r.name, pat) or ("*" not in pat and pat in r.name):
                r.enabled = False
    for tag in opts.disable_tags:
        for r in compiled.rules:
            if tag in r.tags:
                r.enabled = False
    if opts.enable_tags:
        wanted = set(opts.enable_tags)
        for r in compiled.rules:
            r.enabled = r.enabled and bool(wanted & set(r.tags))


def _selected(r: CompiledRule, spec: dict[str, Any]) -> bool:
    if "rule" in spec:
        return fnmatch.fnmatchcase(r.name, str(spec["rule"]))
    if "tag" in spec:
        return any(fnmatch.fnmatchcase(t, str(spec["tag"])) for t in r.tags)
    return False
