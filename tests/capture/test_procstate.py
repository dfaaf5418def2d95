"""sensor/capture/procstate.py: the process table from /proc, and paths resolved as Falco does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.capture.containers import ContainerResolver
from sensor.capture.procstate import NS_PER_TICK, ProcessTable, exe_writable, fd_from_link, resolve_path


@pytest.mark.parametrize(("base", "path", "want"), [
    ("/tmp", "x", "/tmp/x"),
    ("/tmp/", "./x", "/tmp/x"),
    ("/tmp", "../etc/shadow", "/etc/shadow"),
    ("/", "etc//passwd", "/etc/passwd"),
    ("/a/b", "/c/./d/../e", "/c/e"),
    ("/", "../../..", "/"),
    ("/home/u", "", "/home/u"),
    ("/x", "/plain/path", "/plain/path"),
])
def test_paths_resolve_lexically(base: str, path: str, want: str) -> None:
    assert resolve_path(base, path) == want


@pytest.fixture
def child(tmp_path: Path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "extra arg"],
                         cwd=tmp_path, env={"FALCONET_TEST": "1", "PATH": os.environ["PATH"]})
    yield p
    p.kill()
    p.wait()


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2:].split()


def test_a_process_read_from_proc_matches_proc(child: subprocess.Popen, tmp_path: Path) -> None:
    table = ProcessTable(ContainerResolver(root=tmp_path))
    p = table.from_proc(child.pid)
    assert p is not None
    fields = _stat_fields(child.pid)
    assert p.ppid == os.getpid() == int(fields[1])
    assert p.exe == sys.executable and p.args == ["-c", "import time; time.sleep(30)", "extra arg"]
    assert p.exepath == os.readlink(f"/proc/{child.pid}/exe")
    assert p.cwd == str(tmp_path)
    assert p.tty == int(fields[4]) and p.sid == int(fields[3])
    assert p.env == ["FALCONET_TEST=1", f"PATH={os.environ['PATH']}"]
    assert p.start_ns == table.boot_ns + int(fields[19]) * NS_PER_TICK
    assert p.uid == os.getuid() and p.euid == os.geteuid()
    loginuid = int(Path(f"/proc/{child.pid}/loginuid").read_text())
    assert p.loginuid == (-1 if loginuid == 0xFFFFFFFF else loginuid)
    assert {0, 1, 2} <= set(p.fds)


def test_bootstrap_links_parents_and_fork_copies_the_parent(child: subprocess.Popen, tmp_path: Path) -> None:
    table = ProcessTable(ContainerResolver(root=tmp_path), read_env=False)
    assert table.bootstrap() > 1
    me = table.procs[os.getpid()]
    assert table.procs[child.pid].parent is me
    kid = table.fork(os.getpid(), 999_999, os.getpid(), 5, 123, b"python", 0, 0, me.cgroup_id)
    assert kid.parent is me and kid.name == me.name and kid.vpid == 5
    assert kid.start_ns == table.boot_ns + 123
    assert kid.fds == me.fds and kid.fds is not me.fds
    assert table.exit(999_999) is kid and not kid.alive and 999_999 not in table.procs


def test_a_fork_in_another_cgroup_than_its_parent_was_seen_in_names_that_cgroup_s_container(
        child: subprocess.Popen, tmp_path: Path) -> None:
    """runc's init moves into the container's cgroup and forks before any event of its own is
    read: the child must not inherit the container its parent had in its old cgroup (the host)."""
    cid = "1968b26a5da3b73f081ea7a33a1585ca4452c5d790398f2b6a156262e4da6fa7"
    leaf = tmp_path / "libpod_parent" / f"libpod-{cid}"
    leaf.mkdir(parents=True)
    table = ProcessTable(ContainerResolver(root=tmp_path), read_env=False)
    parent = table.get(child.pid, b"runc\0", 0, 0, 0)
    assert parent.container.id == "host"
    kid = table.fork(child.pid, 999_998, child.pid, 1, 123, b"runc", 0, 0, leaf.stat().st_ino)
    assert (kid.cgroup_id, kid.container.id, kid.container.full_id) == (leaf.stat().st_ino, cid[:12], cid)
    same = table.fork(child.pid, 999_997, child.pid, 2, 124, b"runc", 0, 0, parent.cgroup_id)
    assert same.container is parent.container


def test_unknown_process_comes_from_proc_or_from_the_event(child: subprocess.Popen, tmp_path: Path) -> None:
    table = ProcessTable(ContainerResolver(root=tmp_path))
    p = table.get(child.pid, b"python\0", 0, 0, 0)
    assert p.args[-1] == "extra arg"
    gone = table.get(4_000_000, b"vanished\0\0", 1000, 1000, 0)
    assert (gone.name, gone.uid) == ("vanished", 1000)
    assert table.unknown_seen == 2


def test_fd_links_and_exe_writability(tmp_path: Path) -> None:
    assert fd_from_link(3, "/etc/passwd").type == "file"
    assert fd_from_link(4, "/memfd:payload (deleted)").name == "memfd:payload"
    assert fd_from_link(5, "socket:[1234]").ino == 1234
    assert fd_from_link(6, "pipe:[77]").type == "pipe"
    assert fd_from_link(7, "anon_inode:[eventfd]").type == "event"
    assert fd_from_link(8, str(tmp_path)).type == "directory"
    f = tmp_path / "prog"
    f.write_text("")
    f.chmod(0o555)
    assert exe_writable(str(f), 0, 0) is True           # root passes the permission check
    assert exe_writable(str(f), 4242, 4242) is False
    f.chmod(0o557)
    assert exe_writable(str(f), 4242, 4242) is True
    assert exe_writable("relative", 0, 0) is None


def test_sockets_open_at_start_are_named_from_proc_net(tmp_path: Path) -> None:
    import socket as sk

    srv = sk.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    cli = sk.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    try:
        table = ProcessTable(ContainerResolver(root=tmp_path), read_env=False)
        me = table.from_proc(os.getpid())
        assert me is not None
        listen, out, inbound = me.fds[srv.fileno()], me.fds[cli.fileno()], me.fds[conn.fileno()]
        assert (listen.type, listen.name, listen.local_is_server) == ("ipv4", f"127.0.0.1:{port}", True)
        cport = cli.getsockname()[1]
        assert out.name == inbound.name == f"127.0.0.1:{cport}->127.0.0.1:{port}"
        assert out.l4proto == "tcp" and (out.sip, out.sport, out.cport) == ("127.0.0.1", port, cport)
        assert inbound.local_is_server is True
    finally:
        for s in (conn, cli, srv):
            s.close()
