"""fd.* and fdlist.* fields: files, sockets with Falco's client/server and local/remote ends,
fd events without an fd, poll lists."""

from __future__ import annotations

import pytest
from syscall_world import T0, World, make_world

from sensor.engine.fields.fd import directory_of
from sensor.event import Fd, SyscallEvent


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return make_world(tmp_path, monkeypatch)


def _with_fd(world: World, fd: Fd, type_: str = "read") -> SyscallEvent:
    world.cat.fds[fd.num] = fd
    return SyscallEvent(type=type_, time_ns=T0, num=1, proc=world.cat, tid=1301, res=0, fd=fd)


def test_a_file(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("fd.num") == 3
    assert ev.value("fd.type") == "file"
    assert ev.value("fd.typechar") == "f"
    assert ev.value("fd.name") == "/etc/shadow"
    assert ev.value("fd.directory") == "/etc"
    assert ev.value("fd.filename") == "shadow"
    assert ev.value("fd.nameraw") == "/etc/shadow"
    assert (ev.value("fd.dev"), ev.value("fd.dev.major"), ev.value("fd.dev.minor")) == (0x803, 8, 3)
    assert ev.value("fd.ino") == 1234
    assert ev.value("fd.containername") == "3ad7b26ded6d:/etc/shadow"
    assert ev.value("fd.containerdirectory") == "3ad7b26ded6d:/etc"
    assert ev.value("fd.l4proto") == "<NA>"                     # Falco's text for "no protocol"
    assert ev.value("fd.sockfamily") is None
    assert ev.value("fd.is_server") is False
    for name in ("fd.cip", "fd.sip", "fd.lip", "fd.rip", "fd.ip", "fd.net", "fd.port", "fd.sport",
                 "fd.rport", "fd.cnet"):
        assert ev.value(name) is None, name


def test_the_path_as_the_process_gave_it(world: World) -> None:
    ev = world.events["create_exec"]
    assert ev.value("fd.name") == "/tmp/dropper"
    assert ev.value("fd.nameraw") == "dropper"


def test_directory_and_filename_follow_falco() -> None:
    assert directory_of("/etc/shadow") == "/etc"
    assert directory_of("/shadow") == "/"
    assert directory_of("/var/log/") == "/var/log/"


def test_a_directory_fd(world: World) -> None:
    ev = _with_fd(world, Fd(num=11, type="directory", name="/var/lib"), "getdents64")
    assert ev.value("fd.directory") == "/var/lib"
    assert ev.value("fd.filename") is None
    assert ev.value("fd.typechar") == "d"


def test_a_failed_open_has_the_path_but_no_fd(world: World) -> None:
    ev = world.events["open_missing"]
    assert ev.value("fd.num") == -1
    assert ev.value("fd.typechar") == "f"
    assert ev.value("fd.name") == "/tmp/missing.conf"
    assert ev.value("fd.directory") == "/tmp"
    assert ev.value("fd.nameraw") == "missing.conf"
    assert ev.value("fd.filename") is None
    assert ev.value("fd.type") is None
    assert ev.value("fd.l4proto") is None


def test_an_event_without_fds_has_no_fd_fields(world: World) -> None:
    ev = world.events["execve"]
    for name in ("fd.num", "fd.name", "fd.typechar", "fd.directory", "fd.types", "fd.uid"):
        assert ev.value(name) is None, name


def test_an_outgoing_connection(world: World) -> None:
    ev = world.events["connect"]
    assert ev.value("fd.name") == "172.17.0.2:51234->10.0.0.5:443"
    assert (ev.value("fd.type"), ev.value("fd.typechar")) == ("ipv4", "4")
    assert (ev.value("fd.cip"), ev.value("fd.cport")) == ("172.17.0.2", 51234)
    assert (ev.value("fd.sip"), ev.value("fd.sport")) == ("10.0.0.5", 443)
    assert (ev.value("fd.lip"), ev.value("fd.lport")) == ("172.17.0.2", 51234)   # we are the client
    assert (ev.value("fd.rip"), ev.value("fd.rport")) == ("10.0.0.5", 443)
    assert ev.value("fd.ip") == ["172.17.0.2", "10.0.0.5"]
    assert ev.value("fd.port") == [51234, 443]
    assert ev.value("fd.net") == ["172.17.0.2", "10.0.0.5"]
    assert (ev.value("fd.cnet"), ev.value("fd.snet")) == ("172.17.0.2", "10.0.0.5")
    assert (ev.value("fd.lnet"), ev.value("fd.rnet")) == ("172.17.0.2", "10.0.0.5")
    assert (ev.value("fd.l4proto"), ev.value("fd.sockfamily")) == ("tcp", "ip")
    assert (ev.value("fd.is_server"), ev.value("fd.connected")) == (False, True)
    assert ev.value("fd.name_changed") is False


def test_an_accepted_connection(world: World) -> None:
    ev = world.events["accept"]
    assert ev.value("fd.name") == "10.0.0.9:40000->172.17.0.2:8080"
    assert (ev.value("fd.cip"), ev.value("fd.sip")) == ("10.0.0.9", "172.17.0.2")
    assert (ev.value("fd.lip"), ev.value("fd.lport")) == ("172.17.0.2", 8080)    # we are the server
    assert (ev.value("fd.rip"), ev.value("fd.rport")) == ("10.0.0.9", 40000)
    assert ev.value("fd.is_server") is True
    assert ev.value("fd.num") == 6


def test_local_and_remote_need_to_know_which_end_we_are(world: World) -> None:
    ev = _with_fd(world, Fd(num=12, type="ipv6", l4proto="udp", cip="fd00::2", cport=5353, sip="fd00::1",
                            sport=53), "sendto")
    assert (ev.value("fd.cip"), ev.value("fd.sip")) == ("fd00::2", "fd00::1")
    for name in ("fd.lip", "fd.rip", "fd.lport", "fd.rport", "fd.lnet", "fd.rnet", "fd.is_server"):
        assert ev.value(name) is None, name
    assert ev.value("fd.name") == "fd00::2:5353->fd00::1:53"     # no name captured: the tuple
    assert ev.value("fd.typechar") == "6"


def test_a_failed_connect_is_named_by_the_tuple_it_tried(world: World) -> None:
    ev = world.events["connect_refused"]
    assert ev.value("fd.name") == "172.17.0.2:51236->10.0.0.5:443"
    assert ev.value("fd.num") == 4


def test_domain_names_are_never_resolved(world: World) -> None:
    ev = world.events["connect"]
    for name in ("fd.cip.name", "fd.sip.name", "fd.lip.name", "fd.rip.name"):
        assert ev.value(name) is None


def test_a_unix_socket(world: World) -> None:
    ev = _with_fd(world, Fd(num=13, type="unix", name="/run/containerd/containerd.sock"), "connect")
    assert (ev.value("fd.typechar"), ev.value("fd.sockfamily")) == ("u", "unix")
    assert ev.value("fd.name") == "/run/containerd/containerd.sock"
    assert ev.value("fd.is_server") is False
    assert ev.value("fd.cip") is None


def test_types_of_open_fds(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("fd.types") == ["file", "ipv4", "pipe"]
    assert ev.value("fd.types", "4") == ["ipv4"]
    assert ev.value("fd.types", "7") == ["pipe"]
    assert ev.value("fd.types", "1") is None


def test_fd_uid(world: World) -> None:
    assert world.events["open_shadow"].value("fd.uid") == "13013"


def test_poll_fd_lists(world: World) -> None:
    ev = world.events["poll"]                                # fds 4 (tcp socket) and 7 (pipe)
    assert ev.value("fdlist.nums") == "4,7"
    assert ev.value("fdlist.names") == "172.17.0.2:51234->10.0.0.5:443,pipe:[4711]"
    assert ev.value("fdlist.cips") == "172.17.0.2"
    assert ev.value("fdlist.sips") == "10.0.0.5"
    assert ev.value("fdlist.cports") == "51234"
    assert ev.value("fdlist.sports") == "443"
    ev.args["fds"] = [7]
    assert ev.value("fdlist.names") == "pipe:[4711]"
    assert ev.value("fdlist.cips") is None
    assert world.events["connect"].value("fdlist.nums") is None
