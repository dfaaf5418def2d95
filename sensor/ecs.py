"""The one table that maps Falco fields to ECS fields, and `to_ecs(alert)` (DESIGN.md §5).

Two things read this module: the sensor's serializer (`to_ecs`, what the fluent channel sends) and
the generator of the ingest pipeline that maps raw Falco and Falcosidekick alerts
(sensor/provision/pipeline.py → elasticsearch/ingest_pipelines/falconet-alerts-falco.json). A test
keeps that file and this table in step, so a Falconet alert and a Falco alert of the same event end
up as the same ECS document and one set of dashboards serves both.

Every rule here is expressible with documented ingest processors; that is why the table is plain
data (field → field, with two flags) rather than functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sensor.alert import NAMES, Alert, Priority, alert_dict

ECS_VERSION = "8.11.0"
DATASET = "falconet.alerts"
MODULE = "falconet"


@dataclass(frozen=True, slots=True)
class Row:
    """One Falco field copied to one ECS field.

    `type` is the Elasticsearch mapping type of the ECS field. `paths_only`: copy only values that
    are absolute paths (fd.name is `1.2.3.4:5->6.7.8.9:80` for sockets, and a socket is not a
    file). `as_string`: ECS types the field keyword while Falco gives a number (user.id, group.id).
    When several rows name the same ECS field, the first one with a value wins.
    """

    falco: str
    ecs: str
    type: str
    paths_only: bool = False
    as_string: bool = False


TABLE: tuple[Row, ...] = (
    # process (the actor)
    Row("proc.name", "process.name", "keyword"),
    Row("proc.exepath", "process.executable", "keyword"),
    Row("proc.cmdline", "process.command_line", "wildcard"),
    Row("proc.pid", "process.pid", "long"),
    Row("proc.vpid", "process.vpid", "long"),
    Row("proc.cwd", "process.working_directory", "keyword"),
    Row("proc.sid", "process.session_leader.pid", "long"),
    Row("thread.tid", "process.thread.id", "long"),
    Row("proc.pname", "process.parent.name", "keyword"),
    Row("proc.ppid", "process.parent.pid", "long"),
    Row("proc.pexepath", "process.parent.executable", "keyword"),
    Row("proc.pcmdline", "process.parent.command_line", "wildcard"),
    # user and group (the syscall's, then the Kubernetes API caller's)
    Row("user.name", "user.name", "keyword"),
    Row("user.uid", "user.id", "keyword", as_string=True),
    Row("ka.user.name", "user.name", "keyword"),
    Row("group.name", "group.name", "keyword"),
    Row("group.gid", "group.id", "keyword", as_string=True),
    # file
    Row("fd.name", "file.path", "keyword", paths_only=True),
    Row("fs.path.name", "file.path", "keyword", paths_only=True),
    Row("fd.directory", "file.directory", "keyword"),
    Row("fd.filename", "file.name", "keyword"),
    Row("fd.ino", "file.inode", "keyword", as_string=True),
    # network: Falco's client is ECS's source (the side that connected), its server the destination
    Row("fd.cip", "source.ip", "ip"),
    Row("fd.cport", "source.port", "long"),
    Row("fd.cip.name", "source.domain", "keyword"),
    Row("fd.sip", "destination.ip", "ip"),
    Row("fd.sport", "destination.port", "long"),
    Row("fd.sip.name", "destination.domain", "keyword"),
    Row("fd.l4proto", "network.transport", "keyword"),
    Row("ka.sourceips", "source.ip", "ip"),
    # container
    Row("container.id", "container.id", "keyword"),
    Row("container.name", "container.name", "keyword"),
    Row("container.image.repository", "container.image.name", "keyword"),
    Row("container.image.tag", "container.image.tag", "keyword"),
    Row("container.image.digest", "container.image.hash.all", "keyword"),
    Row("container.type", "container.runtime", "keyword"),
    Row("container.privileged", "container.security_context.privileged", "boolean"),
    # Kubernetes: the pod a process runs in, then the object an API request targets
    Row("k8s.ns.name", "orchestrator.namespace", "keyword"),
    Row("k8s.pod.name", "orchestrator.resource.name", "keyword"),
    Row("k8s.pod.uid", "orchestrator.resource.id", "keyword"),
    Row("ka.target.namespace", "orchestrator.namespace", "keyword"),
    Row("ka.target.name", "orchestrator.resource.name", "keyword"),
    Row("ka.target.resource", "orchestrator.resource.type", "keyword"),
    Row("ka.verb", "event.action", "keyword"),
    Row("ka.uri", "url.original", "wildcard"),
    Row("ka.useragent", "user_agent.original", "keyword"),
    Row("ka.response.code", "http.response.status_code", "long"),
    # the event itself
    Row("evt.type", "event.action", "keyword"),
    Row("evt.hostname", "host.name", "keyword"),
)
"""Falco field → ECS field, in precedence order. Falco fields not named here stay under
falco.output_fields only; proc.args is one of them on purpose: Falco's is a single string without
argv[0], ECS's process.args an array that starts with the executable, and splitting on spaces
would invent arguments."""

SEVERITY: dict[str, int] = {name: int(Priority.parse(name)) for name in (*NAMES, "Info")}
"""Falco priority name (as a Falco alert spells it) → event.severity: the Priority's number, the
syslog severity (0 Emergency ... 7 Debug, lower is more severe). The ingest pipeline's table."""

