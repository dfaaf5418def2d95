"""The container.* field class: the container the process runs in (`event.proc.container`).

A host process has container.id, container.name and container.type "host" and no other
container value. For a container, a value the capture could not learn (the runtime did not answer)
is None, which prints as <NA>: never a guess.

container.mount[...] and container.mount.*[...] take a mount's index (`[0]`) or a glob pattern, as
Falco's do: container.mount.source[PATTERN] finds the first mount whose destination matches, every
other one the first mount whose source matches.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import Container, SyscallEvent

HOST_ID = "host"


def _container(ev: SyscallEvent) -> Container | None:
    c = ev.proc.container
    return None if c.id == HOST_ID else c


def _mount_text(m: dict[str, Any]) -> str:
    return f"{m.get('source', '')}:{m.get('dest', '')}:{m.get('mode', '')}:{_rdwr(m)}:" \
           f"{m.get('propagation', '')}"


def _rdwr(m: dict[str, Any]) -> str:
    return "true" if m.get("rdwr") else "false"


def _find_mount(ev: SyscallEvent, arg: str | None, by: str) -> dict[str, Any] | None:
    c = _container(ev)
    if c is None or not c.mounts or arg is None:
        return None
    if arg.isdigit():
        i = int(arg)
        return c.mounts[i] if i < len(c.mounts) else None
    for m in c.mounts:
        if fnmatchcase(str(m.get(by, "")), arg):
            return m
    return None


def _id(ev: SyscallEvent, arg: str | None) -> str:
    return ev.proc.container.id


def _full_id(ev: SyscallEvent, arg: str | None) -> str | None:
    c = ev.proc.container
    if c.id == HOST_ID:
        return HOST_ID
    return c.full_id or None


def _name(ev: SyscallEvent, arg: str | None) -> str | None:
    c = ev.proc.container
    return HOST_ID if c.id == HOST_ID else c.name


def _type(ev: SyscallEvent, arg: str | None) -> str | None:
    c = ev.proc.container
    return HOST_ID if c.id == HOST_ID else c.type


def _image(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _container(ev)
    return c.image if c is not None else None


def _repository(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _container(ev)
    return c.image_repository if c is not None else None


def _tag(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _container(ev)
    return c.image_tag if c is not None else None


def _digest(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _container(ev)
    return c.image_digest if c is not None else None


def _privileged(ev: SyscallEvent, arg: str | None) -> bool | None:
    c = _container(ev)
    return c.privileged if c is not None else None


def _mounts(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _container(ev)
    if c is None or c.mounts is None:
        return None
    return ",".join(_mount_text(m) for m in c.mounts)


def _mount(ev: SyscallEvent, arg: str | None) -> str | None:
    m = _find_mount(ev, arg, "source")
    return _mount_text(m) if m is not None else None


def _mount_source(ev: SyscallEvent, arg: str | None) -> str | None:
    m = _find_mount(ev, arg, "dest")
    return m.get("source") if m is not None else None


def _mount_dest(ev: SyscallEvent, arg: str | None) -> str | None:
    m = _find_mount(ev, arg, "source")
    return m.get("dest") if m is not None else None


def _mount_mode(ev: SyscallEvent, arg: str | None) -> str | None:
    m = _find_mount(ev, arg, "source")
    return m.get("mode") if m is not None else None


def _mount_rdwr(ev: SyscallEvent, arg: str | None) -> str | None:
    m = _find_mount(ev, arg, "source")
    return _rdwr(m) if m is not None else None


def _mount_propagation(ev: SyscallEvent, arg: str | None) -> str | None:
    m = _find_mount(ev, arg, "source")
    return m.get("propagation") if m is not None else None


def _start_ts(ev: SyscallEvent, arg: str | None) -> int | None:
    c = _container(ev)
    return c.start_ts if c is not None else None


def _duration(ev: SyscallEvent, arg: str | None) -> int | None:
    c = _container(ev)
    if c is None or not c.start_ts:
        return None
    return ev.time_ns - c.start_ts


def _label(ev: SyscallEvent, arg: str | None) -> str | None:
    c = _container(ev)
    return c.labels.get(arg) if c is not None and c.labels is not None and arg is not None else None


def _labels(ev: SyscallEvent, arg: str | None) -> str | None:
    # Falco's container plugin leaves the kubelet's labels and annotations out, as k8s.pod.labels.
    c = _container(ev)
    if c is None or c.labels is None:
        return None
    return ", ".join(f"{k}:{v}" if v else k for k, v in sorted(c.labels.items())
                     if not k.startswith(("io.kubernetes.", "annotation.")))


def _label_keys(ev: SyscallEvent) -> list[str]:
    c = _container(ev)
    return list(c.labels) if c is not None and c.labels else []


def _mount_indexes(ev: SyscallEvent) -> list[str]:
    c = _container(ev)
    return [str(i) for i in range(len(c.mounts))] if c is not None and c.mounts else []


# Which arguments `falconet capture` records for the fields that take one (see record.py): every
# mount by index. Glob patterns are open-ended and not recorded.
RECORD_ARGS = {name: _mount_indexes
               for name in ("container.mount", "container.mount.source", "container.mount.dest",
                            "container.mount.mode", "container.mount.rdwr", "container.mount.propagation")}
RECORD_ARGS["container.label"] = _label_keys

_MOUNT_ARG = " Takes a mount's index ([0]) or a glob pattern matched against the mount's source."

CLASS = FieldClass("container", "syscall",
                   "The container the process runs in; id, name and type are 'host' outside containers.", (
    Field("container.id", "CHARBUF", "Short container id (the first 12 hex characters); 'host' for host "
          "processes.", _id),
    Field("container.full_id", "CHARBUF", "Full container id; 'host' for host processes.", _full_id),
    Field("container.name", "CHARBUF", "Container name; 'host' for host processes.", _name),
    Field("container.type", "CHARBUF", "Container runtime: docker, containerd, cri-o, podman; 'host' for "
          "host processes.", _type),
    Field("container.image", "CHARBUF", "Image as the runtime reports it (repository:tag).", _image),
    Field("container.image.repository", "CHARBUF", "Image repository, e.g. docker.io/library/nginx.",
          _repository),
    Field("container.image.tag", "CHARBUF", "Image tag, e.g. latest.", _tag),
    Field("container.image.digest", "CHARBUF", "Image registry digest (sha256:...).", _digest),
    Field("container.privileged", "BOOL", "True when the container runs privileged.", _privileged),
    Field("container.mounts", "CHARBUF",
          "Every mount of the container as source:dest:mode:rdwr:propagation, separated by commas.", _mounts),
    Field("container.mount", "CHARBUF", "One mount as source:dest:mode:rdwr:propagation." + _MOUNT_ARG,
          _mount, arg="key", arg_required=True),
    Field("container.mount.source", "CHARBUF",
          "Source of one mount, by index ([0]) or by a glob pattern matched against the destination.",
          _mount_source, arg="key", arg_required=True),
    Field("container.mount.dest", "CHARBUF", "Destination of one mount." + _MOUNT_ARG, _mount_dest,
          arg="key", arg_required=True),
    Field("container.mount.mode", "CHARBUF", "Mode of one mount." + _MOUNT_ARG, _mount_mode,
          arg="key", arg_required=True),
    Field("container.mount.rdwr", "CHARBUF", "'true' when one mount is read-write." + _MOUNT_ARG,
          _mount_rdwr, arg="key", arg_required=True),
    Field("container.mount.propagation", "CHARBUF", "Propagation of one mount." + _MOUNT_ARG,
          _mount_propagation, arg="key", arg_required=True),
    Field("container.label", "CHARBUF", "Value of one label of the container: container.label[app] or "
          "container.label.app; no value when it has no such label.", _label, arg="key", arg_required=True,
          dot_arg=True),
    Field("container.labels", "CHARBUF", "Every label of the container as key:value, sorted, separated by "
          "', ' (the kubelet's io.kubernetes.* labels left out).", _labels),
    Field("container.start_ts", "UINT64", "Start of the container, nanoseconds since the epoch.", _start_ts),
    Field("container.duration", "RELTIME", "Nanoseconds since the container started.", _duration),
))
