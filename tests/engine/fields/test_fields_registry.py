"""The syscall field registry as a whole: it covers every field Falco's official rules name, and every
field is well formed (Falco type, description, argument metadata, an extractor bound to the event)."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import compat_file

from sensor.engine.fields import classes, registry, resolve
from sensor.engine.fields.base import IP_TYPES, NUMERIC_TYPES, STRING_TYPES
from sensor.event import SyscallEvent

OFFICIAL = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")
SYSCALL_PREFIXES = ("evt", "proc", "thread", "fd", "fdlist", "user", "group", "container", "k8s", "fs",
                    "syscall")
# A field reference as Falco's grammar reads it: not part of a longer dotted word or path
# (registry.k8s.io is an image name, not a k8s.* field), optionally %-prefixed in outputs.
FIELD_RE = re.compile(r"(?<![\w.\-/])%?((?:" + "|".join(SYSCALL_PREFIXES) + r")\.[A-Za-z0-9_.]*[A-Za-z0-9_])"
                      r"(\[[^\]]*\])?")
TYPES = NUMERIC_TYPES | STRING_TYPES | IP_TYPES | {"BOOL", "DOUBLE"}


def _references(path) -> set[str]:
    refs: set[str] = set()
    for item in yaml.safe_load(path.read_text()) or []:
        if not isinstance(item, dict) or item.get("source", "syscall") != "syscall":
            continue
        texts = [item.get("condition"), item.get("output")] if ("rule" in item or "macro" in item) else []
        for text in texts:
            if isinstance(text, str):
                refs.update(m.group(1) + (m.group(2) or "") for m in FIELD_RE.finditer(text))
    return refs


def _official_references() -> set[str]:
    refs: set[str] = set()
    for name in OFFICIAL:
        refs |= _references(compat_file(name))
    return refs


def test_official_rules_name_many_syscall_fields() -> None:
    # The grep itself must find what the rule files use, or the coverage test below proves nothing.
    refs = _official_references()
    assert {"proc.aname[2]", "evt.arg.flags", "fd.sip.name", "container.mount.dest[/proc*]",
            "proc.exe_ino.ctime_duration_proc_start", "k8s.ns.name", "fd.net"} <= refs
    assert len(refs) > 100


def test_every_syscall_field_in_the_official_rules_resolves() -> None:
    unresolved = []
    for ref in sorted(_official_references()):
        name, _, bracket = ref.partition("[")
        found = resolve("syscall", name)
        if found is None:
            unresolved.append(ref)
            continue
        field, dot_arg = found
        if bracket and field.arg is None:
            unresolved.append(f"{ref} (takes no argument)")
        elif bracket and field.arg == "index" and not bracket.rstrip("]").isdigit():
            unresolved.append(f"{ref} (takes an index)")
        elif field.arg_required and not bracket and dot_arg is None:
            unresolved.append(f"{ref} (needs an argument)")
    assert unresolved == []


def test_dot_arguments_resolve_to_the_field_and_its_argument() -> None:
    f, arg = resolve("syscall", "evt.arg.flags")
    assert (f.name, arg) == ("evt.arg", "flags")
    f, arg = resolve("syscall", "evt.rawarg.res")
    assert (f.name, arg) == ("evt.rawarg", "res")
    f, arg = resolve("syscall", "k8s.pod.label.app.kubernetes.io/name")
    assert (f.name, arg) == ("k8s.pod.label", "app.kubernetes.io/name")
    # exact names win over a dot argument: fd.sip.name is a field, not fd.sip with "name"
    f, arg = resolve("syscall", "fd.sip.name")
    assert (f.name, arg) == ("fd.sip.name", None)
    assert resolve("syscall", "proc.nosuchfield") is None


@pytest.mark.parametrize("name", sorted(registry("syscall")))
def test_field_is_well_formed(name: str) -> None:
    f = registry("syscall")[name]
    assert f.type in TYPES, f"{name}: {f.type} is not a Falco type"
    assert len(f.desc) > 10 and f.desc.endswith("."), f"{name}: needs a description (a sentence)"
    assert f.arg in (None, "index", "key")
    assert not (f.arg_required and f.arg is None)
    assert not (f.dot_arg and f.arg != "key")
    if f.context:           # the ruleset supplies it (evt.hostname)
        assert f.extract is None and not f.record
    else:
        assert callable(f.extract)
        assert SyscallEvent.extractors[name] is f.extract


def test_names_are_unique_and_prefixed_by_their_class() -> None:
    seen: set[str] = set()
    for cls in classes():
        if cls.source != "syscall":
            continue
        for f in cls.fields:
            assert f.name not in seen, f"{f.name} defined twice"
            seen.add(f.name)
            assert f.name.split(".")[0] in SYSCALL_PREFIXES


def test_registry_has_what_falco_users_reach_for() -> None:
    wanted = {"proc.pid", "proc.ppid", "proc.apid", "proc.pid.ts", "proc.sid", "proc.vpgid",
              "proc.is_exe_writable", "thread.tid", "thread.vtid", "evt.time", "evt.rawtime",
              "evt.time.s", "evt.time.iso8601", "evt.datetime", "evt.failed", "evt.cpu", "evt.source",
              "evt.is_open_create", "evt.category", "user.shell", "user.homedir", "container.name",
              "container.type", "container.image", "container.image.tag", "container.image.digest",
              "k8s.pod.uid", "k8s.pod.labels", "fd.lnet", "fs.path.name", "fdlist.names"}
    assert wanted <= set(registry("syscall"))
