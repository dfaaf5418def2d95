"""The Kubernetes actions: delete, label or isolate the alert's pod, through the official client.

The pod comes from the alert's event: `k8s.ns.name`/`k8s.pod.name` for syscall alerts, the
request's object for audit alerts (`ka.target.namespace` and `ka.target.name`, or `ka.resp.name`
when the request created it).

An audit event is a claim by whoever could post it, about a request that may have been refused:
a pod action acts on an audit alert only when `with.audit_rules` names the alert's rule, and never
on the object of a request that failed or was denied (responseStatus.code 400 or more, or no
response yet, or an authorization decision of forbid). Names are checked as the API server checks
them (a namespace is a DNS label, a pod name a DNS subdomain) before any API path is built from
them, so `..` or `a/b` can never turn one call into another.

Isolation follows DESIGN.md §6: a NetworkPolicy that selects `falconet/quarantine=true` and allows
nothing in or out, then that label on the pod — selecting the label rather than the app's labels,
which would also cut off its sibling replicas.

Each call has one attempt and a timeout: a failed action is recorded, not retried behind the
engine's back (the next alert tries again).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Any

from sensor.errors import ConfigError
from sensor.response.params import Param, non_negative, positive
from sensor.response.records import Outcome, done, failed, skipped
from sensor.response.target import Target, event_value

QUARANTINE_LABEL = "falconet/quarantine"
POLICY_NAME = "falconet-quarantine"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
RBAC_FILE = "deploy/kubernetes/response-rbac.yaml"


def _check_labels(value: dict[str, Any]) -> dict[str, str]:
    if not value:
        raise ValueError("must name at least one label")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"label names must be non-empty strings, got {k!r}")
        # YAML reads `true` as a boolean; Kubernetes label values are strings.
        out[k] = "true" if v is True else "false" if v is False else str(v)
    return out


def api_client(kubeconfig: str) -> Any:
    """A kubernetes ApiClient: `kubeconfig` if set, else in-cluster in a pod, else the default
    kubeconfig. ConfigError names the file and what is wrong when none can be loaded."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(client_configuration=configuration)
    except (config.ConfigException, OSError, TypeError, ValueError) as e:
        where = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
        raise ConfigError(f"response: cannot load the Kubernetes configuration from {where}: {e}",
                          hint="set response.kubeconfig, or run in a pod with a service account") from e
    # One attempt per call: urllib3 would otherwise repeat a timed-out DELETE three times.
    configuration.retries = 0
    return client.ApiClient(configuration)


# k8s.io/apimachinery/pkg/util/validation: IsDNS1123Label (namespaces), IsDNS1123Subdomain (pod names).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def invalid_name(namespace: str, name: str) -> str | None:
    """Why (namespace, pod name) cannot name a pod, or None when both are valid."""
    if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS1123_LABEL.fullmatch(namespace):
        return f"namespace {namespace!r} is not a valid Kubernetes namespace name (a DNS-1123 label)"
    if not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        return f"pod name {name!r} is not a valid Kubernetes object name (a DNS-1123 subdomain)"
    return None


