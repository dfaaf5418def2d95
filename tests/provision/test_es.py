"""`falconet provision` against the in-suite Elasticsearch (tests/fakes/elastic.py): the exact calls,
the bodies, idempotency, --overwrite, credentials, TLS trust, and every way it can fail."""

from __future__ import annotations

import base64
import io

import pytest
from fakes.elastic import FakeElasticsearch, FakeKibana

from .helpers import asset, closed_port, es_files, falconet

ES_ONLY = ("--only", "ilm", "--only", "templates", "--only", "pipelines")


def expected_fresh_calls(namespace: str = "default") -> list[str]:
    """What a first run must do, in Beats `setup` order: GET, then PUT what is missing."""
    files = es_files()
    calls = ["GET /", "GET /_cluster/health"]
    for name in files["ilm"]:
        calls += [f"GET /_ilm/policy/{name}", f"PUT /_ilm/policy/{name}"]
    for name in files["component_templates"]:
        calls += [f"GET /_component_template/{name}", f"PUT /_component_template/{name}"]
    for name in files["index_templates"]:
        calls += [f"GET /_index_template/{name}", f"PUT /_index_template/{name}"]
    # falconet-alerts calls falconet-alerts-falco, so the callee goes in first.
    for name in ("falconet-alerts-falco", "falconet-alerts", "falconet-log"):
        calls += [f"GET /_ingest/pipeline/{name}", f"PUT /_ingest/pipeline/{name}"]
    for ds in (f"logs-falconet.alerts-{namespace}", f"logs-falconet.log-{namespace}"):
        calls += [f"GET /_data_stream/{ds}", f"PUT /_data_stream/{ds}"]
    return calls


def test_first_run_makes_exactly_the_setup_calls_with_the_asset_bodies(es, capsys, monkeypatch):
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY)
    assert r.code == 0, r.err
    assert es.calls() == expected_fresh_calls()
    assert set(es_files()["ingest_pipelines"]) == {"falconet-alerts-falco", "falconet-alerts", "falconet-log"}
    bodies = {req.path: req.json() for req in es.requests if req.method == "PUT" and req.body}
    for kind, prefix in (("ilm", "/_ilm/policy/"), ("component_templates", "/_component_template/"),
                         ("index_templates", "/_index_template/"), ("ingest_pipelines", "/_ingest/pipeline/")):
        for name in es_files()[kind]:
            assert bodies[prefix + name] == asset(f"{kind}/{name}.json"), name
    assert r.lines == [
        f"Elasticsearch 8.15.0 at {es.url}",
        "ILM policies: created falconet",
        "Component templates: created falconet.alerts@mappings, falconet.log@mappings, falconet@settings",
        "Index templates: created logs-falconet.alerts, logs-falconet.log",
        "Ingest pipelines: created falconet-alerts-falco, falconet-alerts, falconet-log",
        "Data streams: created logs-falconet.alerts-default, logs-falconet.log-default",
    ]
    ds = es.data_streams["logs-falconet.alerts-default"]
    assert (ds["template"], ds["ilm_policy"]) == ("logs-falconet.alerts", "falconet")


def test_second_run_writes_nothing(es, capsys, monkeypatch):
    assert falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY).code == 0
    es.clear()
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY)
    assert r.code == 0, r.err
    assert [c for c in es.calls() if not c.startswith("GET ")] == []
    assert r.lines[1:] == [
        "ILM policies: nothing changed (1 already present)",
        "Component templates: nothing changed (3 already present)",
        "Index templates: nothing changed (2 already present)",
        "Ingest pipelines: nothing changed (3 already present)",
        "Data streams: nothing changed (2 already present)",
    ]


