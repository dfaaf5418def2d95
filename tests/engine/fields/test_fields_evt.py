"""evt.* fields: type, result, arguments as Falco renders them, open flags, I/O, time."""

from __future__ import annotations

import time

import pytest
from syscall_world import T0, World, make_world

from sensor.engine.fields import evt
from sensor.event import SyscallEvent


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return make_world(tmp_path, monkeypatch)


@pytest.fixture
def tz(monkeypatch):
    """Set the local time zone (a POSIX TZ string) for the test, restoring it afterwards."""
    def set_tz(value: str) -> None:
        monkeypatch.setenv("TZ", value)
        time.tzset()
    yield set_tz
    monkeypatch.undo()
    time.tzset()


def test_type_direction_number_cpu_source(world: World) -> None:
    ev = world.events["execve"]
    assert ev.value("evt.type") == "execve"
    assert ev.value("syscall.type") == "execve"
    assert ev.value("evt.dir") == "<"
    assert ev.value("evt.num") == 1
    assert ev.value("evt.cpu") == 1
    assert ev.value("evt.source") == "syscall"
    assert ev.value("evt.is_async") is False
    assert ev.value("evt.count") == 1


def test_success_and_failure_results(world: World) -> None:
    ok, missing, denied = (world.events[k] for k in ("open_shadow", "open_missing", "host_open"))
    assert (ok.value("evt.res"), ok.value("evt.rawres"), ok.value("evt.failed")) == ("SUCCESS", 3, False)
    assert (missing.value("evt.res"), missing.value("evt.rawres"), missing.value("evt.failed")) == \
        ("ENOENT", -2, True)
    assert denied.value("evt.res") == "EACCES"
    assert world.events["connect_refused"].value("evt.res") == "ECONNREFUSED"


def test_an_event_without_a_result_has_no_result_fields(world: World) -> None:
    enter = SyscallEvent(type="openat", time_ns=T0, num=7, proc=world.cat, tid=1301, dir=">")
    assert enter.value("evt.res") is None
    assert enter.value("evt.rawres") is None
    assert enter.value("evt.failed") is None
    assert enter.value("evt.dir") == ">"


def test_errno_names() -> None:
    assert evt.errno_name(-2) == "ENOENT"
    assert evt.errno_name(-115) == "EINPROGRESS"
    assert evt.errno_name(-4242) == "-4242"


