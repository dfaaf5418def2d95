"""deploy/kubernetes/: every manifest against the Kubernetes API schemas (kubernetes-validate,
strict: an unknown field fails), then what a schema cannot see: RBAC, capabilities, Services that
reach their pods, the configuration the sensor and the webhook load, and the kustomization."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from . import es_assets
from .deploy_files import (
    K8S_DIR,
    ROOT,
    compose,
    k8s_documents,
    k8s_files,
    k8s_object,
    kustomization,
    load_sensor_config,
)
from .fluentd_config import parse as parse_fluent
from .fluentd_config import route, ruby_env_names

K8S_VERSION = "1.31"
NAMESPACE = "falconet"
CLUSTER_SCOPED = {"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"}
CAPTURE_CAPS = {"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"}
# Fields of a Kustomization (kustomize v5, api/types/kustomization.go) that these files may use.
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "metadata", "namespace", "namePrefix", "nameSuffix", "labels",
                        "commonLabels", "commonAnnotations", "resources", "components", "images",
                        "patches", "configMapGenerator", "secretGenerator", "generatorOptions",
                        "replacements", "replicas"}


def docs_ids() -> list[str]:
    return [f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in k8s_documents()]


@pytest.mark.parametrize(("path", "doc"), k8s_documents(), ids=docs_ids())
def test_manifest_validates_against_the_kubernetes_api(path: Path, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {where}: {e.message}")


def test_everything_is_in_the_falconet_namespace_with_unique_names() -> None:
    seen = set()
    for path, doc in k8s_documents():
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"{path.name}: {key} defined twice"
        seen.add(key)
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{path.name}: {key} not in {NAMESPACE}"
    assert ("Namespace", NAMESPACE) in seen


def test_kustomization_lists_every_manifest_and_nothing_from_audit() -> None:
    k = kustomization()
    assert (k["apiVersion"], k["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    assert set(k) <= KUSTOMIZATION_FIELDS, f"unknown Kustomization fields: {set(k) - KUSTOMIZATION_FIELDS}"
    assert k["namespace"] == NAMESPACE
    assert sorted(k["resources"]) == sorted(p.name for p in k8s_files())
    assert not any(Path(r).parts[0] == "audit" for r in k["resources"]), \
        "audit/ holds API server files (policy, kubeconfig), not objects to apply"
    used = {c["image"].rsplit(":", 1)[0] for _, d in k8s_documents() for c in containers(d)}
    assert {i["name"] for i in k["images"]} == used


def test_kustomize_builds_the_same_objects() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (its built-in kustomize is an extra check)")
    proc = subprocess.run([kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    built = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == \
        sorted((d["kind"], d["metadata"]["name"]) for _, d in k8s_documents())


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    return k8s_object(kind, name)["spec"]["template"]["spec"]


def rules_of(kind: str, name: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in k8s_object(kind, name)["rules"]:
        for group in rule.get("apiGroups", []):
            for res in rule.get("resources", []):
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def test_rbac_is_least_privilege() -> None:
    assert rules_of("ClusterRole", "falconet-sensor") == {
        ("", "pods"): {"get", "list", "watch"}, ("", "namespaces"): {"get", "list", "watch"}}
    assert rules_of("ClusterRole", "falconet-response") == {
        ("", "pods"): {"get", "delete", "patch"},
        ("networking.k8s.io", "networkpolicies"): {"get", "create", "patch"}}
    assert [d["kind"] for p, d in k8s_documents() if p.name == "response-rbac.yaml"] == \
        ["ClusterRole", "ClusterRoleBinding"]
    for _, d in k8s_documents():
        for rule in d.get("rules", []):
            assert "*" not in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", [])
            assert "secrets" not in rule.get("resources", [])
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            k8s_object("ClusterRole", d["roleRef"]["name"])
            for s in d["subjects"]:
                assert s["kind"] == "ServiceAccount"
                k8s_object("ServiceAccount", s["name"])
    response = k8s_object("ClusterRoleBinding", "falconet-response")
    assert [s["name"] for s in response["subjects"]] == ["falconet-sensor"]
    # The workloads that call no API get no token.
    for kind, name in (("Deployment", "falconet-audit-webhook"), ("StatefulSet", "falconet-fluentd")):
        assert pod_spec(kind, name)["automountServiceAccountToken"] is False


def sensor_container() -> dict[str, Any]:
    (c,) = pod_spec("DaemonSet", "falconet-sensor")["containers"]
    return c


def configmap_file(name: str, key: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}-{key}"
    path.write_text(k8s_object("ConfigMap", name)["data"][key], encoding="utf-8")
    return path


def container_env(c: dict[str, Any]) -> dict[str, str]:
    """The container's environment, Secret references filled with stand-in values."""
    env: dict[str, str] = {}
    for ref in c.get("envFrom", []):
        env.update(k8s_object("ConfigMap", ref["configMapRef"]["name"])["data"])
    for e in c.get("env", []):
        src = e.get("valueFrom", {})
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in src:
            env[e["name"]] = f"secret:{src['secretKeyRef']['name']}/{src['secretKeyRef']['key']}"
        elif "fieldRef" in src:
            env[e["name"]] = f"field:{src['fieldRef']['fieldPath']}"
    return env


