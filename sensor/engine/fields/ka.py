"""The ka.* fields of Kubernetes audit events, with the meaning Falco's k8saudit plugin gives them,
and the evt.* fields the k8s_audit source offers.

Every ka.* field is a string (CHARBUF) as in the plugin: a JSON string value as itself, any other
JSON value as compact JSON text (`true`, `200`, `{"name":"x"}`), so `ka.response.code startswith 2`
and `ka.req.pod.containers.privileged intersects (true)` read as they do in Falco. A list field
(is_list) answers a list of such strings; its optional index argument (`ka.req.pod.containers.
image[0]`) keeps one container. Absent and null values answer None, and so does a list field with
no values, so that every comparison on them is false.

Where the plugin reads a path that never exists (it looks for the pod's runAsUser under `spec`, and
for the source IPs under `requestObject.rules`), we read the path the field's description names:
`spec.securityContext` and the event's `sourceIPs`. An image's repository keeps a registry's port
(`registry:5000/app:1` → `registry:5000/app`), where the plugin would answer `registry`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sensor.engine.fields import evt as _evt
from sensor.engine.fields.base import Field, FieldClass


def text(v: Any) -> str | None:
    """A JSON value as the plugin renders it: strings as themselves, the rest as compact JSON."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _at(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def _values(vals: list[Any]) -> list[str] | None:
    out = [t for v in vals if (t := text(v)) is not None]
    return out or None


def _index(arg: str | None) -> int | None:
    if arg is None:
        return None
    try:
        return int(arg)
    except ValueError:
        return -1


def _pick(items: Any, arg: str | None) -> list[Any] | None:
    """The items of a JSON array, or the one at the index argument."""
    if not isinstance(items, list):
        return None
    i = _index(arg)
    if i is None:
        return items
    return [items[i]] if 0 <= i < len(items) else None


def _key(*keys: str) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        return text(_at(ev.obj, *keys))
    return extract


def _key_list(*keys: str) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        v = _at(ev.obj, *keys)
        return _values(v) if isinstance(v, list) else None
    return extract


# ---------------------------------------------------------------------------------------------
# Pod containers: containers, initContainers and ephemeralContainers each have their own fields.
# ---------------------------------------------------------------------------------------------

def _containers(ev: Any, kind: str, arg: str | None) -> list[Any] | None:
    return _pick(_at(ev.obj, "requestObject", "spec", kind), arg)


def _per_container(kind: str, *keys: str) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        cs = _containers(ev, kind, arg)
        return None if cs is None else _values([_at(c, *keys) for c in cs])
    return extract


def _repository(image: str) -> str:
    """`registry:5000/team/app:1.2@sha256:...` → `registry:5000/team/app`.

    The plugin cuts at the first ':', which turns a registry with a port into a bare host name;
    a tag is the ':' after the last '/'.
    """
    image = image.split("@", 1)[0]
    name, colon, tag = image.rpartition(":")
    return name if colon and "/" not in tag else image


def _images(kind: str, repository: bool) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        cs = _containers(ev, kind, arg)
        if cs is None:
            return None
        imgs = [t for c in cs if (t := text(_at(c, "image"))) is not None]
        return _values([_repository(i) for i in imgs] if repository else imgs)
    return extract


def _host_ports(kind: str) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        cs = _containers(ev, kind, arg)
        if cs is None:
            return None
        out = []
        for c in cs:
            for p in _at(c, "ports") or []:
                # hostPort, else containerPort (which is the host's port under hostNetwork).
                out.append(_at(p, "hostPort") if _at(p, "hostPort") is not None else _at(p, "containerPort"))
        return _values(out)
    return extract


def _effective(kind: str, key: str) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        cs = _containers(ev, kind, arg)
        if cs is None:
            return None
        pod = text(_at(ev.obj, "requestObject", "spec", "securityContext", key)) or "0"
        return _values([text(_at(c, "securityContext", key)) or pod for c in cs])
    return extract


def _add_caps(kind: str) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        cs = _containers(ev, kind, arg)
        if cs is None:
            return None
        out: list[Any] = []
        for c in cs:
            add = _at(c, "securityContext", "capabilities", "add")
            if isinstance(add, list):
                out += add
        return _values(out)
    return extract


