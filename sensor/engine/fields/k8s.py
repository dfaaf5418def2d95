"""The k8s.* field class (syscall source): the Kubernetes pod a container process belongs to.

Values come from the pod fields of `event.proc.container`, which the capture fills from the cgroup
(the pod UID) and the kubelet or runtime API (name, namespace, labels) when reachable. What it
could not learn is None. Host processes have no k8s.* value.
"""

from __future__ import annotations

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import Container, SyscallEvent

# Falco leaves the runtime's own labels and annotations out of k8s.pod.labels.
_HIDDEN_LABEL_PREFIXES = ("io.kubernetes.", "annotation.")


def _pod(ev: SyscallEvent) -> Container | None:
    c = ev.proc.container
    return None if c.id == "host" else c


def _ns_name(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _pod(ev)
    return c.pod_namespace if c is not None else None


def _pod_name(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _pod(ev)
    return c.pod_name if c is not None else None


def _pod_uid(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _pod(ev)
    return c.pod_uid if c is not None else None


def _pod_label(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _pod(ev)
    if c is None or c.pod_labels is None or arg is None:
        return None
    return c.pod_labels.get(arg)


def _pod_labels(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _pod(ev)
    if c is None or c.pod_labels is None:
        return None
    return ", ".join(f"{k}:{v}" if v else k for k, v in sorted(c.pod_labels.items())
                     if not k.startswith(_HIDDEN_LABEL_PREFIXES))


def _label_keys(ev: SyscallEvent) -> list[str]:
    c = _pod(ev)
    return list(c.pod_labels) if c is not None and c.pod_labels else []


# Which arguments `falconet capture` records for the fields that take one (see record.py).
RECORD_ARGS = {"k8s.pod.label": _label_keys}

CLASS = FieldClass("k8s", "syscall", "The Kubernetes pod and namespace of a container process.", (
    Field("k8s.ns.name", "CHARBUF", "Namespace of the pod.", _ns_name),
    Field("k8s.pod.name", "CHARBUF", "Name of the pod.", _pod_name),
    Field("k8s.pod.uid", "CHARBUF", "UID of the pod, e.g. 3e41dc6b-08a8-44db-bc2a-3724b18ab19a.", _pod_uid),
    Field("k8s.pod.id", "CHARBUF", "Legacy name of k8s.pod.uid.", _pod_uid),
    Field("k8s.pod.label", "CHARBUF",
          "Value of one pod label: k8s.pod.label[app.kubernetes.io/name] or k8s.pod.label.app; no value "
          "when the pod has no such label.", _pod_label, arg="key", arg_required=True, dot_arg=True),
    Field("k8s.pod.labels", "CHARBUF", "Every pod label as key:value, sorted, separated by ', '.",
          _pod_labels),
))
