"""proc.* and thread.* fields: the process, its parent and ancestors, leaders, times, the thread."""

from __future__ import annotations

import pytest
from syscall_world import SEC, T0, World, make_world

from sensor.engine.fields.proc import MAX_DEPTH
from sensor.event import Process, SyscallEvent


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return make_world(tmp_path, monkeypatch)


def _event(proc: Process, tid: int | None = None) -> SyscallEvent:
    return SyscallEvent(type="openat", time_ns=T0, num=1, proc=proc, tid=tid or proc.pid, res=0)


def test_the_process_itself(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("proc.pid") == 1301
    assert ev.value("proc.ppid") == 1300
    assert ev.value("proc.vpid") == 8
    assert ev.value("proc.name") == "cat"
    assert ev.value("proc.exe") == "cat"                      # argv[0]
    assert ev.value("proc.exepath") == "/bin/busybox"
    assert ev.value("proc.args") == "/etc/shadow"
    assert ev.value("proc.cmdline") == "cat /etc/shadow"      # comm, then the arguments
    assert ev.value("proc.exeline") == "cat /etc/shadow"
    assert ev.value("proc.cmdnargs") == 1
    assert ev.value("proc.cmdlenargs") == 11
    assert ev.value("proc.cwd") == "/tmp/"                    # with a trailing slash, as Falco has it
    assert ev.value("proc.tty") == 34816
    assert ev.value("proc.fdopencount") == 5


def test_cmdline_of_a_process_without_arguments_is_its_name(world: World) -> None:
    ev = world.events["setuid"]
    assert ev.value("proc.cmdline") == "bash"
    assert ev.value("proc.args") == ""
    assert ev.value("proc.exeline") == "-bash "


def test_parent_fields(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("proc.pname") == "sh"
    assert ev.value("proc.pexe") == "/bin/sh"
    assert ev.value("proc.pexepath") == "/bin/busybox"
    assert ev.value("proc.pcmdline") == "sh -c cat /etc/shadow"
    assert ev.value("proc.pvpid") == 7


def test_parent_fields_of_a_process_whose_parent_is_unknown(world: World) -> None:
    ev = world.events["setuid"]                     # bash: parent not in the process table
    for name in ("proc.pname", "proc.pexe", "proc.pexepath", "proc.pcmdline", "proc.pvpid",
                 "proc.ppid.ts", "proc.ppid.duration"):
        assert ev.value(name) is None, name
    assert ev.value("proc.ppid") == 4700            # the id is known even when the entry is not
    assert ev.value("proc.aname") is None
    assert ev.value("proc.aname", "0") == "bash"
    assert ev.value("proc.aname", "1") is None


def test_ancestors_by_index(world: World) -> None:
    ev = world.events["open_shadow"]
    assert [ev.value("proc.aname", str(i)) for i in range(6)] == \
        ["cat", "sh", "nginx", "containerd-shim", "systemd", None]
    assert ev.value("proc.apid", "2") == 1200
    assert ev.value("proc.aexe", "2") == "nginx"
    assert ev.value("proc.aexepath", "2") == "/usr/sbin/nginx"
    assert ev.value("proc.acmdline", "1") == "sh -c cat /etc/shadow"
    assert ev.value("proc.acmdline", "0") == "cat /etc/shadow"
    assert ev.value("proc.aname", "x") is None


def test_ancestors_without_index_are_every_ancestor_parent_first(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("proc.aname") == ["sh", "nginx", "containerd-shim", "systemd"]
    assert ev.value("proc.apid") == [1300, 1200, 900, 1]
    assert ev.value("proc.aexepath") == ["/bin/busybox", "/usr/sbin/nginx", "/usr/bin/containerd-shim-runc-v2",
                                         "/usr/lib/systemd/systemd"]
    assert ev.value("proc.aexe")[0] == "/bin/sh"
    assert ev.value("proc.acmdline")[-1] == "systemd --system"


def test_a_loop_in_the_process_table_does_not_hang() -> None:
    p = Process(pid=5, name="loop")
    p.parent = p
    ev = _event(p)
    assert len(ev.value("proc.aname")) == MAX_DEPTH
    assert ev.value("proc.aname", str(MAX_DEPTH + 1)) is None
    assert ev.value("proc.sname") == "loop"


def test_session_and_process_group_leaders(world: World) -> None:
    cat, sh = world.events["open_shadow"], _event(world.sh)
    assert cat.value("proc.sid") == 7
    assert cat.value("proc.sname") == "sh"                 # eldest ancestor in the same session
    assert cat.value("proc.sid.exe") == "/bin/sh"
    assert cat.value("proc.sid.exepath") == "/bin/busybox"
    assert cat.value("proc.vpgid") == 7
    assert cat.value("proc.vpgid.name") == "sh"
    assert cat.value("proc.vpgid.exe") == "/bin/sh"
    assert cat.value("proc.vpgid.exepath") == "/bin/busybox"
    assert (cat.value("proc.is_sid_leader"), cat.value("proc.is_vpgid_leader")) == (False, False)
    assert (sh.value("proc.is_sid_leader"), sh.value("proc.is_vpgid_leader")) == (True, True)
    assert sh.value("proc.sname") == "sh"


def test_leaders_compare_with_the_host_pid_when_the_namespace_pid_is_unknown() -> None:
    p = Process(pid=300, sid=300, vpgid=300, name="tmux")
    assert _event(p).value("proc.is_sid_leader") is True


def test_times(world: World) -> None:
    ev = world.events["open_shadow"]                        # cat started 1 s before T0
    assert ev.value("proc.pid.ts") == T0 - SEC
    assert ev.value("proc.duration") == ev.time_ns - (T0 - SEC)
    assert ev.value("proc.ppid.ts") == T0 - 2 * SEC
    assert ev.value("proc.ppid.duration") == ev.time_ns - (T0 - 2 * SEC)
    unknown_start = _event(Process(pid=9, name="x"))
    assert unknown_start.value("proc.pid.ts") is None
    assert unknown_start.value("proc.duration") is None


def test_executable_fields(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("proc.is_exe_writable") is False
    assert ev.value("proc.is_exe_upper_layer") is True
    assert ev.value("proc.is_exe_from_memfd") is False
    assert ev.value("proc.exe_ino") == 393219
    assert ev.value("proc.exe_ino.ctime") == T0 - 10 * SEC
    assert ev.value("proc.exe_ino.mtime") == T0 - 20 * SEC
    assert ev.value("proc.exe_ino.ctime_duration_proc_start") == 9 * SEC   # changed 9 s before start
    assert ev.value("proc.pidns_init_start_ts") == T0 - 3600 * SEC
    assert ev.value("proc.exe_ino.ctime_duration_pidns_start") == 3590 * SEC
    bare = _event(Process(pid=9, name="x"))
    for name in ("proc.is_exe_writable", "proc.is_exe_upper_layer", "proc.is_exe_from_memfd",
                 "proc.exe_ino", "proc.exe_ino.ctime", "proc.exe_ino.mtime",
                 "proc.exe_ino.ctime_duration_proc_start", "proc.pidns_init_start_ts"):
        assert bare.value(name) is None, name


def test_environment(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("proc.env") == "PATH=/usr/bin:/bin HOME=/var/www LANG=C.UTF-8"
    assert ev.value("proc.env", "HOME") == "/var/www"
    assert ev.value("proc.env", "PATH") == "/usr/bin:/bin"
    assert ev.value("proc.env", "HOM") is None
    assert world.events["setuid"].value("proc.env") is None        # not captured for bash


def test_login_shell_is_the_eldest_shell_in_the_lineage() -> None:
    login = Process(pid=10, name="bash")
    su = Process(pid=11, name="su", parent=login)
    zsh = Process(pid=12, name="zsh", parent=su)
    vim = Process(pid=13, name="vim", parent=zsh)
    assert _event(vim).value("proc.loginshellid") == 10
    assert _event(Process(pid=14, name="vim")).value("proc.loginshellid") is None


def test_thread_fields(world: World) -> None:
    main = world.events["open_shadow"]
    assert (main.value("thread.tid"), main.value("thread.vtid"), main.value("thread.ismain")) == (1301, 8, True)
    assert main.value("thread.nametid") == "cat1301"
    worker = _event(world.cat, tid=1305)
    assert (worker.value("thread.tid"), worker.value("thread.vtid"), worker.value("thread.ismain")) == \
        (1305, None, False)
    assert worker.value("proc.pid") == 1301


def test_capabilities(world: World) -> None:
    ev = world.events["open_shadow"]
    assert ev.value("thread.cap_permitted") == "CAP_CHOWN|CAP_KILL"
    assert ev.value("thread.cap_effective") == "CAP_CHOWN"
    assert ev.value("thread.cap_inheritable") == ""
    assert _event(world.bash).value("thread.cap_effective") is None
