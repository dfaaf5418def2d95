"""The extracted values under the compiler's operators: what a condition over a live event matches."""

from __future__ import annotations

import pytest
from syscall_world import World, make_world

from sensor.engine import compile_filter

ALL_CAT = {"execve", "open_shadow", "open_missing", "connect", "connect_refused", "create_exec", "read_buffer",
           "poll"}

CASES = [
    # Falco's open_file_failed macro: a failed open has typechar f, fd.num -1 and an errno result
    ("evt.type in (open,openat,openat2) and fd.typechar='f' and fd.num=-1 and evt.res startswith E",
     {"open_missing", "host_open"}),
    ("evt.rawres >= 0 or evt.res = EINPROGRESS", None),
    ("evt.arg.flags contains O_TRUNC", {"create_exec"}),
    ("evt.is_open_read = true and fd.name = /etc/shadow", {"open_shadow"}),
    ("evt.buffer bcontains cafebabe", {"read_buffer"}),
    ("fd.snet in (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)", {"connect", "connect_refused", "accept"}),
    ("fd.rnet in (10.0.0.0/8)", {"connect", "connect_refused", "accept"}),
    ("fd.net = 127.0.0.0/8", set()),
    ("fd.ip = 10.0.0.5", {"connect", "connect_refused"}),
    ("fd.lport = 8080", {"accept"}),
    ("fd.sport in (443, 8443)", {"connect", "connect_refused"}),
    ("proc.aname = nginx", ALL_CAT | {"unlink", "rename", "chmod"}),
    ("proc.aname[2] = nginx", ALL_CAT),
    ("proc.pname = sh and proc.cmdline = 'cat /etc/shadow'", ALL_CAT),
    ("container.mount.dest[/var/run/docker.sock] = /var/run/docker.sock", ALL_CAT | {"accept", "unlink",
                                                                                     "rename", "chmod"}),
    ("container.id = host", {"setuid", "host_open"}),
    ("k8s.pod.label.app = web and k8s.ns.name = shop", ALL_CAT | {"accept", "unlink", "rename", "chmod"}),
    ("user.name = www-data and user.loginuid = -1", ALL_CAT | {"unlink", "rename", "chmod"}),
    ("evt.arg.uid = root", {"setuid"}),
    ("fs.path.name startswith /tmp/", {"unlink", "create_exec", "chmod"}),
    ("proc.is_exe_upper_layer = true", ALL_CAT),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    mp = pytest.MonkeyPatch()
    yield make_world(tmp_path_factory.mktemp("world"), mp)
    mp.undo()


@pytest.mark.parametrize(("condition", "expected"), CASES, ids=[c for c, _ in CASES])
def test_condition_matches(world: World, condition: str, expected: set[str] | None) -> None:
    check = compile_filter(condition, "syscall")
    matched = {name for name, ev in world.events.items() if check(ev)}
    if expected is None:                    # every event that has a result and did not fail
        expected = {n for n, ev in world.events.items() if ev.res is not None and ev.res >= 0}
    assert matched == expected