def test_an_object_from_another_version_is_kept_unless_overwrite(es, capsys, monkeypatch):
    assert falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY).code == 0
    es.pipelines["falconet-alerts"]["_meta"]["version"] = "0.0.9"
    es.index_templates["logs-falconet.log"].pop("_meta")
    es.clear()
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY)
    assert r.code == 0, r.err
    assert "PUT" not in " ".join(es.calls())
    assert ("Index templates: unchanged 1; kept logs-falconet.log (not installed by Falconet) "
            "(--overwrite replaces them)") in r.lines
    assert ("Ingest pipelines: unchanged 2; kept falconet-alerts (installed with version 0.0.9) "
            "(--overwrite replaces them)") in r.lines

    es.clear()
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY, "--overwrite")
    assert r.code == 0, r.err
    puts = [c for c in es.calls() if c.startswith("PUT ")]
    assert puts == [c for c in expected_fresh_calls() if c.startswith("PUT ") and "_data_stream" not in c]
    assert es.pipelines["falconet-alerts"] == asset("ingest_pipelines/falconet-alerts.json")
    assert "Ingest pipelines: replaced falconet-alerts-falco, falconet-alerts, falconet-log" in r.lines
    assert "Data streams: nothing changed (2 already present)" in r.lines


def test_retention_and_namespace_are_filled_in(es, capsys, monkeypatch):
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY,
                 "--retention", "30d", "--namespace", "prod")
    assert r.code == 0, r.err
    assert es.calls() == expected_fresh_calls("prod")
    policy = es.ilm["falconet"]["policy"]
    expected = asset("ilm/falconet.json")["policy"]
    expected["phases"]["delete"]["min_age"] = "30d"
    expected["_meta"]["retention"] = "30d"
    assert policy == expected
    assert set(es.data_streams) == {"logs-falconet.alerts-prod", "logs-falconet.log-prod"}

    # Another retention is a different policy: kept without --overwrite, saying what is there.
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--only", "ilm", "--retention", "7d")
    assert r.lines[-1] == ("ILM policies: kept falconet (installed with version 0.1.0, retention 30d) "
                           "(--overwrite replaces them)")
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--only", "ilm", "--retention", "7d",
                 "--overwrite")
    assert r.lines[-1] == "ILM policies: replaced falconet"
    assert es.ilm["falconet"]["policy"]["phases"]["delete"]["min_age"] == "7d"


@pytest.mark.parametrize("namespace", ["Prod", "eu-west", ""])
def test_invalid_namespace_is_refused_before_any_call(es, capsys, monkeypatch, namespace):
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--namespace", namespace)
    assert r.code == 1
    assert f"--namespace {namespace!r}" in r.err
    assert es.calls() == []


def test_basic_auth_is_sent_on_every_call(capsys, monkeypatch):
    with FakeElasticsearch(users={"elastic": "s3cret"}) as es:
        r = falconet(capsys, monkeypatch, "provision", *ES_ONLY,
                     env={"FALCONET_ES_URL": es.url, "FALCONET_USERNAME": "elastic", "FALCONET_PASSWORD": "s3cret"})
        assert r.code == 0, r.err
        expected = "Basic " + base64.b64encode(b"elastic:s3cret").decode()
        assert {req.headers.get("authorization") for req in es.requests} == {expected}


def test_wrong_password_is_a_401_with_what_to_check(capsys, monkeypatch):
    with FakeElasticsearch(users={"elastic": "s3cret"}) as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--username", "elastic", *ES_ONLY,
                     env={"FALCONET_PASSWORD": "wrong"})
    assert r.code == 1
    assert r.err.startswith(f"falconet: error: Elasticsearch at {es.url} rejected the credentials (401) on GET /")
    assert "check --username and its password (FALCONET_PASSWORD / --password-file)" in r.err
    assert "Traceback" not in r.err


@pytest.mark.parametrize("given", ["ZmFsY29uZXQ6c2VjcmV0LWtleQ==", "falconet:secret-key"])
def test_api_key_is_sent_encoded(capsys, monkeypatch, given):
    encoded = base64.b64encode(b"falconet:secret-key").decode()
    with FakeElasticsearch(api_keys={encoded}) as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--only", "ilm",
                     env={"FALCONET_ES_API_KEY": given})
        assert r.code == 0, r.err
        assert {req.headers.get("authorization") for req in es.requests} == {f"ApiKey {encoded}"}


def test_bad_api_key_names_the_option(capsys, monkeypatch):
    with FakeElasticsearch(api_keys={"Z29vZA=="}) as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--only", "ilm",
                     env={"FALCONET_ES_API_KEY": "YmFk"})
    assert r.code == 1
    assert "rejected the credentials (401)" in r.err
    assert "check the API key in FALCONET_ES_API_KEY / --api-key-file" in r.err