def _container_fields(kind: str, what: str) -> tuple[Field, ...]:
    p = f"ka.req.pod.{kind}"
    sc = "securityContext"

    def f(name: str, desc: str, ex: Callable[[Any, str | None], Any]) -> Field:
        return Field(f"{p}.{name}", "CHARBUF", f"When the request object refers to a pod, {desc} {what}.",
                     ex, arg="index", is_list=True)

    return (
        f("name", "the names of the", _per_container(kind, "name")),
        f("image", "the images of the", _images(kind, repository=False)),
        f("image.repository", "the image repositories (no tag or digest) of the", _images(kind, True)),
        f("host_port", "the hostPort (else containerPort) values of the", _host_ports(kind)),
        f("privileged", "the privileged flag of the", _per_container(kind, sc, "privileged")),
        f("allow_privilege_escalation", "the allowPrivilegeEscalation flag of the",
          _per_container(kind, sc, "allowPrivilegeEscalation")),
        f("read_only_fs", "the readOnlyRootFilesystem flag of the",
          _per_container(kind, sc, "readOnlyRootFilesystem")),
        f("run_as_user", "the runAsUser uid of the", _per_container(kind, sc, "runAsUser")),
        f("eff_run_as_user", "the uid (container's, else pod's, else 0) that runs the",
          _effective(kind, "runAsUser")),
        f("run_as_group", "the runAsGroup gid of the", _per_container(kind, sc, "runAsGroup")),
        f("eff_run_as_group", "the gid (container's, else pod's, else 0) that runs the",
          _effective(kind, "runAsGroup")),
        f("proc_mount", "the procMount type of the", _per_container(kind, sc, "procMount")),
        f("add_capabilities", "the capabilities added to the", _add_caps(kind)),
    )


# ---------------------------------------------------------------------------------------------
# Everything else
# ---------------------------------------------------------------------------------------------

def _uri_param(ev: Any, arg: str | None) -> Any:
    uri = _at(ev.obj, "requestURI")
    if not isinstance(uri, str) or arg is None:
        return None
    vals = parse_qs(urlsplit(uri).query, keep_blank_values=True).get(arg)
    return vals[0] if vals else None


def _binding_subjects(kind: str, with_ns: bool = False) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        subjects = _at(ev.obj, "requestObject", "subjects")
        if not isinstance(subjects, list):
            return None
        out = []
        for s in subjects:
            if _at(s, "kind") != kind or _at(s, "name") is None:
                continue
            name = text(_at(s, "name"))
            out.append(f"{text(_at(s, 'namespace')) or ''}:{name}" if with_ns else name)
        return _values(out)
    return extract


def _first_container(repository: bool) -> Callable[[Any, str | None], Any]:
    images = _images("containers", repository)

    def extract(ev: Any, arg: str | None) -> Any:
        v = images(ev, "0")
        return v[0] if v else None
    return extract


def _any_privileged(ev: Any, arg: str | None) -> Any:
    cs = _containers(ev, "containers", None)
    if cs is None:
        return None
    return "true" if any(_at(c, "securityContext", "privileged") is True for c in cs) else "false"


def _volumes(ev: Any, arg: str | None) -> list[Any] | None:
    return _pick(_at(ev.obj, "requestObject", "spec", "volumes"), arg)


def _volume_key(*keys: str) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        vs = _volumes(ev, arg)
        return None if vs is None else _values([_at(v, *keys) for v in vs])
    return extract


def _volume_types(ev: Any, arg: str | None) -> Any:
    vs = _volumes(ev, arg)
    if vs is None:
        return None
    return _values([k for v in vs if isinstance(v, dict) for k in v if k != "name"])


def _volume_hostpath_prefix(ev: Any, arg: str | None) -> Any:
    # Deprecated form: "true" when a hostPath volume is the argument (a trailing * is a prefix).
    paths = _volume_key("hostPath", "path")(ev, None)
    if arg is None or paths is None:
        return None if arg is None else "false"
    if arg.endswith("*"):
        return "true" if any(p.startswith(arg[:-1]) for p in paths) else "false"
    return "true" if arg in paths else "false"


def _rules_key(key: str) -> Callable[[Any, str | None], Any]:
    def extract(ev: Any, arg: str | None) -> Any:
        rules = _pick(_at(ev.obj, "requestObject", "rules"), arg)
        if rules is None:
            return None
        out: list[Any] = []
        for r in rules:
            v = _at(r, key)
            if isinstance(v, list):
                out += v
        return _values(out)
    return extract


def _source_ips(ev: Any, arg: str | None) -> Any:
    ips = _pick(_at(ev.obj, "sourceIPs"), arg)
    return None if ips is None else _values(ips)


def _service_ports(ev: Any, arg: str | None) -> Any:
    ports = _pick(_at(ev.obj, "requestObject", "spec", "ports"), arg)
    return None if ports is None else _values(ports)


def _s(name: str, desc: str, ex: Callable[[Any, str | None], Any], **kw: Any) -> Field:
    return Field(name, "CHARBUF", desc, ex, **kw)


