"""The API server side of the audit pipeline (deploy/kubernetes/audit/ and `falconet certs`).

kubernetes-validate has no schema for an audit Policy or a kubeconfig, so both are checked against
their own types here: audit.k8s.io/v1 Policy (k8s.io/apiserver/pkg/apis/audit/v1/types.go and the
API server's validation of it) and clientcmd v1 Config (k8s.io/client-go/tools/clientcmd/api/v1).
The policy is also checked for what it is for: each sample event, cut down to the level the policy
records it at, still fires the same rules.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import ROOT, compat_file
from cryptography import x509

from sensor.engine import load_rules
from sensor.sources.k8s_audit.decode import events_from_json

AUDIT_DIR = ROOT / "deploy" / "kubernetes" / "audit"
POLICY = AUDIT_DIR / "audit-policy.yaml"
KUBECONFIG = AUDIT_DIR / "webhook-kubeconfig.yaml"
DATA = ROOT / "tests" / "data" / "k8s_audit"
EVENTS = [json.loads(line) for line in (DATA / "events.jsonl").read_text().splitlines()]
FALCONET = [sys.executable, "-c", "from sensor.cli import main; main()"]

# ---------------------------------------------------------------------------------------------
# audit.k8s.io/v1 Policy
# ---------------------------------------------------------------------------------------------

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
POLICY_KEYS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
RULE_KEYS = {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs",
             "omitStages", "omitManagedFields"}
GROUP_RESOURCES_KEYS = {"group", "resources", "resourceNames"}


def policy_errors(policy: Any) -> list[str]:
    """What the API server would refuse in a Policy (types.go fields, validation.go rules)."""
    errs: list[str] = []

    def strings(where: str, v: Any) -> None:
        if not (isinstance(v, list) and all(isinstance(s, str) for s in v)):
            errs.append(f"{where}: must be a list of strings")

    if not isinstance(policy, dict):
        return ["the policy is not a mapping"]
    errs += [f"unknown field {k}" for k in set(policy) - POLICY_KEYS]
    if policy.get("apiVersion") != "audit.k8s.io/v1" or policy.get("kind") != "Policy":
        errs.append("apiVersion/kind must be audit.k8s.io/v1 Policy")
    for s in policy.get("omitStages", []):
        if s not in STAGES:
            errs.append(f"omitStages: unknown stage {s!r}")
    if not isinstance(policy.get("omitManagedFields", False), bool):
        errs.append("omitManagedFields must be a boolean")
    rules = policy.get("rules")
    if not isinstance(rules, list) or not rules:
        return [*errs, "rules: a policy without rules records nothing"]
    for i, r in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(r, dict):
            errs.append(f"{where}: not a mapping")
            continue
        errs += [f"{where}: unknown field {k}" for k in set(r) - RULE_KEYS]
        if r.get("level") not in LEVELS:
            errs.append(f"{where}.level: {r.get('level')!r} is not one of {LEVELS}")
        for k in ("users", "userGroups", "verbs", "namespaces", "nonResourceURLs", "omitStages"):
            if k in r:
                strings(f"{where}.{k}", r[k])
        for s in r.get("omitStages", []):
            if s not in STAGES:
                errs.append(f"{where}.omitStages: unknown stage {s!r}")
        if "nonResourceURLs" in r and ("resources" in r or "namespaces" in r):
            errs.append(f"{where}: nonResourceURLs cannot be combined with resources or namespaces")
        for u in r.get("nonResourceURLs", []):
            if not u.startswith("/") or "*" in u[:-1]:
                errs.append(f"{where}.nonResourceURLs: {u!r} must be a path, * only at its end")
        for j, gr in enumerate(r.get("resources", [])):
            gw = f"{where}.resources[{j}]"
            if not isinstance(gr, dict):
                errs.append(f"{gw}: not a mapping")
                continue
            errs += [f"{gw}: unknown field {k}" for k in set(gr) - GROUP_RESOURCES_KEYS]
            if not isinstance(gr.get("group", ""), str):
                errs.append(f"{gw}.group: must be a string")
            if "resources" in gr:
                strings(f"{gw}.resources", gr["resources"])
            if gr.get("resourceNames") and not gr.get("resources"):
                errs.append(f"{gw}: resourceNames needs resources")
        if "omitManagedFields" in r and not isinstance(r["omitManagedFields"], bool):
            errs.append(f"{where}.omitManagedFields must be a boolean")
    return errs


def _resource_matches(pattern: str, resource: str, sub: str | None) -> bool:
    full = f"{resource}/{sub}" if sub else resource
    return pattern in ("*", full) or (sub is not None and pattern in (f"{resource}/*", f"*/{sub}"))


def policy_rule_for(policy: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
    """The first rule that matches an event, as the API server's policy checker decides."""
    user = event.get("user") or {}
    ref = event.get("objectRef")
    for rule in policy["rules"]:
        if rule.get("users") and user.get("username") not in rule["users"]:
            continue
        if rule.get("userGroups") and not set(user.get("groups") or []) & set(rule["userGroups"]):
            continue
        if rule.get("verbs") and event["verb"] not in rule["verbs"]:
            continue
        if "nonResourceURLs" in rule:
            path = urlsplit(event["requestURI"]).path
            if ref is not None or not any(path == u or (u.endswith("*") and path.startswith(u[:-1]))
                                          for u in rule["nonResourceURLs"]):
                continue
        if "resources" in rule or "namespaces" in rule:
            if ref is None:
                continue
            if "namespaces" in rule and ref.get("namespace", "") not in rule["namespaces"]:
                continue
            if "resources" in rule and not any(
                    gr.get("group", "") == ref.get("apiGroup", "")
                    and (not gr.get("resources") or any(_resource_matches(p, ref["resource"], ref.get("subresource"))
                                                         for p in gr["resources"]))
                    and (not gr.get("resourceNames") or ref.get("name") in gr["resourceNames"])
                    for gr in rule["resources"]):
                continue
        return rule
    return None