def test_api_key_and_password_together_are_refused(capsys, monkeypatch):
    r = falconet(capsys, monkeypatch, "provision", "--only", "ilm", "--es-url", "http://127.0.0.1:1",
                 "--username", "u", env={"FALCONET_ES_API_KEY": "x", "FALCONET_PASSWORD": "p"})
    assert r.code == 1
    assert "give either an API key or --username with a password, not both" in r.err


ALL = {"monitor", "manage_ilm", "manage_index_templates", "manage_pipeline", "create_index",
       "view_index_metadata"}


@pytest.mark.parametrize("missing, failing_call, privilege", [
    ("monitor", "GET /", "the cluster privilege monitor"),
    ("manage_ilm", "GET /_ilm/policy/falconet", "the cluster privilege manage_ilm"),
    ("manage_index_templates", "PUT /_component_template/falconet.alerts@mappings",
     "the cluster privilege manage_index_templates"),
    ("manage_pipeline", "GET /_ingest/pipeline/falconet-alerts-falco", "the cluster privilege manage_pipeline"),
    ("create_index", "PUT /_data_stream/logs-falconet.alerts-default",
     "the index privileges view_index_metadata and create_index on logs-falconet.*"),
])
def test_a_403_names_the_missing_privilege(capsys, monkeypatch, missing, failing_call, privilege):
    with FakeElasticsearch(privileges=ALL - {missing}) as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY)
        assert es.calls()[-1] == failing_call
    assert r.code == 1
    assert f"permission denied for {failing_call} at {es.url} (403)" in r.err
    assert f"(the user needs {privilege})" in r.err
    assert "this action is granted by" in r.err     # Elasticsearch's own reason is kept


def test_refused_connection_waits_then_says_what_to_check(capsys, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    r = falconet(capsys, monkeypatch, "provision", "--es-url", url, "--only", "ilm", "--timeout", "1")
    assert r.code == 4
    assert r.err.strip().splitlines()[-1] == (
        f"falconet: error: Elasticsearch at {url} is not ready after 1s: connection refused "
        "(is Elasticsearch running, and is --es-url right?)")
    assert f"Waiting for Elasticsearch at {url}" in r.err


def test_red_cluster_is_waited_for(capsys, monkeypatch):
    with FakeElasticsearch(health="red") as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--only", "ilm", "--timeout", "1")
        assert "PUT /_ilm/policy/falconet" not in es.calls()
        assert es.calls().count("GET /_cluster/health") >= 1
    assert r.code == 4
    assert "is not ready after 1s: cluster health is red" in r.err


def test_old_elasticsearch_is_refused(capsys, monkeypatch):
    with FakeElasticsearch(version="7.17.9") as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY)
        assert es.calls() == ["GET /"]
    assert r.code == 1
    assert f"Elasticsearch at {es.url} is version 7.17.9; Falconet's assets need 8.8.0 or later" in r.err


def test_a_server_that_is_not_elasticsearch_is_refused(capsys, monkeypatch):
    with FakeKibana() as not_es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", not_es.url, "--only", "ilm", "--timeout", "1")
    assert r.code == 1
    assert f"{not_es.url} is not Elasticsearch" in r.err


def test_a_refused_put_names_the_call_and_the_file(es, capsys, monkeypatch):
    es.fail("PUT /_ingest/pipeline/falconet-alerts", 400, {
        "error": {"root_cause": [{"type": "parse_exception", "reason": "[field] required property is missing"}],
                  "type": "parse_exception", "reason": "[field] required property is missing"}, "status": 400})
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *ES_ONLY)
    assert r.code == 1
    assert ("Ingest pipelines: Elasticsearch refused PUT /_ingest/pipeline/falconet-alerts at "
            f"{es.url} (HTTP 400) (body from ") in r.err
    assert "ingest_pipelines/falconet-alerts.json): [field] required property is missing" in r.err
    assert "PUT /_data_stream" not in " ".join(es.calls())     # stops at the failing step


# -- TLS ----------------------------------------------------------------------------------------

def test_https_with_the_ca_that_signed_the_server(test_ca, capsys, monkeypatch):
    with FakeElasticsearch(tls=test_ca.server_context()) as es:
        assert es.url.startswith("https://127.0.0.1:")
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--ca-cert", str(test_ca.ca),
                     "--only", "ilm")
        assert r.code == 0, r.err
        assert "PUT /_ilm/policy/falconet" in es.calls()
    assert "--insecure" not in r.err