_POD = "When the request object refers to a pod,"

FIELDS: tuple[Field, ...] = (
    _s("ka.auditid", "The unique id of the audit event.", _key("auditID")),
    _s("ka.stage", "Stage of the request (e.g. RequestReceived, ResponseComplete).", _key("stage")),
    _s("ka.auth.decision", "The authorization decision.",
       _key("annotations", "authorization.k8s.io/decision")),
    _s("ka.auth.reason", "The authorization reason.", _key("annotations", "authorization.k8s.io/reason")),
    _s("ka.user.name", "The user name performing the request.", _key("user", "username")),
    _s("ka.user.groups", "The groups to which the user belongs.", _key_list("user", "groups"),
       is_list=True),
    _s("ka.impuser.name", "The impersonated user name.", _key("impersonatedUser", "username")),
    _s("ka.verb", "The action being performed.", _key("verb")),
    _s("ka.uri", "The request URI as sent from client to server.", _key("requestURI")),
    _s("ka.uri.param", "The value of a query parameter of the uri (ka.uri.param[key] is val when "
       "uri=/foo?key=val).", _uri_param, arg="key", arg_required=True),
    _s("ka.target.name", "The target object name.", _key("objectRef", "name")),
    _s("ka.target.namespace", "The target object namespace.", _key("objectRef", "namespace")),
    _s("ka.target.resource", "The target object resource.", _key("objectRef", "resource")),
    _s("ka.target.subresource", "The target object subresource.", _key("objectRef", "subresource")),
    _s("ka.req.binding.subjects", "When the request object refers to a (cluster) role binding, the "
       "subjects (accounts, users, groups) it binds, each as JSON.", _key_list("requestObject", "subjects"),
       is_list=True),
    _s("ka.req.binding.subjects.user_names", "The user names a (cluster) role binding binds.",
       _binding_subjects("User"), is_list=True),
    _s("ka.req.binding.subjects.serviceaccount_names", "The service account names a (cluster) role "
       "binding binds.", _binding_subjects("ServiceAccount"), is_list=True),
    _s("ka.req.binding.subjects.serviceaccount_ns_names", "The service accounts a (cluster) role binding "
       "binds, as namespace:name.", _binding_subjects("ServiceAccount", with_ns=True), is_list=True),
    _s("ka.req.binding.subjects.group_names", "The group names a (cluster) role binding binds.",
       _binding_subjects("Group"), is_list=True),
    _s("ka.req.binding.role", "When the request object refers to a (cluster) role binding, the role "
       "it links.", _key("requestObject", "roleRef", "name")),
    _s("ka.req.binding.subject.has_name", "Deprecated: always true, as in the k8saudit plugin.",
       lambda ev, arg: "true", arg="key", arg_required=True),
    _s("ka.req.configmap.name", "If the request object refers to a configmap, the configmap name.",
       _key("objectRef", "name")),
    _s("ka.req.configmap.obj", "If the request object refers to a configmap, its data as JSON.",
       _key("requestObject", "data")),
    *_container_fields("containers", "containers"),
    *_container_fields("initContainers", "init containers"),
    *_container_fields("ephemeralContainers", "ephemeral containers"),
    _s("ka.req.container.image", "Deprecated by ka.req.pod.containers.image: the first container's "
       "image.", _first_container(repository=False)),
    _s("ka.req.container.image.repository", "Deprecated by ka.req.pod.containers.image.repository: the "
       "first container's repository.", _first_container(repository=True)),
    _s("ka.req.container.privileged", "Deprecated by ka.req.pod.containers.privileged: true if any "
       "container is privileged.", _any_privileged),
    _s("ka.req.pod.host_ipc", f"{_POD} the value of the hostIPC flag.",
       _key("requestObject", "spec", "hostIPC")),
    _s("ka.req.pod.host_network", f"{_POD} the value of the hostNetwork flag.",
       _key("requestObject", "spec", "hostNetwork")),
    _s("ka.req.container.host_network", "Deprecated alias of ka.req.pod.host_network.",
       _key("requestObject", "spec", "hostNetwork")),
    _s("ka.req.pod.host_pid", f"{_POD} the value of the hostPID flag.",
       _key("requestObject", "spec", "hostPID")),
    _s("ka.req.pod.run_as_user", f"{_POD} the runAsUser of its security context.",
       _key("requestObject", "spec", "securityContext", "runAsUser")),
    _s("ka.req.pod.run_as_group", f"{_POD} the runAsGroup of its security context.",
       _key("requestObject", "spec", "securityContext", "runAsGroup")),
    _s("ka.req.pod.fs_group", f"{_POD} the fsGroup of its security context.",
       _key("requestObject", "spec", "securityContext", "fsGroup")),
    _s("ka.req.pod.supplemental_groups", f"{_POD} the supplementalGroups of its security context.",
       _key_list("requestObject", "spec", "securityContext", "supplementalGroups"), is_list=True),
    # The names of Falco's built-in audit support before the plugin (rules written for Falco < 0.32).
    _s("ka.req.sec_ctx.fs_group", "Legacy name of ka.req.pod.fs_group.",
       _key("requestObject", "spec", "securityContext", "fsGroup")),
    _s("ka.req.sec_ctx.supplemental_groups", "Legacy name of ka.req.pod.supplemental_groups.",
       _key_list("requestObject", "spec", "securityContext", "supplementalGroups"), is_list=True),
    _s("ka.req.sec_ctx.added_capabilities", "Legacy name of ka.req.pod.containers.add_capabilities.",
       _add_caps("containers"), is_list=True),
    _s("ka.req.pod.volumes.hostpath", f"{_POD} the hostPath paths of all its volumes.",
       _volume_key("hostPath", "path"), arg="index", is_list=True),
    _s("ka.req.volume.hostpath", "Deprecated by ka.req.pod.volumes.hostpath: true if a hostPath volume "
       "is the argument (a trailing * matches a prefix).", _volume_hostpath_prefix, arg="key",
       arg_required=True),
    _s("ka.req.pod.volumes.flexvolume_driver", f"{_POD} the flexVolume drivers of all its volumes.",
       _volume_key("flexVolume", "driver"), arg="index", is_list=True),
    _s("ka.req.pod.volumes.volume_type", f"{_POD} the types (hostPath, secret, ...) of all its volumes.",
       _volume_types, arg="index", is_list=True),
    _s("ka.req.role.rules", "When the request object refers to a (cluster) role, its rules, each as JSON.",
       _key_list("requestObject", "rules"), is_list=True),
    _s("ka.req.role.rules.apiGroups", "The api groups of a (cluster) role's rules.",
       _rules_key("apiGroups"), arg="index", is_list=True),
    _s("ka.req.role.rules.nonResourceURLs", "The non-resource URLs of a (cluster) role's rules.",
       _rules_key("nonResourceURLs"), arg="index", is_list=True),
    _s("ka.req.role.rules.verbs", "The verbs of a (cluster) role's rules.", _rules_key("verbs"),
       arg="index", is_list=True),
    _s("ka.req.role.rules.resources", "The resources of a (cluster) role's rules.",
       _rules_key("resources"), arg="index", is_list=True),
    _s("ka.req.service.type", "When the request object refers to a service, the service type.",
       _key("requestObject", "spec", "type")),
    _s("ka.req.service.ports", "When the request object refers to a service, its ports, each as JSON.",
       _service_ports, arg="index", is_list=True),
    _s("ka.resp.name", "The response object name.", _key("responseObject", "metadata", "name")),
    _s("ka.response.code", "The response code.", _key("responseStatus", "code")),
    _s("ka.response.reason", "The response reason (usually present only for failures).",
       _key("responseStatus", "reason")),
    _s("ka.useragent", "The user agent of the client that made the request.", _key("userAgent")),
    _s("ka.sourceips", "The IP addresses of the client that made the request.", _source_ips,
       arg="index", is_list=True),
)