def as_recorded(policy: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
    """The event as the API server would write it under the policy, or None when it would not."""
    rule = policy_rule_for(policy, event)
    level = rule["level"] if rule else "None"
    omitted = set(policy.get("omitStages", [])) | set((rule or {}).get("omitStages", []))
    if level == "None" or event["stage"] in omitted:
        return None
    out = copy.deepcopy(event)
    out["level"] = level
    if LEVELS.index(level) < LEVELS.index("Request"):
        out.pop("requestObject", None)
    if LEVELS.index(level) < LEVELS.index("RequestResponse"):
        out.pop("responseObject", None)
    return out


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    return yaml.safe_load(POLICY.read_text())


def test_the_audit_policy_is_a_valid_audit_k8s_io_v1_policy(policy) -> None:
    assert policy_errors(policy) == []


def test_the_validator_refuses_what_the_api_server_refuses() -> None:
    bad = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["Received"], "rules": [
        {"level": "Everything"},
        {"level": "Metadata", "nonResourceURLs": ["/api*/x"], "resources": [{"group": ""}]},
        {"level": "None", "resources": [{"group": "", "resourceNames": ["x"], "kinds": ["Pod"]}]},
        {"level": "None", "verb": ["get"]}]}
    errs = policy_errors(bad)
    for text in ("omitStages: unknown stage 'Received'", "rules[0].level", "cannot be combined",
                 "* only at its end", "resourceNames needs resources", "rules[2].resources[0]: unknown field kinds",
                 "rules[3]: unknown field verb"):
        assert any(text in e for e in errs), (text, errs)


def test_the_policy_keeps_the_stages_the_rules_wait_for(policy) -> None:
    assert policy["omitStages"] == ["RequestReceived"]
    assert policy["rules"][-1] == {"level": "Metadata"}, "a catch-all records everything else"
    exec_event = next(e for e in EVENTS if e["stage"] == "ResponseStarted")
    assert as_recorded(policy, exec_event) is not None


