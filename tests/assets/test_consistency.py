"""The assets agree with each other and with the code: validators, mappings, dashboards, the table.

- the offline validators of ../shared/tools pass (Elasticsearch 8.19 API spec; Kibana import rules);
- the generated pipeline file is what sensor/provision/pipeline.py makes from sensor/ecs.py;
- every field `to_ecs` and the pipeline produce is mapped, with the table's type;
- every field a dashboard, visualization or saved search uses is mapped, aggregatable where it is
  aggregated, and detection dashboards count only event.kind: alert;
- every saved-object reference resolves inside the bundle.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED, STRICT

from sensor import __version__, ecs
from sensor.assets import asset_dir
from sensor.provision import pipeline as pipeline_gen
from sensor.provision.bundle import load, ndjson
from sensor.provision.connection import MIN_VERSION

from . import samples

ES_DIR = asset_dir("elasticsearch")
AGGREGATABLE = {"keyword", "constant_keyword", "wildcard", "long", "integer", "short", "byte", "double",
                "float", "ip", "date", "date_nanos", "boolean"}
DOCUMENTED_PROCESSORS = {"append", "convert", "date", "dot_expander", "foreach", "gsub", "join", "lowercase",
                         "pipeline", "remove", "rename", "set", "split", "trim"}


def tool(name: str) -> Path:
    path = SHARED / "tools" / name
    if not path.exists():
        if STRICT:
            pytest.fail(f"{path} is missing: the offline validators must be beside the checkout")
        pytest.skip(f"{path} not present")
    return path


def body(rel: str) -> Any:
    return json.loads((ES_DIR / rel).read_text())


def mapped(component: str) -> dict[str, str]:
    """{dotted field: mapping type} of a component template's mappings."""
    out: dict[str, str] = {}

    def walk(props: dict[str, Any], prefix: str) -> None:
        for name, m in props.items():
            if "properties" in m:
                walk(m["properties"], f"{prefix}{name}.")
            else:
                out[f"{prefix}{name}"] = m["type"]
    walk(body(f"component_templates/{component}.json")["template"]["mappings"]["properties"], "")
    return out


ALERT_FIELDS = mapped("falconet.alerts@mappings")


def leaf_fields(doc: dict[str, Any]) -> set[str]:
    """Every field of a document as Elasticsearch would map it (flattened fields whole)."""
    return set(ecs.flatten(doc, stop=frozenset({"falco.output_fields"})))


# -- validators -----------------------------------------------------------------------------------