KA = FieldClass("ka", "k8s_audit", "Kubernetes audit events (the fields of Falco's k8saudit plugin).",
                FIELDS)


# ---------------------------------------------------------------------------------------------
# evt.* for the k8s_audit source: what Falco offers for any plugin event. The extractors are the
# syscall source's own (they read only the event's number, time and source).
# ---------------------------------------------------------------------------------------------

_SHARED_EVT = {
    "evt.num": "Number of the event from its audit source (webhook, log file or replay).",
    "evt.time": "", "evt.time.s": "", "evt.time.iso8601": "", "evt.datetime": "", "evt.datetime.s": "",
    "evt.rawtime": "", "evt.rawtime.s": "", "evt.rawtime.ns": "",
    "evt.source": "Name of the source that produced the event (k8s_audit).",
    "evt.is_async": "True for asynchronous events; audit events are not.",
    "evt.hostname": "",
}

EVT = FieldClass("evt", "k8s_audit", "Event fields every k8s_audit event has (time is stageTimestamp).", (
    *(replace(f, desc=_SHARED_EVT[f.name] or f.desc) for f in _evt.CLASS.fields if f.name in _SHARED_EVT),
    Field("evt.pluginname", "CHARBUF", "The Falco plugin that produces these events (k8saudit).",
          lambda ev, arg: "k8saudit"),
))

CLASSES = (KA, EVT)