@pytest.mark.parametrize(("resource", "verb", "level"), [
    (("", "secrets", None), "get", "Metadata"),                      # never a secret's content
    (("", "secrets", None), "create", "Metadata"),
    (("", "serviceaccounts", "token"), "create", "Metadata"),
    (("authentication.k8s.io", "tokenreviews", None), "create", "Metadata"),
    (("", "pods", None), "create", "RequestResponse"),
    (("", "pods", "exec"), "create", "Metadata"),
    (("", "pods", "ephemeralcontainers"), "patch", "Request"),
    (("", "configmaps", None), "update", "Request"),
    (("", "configmaps", None), "get", "Metadata"),
    (("rbac.authorization.k8s.io", "clusterrolebindings", None), "create", "Request"),
    (("coordination.k8s.io", "leases", None), "update", "None"),
    (("", "events", None), "create", "None"),
    (("apps", "deployments", None), "delete", "Metadata"),
])
def test_levels_by_resource(policy, resource: tuple[str, str, str | None], verb: str, level: str) -> None:
    group, res, sub = resource
    ref = {"resource": res, "namespace": "default", "name": "x", "apiGroup": group}
    if sub:
        ref["subresource"] = sub
    event = {"verb": verb, "requestURI": "/apis/x", "user": {"username": "alice", "groups": []}, "objectRef": ref}
    rule = policy_rule_for(policy, event)
    assert (rule["level"] if rule else "None") == level


@pytest.mark.parametrize("rules_file", ["falconet", "falco"])
def test_events_recorded_under_the_policy_fire_the_same_rules(policy, rules_file: str) -> None:
    path = ROOT / "rules" / "k8s_audit_rules.yaml" if rules_file == "falconet" else \
        compat_file("k8s_audit_rules.yaml")
    rs = load_rules([path], rule_matching="all")
    expected = {x["auditID"]: x[rules_file] for x in yaml.safe_load((DATA / "expected.yaml").read_text())}
    recorded = 0
    for raw in EVENTS:
        cut = as_recorded(policy, raw)
        if cut is None:
            assert expected[raw["auditID"]] == [], f"the policy drops {raw['auditID']}, which fires rules"
            continue
        recorded += 1
        [event] = events_from_json(cut)
        assert [a.rule for a in rs.process(event)] == expected[raw["auditID"]], raw["auditID"]
    assert recorded >= len(EVENTS) - 3


# ---------------------------------------------------------------------------------------------
# clientcmd v1 Config (the webhook kubeconfig)
# ---------------------------------------------------------------------------------------------

CONFIG_KEYS = {"apiVersion", "kind", "preferences", "clusters", "users", "contexts", "current-context",
               "extensions"}
CLUSTER_KEYS = {"server", "tls-server-name", "insecure-skip-tls-verify", "certificate-authority",
                "certificate-authority-data", "proxy-url", "disable-compression", "extensions"}
USER_KEYS = {"client-certificate", "client-certificate-data", "client-key", "client-key-data", "token",
             "tokenFile", "as", "as-uid", "as-groups", "as-user-extra", "username", "password",
             "auth-provider", "exec", "extensions"}
CONTEXT_KEYS = {"cluster", "user", "namespace", "extensions"}


def kubeconfig_errors(cfg: Any) -> list[str]:
    """What clientcmd would refuse, and what would make kube-apiserver's webhook client insecure."""
    if not isinstance(cfg, dict):
        return ["the kubeconfig is not a mapping"]
    errs = [f"unknown field {k}" for k in set(cfg) - CONFIG_KEYS]
    if cfg.get("apiVersion") != "v1" or cfg.get("kind") != "Config":
        errs.append("apiVersion/kind must be v1 Config")
    named: dict[str, dict[str, Any]] = {}
    for section, inner, keys in (("clusters", "cluster", CLUSTER_KEYS), ("users", "user", USER_KEYS),
                                 ("contexts", "context", CONTEXT_KEYS)):
        named[section] = {}
        for i, item in enumerate(cfg.get(section) or []):
            where = f"{section}[{i}]"
            if set(item) - {"name", inner}:
                errs.append(f"{where}: unknown field(s) {sorted(set(item) - {'name', inner})}")
            if not item.get("name"):
                errs.append(f"{where}: no name")
            body = item.get(inner)
            if not isinstance(body, dict):
                errs.append(f"{where}.{inner}: missing")
                continue
            errs += [f"{where}.{inner}: unknown field {k}" for k in set(body) - keys]
            named[section][item.get("name")] = body
    current = cfg.get("current-context")
    ctx = named["contexts"].get(current)
    if ctx is None:
        return [*errs, f"current-context {current!r} names no context"]
    cluster, user = named["clusters"].get(ctx.get("cluster")), named["users"].get(ctx.get("user"))
    if cluster is None or user is None:
        return [*errs, "the current context names a cluster or user that does not exist"]
    url = urlsplit(cluster.get("server", ""))
    if url.scheme != "https" or not url.hostname:
        errs.append(f"server {cluster.get('server')!r} is not an https URL")
    if cluster.get("insecure-skip-tls-verify"):
        errs.append("insecure-skip-tls-verify turns off the webhook's certificate check")
    if ("certificate-authority" in cluster) == ("certificate-authority-data" in cluster):
        errs.append("exactly one of certificate-authority and certificate-authority-data is needed")
    if "token" in user and "tokenFile" in user:
        errs.append("token and tokenFile together")
    return errs


