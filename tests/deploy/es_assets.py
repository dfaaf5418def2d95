"""The names Fluentd must write to, as DESIGN.md §6 fixes them and as elasticsearch/ defines them.

elasticsearch/ holds one request body per file (DESIGN.md §2): index_templates/NAME.json,
component_templates/NAME.json, ingest_pipelines/NAME.json. The checks read those files when they
are there, so a rename on either side fails the tests instead of leaving Fluentd writing to a
data stream no template maps, or through a pipeline that does not exist.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ES_DIR = ROOT / "elasticsearch"

# DESIGN.md §6, "Names on the wire".
ALERTS_TAG = "falconet.alerts"
LOG_TAG = "falconet.log"
ALERTS_DATA_STREAM = "logs-falconet.alerts-default"
LOG_DATA_STREAM = "logs-falconet.log-default"
ALERTS_PIPELINE = "falconet-alerts"
FORWARD_PORT = 24224


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AssertionError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None


def pipelines() -> dict[str, dict[str, Any]]:
    d = ES_DIR / "ingest_pipelines"
    return {p.stem: _load(p) for p in sorted(d.glob("*.json"))} if d.is_dir() else {}


def index_templates() -> dict[str, dict[str, Any]]:
    d = ES_DIR / "index_templates"
    return {p.stem: _load(p) for p in sorted(d.glob("*.json"))} if d.is_dir() else {}


def component_templates() -> dict[str, dict[str, Any]]:
    d = ES_DIR / "component_templates"
    return {p.stem: _load(p) for p in sorted(d.glob("*.json"))} if d.is_dir() else {}


@dataclass
class TemplateMatch:
    """The index template Elasticsearch would pick for a name, and its effective settings."""

    name: str
    body: dict[str, Any]
    settings: dict[str, Any]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def template_for(index: str) -> TemplateMatch | None:
    """The highest-priority template of elasticsearch/ whose index_patterns match `index`, with
    the settings of its component templates (in composed_of order) and its own merged in."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for name, body in index_templates().items():
        if any(fnmatch.fnmatchcase(index, p) for p in body.get("index_patterns", [])):
            prio = int(body.get("priority", 0))
            if best is None or prio > best[0]:
                best = (prio, name, body)
    if best is None:
        return None
    _, name, body = best
    settings: dict[str, Any] = {}
    components = component_templates()
    for comp in body.get("composed_of", []):
        if comp in components:
            settings.update(_flat(components[comp].get("template", {}).get("settings", {})))
    settings.update(_flat(body.get("template", {}).get("settings", {})))
    # "index.default_pipeline" and {"index": {"default_pipeline": ...}} are the same setting.
    settings = {k if k.startswith("index.") else f"index.{k}": v for k, v in settings.items()}
    return TemplateMatch(name, body, settings)