def sensor_config(tmp_path: Path, c: dict[str, Any], extra: list[str] | None = None) -> Any:
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    cfg_mount = mounts["/etc/falconet/falconet.yaml"]
    volume = {v["name"]: v for v in pod_spec_of(c)["volumes"]}[cfg_mount["name"]]
    path = configmap_file(volume["configMap"]["name"], cfg_mount["subPath"], tmp_path)
    overrides = [a for i, a in enumerate(c.get("args", [])) if i > 0 and c["args"][i - 1] == "-o"]
    return load_sensor_config(path, container_env(c), overrides + (extra or []))


def pod_spec_of(c: dict[str, Any]) -> dict[str, Any]:
    for _, d in k8s_documents():
        if c in containers(d):
            return d["spec"]["template"]["spec"]
    raise AssertionError("container not found")


def test_sensor_daemonset_runs_on_the_host_with_exactly_the_listed_capabilities(tmp_path: Path) -> None:
    spec = pod_spec("DaemonSet", "falconet-sensor")
    assert spec["hostPID"] is True
    k8s_object("PriorityClass", spec["priorityClassName"])
    c = sensor_container()
    sc = c["securityContext"]
    assert sc.get("privileged") is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    caps = set(sc["capabilities"]["add"])
    assert CAPTURE_CAPS <= caps <= CAPTURE_CAPS | {"KILL"}
    assert ("KILL" in caps) is sensor_config(tmp_path, c).get("response.enabled")
    # The same list as the compose lab (DESIGN.md §6 Capture).
    assert caps == set(compose()["services"]["sensor"]["cap_add"])
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]


def test_sensor_mounts_host_paths_read_only_and_its_state_survives_the_pod() -> None:
    spec = pod_spec("DaemonSet", "falconet-sensor")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in sensor_container()["volumeMounts"]}
    assert set(mounts) == set(volumes), "every volume is mounted and every mount has a volume"
    host = {name: v["hostPath"]["path"] for name, v in volumes.items() if "hostPath" in v}
    compose_host = {v.split(":")[0] for v in compose()["services"]["sensor"]["volumes"] if v.startswith("/")}
    # The same host paths but the lab's Docker socket: containerd, a cluster's runtime, is not asked.
    assert set(host.values()) - {"/var/lib/falconet"} == compose_host - {"/var/run/docker.sock"}
    for name, path in host.items():
        assert mounts[name]["mountPath"] == path
        assert bool(mounts[name].get("readOnly")) is (path != "/var/lib/falconet"), name
    from sensor import config

    state_dir = config.schema()["state_dir"].default
    assert host[mounts_by_path()[state_dir]] == state_dir


def mounts_by_path() -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in sensor_container()["volumeMounts"]}


def test_sensor_loads_its_config_and_the_local_rules_from_configmaps(tmp_path: Path) -> None:
    from sensor.config import DEFAULT_PATH

    by_path = mounts_by_path()
    assert str(DEFAULT_PATH) in by_path
    cfg = sensor_config(tmp_path, sensor_container())
    rules_dir = next(p for p in by_path if p.endswith("rules.d"))
    assert Path(rules_dir) in cfg.rules_files()
    volume = {v["name"]: v for v in pod_spec("DaemonSet", "falconet-sensor")["volumes"]}[by_path[rules_dir]]
    rules_cm = k8s_object("ConfigMap", volume["configMap"]["name"])
    assert all(name.endswith(".yaml") for name in rules_cm["data"])
    from sensor.response import spec
    from sensor.response.settings import ResponseSettings

    response = ResponseSettings.from_config(cfg)
    actions = spec.parse_actions(response)
    assert {a.do for a in actions} <= set(spec.ACTIONS)
    assert response.dry_run is True


