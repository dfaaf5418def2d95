"""The assets `provision` and `export` install: read from their files, parameters filled in.

Elasticsearch assets are request bodies, one per file, named for the object they create
(elasticsearch/ilm/NAME.json is the body of PUT _ilm/policy/NAME). Kibana assets are saved objects,
one per file as the import API takes them (kibana/TYPE/ID.json). Two parameters change them:
the retention (the ILM policy's delete phase) and the namespace (the data streams created).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensor.assets import asset_dir
from sensor.errors import FalconetError

# Elasticsearch asset directories, each with the request that creates one object from one file.
ES_KINDS: dict[str, str] = {
    "ilm": "/_ilm/policy/{name}",
    "component_templates": "/_component_template/{name}",
    "index_templates": "/_index_template/{name}",
    "ingest_pipelines": "/_ingest/pipeline/{name}",
}
# Kibana saved-object types, in the order an import lists them (what others reference first).
KIBANA_TYPES: tuple[str, ...] = ("index-pattern", "search", "lens", "dashboard")

NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,99}$")
RETENTION_RE = re.compile(r"^[1-9][0-9]*(d|h|m|s)$")


class AssetError(FalconetError):
    """An asset file is missing or unreadable, or a parameter is invalid."""


@dataclass(frozen=True, slots=True)
class Params:
    """What `--namespace` and `--retention` set."""

    namespace: str = "default"
    retention: str = "90d"

    def __post_init__(self) -> None:
        if not NAMESPACE_RE.match(self.namespace):
            raise AssetError(f"--namespace {self.namespace!r}: a data stream namespace is 1-100 characters "
                             "of a-z, 0-9 and _ (no '-': it separates type-dataset-namespace)")
        if not RETENTION_RE.match(self.retention):
            raise AssetError(f"--retention {self.retention!r}: give a positive Elasticsearch time unit "
                             "such as 90d, 720h or 30m")


@dataclass(frozen=True, slots=True)
class EsAsset:
    """One Elasticsearch object: its kind (asset directory), name, request body and source file."""

    kind: str
    name: str
    body: dict[str, Any]
    path: Path

    @property
    def endpoint(self) -> str:
        """The path of the PUT that creates it: /_ilm/policy/falconet."""
        return ES_KINDS[self.kind].format(name=self.name)

    @property
    def meta(self) -> dict[str, Any] | None:
        """The `_meta` that identifies what wrote it (ILM keeps it inside `policy`)."""
        holder = self.body.get("policy", {}) if self.kind == "ilm" else self.body
        meta = holder.get("_meta")
        return meta if isinstance(meta, dict) else None


@dataclass(frozen=True, slots=True)
class SavedObject:
    """One Kibana saved object as the import API takes it."""

    type: str
    id: str
    body: dict[str, Any]
    path: Path

    @property
    def title(self) -> str:
        return str(self.body.get("attributes", {}).get("title", self.id))

    def ndjson_line(self) -> str:
        """The object as one NDJSON line (the import API rejects pretty-printed objects)."""
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Bundle:
    """Every asset, with the parameters applied."""

    es: tuple[EsAsset, ...]
    kibana: tuple[SavedObject, ...]
    params: Params = field(default_factory=Params)

    def es_of(self, kind: str) -> list[EsAsset]:
        assets = [a for a in self.es if a.kind == kind]
        return pipeline_order(assets) if kind == "ingest_pipelines" else assets

    def data_streams(self) -> list[str]:
        """The data streams of the index templates, in the configured namespace."""
        names = []
        for a in self.es_of("index_templates"):
            if "data_stream" not in a.body:
                continue
            for pattern in a.body.get("index_patterns", []):
                if pattern.endswith("-*"):
                    names.append(pattern[:-1] + self.params.namespace)
        return names

    def saved_objects(self, types: tuple[str, ...]) -> list[SavedObject]:
        return [o for o in self.kibana if o.type in types]


def ndjson(objects: list[SavedObject]) -> str:
    """The objects as the NDJSON file `POST /api/saved_objects/_import` takes."""
    return "".join(o.ndjson_line() + "\n" for o in objects)


def load(params: Params | None = None, es_dir: Path | None = None, kibana_dir: Path | None = None) -> Bundle:
    """Read every asset (from the checkout or the installed wheel) and apply the parameters."""
    params = params or Params()
    es_dir = es_dir or asset_dir("elasticsearch")
    kibana_dir = kibana_dir or asset_dir("kibana")
    es_assets = []
    for kind in ES_KINDS:
        for path in _json_files(es_dir / kind):
            es_assets.append(fill(EsAsset(kind, path.stem, _read_object(path), path), params))
    objects = []
    for type_ in KIBANA_TYPES:
        for path in _json_files(kibana_dir / type_):
            body = _read_object(path)
            if body.get("type") != type_ or body.get("id") != path.stem:
                raise AssetError(f"{path}: a saved object file is named TYPE/ID.json; this one holds "
                                 f"{body.get('type')}:{body.get('id')}")
            objects.append(SavedObject(type_, path.stem, body, path))
    if not es_assets and not objects:
        raise AssetError(f"no assets under {es_dir} or {kibana_dir}: is the installation complete?")
    return Bundle(tuple(es_assets), tuple(objects), params)


def fill(asset: EsAsset, params: Params) -> EsAsset:
    """Apply the retention to an ILM policy's delete phase (and to its _meta, so a change shows)."""
    if asset.kind != "ilm":
        return asset
    body = copy.deepcopy(asset.body)
    policy = body.get("policy", {})
    delete = policy.get("phases", {}).get("delete")
    if delete is None:
        return asset
    delete["min_age"] = params.retention
    if isinstance(policy.get("_meta"), dict):
        policy["_meta"]["retention"] = params.retention
    return EsAsset(asset.kind, asset.name, body, asset.path)


def pipeline_order(assets: list[EsAsset]) -> list[EsAsset]:
    """Pipelines that others call (a `pipeline` processor) first, else by name."""
    by_name = {a.name: a for a in assets}
    done: list[EsAsset] = []

    def visit(a: EsAsset, seen: tuple[str, ...]) -> None:
        if a in done:
            return
        for ref in sorted(_pipeline_refs(a.body)):
            if ref in by_name and ref not in seen:
                visit(by_name[ref], (*seen, a.name))
        done.append(a)

    for a in sorted(assets, key=lambda x: x.name):
        visit(a, ())
    return done


def _pipeline_refs(node: Any) -> set[str]:
    refs: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pipeline" and isinstance(value, dict) and isinstance(value.get("name"), str):
                refs.add(value["name"])
            refs |= _pipeline_refs(value)
    elif isinstance(node, list):
        for item in node:
            refs |= _pipeline_refs(item)
    return refs


def _json_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json") if p.is_file()) if directory.is_dir() else []


def _read_object(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AssetError(f"{path}: cannot read: {e.strerror}") from e
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise AssetError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
    if not isinstance(body, dict):
        raise AssetError(f"{path}: the file must hold one JSON object")
    return body
