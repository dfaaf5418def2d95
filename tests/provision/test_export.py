"""`falconet export DIR`: every asset written with the parameters filled in, valid on its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import SHARED

from .helpers import asset, es_files, falconet, kibana_objects


def test_export_writes_every_asset_with_parameters(tmp_path, capsys, monkeypatch):
    r = falconet(capsys, monkeypatch, "export", str(tmp_path), "--namespace", "prod", "--retention", "30d")
    assert r.code == 0, r.err
    for kind, names in es_files().items():
        for name in names:
            body = json.loads((tmp_path / "elasticsearch" / kind / f"{name}.json").read_text())
            expected = asset(f"{kind}/{name}.json")
            if kind == "ilm":
                expected["policy"]["phases"]["delete"]["min_age"] = "30d"
                expected["policy"]["_meta"]["retention"] = "30d"
            assert body == expected, name
    objects = kibana_objects()
    for o in objects:
        assert json.loads((tmp_path / "kibana" / o["type"] / f"{o['id']}.json").read_text()) == o
    lines = (tmp_path / "kibana" / "falconet.ndjson").read_text().splitlines()
    assert [json.loads(line) for line in lines] == objects
    requests = (tmp_path / "requests.txt").read_text().splitlines()
    assert requests[0] == "PUT /_ilm/policy/falconet elasticsearch/ilm/falconet.json"
    assert "PUT /_data_stream/logs-falconet.alerts-prod" in requests
    assert requests[-1] == ("POST /api/saved_objects/_import?overwrite=true kibana/falconet.ndjson "
                            "(multipart form field 'file')")
    assert r.lines[0] == "ILM policies: wrote elasticsearch/ilm/falconet.json"
    assert r.lines[-1] == f"Wrote {tmp_path / 'requests.txt'}"


def test_export_only_dashboards(tmp_path, capsys, monkeypatch):
    r = falconet(capsys, monkeypatch, "export", str(tmp_path), "--only", "dashboards")
    assert r.code == 0, r.err
    assert not (tmp_path / "elasticsearch").exists()
    assert (tmp_path / "kibana" / "falconet.ndjson").is_file()


def test_export_into_a_file_is_an_error(tmp_path, capsys, monkeypatch):
    target = tmp_path / "file"
    target.write_text("")
    r = falconet(capsys, monkeypatch, "export", str(target))
    assert r.code == 2
    assert "is a file" in r.err


@pytest.mark.skipif(not (SHARED / "tools").is_dir(), reason="../shared/tools is not beside the checkout")
def test_exported_assets_pass_the_offline_validators(tmp_path, capsys, monkeypatch):
    assert falconet(capsys, monkeypatch, "export", str(tmp_path), "--retention", "7d").code == 0
    es = subprocess.run([sys.executable, str(SHARED / "tools" / "es_spec_validate.py"), "bundle",
                         str(tmp_path / "elasticsearch"), "--strict"], capture_output=True, text=True)
    assert es.returncode == 0, es.stdout + es.stderr
    assert "0 error(s), 0 warning(s)" in es.stdout
    kb = subprocess.run([sys.executable, str(SHARED / "tools" / "kibana_ndjson_check.py"),
                         str(tmp_path / "kibana" / "falconet.ndjson"), "--strict"], capture_output=True, text=True)
    assert kb.returncode == 0, kb.stdout + kb.stderr
    assert "0 error(s), 0 warning(s)" in kb.stdout