def test_elasticsearch_assets_pass_the_api_spec_validator():
    r = subprocess.run([sys.executable, str(tool("es_spec_validate.py")), "bundle", str(ES_DIR), "--strict"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("0 error(s), 0 warning(s)"), r.stdout


def test_elasticsearch_assets_pass_the_next_major_spec_too():
    schema = SHARED / "specs" / "es-spec-main-subset.json"
    r = subprocess.run([sys.executable, str(tool("es_spec_validate.py")), "bundle", str(ES_DIR), "--strict",
                        "--schema", str(schema)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_ndjson_provision_sends_passes_the_kibana_import_checker(tmp_path):
    bundle = load()
    path = tmp_path / "falconet.ndjson"
    path.write_text(ndjson(list(bundle.kibana)))
    r = subprocess.run([sys.executable, str(tool("kibana_ndjson_check.py")), str(path), "--strict"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(f"{len(bundle.kibana)} object(s): 0 error(s), 0 warning(s)")


# -- the table, the generated pipeline, the mappings -----------------------------------------------

def test_pipeline_file_is_generated_from_the_table():
    path = ES_DIR / "ingest_pipelines" / f"{pipeline_gen.NAME}.json"
    assert path.read_text() == pipeline_gen.render(), (
        f"{path} is out of date: python -m sensor.provision.pipeline > {path}")


def _processors(node: Any) -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, list):
        for p in node:
            ((kind, opts),) = p.items()
            out.append((kind, opts))
            out += _processors(opts.get("on_failure", []))
            if kind == "foreach":
                out += _processors([opts["processor"]])
    return out


def test_pipeline_maps_every_row_of_the_table():
    procs = _processors(body(f"ingest_pipelines/{pipeline_gen.NAME}.json")["processors"])
    expanded = {o["field"] for k, o in procs if k == "dot_expander"}
    copies = {(o["copy_from"], o["field"]) for k, o in procs if k == "set" and "copy_from" in o}
    for row in ecs.TABLE:
        assert row.falco in expanded, row
        assert (pipeline_gen.scratch(row.falco), row.ecs) in copies, row
    converted = {o["field"] for k, o in procs if k == "convert"}
    assert converted == {row.ecs for row in ecs.TABLE if row.as_string}


def test_pipelines_use_only_documented_processors_and_no_scripts():
    for path in (ES_DIR / "ingest_pipelines").glob("*.json"):
        b = json.loads(path.read_text())
        kinds = {k for k, _ in _processors(b["processors"]) + _processors(b.get("on_failure", []))}
        assert kinds <= DOCUMENTED_PROCESSORS, (path.name, kinds - DOCUMENTED_PROCESSORS)


def test_every_table_field_is_mapped_with_the_table_type():
    for row in ecs.TABLE:
        assert ALERT_FIELDS.get(row.ecs) == row.type, row


def _all_documents() -> list[dict[str, Any]]:
    alerts = [f() for f in (*samples.FALCONET, *samples.FALCO, *samples.SIDEKICK)]
    docs = [ecs.to_ecs(a) for a in alerts]
    for name in ("test-falco-alert.json", "test-falcosidekick.json", "test-falconet-alert.json",
                 "test-malformed.json"):
        docs += body(f"_dev/test/pipeline/{name}-expected.json")["expected"]
    return docs


def test_every_field_to_ecs_and_the_pipeline_produce_is_mapped():
    fields = set().union(*(leaf_fields(d) for d in _all_documents()))
    assert fields - set(ALERT_FIELDS) == set()


def test_every_mapped_ecs_field_of_a_response_record_is_typed():
    doc = ecs.to_ecs(samples.response_record())
    assert leaf_fields(doc) - set(ALERT_FIELDS) == set()
    assert ALERT_FIELDS["falconet.response.dry_run"] == "boolean"
    assert ALERT_FIELDS["falco.output_fields"] == "flattened"
    assert ALERT_FIELDS["@timestamp"] == "date"


def test_templates_compose_what_exists_and_outrank_the_builtin_logs_template():
    components = {p.stem for p in (ES_DIR / "component_templates").glob("*.json")}
    for path in (ES_DIR / "index_templates").glob("*.json"):
        t = json.loads(path.read_text())
        assert t["priority"] > 100, path          # the built-in `logs` template (logs-*-*) has 100
        assert set(t["composed_of"]) <= components
        assert "data_stream" in t
    alerts = body("index_templates/logs-falconet.alerts.json")
    assert alerts["index_patterns"] == ["logs-falconet.alerts-*"]
    assert alerts["template"]["settings"]["index"]["default_pipeline"] == "falconet-alerts"
    settings = body("component_templates/falconet@settings.json")["template"]["settings"]["index"]
    assert settings["lifecycle"]["name"] in {p.stem for p in (ES_DIR / "ilm").glob("*.json")}


def test_every_elasticsearch_asset_carries_our_version():
    for a in load().es:
        assert a.meta is not None and a.meta["managed_by"] == "falconet", a.path
        assert a.meta["version"] == __version__, (a.path, "bump _meta.version with sensor.__version__")


# -- Kibana -----------------------------------------------------------------------------------------

KQL_FIELD = re.compile(r"([A-Za-z_@][\w.@]*)\s*:")


def _uses(obj: dict[str, Any]) -> list[tuple[str, bool]]:
    """(field, aggregated) for every field a saved object reads."""
    a = obj["attributes"]
    out: list[tuple[str, bool]] = []
    queries: list[str] = []
    if obj["type"] == "lens":
        for layer in a["state"]["datasourceStates"]["formBased"]["layers"].values():
            for col in layer["columns"].values():
                if col.get("sourceField") and col["sourceField"] != "___records___":
                    out.append((col["sourceField"], col["isBucketed"] or col["operationType"] != "count"))
        queries.append(a["state"]["query"]["query"])
    if obj["type"] in ("search", "dashboard"):
        source = json.loads(a["kibanaSavedObjectMeta"]["searchSourceJSON"])
        queries.append(source["query"]["query"])
    if obj["type"] == "search":
        out += [(c, False) for c in a["columns"]]
        out += [(f, True) for f, _ in a["sort"]]            # sorting needs doc values, as aggregating does
    if obj["type"] == "index-pattern":
        out.append((a["timeFieldName"], True))
    for q in queries:
        out += [(f, False) for f in KQL_FIELD.findall(q)]
    return out


def test_every_field_a_saved_object_uses_is_mapped_and_aggregatable_where_aggregated():
    for o in load().kibana:
        for field, aggregated in _uses(o.body):
            assert field in ALERT_FIELDS, f"{o.type}/{o.id} uses unmapped {field}"
            if aggregated:
                assert ALERT_FIELDS[field] in AGGREGATABLE, f"{o.type}/{o.id} aggregates {field}"


def test_references_resolve_inside_the_bundle():
    objects = {(o.type, o.id) for o in load().kibana}
    for o in load().kibana:
        for ref in o.body["references"]:
            assert (ref["type"], ref["id"]) in objects, (o.id, ref)


def test_dashboards_filter_on_event_kind():
    objects = {(o.type, o.id): o.body for o in load().kibana}
    for (type_, _), d in objects.items():
        if type_ != "dashboard":
            continue
        query = json.loads(d["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        kind = "event" if "falconet.response" in query else "alert"
        assert f'event.kind : "{kind}"' in query, d["id"]
        for ref in d["references"]:
            panel = objects[(ref["type"], ref["id"])]["attributes"]
            q = (panel["state"]["query"]["query"] if ref["type"] == "lens" else
                 json.loads(panel["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"])
            assert f'event.kind : "{kind}"' in q, (d["id"], ref["id"])


def test_the_four_dashboards_and_the_data_view():
    objects = {(o.type, o.id): o.body for o in load().kibana}
    assert sorted(i for t, i in objects if t == "dashboard") == [
        "falconet-kubernetes-audit", "falconet-mitre-attack", "falconet-overview", "falconet-responses"]
    view = objects[("index-pattern", "falconet-alerts")]["attributes"]
    assert (view["title"], view["timeFieldName"]) == ("logs-falconet.alerts-*", "@timestamp")


def test_saved_objects_import_into_the_oldest_supported_kibana():
    oldest = ".".join(map(str, MIN_VERSION))
    for o in load().kibana:
        assert o.body["coreMigrationVersion"] == oldest, o.id


def test_the_docs_show_the_table_as_it_is():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "provision.md").read_text()
    rows = [line for line in doc.splitlines() if re.match(r"^\| `[a-z0-9_.]+` \| `", line)]
    assert rows == [f"| `{r.falco}` | `{r.ecs}` | {r.type}"
                    + (" (absolute paths only)" if r.paths_only else "")
                    + (" (as a string)" if r.as_string else "") + " |" for r in ecs.TABLE]
