"""The `falconet-alerts-falco` ingest pipeline, generated from sensor/ecs.py's table.

`falconet-alerts` (the data stream's default pipeline, a plain asset file) hands every document
that looks like a raw Falco or Falcosidekick alert (a string `rule` and no `falco` object) to this
pipeline, which turns it into the same ECS document `sensor.ecs.to_ecs` builds for a Falconet alert.
The file elasticsearch/ingest_pipelines/falconet-alerts-falco.json is this module's output; a test
fails when the two differ. Regenerate it with

    python -m sensor.provision.pipeline > elasticsearch/ingest_pipelines/falconet-alerts-falco.json

Only documented processors are used. Two facts from their documentation shape it: a field name
with dots (Falco's `proc.name` key inside output_fields) is reachable only after `dot_expander`,
and expanding `fd.cip.name` fails while `fd.cip` holds a value. So each Falco field is expanded in
a scratch copy of output_fields and moved out of the way (`_tmp.v.<field with _>`) before the next
one is expanded, and only then copied to its ECS field in the table's precedence order. The
falco.output_fields object itself is kept exactly as received (mapped `flattened`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sensor import __version__, ecs
from sensor.alert import NAMES

NAME = "falconet-alerts-falco"
TMP = "_tmp"
# Falco's JSON `output` starts with the text alert's time and priority: "13:23:36.089890892: Warning ".
OUTPUT_PREFIX = r"^\S+: (?:" + "|".join(NAMES) + ") "
# Keep only whitespace-separated tokens that are technique ids (T1059, T1059.004) / sub-technique ids.
KEEP_TECHNIQUES = r"(?:^|\s)(?!T\d{4}(?:\.\d{3})?(?:\s|$))\S+"
KEEP_SUBTECHNIQUES = r"(?:^|\s)(?!T\d{4}\.\d{3}(?:\s|$))\S+"
# The top-level keys of Falco's JSON alert (plus Falcosidekick's uuid), moved under falco.*.
FALCO_KEYS = ("time", "rule", "priority", "source", "hostname", "output", "output_fields", "uuid")


def scratch(falco_field: str) -> str:
    """Where a Falco field's value waits between expansion and copy: _tmp.v.proc_name."""
    return f"{TMP}.v.{falco_field.replace('.', '_')}"


def _painless_path(dotted: str) -> str:
    """`ctx._tmp?.v?.fd_name`: a null-safe Painless read of a field."""
    parts = dotted.split(".")
    return "ctx." + "?.".join(parts)


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _list(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_quote(v) for v in values) + "]"


def _has_tag(tag: str) -> str:
    return f"ctx.tags instanceof List && ctx.tags.contains({_quote(tag)})"


def _move_falco_keys() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"rename": {"field": key, "target_field": f"falco.{key}", "ignore_missing": True,
                    "tag": f"move_{key}"}}
        for key in FALCO_KEYS
    ]
    # ECS keeps the tags at the top level too.
    out.append({"set": {"field": "falco.tags", "copy_from": "tags", "ignore_empty_value": True,
                        "tag": "copy_tags"}})
    return out


def _base() -> list[dict[str, Any]]:
    return [
        {"date": {"field": "falco.time", "target_field": "@timestamp", "formats": ["ISO8601"],
                  "tag": "timestamp"}},
        {"gsub": {"field": "falco.output", "target_field": "message", "pattern": OUTPUT_PREFIX,
                  "replacement": "", "ignore_missing": True, "tag": "message"}},
        {"set": {"field": "ecs.version", "value": ecs.ECS_VERSION}},
        {"set": {"field": "event.kind", "value": "alert"}},
        {"set": {"field": "event.module", "value": ecs.MODULE}},
        {"set": {"field": "event.dataset", "value": ecs.DATASET}},
        {"set": {"field": "event.type", "value": list(ecs.EVENT_TYPE)}},
        {"set": {"field": "event.id", "copy_from": "falco.uuid", "ignore_empty_value": True}},
        {"set": {"field": "rule.name", "copy_from": "falco.rule", "ignore_empty_value": True}},
        {"set": {"field": "rule.ruleset", "copy_from": "falco.source", "ignore_empty_value": True}},
        {"set": {"field": "host.name", "copy_from": "falco.hostname", "ignore_empty_value": True}},
        {"lowercase": {"field": "falco.priority", "target_field": "log.level", "ignore_missing": True}},
    ]


def _severity() -> list[dict[str, Any]]:
    return [
        {"set": {"field": "event.severity", "value": number,
                 "if": f"ctx.falco?.priority == {_quote(priority)}", "tag": f"severity_{priority}"}}
        for priority, number in ecs.SEVERITY.items()
    ]


def _categories() -> list[dict[str, Any]]:
    """event.category in the order ecs.categories() builds it: by source, then by tag."""
    ordered: list[str] = []
    for cats in (*ecs.SOURCE_CATEGORIES.values(), ecs.OTHER_SOURCE_CATEGORIES):
        ordered.extend(c for c in cats if c not in ordered)
    out: list[dict[str, Any]] = []
    for cat in ordered:
        if cat in ecs.OTHER_SOURCE_CATEGORIES:
            without = [s for s, cats in ecs.SOURCE_CATEGORIES.items() if cat not in cats]
            cond = f"!{_list(without)}.contains(ctx.falco?.source)"
        else:
            having = [s for s, cats in ecs.SOURCE_CATEGORIES.items() if cat in cats]
            cond = f"{_list(having)}.contains(ctx.falco?.source)"
        out.append({"append": {"field": "event.category", "value": cat, "allow_duplicates": False,
                               "if": cond, "tag": f"category_{cat}"}})
    for tag, cat in ecs.TAG_CATEGORIES:
        out.append({"append": {"field": "event.category", "value": cat, "allow_duplicates": False,
                               "if": _has_tag(tag), "tag": f"category_{cat}_from_{tag}"}})
    return out