# MITRE ATT&CK tactics by the tag Falco's rules use for them, in ATT&CK's kill-chain order.
TACTICS: tuple[tuple[str, str, str], ...] = (
    ("mitre_reconnaissance", "TA0043", "Reconnaissance"),
    ("mitre_resource_development", "TA0042", "Resource Development"),
    ("mitre_initial_access", "TA0001", "Initial Access"),
    ("mitre_execution", "TA0002", "Execution"),
    ("mitre_persistence", "TA0003", "Persistence"),
    ("mitre_privilege_escalation", "TA0004", "Privilege Escalation"),
    ("mitre_defense_evasion", "TA0005", "Defense Evasion"),
    ("mitre_credential_access", "TA0006", "Credential Access"),
    ("mitre_discovery", "TA0007", "Discovery"),
    ("mitre_lateral_movement", "TA0008", "Lateral Movement"),
    ("mitre_collection", "TA0009", "Collection"),
    ("mitre_command_and_control", "TA0011", "Command and Control"),
    ("mitre_exfiltration", "TA0010", "Exfiltration"),
    ("mitre_impact", "TA0040", "Impact"),
)
THREAT_FRAMEWORK = "MITRE ATT&CK"
TACTIC_URL = "https://attack.mitre.org/tactics/{id}/"
TECHNIQUE_URL = "https://attack.mitre.org/techniques/{id}/"          # T1059
SUBTECHNIQUE_URL = "https://attack.mitre.org/techniques/{id}/{sub}/"  # T1059/004

# event.category (ECS's allowed values) by source, then by the tags Falco's rules use.
SOURCE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "syscall": ("intrusion_detection",),
    "k8s_audit": ("intrusion_detection", "api"),
    "internal": ("host",),
}
OTHER_SOURCE_CATEGORIES: tuple[str, ...] = ("intrusion_detection",)   # plugin sources
TAG_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("filesystem", "file"),
    ("network", "network"),
    ("process", "process"),
    ("users", "iam"),
    ("software_mgmt", "package"),
    ("host", "host"),
)
EVENT_TYPE: tuple[str, ...] = ("info",)


def is_technique(tag: str) -> bool:
    """True for an ATT&CK technique or sub-technique id: T1059, T1059.004."""
    head, dot, sub = tag.partition(".")
    if not (len(head) == 5 and head[0] == "T" and head[1:].isdigit()):
        return False
    return not dot or (len(sub) == 3 and sub.isdigit())


def categories(source: str, tags: Iterable[str]) -> list[str]:
    """event.category for an alert of `source` with `tags`, without duplicates, in table order."""
    out = list(SOURCE_CATEGORIES.get(source, OTHER_SOURCE_CATEGORIES))
    tagset = set(tags)
    for tag, cat in TAG_CATEGORIES:
        if tag in tagset and cat not in out:
            out.append(cat)
    return out