def test_arguments_by_name_and_position_in_falcos_rendering(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("evt.arg", "flags") == "O_RDONLY|O_CLOEXEC"
    assert ev.value("evt.arg", "name") == "/etc/shadow"
    assert ev.value("evt.arg", "fd") == "<f>/etc/shadow"          # an fd resolves to its name
    assert ev.value("evt.arg", "dirfd") == "AT_FDCWD"
    assert ev.value("evt.arg", "dev") == "2051"                   # numbers are text, as in Falco
    assert ev.value("evt.arg", "0") == "<f>/etc/shadow"
    assert ev.value("evt.arg", "3") == "O_RDONLY|O_CLOEXEC"
    assert ev.value("evt.arg", "6") is None
    assert ev.value("evt.arg", "nosuch") is None
    assert ev.value("evt.arg") is None
    failed = world.events["open_missing"]
    assert failed.value("evt.arg", "fd") == "ENOENT"
    assert failed.value("evt.arg", "name") == "/tmp/missing.conf"


def test_raw_arguments(world: World) -> None:
    ev = world.events["open_missing"]
    assert ev.value("evt.rawarg", "flags") == 0
    assert ev.value("evt.rawarg", "name") == "missing.conf"
    assert ev.value("evt.rawarg", "dirfd") == -100          # no raw value: the captured one
    assert ev.value("evt.rawarg", "nosuch") is None


def test_evt_args_shows_raw_values_with_their_resolved_form(world: World) -> None:
    assert world.events["open_missing"].value("evt.args") == (
        "fd=-2(ENOENT) dirfd=-100(AT_FDCWD) name=missing.conf(/tmp/missing.conf) flags=0(O_RDONLY) mode=0")
    assert world.events["unlink"].value("evt.args") == \
        "res=0 dirfd=-100(AT_FDCWD) name=x.log(/tmp/x.log) flags=0"
    assert world.events["setuid"].value("evt.args") == "res=0 uid=0(root)"
    assert world.events["open_shadow"].value("evt.info") == world.events["open_shadow"].value("evt.args")


def test_uid_arguments_resolve_to_user_names(world: World) -> None:
    ev = world.events["setuid"]
    assert ev.value("evt.arg", "uid") == "root"
    ev.args["uid"] = 4242
    assert ev.value("evt.arg", "uid") == "4242"                   # no such user: the number


def test_open_flags(world: World) -> None:
    shadow, created, rdwr = (world.events[k] for k in ("open_shadow", "create_exec", "host_open"))
    assert (shadow.value("evt.is_open_read"), shadow.value("evt.is_open_write")) == (True, False)
    assert (created.value("evt.is_open_read"), created.value("evt.is_open_write")) == (False, True)
    assert (rdwr.value("evt.is_open_read"), rdwr.value("evt.is_open_write")) == (True, True)
    assert created.value("evt.is_open_create") is True
    assert shadow.value("evt.is_open_create") is False
    assert created.value("evt.is_open_exec") is True               # O_CREAT with mode 0755
    assert shadow.value("evt.is_open_exec") is False


def test_open_flags_are_false_for_other_events(world: World) -> None:
    for key in ("connect", "execve", "read_buffer", "chmod"):
        ev = world.events[key]
        for name in ("evt.is_open_read", "evt.is_open_write", "evt.is_open_create", "evt.is_open_exec"):
            assert ev.value(name) is False, (key, name)


def test_open_exec_needs_an_execute_bit_and_a_creation(world: World) -> None:
    ev = world.events["create_exec"]
    ev.args["mode"] = "0644"
    assert ev.value("evt.is_open_exec") is False
    ev.args["mode"] = "S_IRUSR|S_IXGRP"
    assert ev.value("evt.is_open_exec") is True
    ev.args["flags"] = "O_WRONLY|O_TRUNC"
    assert ev.value("evt.is_open_exec") is False
    creat = SyscallEvent(type="creat", time_ns=T0, num=1, proc=world.cat, tid=1301, res=9,
                         args={"fd": 9, "name": "/tmp/run.sh", "mode": "0700"})
    assert creat.value("evt.is_open_exec") is True


def test_tmpfile_open_counts_as_created_when_it_succeeds(world: World) -> None:
    ev = SyscallEvent(type="openat", time_ns=T0, num=1, proc=world.cat, tid=1301, res=9,
                      args={"fd": 9, "dirfd": -100, "name": "/tmp", "flags": "O_RDWR|O_TMPFILE", "mode": 0})
    assert ev.value("evt.is_open_create") is True
    ev.res = -95
    assert ev.value("evt.is_open_create") is False


def test_io_events(world: World) -> None:
    ev = world.events["read_buffer"]
    assert ev.value("evt.buffer").encode("utf-8", "surrogateescape") == b"\xca\xfe\xba\xbe"
    assert ev.value("evt.buflen") == 4
    assert (ev.value("evt.is_io"), ev.value("evt.is_io_read"), ev.value("evt.is_io_write")) == \
        (True, True, False)
    assert ev.value("evt.io_dir") == "read"
    assert ev.value("evt.category") == "file"            # an I/O event takes its fd's category
    connect = world.events["connect"]
    assert (connect.value("evt.is_io"), connect.value("evt.io_dir"), connect.value("evt.buflen")) == \
        (False, None, None)
    assert connect.value("evt.buffer") is None


def test_categories(world: World) -> None:
    assert world.events["execve"].value("evt.category") == "process"
    assert world.events["connect"].value("evt.category") == "net"
    assert world.events["open_shadow"].value("evt.category") == "file"
    assert world.events["setuid"].value("evt.category") == "user"
    assert world.events["poll"].value("evt.category") == "wait"
    assert world.events["poll"].value("evt.is_wait") is True
    unknown = SyscallEvent(type="frobnicate", time_ns=T0, num=1, proc=world.cat, tid=1301, res=0)
    assert unknown.value("evt.category") is None


@pytest.mark.parametrize(("etype", "category"), [("memfd_create", "memory"), ("init_module", "other"),
                                                 ("finit_module", "other")])
def test_every_captured_syscall_has_falcos_category(world: World, etype: str, category: str) -> None:
    # The capture and the fields read one syscall table (sensor/syscalls.py); these three once
    # had no category because the fields kept a table of their own.
    ev = SyscallEvent(type=etype, time_ns=T0, num=1, proc=world.cat, tid=1301, res=3)
    assert ev.value("evt.category") == category


def test_times(world: World, tz) -> None:
    ev = world.events["execve"]                           # T0 + 1 µs
    assert ev.value("evt.rawtime") == T0 + 1000
    assert ev.value("evt.rawtime.s") == 1_714_557_600
    assert ev.value("evt.rawtime.ns") == 123_457_789
    assert ev.value("evt.time.iso8601") == "2024-05-01T10:00:00.123457789Z"
    tz("UTC0")
    assert ev.value("evt.time") == "10:00:00.123457789"
    assert ev.value("evt.time.s") == "10:00:00"
    assert ev.value("evt.datetime") == "2024-05-01 10:00:00.123457789"
    tz("CEST-2")                                          # local time two hours east of UTC
    assert ev.value("evt.time") == "12:00:00.123457789"
    assert ev.value("evt.datetime.s") == "2024-05-01 12:00:00"
    assert ev.value("evt.time.iso8601") == "2024-05-01T10:00:00.123457789Z"


def test_hostname_is_the_rulesets_not_the_events(world: World) -> None:
    # evt.hostname is a context field: the ruleset answers it (tests/engine/test_loader.py), so an
    # event alone has no value for it and a capture does not record it.
    assert world.events["execve"].value("evt.hostname") is None
    assert not evt.CLASS.fields[[f.name for f in evt.CLASS.fields].index("evt.hostname")].record
