"""Reading the assets and filling in the parameters."""

from __future__ import annotations

import json
import shutil

import pytest

from sensor.assets import asset_dir
from sensor.provision.bundle import AssetError, Params, load, ndjson

from .helpers import asset


def test_defaults_leave_every_body_as_its_file(bundle):
    for a in bundle.es:
        assert a.body == json.loads(a.path.read_text()), a.path
    assert bundle.params == Params("default", "90d")


def test_retention_goes_into_the_delete_phase_and_the_meta():
    b = load(Params(retention="14d"))
    (policy,) = b.es_of("ilm")
    assert policy.body["policy"]["phases"]["delete"]["min_age"] == "14d"
    assert policy.meta == {**asset("ilm/falconet.json")["policy"]["_meta"], "retention": "14d"}
    # The file itself is untouched.
    assert asset("ilm/falconet.json")["policy"]["phases"]["delete"]["min_age"] == "90d"


def test_data_streams_come_from_the_index_templates_in_the_namespace():
    assert load(Params(namespace="prod_eu")).data_streams() == ["logs-falconet.alerts-prod_eu",
                                                                 "logs-falconet.log-prod_eu"]


@pytest.mark.parametrize("retention", ["0d", "90", "1.5d", "90 d", "-1", "3w"])
def test_bad_retention_is_refused(retention):
    with pytest.raises(AssetError, match="--retention"):
        Params(retention=retention)


def test_called_pipelines_come_first(bundle):
    names = [a.name for a in bundle.es_of("ingest_pipelines")]
    assert names.index("falconet-alerts-falco") < names.index("falconet-alerts")


def test_ndjson_is_one_compact_object_per_line(bundle):
    text = ndjson(list(bundle.kibana))
    lines = text.splitlines()
    assert len(lines) == len(bundle.kibana) and text.endswith("\n")
    assert [json.loads(line)["id"] for line in lines] == [o.id for o in bundle.kibana]


def _copy_assets(tmp_path):
    es, kb = tmp_path / "elasticsearch", tmp_path / "kibana"
    shutil.copytree(asset_dir("elasticsearch"), es)
    shutil.copytree(asset_dir("kibana"), kb)
    return es, kb


def test_invalid_json_names_file_line_and_column(tmp_path):
    es, kb = _copy_assets(tmp_path)
    bad = es / "ilm" / "falconet.json"
    bad.write_text('{\n  "policy": {,\n}\n')
    with pytest.raises(AssetError) as e:
        load(es_dir=es, kibana_dir=kb)
    assert str(e.value).startswith(f"{bad}:2:14: invalid JSON")


def test_saved_object_must_be_named_type_and_id(tmp_path):
    es, kb = _copy_assets(tmp_path)
    src = kb / "lens" / "falconet-top-rules.json"
    src.rename(kb / "lens" / "top-rules.json")
    with pytest.raises(AssetError, match=r"named TYPE/ID\.json; this one holds lens:falconet-top-rules"):
        load(es_dir=es, kibana_dir=kb)


def test_no_assets_at_all_is_an_error(tmp_path):
    with pytest.raises(AssetError, match="no assets under"):
        load(es_dir=tmp_path / "e", kibana_dir=tmp_path / "k")
