"""The Kubernetes actions against tests/fakes/kube_api.py: the exact API calls, and failures on record."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from sensor.alert import Priority
from sensor.response.kube import POLICY_NAME, quarantine_policy
from sensor.response.spec import ActionSpec, parse_actions
from sensor.response.worker import ResponseWorker
from tests.fakes.kube_api import FakeKubeAPI

from .helpers import Records, alert, response_settings

POD = {"k8s.ns.name": "shop", "k8s.pod.name": "web-7d4b9c-x2x9z", "proc.pid": 4242,
       "proc.name": "cat", "container.id": "0123456789ab"}


@pytest.fixture
def api():
    with FakeKubeAPI() as fake:
        fake.add_pod("shop", "web-7d4b9c-x2x9z")
        fake.add_pod("kube-system", "coredns-5d78c9869d-abcde")
        yield fake


def specs(tmp_path: Path, do: str, with_: str = "{}", extra: str = "") -> list[ActionSpec]:
    settings = response_settings(tmp_path, f"""
response:
  enabled: true
  actions:
    - name: act
      match: {{rules: ["Read sensitive*"]}}
      do: {do}
      with: {with_}
{extra}
""")
    return parse_actions(settings)


def run_one(tmp_path: Path, api: FakeKubeAPI, do: str, fields: dict, with_: str = "{}",
            dry_run: bool = False, source: str = "syscall"):
    records = Records()
    worker = ResponseWorker(specs(tmp_path, do, with_), records, dry_run=dry_run,
                            exclude_namespaces=["kube-system", "kube-public"],
                            kubeconfig=str(api.kubeconfig(tmp_path / "kubeconfig")))
    worker.start()
    worker.submit(alert(fields, source=source))
    worker.stop(timeout=15)
    assert len(records.items) == 1, records.items
    return records.items[0]


def response_of(rec):
    return rec.extra["falconet"]["response"]


def test_delete_pod_sends_grace_period_in_query_and_body(tmp_path, api):
    rec = run_one(tmp_path, api, "k8s_delete_pod", POD, "{grace_period_seconds: 5}")
    (call,) = api.calls("DELETE")
    assert call.path == "/api/v1/namespaces/shop/pods/web-7d4b9c-x2x9z"
    assert call.query["gracePeriodSeconds"] == ["5"]
    assert call.body["gracePeriodSeconds"] == 5
    assert call.body.get("kind", "DeleteOptions") == "DeleteOptions"
    assert api.state.deleted == [("shop", "web-7d4b9c-x2x9z")]
    assert response_of(rec)["result"] == "done"
    assert rec.extra["event"]["outcome"] == "success"
    assert rec.extra["event"]["category"] == ["configuration"]
    assert rec.extra["event"]["type"] == ["deletion"]
    assert response_of(rec)["target"] == "pod shop/web-7d4b9c-x2x9z"
    assert "grace period 5s" in rec.output


def test_label_pod_is_a_strategic_merge_patch_of_the_labels(tmp_path, api):
    rec = run_one(tmp_path, api, "k8s_label_pod", POD, "{labels: {falconet/quarantine: true, team: sec}}")
    (call,) = api.calls("PATCH")
    assert call.path == "/api/v1/namespaces/shop/pods/web-7d4b9c-x2x9z"
    assert call.headers["content-type"] == "application/strategic-merge-patch+json"
    assert call.body == {"metadata": {"labels": {"falconet/quarantine": "true", "team": "sec"}}}
    labels = api.state.pods[("shop", "web-7d4b9c-x2x9z")]["metadata"]["labels"]
    assert labels == {"app": "web-7d4b9c-x2x9z", "falconet/quarantine": "true", "team": "sec"}
    assert response_of(rec)["result"] == "done"


def test_isolate_creates_a_valid_deny_all_policy_then_labels_the_pod(tmp_path, api):
    rec = run_one(tmp_path, api, "k8s_isolate_pod", POD)
    post, patch = api.calls("POST"), api.calls("PATCH")
    assert [c.path for c in post] == ["/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies"]
    assert [c.path for c in patch] == ["/api/v1/namespaces/shop/pods/web-7d4b9c-x2x9z"]
    # The policy exists before the label that brings the pod under it.
    assert api.requests.index(post[0]) < api.requests.index(patch[0])
    body = post[0].body
    kubernetes_validate.validate(body, "1.29.0", strict=True)
    kubernetes_validate.validate(body, kubernetes_validate.latest_version(), strict=True)
    assert body["spec"]["podSelector"] == {"matchLabels": {"falconet/quarantine": "true"}}
    assert sorted(body["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in body["spec"] and "egress" not in body["spec"]
    assert patch[0].headers["content-type"] == "application/strategic-merge-patch+json"
    assert patch[0].body == {"metadata": {"labels": {"falconet/quarantine": "true"}}}
    assert response_of(rec)["result"] == "done"
    assert rec.extra["event"]["category"] == ["configuration", "network"]


def test_isolate_restores_an_existing_policy_to_deny_all(tmp_path, api):
    loose = quarantine_policy("shop")
    loose["spec"]["ingress"] = [{"from": [{"podSelector": {}}]}]
    api.state.policies[("shop", POLICY_NAME)] = loose
    rec = run_one(tmp_path, api, "k8s_isolate_pod", POD)
    np_patch = [c for c in api.calls("PATCH") if "networkpolicies" in c.path]
    assert len(np_patch) == 1
    assert np_patch[0].headers["content-type"] == "application/merge-patch+json"
    policy = api.state.policies[("shop", POLICY_NAME)]
    kubernetes_validate.validate(policy, "1.29.0", strict=True)
    assert "ingress" not in policy["spec"]
    assert response_of(rec)["result"] == "done"


def test_quarantine_policy_is_valid_for_supported_kubernetes_versions():
    for version in ("1.27.0", "1.29.0", "1.31.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(quarantine_policy("ns1"), version, strict=True)


@pytest.mark.parametrize("do", ["k8s_delete_pod", "k8s_label_pod", "k8s_isolate_pod"])
def test_excluded_namespace_is_untouched(tmp_path, api, do):
    fields = {**POD, "k8s.ns.name": "kube-system", "k8s.pod.name": "coredns-5d78c9869d-abcde"}
    rec = run_one(tmp_path, api, do, fields)
    assert api.requests == []
    assert response_of(rec)["reason"] == "excluded_namespace"
    assert rec.extra["event"]["outcome"] == "unknown"
    assert ("kube-system", "coredns-5d78c9869d-abcde") in api.state.pods


@pytest.mark.parametrize("do", ["k8s_delete_pod", "k8s_label_pod", "k8s_isolate_pod"])
def test_dry_run_makes_no_call(tmp_path, api, do):
    rec = run_one(tmp_path, api, do, POD, dry_run=True)
    assert api.requests == []
    assert response_of(rec)["reason"] == "dry_run"
    assert response_of(rec)["dry_run"] is True
    assert rec.output.startswith("Falconet response skipped")
    assert "would" in rec.output


def test_forbidden_is_a_failure_naming_the_permission(tmp_path, api):
    api.fail("DELETE", r"/pods/", 403)
    rec = run_one(tmp_path, api, "k8s_delete_pod", POD)
    assert response_of(rec)["result"] == "failed"
    assert rec.priority is Priority.ERROR
    assert rec.extra["event"]["outcome"] == "failure"
    assert "HTTP 403" in rec.output
    assert 'cannot delete resource "pods"' in rec.output
    assert "response-rbac.yaml" in rec.output
    assert ("shop", "web-7d4b9c-x2x9z") in api.state.pods


def test_missing_pod_is_a_failure(tmp_path, api):
    fields = {**POD, "k8s.pod.name": "gone-already"}
    rec = run_one(tmp_path, api, "k8s_label_pod", fields)
    assert response_of(rec)["result"] == "failed"
    assert "HTTP 404" in rec.output and 'pods "gone-already" not found' in rec.output


def test_timeout_is_a_failure_after_one_attempt(tmp_path, api):
    api.stall("DELETE", r"/pods/", 3.0)
    rec = run_one(tmp_path, api, "k8s_delete_pod", POD, "{timeout: 0.5}")
    assert response_of(rec)["result"] == "failed"
    assert "timed out" in rec.output.lower()
    assert len(api.calls("DELETE")) == 1


def test_policy_failure_leaves_the_pod_unlabelled(tmp_path, api):
    api.fail("POST", r"/networkpolicies$", 403)
    rec = run_one(tmp_path, api, "k8s_isolate_pod", POD)
    assert response_of(rec)["result"] == "failed"
    assert "networkpolicy shop/falconet-quarantine" in rec.output
    assert "the pod was not labelled" in rec.output
    assert api.calls("PATCH") == []


OPTED_IN = '{audit_rules: ["Read sensitive*"]}'


def test_audit_alert_targets_the_requests_pod(tmp_path, api):
    fields = {"ka.target.resource": "pods", "ka.target.namespace": "shop",
              "ka.target.name": "web-7d4b9c-x2x9z", "ka.verb": "patch", "ka.response.code": "200"}
    run_one(tmp_path, api, "k8s_label_pod", fields, with_=OPTED_IN, source="k8s_audit")
    assert [c.path for c in api.calls("PATCH")] == ["/api/v1/namespaces/shop/pods/web-7d4b9c-x2x9z"]


def test_audit_create_without_target_name_uses_the_response_name(tmp_path, api):
    fields = {"ka.target.resource": "pods", "ka.target.namespace": "shop",
              "ka.resp.name": "web-7d4b9c-x2x9z", "ka.verb": "create", "ka.response.code": "201"}
    run_one(tmp_path, api, "k8s_delete_pod", fields, with_=OPTED_IN, source="k8s_audit")
    assert api.state.deleted == [("shop", "web-7d4b9c-x2x9z")]


def test_audit_alert_about_another_resource_has_no_target(tmp_path, api):
    fields = {"ka.target.resource": "deployments", "ka.target.namespace": "shop",
              "ka.target.name": "web", "ka.response.code": "200"}
    rec = run_one(tmp_path, api, "k8s_delete_pod", fields, with_=OPTED_IN, source="k8s_audit")
    assert api.requests == []
    assert response_of(rec)["reason"] == "no_target"
    assert "deployments" in rec.output


def test_host_process_alert_has_no_pod(tmp_path, api):
    rec = run_one(tmp_path, api, "k8s_delete_pod", {"proc.pid": 1234, "container.id": "host"})
    assert api.requests == []
    assert response_of(rec)["reason"] == "no_target"


def test_unreadable_kubeconfig_is_a_config_error(tmp_path):
    from sensor.errors import ConfigError

    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as err:
        ResponseWorker(specs(tmp_path, "k8s_delete_pod"), Records(), kubeconfig=str(missing))
    assert str(missing) in str(err.value)


# ---------------------------------------------------------------------------------------------
# Attacks from the security review (issue 14, findings 2 and 14)
# ---------------------------------------------------------------------------------------------

MALLORY = {"ka.target.resource": "pods", "ka.target.namespace": "prod", "ka.target.name": "payments-db-0",
           "ka.verb": "delete", "ka.user.name": "mallory", "ka.response.code": "403",
           "ka.auth.decision": "forbid", "ka.stage": "ResponseComplete"}


@pytest.fixture
def prod(api):
    api.add_pod("prod", "payments-db-0")
    return api


def test_a_denied_request_by_mallory_never_deletes_the_pod_it_names(tmp_path, prod):
    rec = run_one(tmp_path, prod, "k8s_delete_pod", MALLORY, with_=OPTED_IN, source="k8s_audit")
    assert prod.requests == [] and ("prod", "payments-db-0") in prod.state.pods
    assert response_of(rec)["reason"] == "failed_request"
    assert "the request by mallory failed (HTTP 403)" in rec.output


@pytest.mark.parametrize(("change", "text"), [
    ({"ka.response.code": "500", "ka.auth.decision": "allow"}, "failed (HTTP 500)"),
    ({"ka.response.code": "200", "ka.auth.decision": "forbid"}, "was denied by authorization"),
    ({"ka.response.code": None, "ka.auth.decision": None, "ka.stage": "RequestReceived"},
     "has no response code yet (stage RequestReceived)"),
])
def test_a_failed_denied_or_unanswered_request_is_not_acted_on(tmp_path, prod, change, text):
    fields = {k: v for k, v in {**MALLORY, **change}.items() if v is not None}
    rec = run_one(tmp_path, prod, "k8s_isolate_pod", fields, with_=OPTED_IN, source="k8s_audit")
    assert prod.requests == []
    assert response_of(rec)["reason"] == "failed_request" and text in rec.output


def test_audit_alerts_are_acted_on_only_for_the_rules_an_action_opts_in(tmp_path, prod):
    fields = {**MALLORY, "ka.response.code": "200", "ka.auth.decision": "allow"}
    rec = run_one(tmp_path, prod, "k8s_delete_pod", fields, source="k8s_audit")       # no audit_rules
    assert prod.requests == [] and response_of(rec)["reason"] == "audit_not_opted_in"
    rec = run_one(tmp_path, prod, "k8s_delete_pod", fields, with_='{audit_rules: ["Other rule"]}',
                  source="k8s_audit")
    assert prod.requests == [] and response_of(rec)["reason"] == "audit_not_opted_in"
    run_one(tmp_path, prod, "k8s_delete_pod", fields, with_=OPTED_IN, source="k8s_audit")
    assert prod.state.deleted == [("prod", "payments-db-0")]


def test_naming_k8s_audit_in_match_sources_without_audit_rules_is_a_config_error(tmp_path):
    from sensor.errors import ConfigError

    settings = response_settings(tmp_path, """
response:
  enabled: true
  actions:
    - name: act
      match: {sources: [k8s_audit]}
      do: k8s_delete_pod
""")
    with pytest.raises(ConfigError, match=r"falconet.yaml:6: response action 'act': k8s_delete_pod acts on audit "
                                          r"alerts only for the rules named in with.audit_rules"):
        parse_actions(settings)


@pytest.mark.parametrize(("ns", "name"), [
    ("prod", ".."), ("prod", "a/b"), ("prod", ""), ("..", "web"), ("prod", "Web"), ("prod", "web%2F.."),
    ("prod", "web?x=1"), ("pr od", "web"), ("prod", "a" * 254), ("p" * 64, "web")])
def test_pod_names_kubernetes_would_refuse_are_never_put_in_an_api_path(tmp_path, api, ns, name):
    fields = {"k8s.ns.name": ns, "k8s.pod.name": name, "proc.pid": 4242, "container.id": "0123456789ab"}
    rec = run_one(tmp_path, api, "k8s_delete_pod", fields)
    assert api.requests == []
    assert response_of(rec)["reason"] in ("invalid_target", "no_target")
    if name and ns:
        assert response_of(rec)["reason"] == "invalid_target"
