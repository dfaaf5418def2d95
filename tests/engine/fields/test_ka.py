"""ka.* and the k8s_audit evt.* fields: values as Falco's k8saudit plugin extracts them."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import compat_file

from sensor.engine.fields import registry
from sensor.sources.k8s_audit.decode import events_from_json

DATA = Path(__file__).resolve().parents[2] / "data" / "k8s_audit"
SAMPLE = {json.loads(line)["auditID"]: json.loads(line)
          for line in (DATA / "events.jsonl").read_text().splitlines()}
NAMES = {item["name"]: item["auditID"] for item in yaml.safe_load((DATA / "expected.yaml").read_text())}


def ev(name: str, **changes: Any):
    obj = copy.deepcopy(SAMPLE[NAMES[name]])
    obj.update(changes)
    [out] = events_from_json(obj)
    return out


def pod(spec: dict[str, Any], **top: Any):
    obj = {"kind": "Event", "auditID": "a1", "stage": "ResponseComplete",
           "stageTimestamp": "2026-03-14T09:26:53.589793Z",
           "objectRef": {"resource": "pods", "namespace": "default", "name": "p"},
           "requestObject": {"kind": "Pod", "spec": spec}, **top}
    return events_from_json(obj)[0]


# The plugin's list fields (fields.go IsList), checked against our table.
PLUGIN_LISTS = {
    "ka.user.groups", "ka.req.binding.subjects", "ka.req.pod.containers.image",
    "ka.req.pod.containers.image.repository", "ka.req.pod.containers.host_port",
    "ka.req.pod.containers.privileged", "ka.req.pod.containers.allow_privilege_escalation",
    "ka.req.pod.containers.read_only_fs", "ka.req.pod.containers.run_as_user",
    "ka.req.pod.containers.eff_run_as_user", "ka.req.pod.containers.run_as_group",
    "ka.req.pod.containers.eff_run_as_group", "ka.req.pod.containers.proc_mount", "ka.req.role.rules",
    "ka.req.role.rules.apiGroups", "ka.req.role.rules.nonResourceURLs", "ka.req.role.rules.verbs",
    "ka.req.role.rules.resources", "ka.req.pod.supplemental_groups", "ka.req.pod.containers.add_capabilities",
    "ka.req.service.ports", "ka.req.pod.volumes.hostpath", "ka.req.pod.volumes.flexvolume_driver",
    "ka.req.pod.volumes.volume_type", "ka.sourceips", "ka.req.pod.initContainers.image",
    "ka.req.pod.initContainers.privileged", "ka.req.pod.ephemeralContainers.image",
    "ka.req.pod.ephemeralContainers.privileged",
}
PLUGIN_SCALARS = {
    "ka.auditid", "ka.stage", "ka.auth.decision", "ka.auth.reason", "ka.user.name", "ka.impuser.name",
    "ka.verb", "ka.uri", "ka.uri.param", "ka.target.name", "ka.target.namespace", "ka.target.resource",
    "ka.target.subresource", "ka.req.binding.role", "ka.req.binding.subject.has_name",
    "ka.req.configmap.name", "ka.req.configmap.obj", "ka.req.container.image",
    "ka.req.container.image.repository", "ka.req.pod.host_ipc", "ka.req.pod.host_network",
    "ka.req.container.host_network", "ka.req.pod.host_pid", "ka.req.container.privileged",
    "ka.req.pod.run_as_user", "ka.req.pod.run_as_group", "ka.req.pod.fs_group", "ka.req.volume.hostpath",
    "ka.req.service.type", "ka.resp.name", "ka.response.code", "ka.response.reason", "ka.useragent",
}


def test_the_table_has_every_plugin_field_with_its_type_and_list_flag() -> None:
    reg = registry("k8s_audit")
    for name in PLUGIN_LISTS | PLUGIN_SCALARS:
        f = reg[name]
        assert f.type == "CHARBUF", name
        assert f.is_list == (name in PLUGIN_LISTS), name
        assert f.extract is not None, name
    assert reg["ka.uri.param"].arg == "key" and reg["ka.uri.param"].arg_required
    assert reg["ka.req.pod.containers.image"].arg == "index" and not reg["ka.req.pod.containers.image"].arg_required


def test_every_ka_field_the_official_rules_use_exists() -> None:
    text = compat_file("k8s_audit_rules.yaml").read_text()
    used = set(re.findall(r"\b(ka\.[A-Za-z_.]+[A-Za-z_])", text))
    assert used and used <= set(registry("k8s_audit")), used - set(registry("k8s_audit"))


def test_request_and_identity_fields() -> None:
    e = ev("denied-secret-list")
    assert e.value("ka.auditid") == NAMES["denied-secret-list"]
    assert e.value("ka.stage") == "ResponseComplete"
    assert e.value("ka.verb") == "list"
    assert e.value("ka.uri") == "/api/v1/namespaces/kube-system/secrets"
    assert e.value("ka.user.name") == "mallory@example.com"
    assert e.value("ka.user.groups") == ["developers", "system:authenticated"]
    assert e.value("ka.auth.decision") == "forbid"
    assert e.value("ka.auth.reason") == ""
    assert e.value("ka.target.resource") == "secrets"
    assert e.value("ka.target.namespace") == "kube-system"
    assert e.value("ka.target.name") is None
    assert e.value("ka.target.subresource") is None
    assert e.value("ka.response.code") == "403"                 # numbers as text, as the plugin
    assert e.value("ka.response.reason") == "Forbidden"
    assert e.value("ka.sourceips") == ["198.51.100.23"]
    assert e.value("ka.sourceips", "0") == ["198.51.100.23"]
    assert e.value("ka.sourceips", "1") is None
    assert e.value("ka.useragent") == "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"
    assert e.value("ka.impuser.name") is None
    imp = ev("denied-secret-list", impersonatedUser={"username": "system:serviceaccount:ci:deployer"})
    assert imp.value("ka.impuser.name") == "system:serviceaccount:ci:deployer"


def test_uri_parameters() -> None:
    e = ev("exec-pod")
    assert e.value("ka.uri.param", "command") == "/bin/sh"          # the first of several, decoded
    assert e.value("ka.uri.param", "container") == "web"
    assert e.value("ka.uri.param", "tty") == "true"
    assert e.value("ka.uri.param", "nope") is None
    assert e.value("ka.target.subresource") == "exec"
    assert ev("secret-get").value("ka.uri.param", "command") is None


def test_pod_container_fields() -> None:
    e = ev("pod-privileged-init")
    assert e.value("ka.req.pod.containers.image") == ["nginx:1.27"]
    assert e.value("ka.req.pod.containers.privileged") is None       # no securityContext: no value
    assert e.value("ka.req.pod.initContainers.image") == ["docker.io/library/busybox:1.36"]
    assert e.value("ka.req.pod.initContainers.image.repository") == ["docker.io/library/busybox"]
    assert e.value("ka.req.pod.initContainers.privileged") == ["true"]
    assert e.value("ka.req.pod.initContainers.name") == ["sysctl"]
    assert e.value("ka.req.pod.ephemeralContainers.image") is None
    assert e.value("ka.resp.name") == "sysctl-tuner"
    assert e.value("ka.req.pod.containers.host_port") == ["80"]       # containerPort when no hostPort
    eph = ev("ephemeral-container")
    assert eph.value("ka.req.pod.ephemeralContainers.image") == ["docker.io/library/busybox:1.36"]
    assert eph.value("ka.req.pod.ephemeralContainers.name") == ["debugger-8xk2p"]


def test_container_index_argument_keeps_one_container() -> None:
    e = pod({"containers": [{"name": "a", "image": "nginx:1.27"},
                            {"name": "b", "image": "registry.example.com:5000/team/app:2@sha256:ab12"}]})
    assert e.value("ka.req.pod.containers.image", "1") == ["registry.example.com:5000/team/app:2@sha256:ab12"]
    assert e.value("ka.req.pod.containers.image.repository") == ["nginx", "registry.example.com:5000/team/app"]
    assert e.value("ka.req.pod.containers.image", "2") is None
    assert e.value("ka.req.pod.containers.image", "x") is None
    assert e.value("ka.req.container.image") == "nginx:1.27"
    assert e.value("ka.req.container.image.repository") == "nginx"


def test_security_context_fields() -> None:
    e = pod({"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                                 "supplementalGroups": [4000, 5000]},
             "containers": [
                 {"name": "a", "image": "a", "securityContext": {
                     "runAsUser": 0, "allowPrivilegeEscalation": True, "readOnlyRootFilesystem": False,
                     "procMount": "Unmasked", "capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]},
                     "privileged": False}},
                 {"name": "b", "image": "b"}]})
    assert e.value("ka.req.pod.run_as_user") == "1000"
    assert e.value("ka.req.pod.run_as_group") == "3000"
    assert e.value("ka.req.pod.fs_group") == "2000"
    assert e.value("ka.req.pod.supplemental_groups") == ["4000", "5000"]
    assert e.value("ka.req.pod.containers.run_as_user") == ["0"]
    assert e.value("ka.req.pod.containers.eff_run_as_user") == ["0", "1000"]
    assert e.value("ka.req.pod.containers.eff_run_as_group") == ["3000", "3000"]
    assert e.value("ka.req.pod.containers.allow_privilege_escalation") == ["true"]
    assert e.value("ka.req.pod.containers.read_only_fs") == ["false"]
    assert e.value("ka.req.pod.containers.proc_mount") == ["Unmasked"]
    assert e.value("ka.req.pod.containers.add_capabilities") == ["NET_ADMIN", "SYS_TIME"]
    assert e.value("ka.req.sec_ctx.added_capabilities") == ["NET_ADMIN", "SYS_TIME"]      # legacy names
    assert e.value("ka.req.sec_ctx.fs_group") == "2000"
    assert e.value("ka.req.sec_ctx.supplemental_groups") == ["4000", "5000"]
    assert e.value("ka.req.pod.containers.privileged") == ["false"]
    assert e.value("ka.req.container.privileged") == "false"
    bare = pod({"containers": [{"name": "a", "image": "a"}]})
    assert bare.value("ka.req.pod.containers.eff_run_as_user") == ["0"]      # nobody said: root
    assert ev("pod-privileged").value("ka.req.container.privileged") == "true"


def test_host_namespaces_and_volumes() -> None:
    e = ev("pod-host-namespaces")
    assert (e.value("ka.req.pod.host_network"), e.value("ka.req.pod.host_pid"),
            e.value("ka.req.pod.host_ipc")) == ("true", "true", "true")
    assert e.value("ka.req.container.host_network") == "true"
    assert e.value("ka.req.pod.containers.host_port") == ["9100"]
    assert ev("pod-privileged").value("ka.req.pod.host_network") is None
    v = pod({"containers": [], "volumes": [
        {"name": "sock", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}},
        {"name": "cfg", "configMap": {"name": "settings"}},
        {"name": "flex", "flexVolume": {"driver": "example.com/lvm"}},
        {"name": "logs", "hostPath": {"path": "/var/log/pods"}}]})
    assert v.value("ka.req.pod.volumes.hostpath") == ["/var/run/docker.sock", "/var/log/pods"]
    assert v.value("ka.req.pod.volumes.hostpath", "3") == ["/var/log/pods"]
    assert v.value("ka.req.pod.volumes.volume_type") == ["hostPath", "configMap", "flexVolume", "hostPath"]
    assert v.value("ka.req.pod.volumes.flexvolume_driver") == ["example.com/lvm"]
    assert v.value("ka.req.volume.hostpath", "/var/run/docker.sock") == "true"
    assert v.value("ka.req.volume.hostpath", "/var/log*") == "true"
    assert v.value("ka.req.volume.hostpath", "/etc") == "false"


def test_rbac_fields() -> None:
    crb = ev("crb-cluster-admin")
    assert crb.value("ka.req.binding.role") == "cluster-admin"
    subjects = crb.value("ka.req.binding.subjects")
    assert [json.loads(s) for s in subjects] == SAMPLE[NAMES["crb-cluster-admin"]]["requestObject"]["subjects"]
    assert subjects[0] == '{"kind":"ServiceAccount","name":"deployer","namespace":"ci"}'   # compact JSON
    assert crb.value("ka.req.binding.subjects.user_names") == ["mallory@example.com"]
    assert crb.value("ka.req.binding.subjects.serviceaccount_names") == ["deployer"]
    assert crb.value("ka.req.binding.subjects.serviceaccount_ns_names") == ["ci:deployer"]
    assert crb.value("ka.req.binding.subjects.group_names") is None
    assert crb.value("ka.req.binding.subject.has_name", "anyone") == "true"
    role = ev("clusterrole-exec")
    assert role.value("ka.req.role.rules.verbs") == ["get", "list", "create"]
    assert role.value("ka.req.role.rules.resources") == ["pods", "pods/log", "pods/exec"]
    assert role.value("ka.req.role.rules.resources", "1") == ["pods/exec"]
    assert role.value("ka.req.role.rules.apiGroups") == ["", ""]
    assert role.value("ka.req.role.rules.nonResourceURLs") is None
    assert len(role.value("ka.req.role.rules")) == 2


def test_configmap_and_service_fields() -> None:
    cm = ev("configmap-aws-keys")
    assert cm.value("ka.req.configmap.name") == "billing-export"
    obj = cm.value("ka.req.configmap.obj")
    assert json.loads(obj) == SAMPLE[NAMES["configmap-aws-keys"]]["requestObject"]["data"]
    assert "aws_access_key_id" in obj
    svc = ev("service-nodeport")
    assert svc.value("ka.req.service.type") == "NodePort"
    assert [json.loads(p) for p in svc.value("ka.req.service.ports")] == [
        {"name": "http", "protocol": "TCP", "port": 3000, "targetPort": 3000, "nodePort": 30300}]


def test_absent_and_null_mean_no_value() -> None:
    e = ev("request-received-stage")
    for name in ("ka.response.code", "ka.auth.decision", "ka.resp.name", "ka.req.pod.containers.image",
                 "ka.req.role.rules", "ka.req.configmap.obj"):
        assert e.value(name) is None, name
    nulls = ev("secret-get", impersonatedUser=None, user={"username": None, "groups": None})
    assert nulls.value("ka.user.name") is None and nulls.value("ka.user.groups") is None
    assert nulls.value("ka.impuser.name") is None


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_event_fields_of_the_k8s_audit_source(utc) -> None:
    [e] = events_from_json(SAMPLE[NAMES["pod-privileged"]], first_num=7)
    assert e.value("evt.num") == 7
    assert e.value("evt.source") == "k8s_audit"
    assert e.value("evt.rawtime") == 1773480427_591793000
    assert e.value("evt.rawtime.s") == 1773480427 and e.value("evt.rawtime.ns") == 591793000
    assert e.value("evt.time") == "09:27:07.591793000"
    assert e.value("evt.time.s") == "09:27:07"
    assert e.value("evt.datetime") == "2026-03-14 09:27:07.591793000"
    assert e.value("evt.time.iso8601") == "2026-03-14T09:27:07.591793000Z"
    assert e.value("evt.is_async") is False
    assert e.value("evt.pluginname") == "k8saudit"
    assert "evt.type" not in registry("k8s_audit")        # audit rules are indexed by source only