def service_for(host: str, port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Service a `name.namespace.svc` host names, and its port entry for `port`."""
    name, ns, *_ = host.split(".")
    svc = k8s_object("Service", name)
    assert svc["metadata"]["namespace"] == ns
    (entry,) = [p for p in svc["spec"]["ports"] if p["port"] == port]
    return svc, entry


def pods_behind(svc: dict[str, Any]) -> list[dict[str, Any]]:
    selector = svc["spec"]["selector"]
    out = []
    for _, d in k8s_documents():
        labels = d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        if labels and all(labels.get(k) == v for k, v in selector.items()):
            out.append(d)
    assert out, f"Service {svc['metadata']['name']} selects no pods"
    return out


def target_container_port(svc: dict[str, Any], entry: dict[str, Any]) -> tuple[dict[str, Any], int]:
    for d in pods_behind(svc):
        for c in containers(d):
            for p in c.get("ports", []):
                if entry["targetPort"] in (p.get("name"), p["containerPort"]):
                    return c, p["containerPort"]
    raise AssertionError(f"targetPort {entry['targetPort']} is no container port behind the Service")


def test_sensor_sends_to_the_fluentd_service_which_reaches_fluentds_forward_input(tmp_path: Path) -> None:
    cfg = sensor_config(tmp_path, sensor_container())
    assert cfg.get("fluent_output.enabled") is True and cfg.get("fluent_output.tag") == es_assets.ALERTS_TAG
    svc, entry = service_for(cfg.get("fluent_output.host"), cfg.get("fluent_output.port"))
    c, port = target_container_port(svc, entry)
    env = container_env(c)
    conf = parse_fluent(ROOT / "fluent" / "fluent.conf", env)
    forward = next(s for s in conf.sections("source") if s.type == "forward")
    assert int(forward.get("port") or 0) == port
    # The shared key: the same Secret on both sides, and the handshake is on.
    assert cfg.get("fluent_output.shared_key") == env["FLUENT_FORWARD_SHARED_KEY"]
    assert forward.section("security") is not None


def test_fluentd_aggregator_is_configured_only_with_variables_fluent_conf_reads() -> None:
    read = set()
    for path in [ROOT / "fluent" / "fluent.conf", *(ROOT / "fluent" / "conf.d").glob("*.conf")]:
        read |= ruby_env_names(path.read_text(encoding="utf-8"))
    (c,) = pod_spec("StatefulSet", "falconet-fluentd")["containers"]
    env = container_env(c)
    assert set(env) <= read, f"set but never read by fluent.conf: {set(env) - read}"
    conf = parse_fluent(ROOT / "fluent" / "fluent.conf", env)
    label = next(s for s in conf.sections("source") if s.type == "forward").get("@label")
    outputs = [route(conf, tag, label).output for tag in (es_assets.ALERTS_TAG, es_assets.LOG_TAG)]
    alerts, log = outputs
    assert alerts is not None and log is not None
    assert (alerts.get("index_name"), alerts.get("pipeline"), log.get("index_name")) == \
        (es_assets.ALERTS_DATA_STREAM, es_assets.ALERTS_PIPELINE, es_assets.LOG_DATA_STREAM)
    assert alerts.get("password", "").startswith("secret:")
    assert urlsplit(alerts.get("hosts") or "").scheme == "https"
    # The CA file and the buffer directory are where the pod mounts them.
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert str(Path(alerts.get("ca_file") or "").parent) in mounts
    assert env["FLUENT_BUFFER_DIR"] in mounts


def _gib(size: str) -> float:
    m = re.fullmatch(r"(\d+)(Gi|Mi|GB|MB)", size)
    assert m, size
    n = int(m.group(1))
    return {"Gi": n, "Mi": n / 1024, "GB": n * 1e9 / 2**30, "MB": n * 1e6 / 2**30}[m.group(2)]


def test_fluentd_keeps_its_buffer_on_a_volume_big_enough_for_both_outputs() -> None:
    sts = k8s_object("StatefulSet", "falconet-fluentd")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert claim["metadata"]["name"] in {m["name"] for m in c["volumeMounts"]}
    per_output = _gib(container_env(c)["FLUENT_BUFFER_LIMIT_SIZE"])
    assert _gib(claim["spec"]["resources"]["requests"]["storage"]) >= 2 * per_output + 1
    # The fluent user of fluent/Dockerfile owns the volume.
    uid = re.search(r"usermod -u (\d+)", (ROOT / "fluent" / "Dockerfile").read_text())
    assert uid is not None
    sc = sts["spec"]["template"]["spec"]["securityContext"]
    assert sc["runAsUser"] == sc["fsGroup"] == int(uid.group(1))
    assert sts["spec"]["template"]["spec"]["priorityClassName"] == \
        pod_spec("DaemonSet", "falconet-sensor")["priorityClassName"]


def test_probes_ask_the_sensor_webserver_and_the_fluentd_monitor() -> None:
    from sensor import config

    web = {path: k.default for path, k in config.schema().items()}
    for kind, name in (("DaemonSet", "falconet-sensor"), ("Deployment", "falconet-audit-webhook")):
        (c,) = pod_spec(kind, name)["containers"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in (c["readinessProbe"], c["livenessProbe"]):
            assert probe["httpGet"]["path"] == web["webserver.k8s_healthz_endpoint"]
            assert ports[probe["httpGet"]["port"]] == web["webserver.listen_port"]
    (c,) = pod_spec("StatefulSet", "falconet-fluentd")["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports[c["readinessProbe"]["httpGet"]["port"]] == int(container_env(c)["FLUENT_MONITOR_PORT"])


def test_audit_webhook_runs_audit_only_with_tls_from_a_secret(tmp_path: Path) -> None:
    dep = k8s_object("Deployment", "falconet-audit-webhook")
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["args"][0] == "run"
    args = " ".join(c["args"])
    assert "-o syscall.enabled=false -o k8s_audit.webhook.enabled=true" in args
    cfg = sensor_config(tmp_path, c)
    assert cfg.get("syscall.enabled") is False and cfg.get("k8s_audit.webhook.enabled") is True
    assert cfg.get("response.enabled") is False, "no response RBAC is bound to the webhook"
    volumes = {v["name"]: v for v in spec["volumes"]}
    tls_mounts = [m for m in c["volumeMounts"] if "secret" in volumes[m["name"]]
                  and volumes[m["name"]]["secret"]["secretName"] == "falconet-audit-webhook-tls"]
    (tls,) = tls_mounts
    for key, file in (("k8s_audit.webhook.tls_cert", "tls.crt"), ("k8s_audit.webhook.tls_key", "tls.key")):
        assert cfg.get(key) == f"{tls['mountPath']}/{file}"   # the keys of a kubernetes.io/tls Secret
    # The bearer token `falconet certs --secret` puts in the same Secret, through the environment
    # (container_env stands in "secret:NAME/KEY"), never written on the command line.
    assert cfg.get("k8s_audit.webhook.token") == "secret:falconet-audit-webhook-tls/token"
    assert "secret:" not in args
    listen_port = int(cfg.get("k8s_audit.webhook.listen").rsplit(":", 1)[1])
    svc = k8s_object("Service", "falconet-audit-webhook")
    (entry,) = svc["spec"]["ports"]
    assert target_container_port(svc, entry)[1] == listen_port
    assert dep["spec"]["replicas"] >= 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_audit_kubeconfig_points_at_the_webhook_service() -> None:
    audit = K8S_DIR / "audit"
    configs = [p for p in sorted(audit.glob("*.y*ml")) if audit.is_dir()
               and (yaml.safe_load(p.read_text()) or {}).get("kind") == "Config"]
    assert configs, "deploy/kubernetes/audit/ has no webhook kubeconfig for the API server"
    svc = k8s_object("Service", "falconet-audit-webhook")
    (entry,) = svc["spec"]["ports"]
    for path in configs:
        kubeconfig = yaml.safe_load(path.read_text())
        for cluster in kubeconfig["clusters"]:
            url = urlsplit(cluster["cluster"]["server"])
            assert url.scheme == "https"
            assert url.path in ("/k8s-audit", "/k8s_audit"), f"{path.name}: path {url.path}"
            if url.hostname and not re.fullmatch(r"[\d.]+", url.hostname):
                assert url.hostname.split(".")[:2] == ["falconet-audit-webhook", NAMESPACE], path.name
                assert (url.port or 443) == entry["port"], f"{path.name}: port {url.port}"


def test_namespace_allows_what_the_sensor_needs() -> None:
    labels = k8s_object("Namespace", NAMESPACE)["metadata"]["labels"]
    # hostPID and hostPath are outside the baseline Pod Security Standard.
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_local_rules_configmap_loads_after_the_bundled_rules(tmp_path: Path) -> None:
    from sensor import engine
    from sensor.assets import asset_dir

    files = []
    for key in k8s_object("ConfigMap", "falconet-rules")["data"]:
        files.append(str(configmap_file("falconet-rules", key, tmp_path)))
    bundled = engine.load_rules([str(asset_dir("rules"))])
    assert len(engine.load_rules([str(asset_dir("rules")), *files]).rules) >= len(bundled.rules)


def test_every_secret_the_pods_need_is_documented() -> None:
    names = set()
    for _, d in k8s_documents():
        spec = d.get("spec", {}).get("template", {}).get("spec", {})
        names |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for c in containers(d):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
    assert names, "the workloads read their credentials from Secrets"
    doc = (ROOT / "docs" / "lab.md").read_text(encoding="utf-8")
    assert sorted(n for n in names if n not in doc) == []
