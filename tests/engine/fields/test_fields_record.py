"""record_fields(): what `falconet capture` writes replays to the same values the live event has."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import compat_file
from syscall_world import World, make_world

from sensor.engine import load_rules
from sensor.engine.fields import registry
from sensor.engine.fields.base import Field
from sensor.engine.fields.record import record_fields
from sensor.engine.loader import LoadOptions
from sensor.event import RecordedEvent, SyscallEvent

ANCESTOR_FIELDS = ("proc.aname", "proc.apid", "proc.aexe", "proc.aexepath", "proc.acmdline")
MOUNT_FIELDS = ("container.mount", "container.mount.source", "container.mount.dest", "container.mount.mode",
                "container.mount.rdwr", "container.mount.propagation")


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return make_world(tmp_path, monkeypatch)


def _representative_args(f: Field, ev: SyscallEvent) -> list[str | None]:
    """Arguments worth checking for a field: every one the event has a value for, and misses."""
    bare: list[str | None] = [] if f.arg_required else [None]
    if f.arg is None:
        return bare
    if f.name in ANCESTOR_FIELDS:
        extra = [str(i) for i in range(8)]
    elif f.name == "fd.types":
        extra = [str(n) for n in ev.proc.fds]             # fds that are not open: see the xfail below
    elif f.name == "evt.arg":
        extra = [*ev.args, *(str(i) for i in range(len(ev.args) + 2)), "nosuch"]
    elif f.name == "evt.rawarg":
        extra = [*ev.args, *ev.rawargs, "nosuch"]
    elif f.name in MOUNT_FIELDS:
        extra = ["0", "1", "2"]                           # glob patterns are open-ended, not recorded
    elif f.name in ("k8s.pod.label", "container.label"):
        extra = ["app", "tier", "io.kubernetes.pod.name", "nosuch"]
    elif f.name == "proc.env":
        extra = ["NOT_SET"]                               # set variables are open-ended, not recorded
    else:
        pytest.fail(f"{f.name} takes an argument: give it representative arguments here")
    return [*bare, *extra]


def _typed(v: Any) -> tuple[type, Any]:
    return type(v), v


def test_every_field_replays_as_the_live_event_answers(world: World) -> None:
    checked = 0
    for name, ev in world.events.items():
        line = json.dumps({"source": "syscall", "fields": record_fields(ev)})
        replayed = RecordedEvent("syscall", json.loads(line)["fields"], num=ev.num)
        for f in registry("syscall").values():
            for arg in _representative_args(f, ev):
                live = ev.value(f.name, arg)
                again = replayed.value(f.name, arg)
                assert _typed(again) == _typed(live), f"{name}: {f.name}[{arg}] replays as {again!r}, " \
                                                      f"live {live!r}"
                checked += 1
    assert checked > 2000


def test_a_record_is_keyed_as_falco_writes_fields(world: World) -> None:
    rec = record_fields(world.events["open_shadow"])
    assert rec["evt.type"] == "openat"
    assert rec["proc.aname[0]"] == "cat"
    assert rec["proc.aname[1]"] == "sh"
    assert rec["proc.aname[4]"] == "systemd"
    assert "proc.aname[5]" not in rec
    assert rec["proc.aname"] == ["sh", "nginx", "containerd-shim", "systemd"]
    assert rec["proc.apid"] == [1300, 1200, 900, 1]
    assert rec["evt.arg.flags"] == "O_RDONLY|O_CLOEXEC"
    assert rec["evt.arg[3]"] == "O_RDONLY|O_CLOEXEC"
    assert rec["evt.rawarg.flags"] == 0o2000000
    assert rec["fd.types[3]"] == ["file"]
    assert rec["container.mount.dest[0]"] == "/var/run/docker.sock"
    assert rec["k8s.pod.label[app]"] == "web"
    assert rec["evt.rawtime"] == world.events["open_shadow"].time_ns
    # only fields with a value are written: a file has no ports
    assert "fd.sport" not in rec and "user.loginname" not in rec


def test_a_record_round_trips_through_json_unchanged(world: World) -> None:
    for ev in world.events.values():
        rec = record_fields(ev)
        assert json.loads(json.dumps(rec)) == rec


def test_a_replayed_event_keeps_type_and_time(world: World) -> None:
    ev = world.events["connect"]
    replayed = RecordedEvent("syscall", json.loads(json.dumps(record_fields(ev))))
    assert (replayed.type, replayed.time_ns) == ("connect", ev.time_ns)


def test_a_replayed_capture_raises_the_same_alerts_under_falcos_rules(world: World) -> None:
    paths = [compat_file(n) for n in ("falco_rules.yaml", "falco-incubating_rules.yaml",
                                       "falco-sandbox_rules.yaml")]
    ruleset = load_rules(paths, LoadOptions(rule_matching="all"))
    fired = set()
    for name, ev in world.events.items():
        replayed = RecordedEvent("syscall", json.loads(json.dumps(record_fields(ev))), num=ev.num)
        live = [(a.rule, a.output, a.output_fields) for a in ruleset.process(ev)]
        again = [(a.rule, a.output, a.output_fields) for a in ruleset.process(replayed)]
        assert again == live, name
        fired.update(rule for rule, _, _ in live)
    # the events are realistic enough to trip Falco's own rules, so the comparison means something
    assert {"Read sensitive file untrusted", "Drop and execute new binary in container", "Non sudo setuid",
            "Set Setuid or Setgid bit"} <= fired


def test_fd_types_of_a_closed_fd_replays_as_no_value(world: World) -> None:
    ev = world.events["open_shadow"]          # fds 0, 3, 4, 7, 8 are open; fd 1 is not
    replayed = RecordedEvent("syscall", json.loads(json.dumps(record_fields(ev))))
    assert ev.value("fd.types", "1") is None
    assert replayed.value("fd.types", "1") is None