def test_the_static_kubeconfig_is_valid_and_keeps_secrets_in_files() -> None:
    cfg = yaml.safe_load(KUBECONFIG.read_text())
    assert kubeconfig_errors(cfg) == []
    (cluster,) = cfg["clusters"]
    assert cluster["cluster"]["certificate-authority"].startswith("/etc/kubernetes/")
    (user,) = cfg["users"]
    assert set(user["user"]) == {"tokenFile"}
    assert urlsplit(cluster["cluster"]["server"]).path == "/k8s-audit"


def test_the_kubeconfig_validator_refuses_broken_configs() -> None:
    good = yaml.safe_load(KUBECONFIG.read_text())
    cases = {
        "insecure-skip-tls-verify": lambda c: c["clusters"][0]["cluster"].update({"insecure-skip-tls-verify": True}),
        "not an https URL": lambda c: c["clusters"][0]["cluster"].update({"server": "http://x:9765/k8s-audit"}),
        "names no context": lambda c: c.update({"current-context": "other"}),
        "exactly one of": lambda c: c["clusters"][0]["cluster"].pop("certificate-authority"),
        "unknown field tokenfile": lambda c: c["users"][0]["user"].update({"tokenfile": "/x"}),
    }
    for text, mutate in cases.items():
        bad = copy.deepcopy(good)
        mutate(bad)
        assert any(text in e for e in kubeconfig_errors(bad)), text


# ---------------------------------------------------------------------------------------------
# `falconet certs`
# ---------------------------------------------------------------------------------------------

def certs(*args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "FALCONET_AUDIT_WEBHOOK_TOKEN"}
    return subprocess.run([*FALCONET, "certs", *args], capture_output=True, text=True, cwd=cwd, timeout=60,
                          input=stdin, env={**environ, **(env or {})})


def sans(cert: x509.Certificate) -> set[str]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*names.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in names.get_values_for_type(x509.IPAddress))}


