"""`falconet provision --only dashboards` against the in-suite Kibana (tests/fakes/elastic.py): the
import API calls and their NDJSON, existence checks, --overwrite, spaces, readiness and failures."""

from __future__ import annotations

import base64

import pytest
from fakes.elastic import FakeElasticsearch, FakeKibana

from .helpers import closed_port, falconet, kibana_objects

DASH = ("--only", "dashboards")


def data_view_and_rest() -> tuple[list[dict], list[dict]]:
    objects = kibana_objects()
    return [o for o in objects if o["type"] == "index-pattern"], [o for o in objects if o["type"] != "index-pattern"]


def test_first_run_imports_the_data_view_then_the_saved_objects(kibana, capsys, monkeypatch):
    r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH)
    assert r.code == 0, r.err
    assert kibana.calls() == [
        "GET /api/status",
        "POST /api/saved_objects/_bulk_get", "POST /api/saved_objects/_import",
        "POST /api/saved_objects/_bulk_get", "POST /api/saved_objects/_import",
    ]
    views, rest = data_view_and_rest()
    assert [(i["overwrite"], i["filename"], i["content_type"]) for i in kibana.imports] == \
        [(False, "falconet.ndjson", "application/ndjson")] * 2
    assert kibana.imports[0]["objects"] == views
    assert kibana.imports[1]["objects"] == rest         # the files, unchanged, in import order
    assert {r.headers.get("kbn-xsrf") for r in kibana.requests if r.method == "POST"} == {"falconet"}
    assert r.lines == [
        f"Kibana 8.15.0 at {kibana.url}",
        "Data view: created index-pattern/falconet-alerts",
        f"Saved objects: created {', '.join(o['type'] + '/' + o['id'] for o in rest)}",
    ]
    assert len(kibana.objects["default"]) == len(views) + len(rest)


def test_second_run_imports_nothing(kibana, capsys, monkeypatch):
    assert falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH).code == 0
    kibana.clear()
    r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH)
    assert r.code == 0, r.err
    assert kibana.calls() == ["GET /api/status", "POST /api/saved_objects/_bulk_get",
                              "POST /api/saved_objects/_bulk_get"]
    _, rest = data_view_and_rest()
    assert r.lines[1:] == ["Data view: nothing changed (1 already present)",
                           f"Saved objects: nothing changed ({len(rest)} already present)"]


def test_only_missing_objects_are_imported(kibana, capsys, monkeypatch):
    assert falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH).code == 0
    del kibana.objects["default"][("dashboard", "falconet-responses")]
    kibana.imports.clear()
    r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH)
    assert r.code == 0, r.err
    assert [[(o["type"], o["id"]) for o in i["objects"]] for i in kibana.imports] == \
        [[("dashboard", "falconet-responses")]]
    assert r.lines[-1].startswith("Saved objects: created dashboard/falconet-responses; unchanged ")


def test_overwrite_imports_everything_with_overwrite_true(kibana, capsys, monkeypatch):
    assert falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH).code == 0
    kibana.imports.clear()
    r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH, "--overwrite")
    assert r.code == 0, r.err
    views, rest = data_view_and_rest()
    assert [(i["overwrite"], i["objects"]) for i in kibana.imports] == [(True, views), (True, rest)]
    assert r.lines[1] == "Data view: replaced index-pattern/falconet-alerts"


def test_space_prefixes_the_saved_object_calls(capsys, monkeypatch):
    with FakeKibana(spaces=("default", "security")) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH, "--space", "security")
        assert r.code == 0, r.err
        assert kibana.calls()[:3] == ["GET /api/status", "POST /s/security/api/saved_objects/_bulk_get",
                                      "POST /s/security/api/saved_objects/_import"]
        assert kibana.objects["default"] == {}
        assert len(kibana.objects["security"]) == len(kibana_objects())


def test_unknown_space_is_named(kibana, capsys, monkeypatch):
    r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH, "--space", "nope")
    assert r.code == 1
    assert f"Kibana at {kibana.url} has no space 'nope'" in r.err
    assert "create the space first, or check --space" in r.err


def test_starting_kibana_is_waited_for_with_progress(capsys, monkeypatch):
    with FakeKibana(not_ready=2) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH, "--timeout", "20")
        assert r.code == 0, r.err
        assert kibana.calls()[:3] == ["GET /api/status"] * 3
    assert f"Waiting for Kibana at {kibana.url} (0s of 20s): Kibana server is not ready yet" in r.err


def test_kibana_that_never_gets_ready_times_out(capsys, monkeypatch):
    with FakeKibana(not_ready=1000) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH, "--timeout", "1")
    assert r.code == 4
    assert f"Kibana at {kibana.url} is not ready after 1s: Kibana server is not ready yet" in r.err


