"""fs.path.* fields: the paths of successful filesystem syscalls, absolute and as passed."""

from __future__ import annotations

import pytest
from syscall_world import T0, World, make_world

from sensor.event import Fd, SyscallEvent


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return make_world(tmp_path, monkeypatch)


def _event(world: World, type_: str, res: int = 0, **kw) -> SyscallEvent:
    return SyscallEvent(type=type_, time_ns=T0, num=1, proc=world.sh, tid=1300, res=res, **kw)


def test_unlink(world: World) -> None:
    ev = world.events["unlink"]
    assert ev.value("fs.path.name") == "/tmp/x.log"
    assert ev.value("fs.path.nameraw") == "x.log"
    assert ev.value("fs.path.source") is None
    assert ev.value("fs.path.target") is None


def test_rename_has_a_source_and_a_target(world: World) -> None:
    ev = world.events["rename"]
    assert (ev.value("fs.path.source"), ev.value("fs.path.sourceraw")) == ("/tmp/a", "a")
    assert (ev.value("fs.path.target"), ev.value("fs.path.targetraw")) == ("/usr/bin/a", "/usr/bin/a")
    assert ev.value("fs.path.name") is None


def test_open_and_chmod(world: World) -> None:
    assert world.events["open_shadow"].value("fs.path.name") == "/etc/shadow"
    assert world.events["create_exec"].value("fs.path.nameraw") == "dropper"
    assert world.events["chmod"].value("fs.path.name") == "/tmp/dropper"


def test_failed_syscalls_have_no_path(world: World) -> None:
    assert world.events["open_missing"].value("fs.path.name") is None
    assert _event(world, "unlink", -13, args={"res": -13, "path": "/etc/passwd"}).value("fs.path.name") is None


def test_a_relative_path_is_joined_to_the_cwd_and_normalised(world: World) -> None:
    ev = _event(world, "mkdir", args={"res": 0, "path": "logs/../cache/", "mode": 0o755})
    assert ev.value("fs.path.name") == "/tmp/cache"               # sh's cwd is /tmp
    assert ev.value("fs.path.nameraw") == "logs/../cache/"


def test_symlink_link_and_mount(world: World) -> None:
    symlink = _event(world, "symlinkat", args={"res": 0, "target": "/etc/shadow", "linkdirfd": -100,
                                               "linkpath": "/tmp/s"})
    assert (symlink.value("fs.path.source"), symlink.value("fs.path.target")) == ("/tmp/s", "/etc/shadow")
    link = _event(world, "linkat", args={"res": 0, "olddir": -100, "oldpath": "/etc/shadow", "newdir": -100,
                                         "newpath": "/tmp/h", "flags": 0})
    assert (link.value("fs.path.source"), link.value("fs.path.target")) == ("/tmp/h", "/etc/shadow")
    mount = _event(world, "mount", args={"res": 0, "dev": "/dev/sda1", "dir": "/mnt", "type": "ext4"})
    assert (mount.value("fs.path.source"), mount.value("fs.path.target")) == ("/dev/sda1", "/mnt")


def test_fd_based_syscalls_use_the_fds_name(world: World) -> None:
    fd = Fd(num=9, type="file", name="/usr/local/bin/tool")
    ev = _event(world, "fchmod", args={"res": 0, "fd": 9, "mode": "S_IXUSR"}, fd=fd)
    assert ev.value("fs.path.name") == "/usr/local/bin/tool"


def test_other_syscalls_have_no_path(world: World) -> None:
    for key in ("connect", "execve", "read_buffer"):
        assert world.events[key].value("fs.path.name") is None