def test_certs_writes_a_certificate_the_printed_kubeconfig_trusts(tmp_path: Path) -> None:
    out = certs("--dir", "tls", "--url", "https://10.96.120.7:9765/k8s-audit", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert kubeconfig_errors(cfg) == []
    assert cfg == yaml.safe_load((tmp_path / "tls" / "webhook-kubeconfig.yaml").read_text())
    cluster = cfg["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.96.120.7:9765/k8s-audit"
    ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    assert ca_pem == (tmp_path / "tls" / "ca.crt").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / "tls.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert {"10.96.120.7", "falconet-audit-webhook.falconet.svc"} <= sans(cert)
    token = (tmp_path / "tls" / "token").read_text().strip()
    assert cfg["users"][0]["user"] == {"token": token} and len(token) >= 40
    for name in ("tls.key", "token", "webhook-kubeconfig.yaml"):
        assert (tmp_path / "tls" / name).stat().st_mode & 0o077 == 0, name
    again = certs("--dir", "tls", cwd=tmp_path)
    assert again.returncode == 1 and "already exist" in again.stderr and "--force" in again.stderr
    forced = certs("--dir", "tls", "--force", "--no-token", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert yaml.safe_load(forced.stdout)["users"][0]["user"] == {}
    assert not (tmp_path / "tls" / "token").exists(), "a stale token would no longer match"
    assert (tmp_path / "tls" / "ca.crt").read_bytes() != ca_pem


def test_certs_secret_is_a_valid_tls_secret_matching_the_kubeconfig(tmp_path: Path) -> None:
    import kubernetes_validate  # a test dependency (pyproject [test])
    out = certs("--secret", "--dir", ".", "--token-file", "-", cwd=tmp_path, stdin="t0ken-from-the-operator\n")
    assert out.returncode == 0, out.stderr
    secret = yaml.safe_load(out.stdout)
    kubernetes_validate.validate(secret, "1.30", strict=True)
    assert secret["type"] == "kubernetes.io/tls"
    assert (secret["metadata"]["namespace"], secret["metadata"]["name"]) == ("falconet", "falconet-audit-webhook-tls")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data["token"] == b"t0ken-from-the-operator"
    cfg = yaml.safe_load((tmp_path / "webhook-kubeconfig.yaml").read_text())
    assert base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]) == data["ca.crt"]
    assert cfg["users"][0]["user"]["token"] == "t0ken-from-the-operator"
    assert not (tmp_path / "tls.key").exists()               # the key is only in the Secret


def test_certs_refuses_a_url_its_certificate_would_not_cover(tmp_path: Path) -> None:
    out = certs("--host", "webhook.example.com", "--url", "https://10.0.0.1:9765/k8s-audit", cwd=tmp_path)
    assert out.returncode == 2 and "not be valid for 10.0.0.1" in out.stderr
    out = certs("--url", "http://10.0.0.1:9765/k8s-audit", cwd=tmp_path)
    assert out.returncode == 2 and "https" in out.stderr


def test_certs_takes_the_token_from_a_file_or_the_environment_never_the_command_line(tmp_path: Path) -> None:
    out = certs("--dir", "a", "--token", "s3cret-on-the-command-line", cwd=tmp_path)
    assert out.returncode == 2 and "visible to every local user" in out.stderr
    assert not (tmp_path / "a").exists()
    (tmp_path / "t").write_text("t0ken-from-a-file\n")
    out = certs("--dir", "b", "--token-file", str(tmp_path / "t"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "b" / "token").read_text() == "t0ken-from-a-file\n"
    out = certs("--dir", "c", cwd=tmp_path, env={"FALCONET_AUDIT_WEBHOOK_TOKEN": "t0ken-from-env"})
    assert out.returncode == 0 and yaml.safe_load(out.stdout)["users"][0]["user"] == {"token": "t0ken-from-env"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to prepare a directory as another user")
def test_certs_refuses_a_directory_another_user_prepared(tmp_path: Path) -> None:
    """The attack of issue 14 finding 11: `nobody` owns the directory and has planted the temporary
    file names and a symlink; nothing may end up owned by nobody or readable by others."""
    trap = tmp_path / "trap"
    trap.mkdir(mode=0o777)
    os.chmod(trap, 0o777)
    nobody = 65534
    os.chown(trap, nobody, nobody)
    for name in (".tls.key.tmp", ".token.tmp"):
        (trap / name).write_text("")
        os.chmod(trap / name, 0o666)
        os.chown(trap / name, nobody, nobody)
    os.symlink("/tmp/falconet-attack-target", trap / "tls.key")
    out = certs("--dir", str(trap), cwd=tmp_path)
    assert out.returncode == 4
    assert f"{trap} belongs to nobody (uid 65534)" in out.stderr and "Traceback" not in out.stderr
    assert not Path("/tmp/falconet-attack-target").exists()
    assert sorted(p.name for p in trap.iterdir()) == [".tls.key.tmp", ".token.tmp", "tls.key"]
    # Root's own directory that others may write to is refused too.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    out = certs("--dir", str(shared), cwd=tmp_path)
    assert out.returncode == 4 and "is writable by others (mode 1777)" in out.stderr


def test_certs_files_have_their_modes_whatever_the_umask(tmp_path: Path) -> None:
    out = subprocess.run(["sh", "-c", "umask 000 && exec \"$@\"", "sh", *FALCONET, "certs", "--dir", "tls"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "tls").iterdir()}
    assert modes == {"ca.crt": 0o644, "tls.crt": 0o644, "tls.key": 0o600, "token": 0o600,
                     "webhook-kubeconfig.yaml": 0o600}
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