def test_refused_kibana_says_what_to_check(capsys, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    r = falconet(capsys, monkeypatch, "provision", *DASH, "--timeout", "0.5", env={"FALCONET_KIBANA_URL": url})
    assert r.code == 4
    assert f"Kibana at {url} is not ready after 0.5s: connection refused" in r.err
    assert "(is Kibana running, and is --kibana-url right?)" in r.err


def test_nothing_is_written_when_kibana_is_down(es, capsys, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--kibana-url", url, "--timeout", "0.5")
    assert r.code == 4
    assert [c for c in es.calls() if not c.startswith("GET ")] == []


def test_credentials_reach_kibana(capsys, monkeypatch):
    with FakeKibana(users={"elastic": "s3cret"}) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH,
                     env={"FALCONET_USERNAME": "elastic", "FALCONET_PASSWORD": "s3cret"})
        assert r.code == 0, r.err
        basic = "Basic " + base64.b64encode(b"elastic:s3cret").decode()
        assert {req.headers.get("authorization") for req in kibana.requests} == {basic}


def test_api_key_reaches_kibana(capsys, monkeypatch):
    encoded = base64.b64encode(b"falconet:secret-key").decode()
    with FakeKibana(api_keys={encoded}) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH,
                     env={"FALCONET_ES_API_KEY": "falconet:secret-key"})
        assert r.code == 0, r.err
        assert {req.headers.get("authorization") for req in kibana.requests} == {f"ApiKey {encoded}"}


def test_kibana_401(capsys, monkeypatch):
    with FakeKibana(users={"elastic": "s3cret"}) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH)
    assert r.code == 1
    assert f"Kibana at {kibana.url} rejected the credentials (401) on GET {kibana.url}/api/status" in r.err
    assert "give --username (its password in FALCONET_PASSWORD or --password-file) or an API key" in r.err


def test_kibana_403_names_the_saved_objects_privileges(capsys, monkeypatch):
    with FakeKibana(kibana_forbidden=True) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH)
    assert r.code == 1
    assert "Data view: permission denied for POST" in r.err
    assert "(403): Unable to bulk_get index-pattern" in r.err
    assert "the user needs the Kibana feature privilege All on Data View Management" in r.err


def test_import_errors_are_listed(kibana, capsys, monkeypatch):
    kibana.fail("POST /api/saved_objects/_import", 200, {
        "success": False, "successCount": 0, "warnings": [],
        "errors": [{"id": "falconet-top-rules", "type": "lens", "title": "Top rules", "meta": {"title": "Top rules"},
                    "error": {"type": "missing_references",
                              "references": [{"type": "index-pattern", "id": "falconet-alerts"}]}}]})
    r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH)
    assert r.code == 1
    assert ("Data view: Kibana at " + kibana.url + " imported 0 of 1 objects: lens/falconet-top-rules "
            "(Top rules): missing references index-pattern/falconet-alerts") in r.err


def test_old_kibana_is_refused(capsys, monkeypatch):
    with FakeKibana(version="8.7.1") as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH)
        assert kibana.calls() == ["GET /api/status"]
    assert r.code == 1
    assert "is version 8.7.1; Falconet's assets need 8.8.0 or later" in r.err


def test_kibana_over_https_with_the_test_ca(test_ca, capsys, monkeypatch):
    with FakeKibana(tls=test_ca.server_context()) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH,
                     "--ca-cert", str(test_ca.ca))
        assert r.code == 0, r.err
    with FakeKibana(tls=test_ca.server_context()) as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--kibana-url", kibana.url, *DASH, "--timeout", "30")
        assert kibana.calls() == []
    assert r.code == 4
    assert f"TLS with Kibana at {kibana.url} failed: certificate verify failed" in r.err


def test_full_run_checks_both_before_writing_then_installs_everything(capsys, monkeypatch):
    with FakeElasticsearch() as es, FakeKibana() as kibana:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--kibana-url", kibana.url)
        assert r.code == 0, r.err
        assert [line.split(":")[0] for line in r.lines] == [
            f"Elasticsearch 8.15.0 at {es.url.split(':')[0]}", f"Kibana 8.15.0 at {kibana.url.split(':')[0]}",
            "ILM policies", "Component templates", "Index templates", "Ingest pipelines", "Data streams",
            "Data view", "Saved objects"]


@pytest.mark.parametrize("space", ["Security", "a b", "x/y"])
def test_invalid_space_is_refused(capsys, monkeypatch, space):
    r = falconet(capsys, monkeypatch, "provision", *DASH, "--space", space)
    assert r.code == 1
    assert f"--space {space!r}: a Kibana space id is lower-case" in r.err