def _tactics() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tag, tid, name in ecs.TACTICS:
        for field, value in (("id", tid), ("name", name), ("reference", ecs.TACTIC_URL.format(id=tid))):
            out.append({"append": {"field": f"threat.tactic.{field}", "value": value,
                                   "if": _has_tag(tag), "tag": f"{tag}_{field}"}})
    return out


def _split_and_append(source: str, target: str, template: str, tag: str) -> list[dict[str, Any]]:
    """Split the space-separated ids in `source` and append each, rendered by `template`, to `target`."""
    listed = f"{source}_list"
    return [
        {"trim": {"field": source, "ignore_missing": True}},
        {"split": {"field": source, "separator": " ", "target_field": listed,
                   "if": f"{_painless_path(source)} instanceof String && {_painless_path(source)} != ''",
                   "tag": f"split_{tag}"}},
        {"foreach": {"field": listed, "ignore_missing": True, "tag": f"append_{tag}",
                     "processor": {"append": {"field": target, "value": template,
                                              "allow_duplicates": False}}}},
    ]


def _techniques() -> list[dict[str, Any]]:
    tags, tech, sub, subpath = (f"{TMP}.tags", f"{TMP}.techniques", f"{TMP}.subtechniques",
                                f"{TMP}.subtechnique_paths")
    value = "{{{_ingest._value}}}"
    out: list[dict[str, Any]] = [
        {"join": {"field": "tags", "separator": " ", "target_field": tags,
                  "if": "ctx.tags instanceof List", "tag": "join_tags"}},
        {"gsub": {"field": tags, "target_field": tech, "pattern": KEEP_TECHNIQUES, "replacement": "",
                  "ignore_missing": True, "tag": "techniques"}},
        {"gsub": {"field": tech, "target_field": sub, "pattern": KEEP_SUBTECHNIQUES, "replacement": "",
                  "ignore_missing": True, "tag": "subtechniques"}},
        {"gsub": {"field": tech, "pattern": r"\.\d{3}", "replacement": "", "ignore_missing": True,
                  "tag": "parent_techniques"}},
        {"gsub": {"field": sub, "target_field": subpath, "pattern": r"\.", "replacement": "/",
                  "ignore_missing": True, "tag": "subtechnique_paths"}},
    ]
    out += _split_and_append(tech, "threat.technique.id", value, "technique_id")
    # The reference list is built from its own copy so each list has one foreach and one target.
    out += [{"set": {"field": f"{TMP}.technique_refs", "copy_from": tech, "ignore_empty_value": True}}]
    out += _split_and_append(f"{TMP}.technique_refs", "threat.technique.reference",
                             ecs.TECHNIQUE_URL.format(id=value), "technique_reference")
    out += _split_and_append(sub, "threat.technique.subtechnique.id", value, "subtechnique_id")
    out += _split_and_append(subpath, "threat.technique.subtechnique.reference",
                             ecs.TECHNIQUE_URL.format(id=value), "subtechnique_reference")
    out.append({"set": {"field": "threat.framework", "value": ecs.THREAT_FRAMEWORK,
                        "if": "ctx.threat != null", "tag": "threat_framework"}})
    return out


def _entities() -> list[dict[str, Any]]:
    work = f"{TMP}.of"
    out: list[dict[str, Any]] = [
        {"set": {"field": work, "value": {}}},
        {"set": {"field": work, "copy_from": "falco.output_fields", "ignore_empty_value": True,
                 "tag": "scratch_output_fields"}},
    ]
    # Expand in sorted order so `fd.cip` is moved away before `fd.cip.name` is expanded.
    for falco in sorted({row.falco for row in ecs.TABLE}):
        out.append({"dot_expander": {"field": falco, "path": work}})
        out.append({"rename": {"field": f"{work}.{falco}", "target_field": scratch(falco),
                               "ignore_missing": True}})
    for row in ecs.TABLE:
        proc: dict[str, Any] = {"field": row.ecs, "copy_from": scratch(row.falco), "override": False,
                                "ignore_empty_value": True, "tag": f"ecs_{row.falco}"}
        if row.paths_only:
            src = _painless_path(scratch(row.falco))
            proc["if"] = f"{src} instanceof String && {src}.startsWith('/')"
        out.append({"set": proc})
    for row in ecs.TABLE:
        if row.as_string:
            out.append({"convert": {"field": row.ecs, "type": "string", "ignore_missing": True,
                                    "tag": f"ecs_{row.falco}_as_string"}})
    return out


def falco_pipeline() -> dict[str, Any]:
    """The body of PUT _ingest/pipeline/falconet-alerts-falco."""
    processors = (_move_falco_keys() + _base() + _severity() + _categories() + _tactics()
                  + _techniques() + _entities()
                  + [{"remove": {"field": TMP, "ignore_missing": True, "tag": "drop_scratch"}}])
    return {
        "description": "Raw Falco and Falcosidekick alerts to Falconet's ECS document "
                       "(generated from sensor/ecs.py by sensor/provision/pipeline.py; do not edit)",
        "processors": processors,
        "_meta": {"managed_by": "falconet", "version": __version__},
    }


def render() -> str:
    """The asset file's text: the body, indented, with a final newline."""
    return json.dumps(falco_pipeline(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
