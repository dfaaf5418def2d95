"""user.* and group.* fields: names from the passwd/group files the process itself sees, cached."""

from __future__ import annotations

import pytest
from syscall_world import T0, World, make_world

from sensor.capture import accounts
from sensor.event import Container, Process, SyscallEvent


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return make_world(tmp_path, monkeypatch)


def _event(proc: Process) -> SyscallEvent:
    return SyscallEvent(type="openat", time_ns=T0, num=1, proc=proc, tid=proc.pid, res=0)


def test_a_host_user(world: World) -> None:
    ev = world.events["setuid"]                     # alice's bash on the host
    assert ev.value("user.uid") == 1000
    assert ev.value("user.name") == "alice"
    assert ev.value("user.homedir") == "/home/alice"
    assert ev.value("user.shell") == "/bin/zsh"
    assert ev.value("user.loginuid") == 1000
    assert ev.value("user.loginname") == "alice"
    assert (ev.value("group.gid"), ev.value("group.name")) == (1000, "alice")


def test_a_container_user_comes_from_the_containers_own_files(world: World) -> None:
    ev = world.events["open_shadow"]                # cat as uid 33 in the nginx container
    assert ev.value("user.uid") == 33
    assert ev.value("user.name") == "www-data"      # the host has no uid 33
    assert ev.value("user.homedir") == "/var/www"
    assert (ev.value("group.gid"), ev.value("group.name")) == (33, "www-data")
    root_in_container = world.events["accept"]      # nginx as root: the container's root entry
    assert root_in_container.value("user.name") == "root"
    assert root_in_container.value("user.shell") == "/bin/ash"


def test_an_unset_loginuid_is_minus_one_without_a_name(world: World) -> None:
    ev = world.events["open_shadow"]                # loginuid 4294967295, as the kernel reports it
    assert ev.value("user.loginuid") == -1
    assert ev.value("user.loginname") is None
    assert _event(world.sh).value("user.loginuid") == -1


def test_an_unknown_id_has_no_name(world: World) -> None:
    ev = _event(Process(pid=77, uid=4242, gid=4242))
    assert ev.value("user.uid") == 4242
    assert ev.value("user.name") is None
    assert ev.value("user.homedir") is None
    assert ev.value("group.name") is None


def test_the_effective_ids_count(world: World) -> None:
    ev = _event(Process(pid=78, uid=1000, euid=0, gid=1000, egid=0))     # a setuid-root binary
    assert (ev.value("user.uid"), ev.value("user.name")) == (0, "root")
    assert (ev.value("group.gid"), ev.value("group.name")) == (0, "root")


def test_a_process_that_is_gone_is_looked_up_again_later(world: World, tmp_path) -> None:
    gone = Process(pid=999, uid=33, container=world.cat.container)
    assert _event(gone).value("user.name") is None            # /proc/999/root is not there
    etc = tmp_path / "proc" / "999" / "root" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("www-data:x:33:33::/var/www:/bin/false\n")
    assert _event(gone).value("user.name") == "www-data"       # the failed read was not cached


def test_a_process_that_is_gone_is_named_through_its_parent_in_the_same_container(world: World,
                                                                                  tmp_path) -> None:
    # `id` ran and exited in the nginx container before its event was matched; the shell that
    # started it is alive, and sees the same /etc/passwd.
    gone = Process(pid=998, uid=33, container=world.sh.container, parent=world.sh)
    assert _event(gone).value("user.name") == "www-data"
    # a live parent in another container sees other users: it is never asked
    etc = tmp_path / "proc" / "996" / "root" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("intruder:x:33:33::/:/bin/sh\n")
    elsewhere = Process(pid=996, uid=0, container=Container(id="0123456789ab"))
    orphan = Process(pid=997, uid=33, container=world.sh.container, parent=elsewhere)
    accounts.clear_cache()
    assert _event(orphan).value("user.name") is None


def test_names_are_cached_per_container_and_id(world: World, tmp_path) -> None:
    ev = world.events["setuid"]
    assert ev.value("user.name") == "alice"
    (tmp_path / "etc" / "passwd").write_text("alicia:x:1000:1000::/home/alicia:/bin/sh\n")
    assert ev.value("user.name") == "alice"                   # from the cache
    accounts.clear_cache()
    assert ev.value("user.name") == "alicia"


def test_the_cache_is_bounded(world: World, monkeypatch) -> None:
    monkeypatch.setattr(accounts, "CACHE_SIZE", 8)
    for uid in range(50):
        _event(Process(pid=80, uid=uid)).value("user.name")
    assert len(accounts._cache) == 8
    assert _event(Process(pid=80, uid=0)).value("user.name") == "root"
