"""The ordered, idempotent steps of `provision` (Beats `setup` order), run against a back end.

ILM policy → component templates → index templates → ingest pipelines → data streams → data view →
saved objects. Each step is one plain line when it finishes. A back end does the work: the cluster
(es.py and kibana.py: existence and `_meta` checks, writes only what is missing or, with
--overwrite, everything), files (files.py, for `export`) or a printout of every call (files.py,
for --dry-run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from sensor.errors import FalconetError
from sensor.provision.bundle import Bundle, EsAsset, SavedObject

GROUPS: tuple[str, ...] = ("templates", "ilm", "pipelines", "dashboards")
"""What `--only` selects."""


class ProvisionError(FalconetError):
    """A step failed: names the object, the URL and what would fix it (a missing privilege, ...)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step: what it installs, which --only group it belongs to, where, and the privilege it needs."""

    key: str
    title: str
    group: str
    target: str          # "elasticsearch" or "kibana"
    privilege: str


STEPS: tuple[Step, ...] = (
    Step("ilm", "ILM policies", "ilm", "elasticsearch", "the cluster privilege manage_ilm"),
    Step("component_templates", "Component templates", "templates", "elasticsearch",
         "the cluster privilege manage_index_templates"),
    Step("index_templates", "Index templates", "templates", "elasticsearch",
         "the cluster privilege manage_index_templates"),
    Step("ingest_pipelines", "Ingest pipelines", "pipelines", "elasticsearch",
         "the cluster privilege manage_pipeline"),
    Step("data_streams", "Data streams", "templates", "elasticsearch",
         "the index privileges view_index_metadata and create_index on logs-falconet.*"),
    Step("data_view", "Data view", "dashboards", "kibana",
         "the Kibana feature privilege All on Data View Management (and Saved Objects Management) "
         "in the space"),
    Step("saved_objects", "Saved objects", "dashboards", "kibana",
         "the Kibana feature privileges All on Saved Objects Management, Dashboard, Visualize Library "
         "and Discover in the space"),
)
DATA_VIEW_TYPES = ("index-pattern",)
SAVED_OBJECT_TYPES = ("search", "lens", "dashboard")

CREATED, UNCHANGED, KEPT, REPLACED = "created", "unchanged", "kept", "replaced"
WRITTEN, PRINTED = "wrote", "printed"


@dataclass(frozen=True, slots=True)
class Change:
    """What happened to one object: created, unchanged, kept (differs; not overwritten), replaced,
    wrote (export), printed (dry run). `detail` says why an object was kept."""

    name: str
    result: str
    detail: str = ""


class ElasticsearchBackend(Protocol):
    def put_asset(self, step: Step, asset: EsAsset, overwrite: bool) -> Change: ...
    def create_data_stream(self, step: Step, name: str) -> Change: ...


class KibanaBackend(Protocol):
    def import_objects(self, step: Step, objects: list[SavedObject], overwrite: bool) -> list[Change]: ...


def selected_steps(only: Iterable[str] = ()) -> list[Step]:
    """The steps of the --only groups (all when none), in their fixed order."""
    groups = set(only) or set(GROUPS)
    unknown = groups - set(GROUPS)
    if unknown:
        raise ProvisionError(f"--only {', '.join(sorted(unknown))}: choose from {', '.join(GROUPS)}")
    return [s for s in STEPS if s.group in groups]


def needs(steps: Iterable[Step], target: str) -> bool:
    return any(s.target == target for s in steps)


def run(bundle: Bundle, steps: list[Step], es: ElasticsearchBackend | None, kibana: KibanaBackend | None,
        overwrite: bool = False, report: Callable[[str], None] = print) -> list[tuple[Step, list[Change]]]:
    """Run the steps in order; `report` gets one line per finished step."""
    results = []
    for step in steps:
        changes: list[Change] = []
        if step.target == "elasticsearch":
            if es is None:
                raise ProvisionError(f"{step.title}: no Elasticsearch back end")
            if step.key == "data_streams":
                changes = [es.create_data_stream(step, name) for name in bundle.data_streams()]
            else:
                changes = [es.put_asset(step, a, overwrite) for a in bundle.es_of(step.key)]
        else:
            if kibana is None:
                raise ProvisionError(f"{step.title}: no Kibana back end")
            types = DATA_VIEW_TYPES if step.key == "data_view" else SAVED_OBJECT_TYPES
            objects = bundle.saved_objects(types)
            changes = kibana.import_objects(step, objects, overwrite) if objects else []
        report(summary(step, changes))
        results.append((step, changes))
    return results


def summary(step: Step, changes: list[Change]) -> str:
    """One line: `Index templates: created logs-falconet.alerts; unchanged logs-falconet.log`."""
    if not changes:
        return f"{step.title}: nothing to install"
    if all(c.result == UNCHANGED for c in changes):
        return f"{step.title}: nothing changed ({len(changes)} already present)"
    parts = []
    for result in (CREATED, REPLACED, WRITTEN, PRINTED, UNCHANGED, KEPT):
        of = [c for c in changes if c.result == result]
        if not of:
            continue
        if result == UNCHANGED:
            parts.append(f"unchanged {len(of)}")
        elif result in (WRITTEN, PRINTED) and len(of) > 3:
            parts.append(f"{result} {len(of)} ({of[0].name}, ...)")
        elif result == KEPT:
            parts.append("kept " + ", ".join(f"{c.name} ({c.detail})" for c in of)
                         + " (--overwrite replaces them)")
        else:
            parts.append(f"{result} " + ", ".join(c.name for c in of))
    return f"{step.title}: " + "; ".join(parts)