@pytest.mark.parametrize("which", ["none", "other"])
def test_https_with_an_untrusted_certificate_fails_at_once(test_ca, capsys, monkeypatch, which):
    args = ["--ca-cert", str(test_ca.other_ca)] if which == "other" else []
    with FakeElasticsearch(tls=test_ca.server_context()) as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, *args, "--only", "ilm",
                     "--timeout", "30")
        assert es.calls() == []      # the handshake failed: no request reached the server
    assert r.code == 4
    assert f"TLS with Elasticsearch at {es.url} failed: certificate verify failed" in r.err
    hint = (f"is {test_ca.other_ca} the CA that signed the server's certificate?" if which == "other"
            else "pass the CA that signed its certificate with --ca-cert")
    assert hint in r.err


def test_insecure_skips_verification_and_says_so(test_ca, capsys, monkeypatch):
    with FakeElasticsearch(tls=test_ca.server_context()) as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--insecure", "--only", "ilm")
        assert r.code == 0, r.err
        assert "PUT /_ilm/policy/falconet" in es.calls()
    assert "warning: --insecure: TLS certificates are not verified" in r.err


def test_missing_ca_file_is_named(es, capsys, monkeypatch, tmp_path):
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url.replace("http:", "https:"),
                 "--ca-cert", str(tmp_path / "nope.pem"), "--only", "ilm")
    assert r.code == 1
    assert f"--ca-cert {tmp_path / 'nope.pem'}: no such file" in r.err


# ---------------------------------------------------------------------------------------------
# Credentials (issue 14, finding 12)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--password", "--api-key"])
def test_a_secret_on_the_command_line_is_refused_before_anything_is_sent(es, capsys, monkeypatch, option):
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--username", "elastic", option, "s3cret",
                 *ES_ONLY)
    assert r.code == 2 and "visible to every local user (ps)" in r.err
    assert es.calls() == []


def test_the_password_from_a_file_or_standard_input(tmp_path, capsys, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    with FakeElasticsearch(users={"elastic": "s3cret"}) as es:
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--username", "elastic",
                     "--password-file", str(pw), *ES_ONLY)
        assert r.code == 0, r.err
        monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
        r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--username", "elastic",
                     "--password-file", "-", *ES_ONLY)
        assert r.code == 0, r.err


def test_without_a_password_and_no_terminal_the_username_is_refused(es, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--username", "elastic", *ES_ONLY)
    assert r.code == 2 and "needs a password: set FALCONET_PASSWORD" in r.err
    assert es.calls() == []


def test_credentials_are_never_sent_to_a_kibana_url_nobody_gave(es, capsys, monkeypatch):
    """The review: without --kibana-url, the Elasticsearch credentials went in clear to
    http://localhost:5601, where anyone on the host may listen."""
    r = falconet(capsys, monkeypatch, "provision", "--es-url", es.url, "--username", "elastic",
                 env={"FALCONET_PASSWORD": "s3cret"})
    assert r.code == 2
    assert "credentials are sent only to URLs you name: give --kibana-url (or FALCONET_KIBANA_URL)" in r.err
    assert es.calls() == []
    r = falconet(capsys, monkeypatch, "provision", *ES_ONLY, env={"FALCONET_ES_API_KEY": "k"})
    assert r.code == 2 and "give --es-url (or FALCONET_ES_URL)" in r.err


def test_credentials_in_a_url_are_used_and_never_shown(capsys, monkeypatch):
    with FakeElasticsearch(users={"elastic": "s3cret"}) as es:
        with_creds = es.url.replace("http://", "http://elastic:s3cret@")
        r = falconet(capsys, monkeypatch, "provision", "--es-url", with_creds, *ES_ONLY)
        assert r.code == 0, r.err
        assert f"at {es.url}" in r.out
        wrong = es.url.replace("http://", "http://elastic:wr0ng-pw@")
        r = falconet(capsys, monkeypatch, "provision", "--es-url", wrong, *ES_ONLY)
    assert r.code == 1 and "rejected the credentials (401)" in r.err
    assert "wr0ng-pw" not in r.out + r.err and "s3cret" not in r.out + r.err