def threat(tags: Iterable[str]) -> dict[str, Any]:
    """threat.* from MITRE tags: tactics in kill-chain order, techniques in tag order."""
    tags = list(tags)
    tagset = set(tags)
    out: dict[str, Any] = {}
    tactics = [(tid, name) for tag, tid, name in TACTICS if tag in tagset]
    if tactics:
        out["tactic"] = {
            "id": [tid for tid, _ in tactics],
            "name": [name for _, name in tactics],
            "reference": [TACTIC_URL.format(id=tid) for tid, _ in tactics],
        }
    techniques: list[str] = []
    subtechniques: list[str] = []
    for tag in tags:
        if not is_technique(tag):
            continue
        head, _, sub = tag.partition(".")
        if head not in techniques:
            techniques.append(head)
        if sub and tag not in subtechniques:
            subtechniques.append(tag)
    if techniques:
        technique: dict[str, Any] = {
            "id": techniques,
            "reference": [TECHNIQUE_URL.format(id=t) for t in techniques],
        }
        if subtechniques:
            technique["subtechnique"] = {
                "id": subtechniques,
                "reference": [SUBTECHNIQUE_URL.format(id=s[:5], sub=s[6:]) for s in subtechniques],
            }
        out["technique"] = technique
    if out:
        out["framework"] = THREAT_FRAMEWORK
    return out


def timestamp(time_ns: int) -> str:
    """@timestamp: UTC with milliseconds, as the ingest `date` processor writes it by default."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1_000_000:03d}Z"


def entity_fields(output_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ECS fields the table derives from output_fields, as a flat {ecs_field: value} dict."""
    out: dict[str, Any] = {}
    for row in TABLE:
        if row.ecs in out:
            continue
        value = output_fields.get(row.falco)
        if value is None or value == "":
            continue
        if row.paths_only and not (isinstance(value, str) and value.startswith("/")):
            continue
        if row.as_string and not isinstance(value, str):
            value = str(value)
        out[row.ecs] = value
    return out


def to_ecs(alert: Alert) -> dict[str, Any]:
    """The ECS document for an alert (DESIGN.md §5); what the fluent channel sends.

    `alert.extra` (ECS keys, e.g. a response record's event.kind/outcome and falconet.response.*)
    is merged in last, so it may override event.kind/category/type.
    """
    tags = sorted(alert.tags)
    falco = alert_dict(alert)
    doc: dict[str, Any] = {
        "@timestamp": timestamp(alert.time_ns),
        "message": alert.output,
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": categories(alert.source, tags),
            "type": list(EVENT_TYPE),
            "severity": int(alert.priority),
            "module": MODULE,
            "dataset": DATASET,
            "id": alert.uuid,
        },
        "rule": {"name": alert.rule, "ruleset": alert.source},
        "log": {"level": alert.priority.label.lower()},
        "tags": tags,
        "falco": falco,
    }
    if alert.hostname:
        set_path(doc, "host.name", alert.hostname)
    for field, value in entity_fields(alert.output_fields).items():
        if get_path(doc, field) is None:
            set_path(doc, field, value)
    t = threat(tags)
    if t:
        doc["threat"] = t
    if alert.extra:
        merge(doc, alert.extra)
    return doc


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating the objects on the way."""
    *parents, leaf = dotted.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def get_path(doc: Mapping[str, Any], dotted: str) -> Any:
    """The value at `a.b.c` in a nested dict, or None."""
    node: Any = doc
    for p in dotted.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def merge(doc: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Deep-merge `extra` into `doc`: objects merge, anything else replaces."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(doc.get(key), dict):
            merge(doc[key], value)
        else:
            doc[key] = dict(value) if isinstance(value, Mapping) else value


def flatten(doc: Mapping[str, Any], prefix: str = "", stop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """{dotted leaf path: value} of a nested document; paths in `stop` are kept whole (flattened)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path not in stop:
            out.update(flatten(value, path + ".", stop))
        else:
            out[path] = value
    return out


__all__ = ["DATASET", "ECS_VERSION", "MODULE", "SEVERITY", "TABLE", "TACTICS", "Row", "to_ecs"]