def _check_policy_name(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes object name (a DNS-1123 subdomain)")
    return value


def _check_rule_names(value: list[Any]) -> list[str]:
    if not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of rule names (globs allowed), got {value!r}")
    return list(value)


def audit_refusal(alert: Any, audit_rules: list[str]) -> Outcome | None:
    """Why a pod action must not act on this audit alert, or None when it may."""
    if not any(fnmatch.fnmatchcase(alert.rule, r) for r in audit_rules):
        return skipped("audit_not_opted_in", f"rule '{alert.rule}' is an audit rule this action does not "
                                             "list in with.audit_rules; audit events are acted on only "
                                             "for the rules an action names")
    code = event_value(alert, "ka.response.code")
    user = event_value(alert, "ka.user.name") or "<unknown user>"
    try:
        status = int(str(code))
    except ValueError:
        return skipped("failed_request", f"the request by {user} has no response code yet (stage "
                                         f"{event_value(alert, 'ka.stage') or 'unknown'}): it may still be "
                                         "refused, so its object is not acted on")
    if status >= 400:
        return skipped("failed_request", f"the request by {user} failed (HTTP {status}): it changed "
                                         "nothing, so its object is not acted on")
    if str(event_value(alert, "ka.auth.decision") or "").lower() == "forbid":
        return skipped("failed_request", f"the request by {user} was denied by authorization: its "
                                         "object is not acted on")
    return None


def pod_target(alert: Any, audit_rules: list[str] | None = None) -> Target | Outcome:
    """The alert's pod as a Target (key and data: (namespace, name)), or why there is none.
    `audit_rules`: the audit rules (globs) whose alerts the action may act on."""
    if getattr(alert, "source", None) == "k8s_audit":
        refusal = audit_refusal(alert, audit_rules or [])
        if refusal is not None:
            return refusal
        resource = event_value(alert, "ka.target.resource")
        if resource not in (None, "pods"):
            return skipped("no_target", f"the audit event's object is a {resource}, not a pod")
        ns = event_value(alert, "ka.target.namespace")
        name = event_value(alert, "ka.target.name") or event_value(alert, "ka.resp.name")
        source = "ka.target.namespace/ka.target.name"
    else:
        ns = event_value(alert, "k8s.ns.name")
        name = event_value(alert, "k8s.pod.name")
        source = "k8s.ns.name/k8s.pod.name"
    if not ns or not name:
        return skipped("no_target", f"the alert names no pod ({source} have no value)")
    why = invalid_name(ns, name)
    if why is not None:
        return skipped("invalid_target", f"{why}: no API call is made ({source})", f"pod {ns!r}/{name!r}")
    return Target(key=(ns, name), text=f"pod {ns}/{name}", namespace=ns, data=(ns, name), group=ns)


def quarantine_policy(namespace: str, name: str = POLICY_NAME) -> dict[str, Any]:
    """The NetworkPolicy that cuts every pod labelled falconet/quarantine=true off the network."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "falconet"}},
        # Both policy types and no rules: nothing in, nothing out (DNS included).
        "spec": {"podSelector": {"matchLabels": {QUARANTINE_LABEL: "true"}},
                 "policyTypes": ["Ingress", "Egress"]},
    }


def describe_error(e: BaseException, verb: str, what: str) -> str:
    """One sentence for a failed API call: the status, the API's message, and what would fix it."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(e, ApiException):
        message = ""
        try:
            message = json.loads(e.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = (e.body or "")[:200]
        text = f"{verb} {what}: HTTP {e.status} {e.reason}" + (f": {message}" if message else "")
        if e.status in (401, 403):
            text += f" (the sensor's service account needs {verb} permission; see {RBAC_FILE})"
        return text
    reason = getattr(e, "reason", None) or e
    return f"{verb} {what}: {type(reason).__name__}: {reason}"


def _call_errors() -> tuple[type[BaseException], ...]:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    return (ApiException, urllib3.exceptions.HTTPError, OSError)


class _PodAction:
    """Shared by the pod actions: target resolution and the client."""

    do = ""
    PARAMS: dict[str, Param] = {}
    AUDIT_OPT_IN = True          # spec.py: naming k8s_audit in match.sources needs with.audit_rules

    def __init__(self, params: dict[str, Any], ctx: Any) -> None:
        self.params = params
        self.timeout = params["timeout"]
        self.audit_rules = params["audit_rules"]
        self.client = ctx.kube_client()
        from kubernetes import client

        self.core = client.CoreV1Api(self.client)
        self.net = client.NetworkingV1Api(self.client)

    def resolve(self, alert: Any) -> Target | Outcome:
        return pod_target(alert, self.audit_rules)


_TIMEOUT = Param(float, 5.0, "Seconds to wait for the API server.", check=positive)
_AUDIT_RULES = Param(list, [], "Audit rules (names, * globs) whose alerts this action may act on; none by "
                               "default, since an audit event is what its sender claims.",
                     check=_check_rule_names)


class DeletePod(_PodAction):
    """Delete the pod, with `grace_period_seconds` (default 0: stop it now)."""

    do = "k8s_delete_pod"
    PARAMS = {
        "grace_period_seconds": Param(int, 0, "Seconds the pod's containers get to stop.",
                                      check=non_negative),
        "timeout": _TIMEOUT,
        "audit_rules": _AUDIT_RULES,
    }

    def execute(self, alert: Any, target: Target, dry_run: bool) -> Outcome:
        ns, name = target.data
        grace = self.params["grace_period_seconds"]
        if dry_run:
            return skipped("dry_run", f"would delete pod {ns}/{name} (grace period {grace}s)",
                           target.text)
        from kubernetes import client

        try:
            self.core.delete_namespaced_pod(
                name, ns, grace_period_seconds=grace,
                body=client.V1DeleteOptions(grace_period_seconds=grace),
                _request_timeout=self.timeout, _preload_content=False)
        except _call_errors() as e:
            return failed(describe_error(e, "delete", f"pod {ns}/{name}"), target.text)
        return done(f"deleted pod {ns}/{name} (grace period {grace}s)", target.text)


class LabelPod(_PodAction):
    """Add labels to the pod (strategic merge patch); default falconet/quarantine=true."""

    do = "k8s_label_pod"
    PARAMS = {
        "labels": Param(dict, {QUARANTINE_LABEL: "true"}, "Labels to set.", check=_check_labels),
        "timeout": _TIMEOUT,
        "audit_rules": _AUDIT_RULES,
    }

    def execute(self, alert: Any, target: Target, dry_run: bool) -> Outcome:
        ns, name = target.data
        labels = self.params["labels"]
        shown = ",".join(f"{k}={v}" for k, v in labels.items())
        if dry_run:
            return skipped("dry_run", f"would label pod {ns}/{name} {shown}", target.text)
        try:
            self.core.patch_namespaced_pod(name, ns, {"metadata": {"labels": labels}},
                                           _content_type=STRATEGIC_MERGE,
                                           _request_timeout=self.timeout, _preload_content=False)
        except _call_errors() as e:
            return failed(describe_error(e, "patch", f"pod {ns}/{name}"), target.text)
        return done(f"labelled pod {ns}/{name} {shown}", target.text)


class IsolatePod(_PodAction):
    """Cut the pod off the network: the quarantine NetworkPolicy in its namespace, then the label."""

    do = "k8s_isolate_pod"
    PARAMS = {
        "policy_name": Param(str, POLICY_NAME, "Name of the NetworkPolicy (one per namespace).",
                             check=_check_policy_name),
        "timeout": _TIMEOUT,
        "audit_rules": _AUDIT_RULES,
    }

    def execute(self, alert: Any, target: Target, dry_run: bool) -> Outcome:
        ns, name = target.data
        policy_name = self.params["policy_name"]
        if dry_run:
            return skipped("dry_run", f"would apply NetworkPolicy {ns}/{policy_name} and label pod "
                                      f"{ns}/{name} {QUARANTINE_LABEL}=true", target.text)
        errors = _call_errors()
        try:
            self._apply_policy(ns, policy_name)
        except errors as e:
            return failed(describe_error(e, "create", f"networkpolicy {ns}/{policy_name}") +
                          "; the pod was not labelled", target.text)
        try:
            self.core.patch_namespaced_pod(name, ns, {"metadata": {"labels": {QUARANTINE_LABEL: "true"}}},
                                           _content_type=STRATEGIC_MERGE,
                                           _request_timeout=self.timeout, _preload_content=False)
        except errors as e:
            return failed(describe_error(e, "patch", f"pod {ns}/{name}") +
                          f"; NetworkPolicy {ns}/{policy_name} is in place", target.text)
        return done(f"isolated pod {ns}/{name}: labelled {QUARANTINE_LABEL}=true, selected by "
                    f"NetworkPolicy {ns}/{policy_name} (no ingress, no egress)", target.text)

    def _apply_policy(self, ns: str, policy_name: str) -> None:
        """Create the policy, or bring an existing one back to deny-all (create, then patch on 409)."""
        from kubernetes.client.exceptions import ApiException

        body = quarantine_policy(ns, policy_name)
        try:
            # The client serializes a plain dict body as it is; its stubs only name the model class.
            self.net.create_namespaced_network_policy(ns, body,  # type: ignore[arg-type]
                                                      _request_timeout=self.timeout, _preload_content=False)
            return
        except ApiException as e:
            if e.status != 409:
                raise
        # It exists: a merge patch restores our selector and types and drops any rules (null deletes).
        patch = {"metadata": {"labels": body["metadata"]["labels"]},
                 "spec": {**body["spec"], "ingress": None, "egress": None}}
        self.net.patch_namespaced_network_policy(policy_name, ns, patch, _content_type=MERGE_PATCH,
                                                 _request_timeout=self.timeout, _preload_content=False)
