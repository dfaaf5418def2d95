"""sensor/capture/decoder.py: records as the probe writes them -> state changes and SyscallEvents."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from sensor.capture import layout, render
from sensor.capture.containers import ContainerResolver
from sensor.capture.decoder import Decoder
from sensor.capture.procstate import ProcessTable
from sensor.capture.syscalls import BY_NAME
from sensor.event import Fd, Process

CID = "a1" * 32
BOOT = 1_700_000_000_000_000_000


def header(kind: int, tgid: int, *, nr: int = 0, cgroup: int, comm: bytes = b"bash", uid: int = 0,
           ts: int = 5_000) -> dict[str, Any]:
    return dict(kind=kind, nr=nr, tid=tgid, tgid=tgid, uid=uid, gid=uid, euid=uid, egid=uid, cpu=1, ts=ts,
                cgroup=cgroup, comm=comm.ljust(16, b"\0"))


def pack(name: str, values: dict[str, Any], tail: bytes = b"") -> memoryview:
    lay = layout.LAYOUTS[name]
    fields = {n: 0 for n in lay.names}
    fields.update(values)
    for n in ("comm", "laddr_raw", "raddr_raw"):
        if n in fields and not isinstance(fields[n], bytes):
            fields[n] = b"\0" * 16
    return memoryview(lay.struct.pack(*(fields[n] for n in lay.names)) + tail)


def strings(*items: str) -> tuple[dict[str, int], bytes]:
    lens, tail = {}, b""
    for i, s in enumerate(items):
        b = s.encode() + b"\0"
        lens[f"l{i}"] = len(b)
        tail += b
    return lens, tail


class World:
    def __init__(self, tmp_path: Path, emit: frozenset[str] | None = None) -> None:
        root = tmp_path / "cgroup"
        (root / "user.slice").mkdir(parents=True)
        (root / "system.slice" / f"docker-{CID}.scope").mkdir(parents=True)
        self.host_cg = os.stat(root / "user.slice").st_ino
        self.docker_cg = os.stat(root / "system.slice" / f"docker-{CID}.scope").st_ino
        self.table = ProcessTable(ContainerResolver(root=root), boot_ns=BOOT)
        self.cloexec: list[tuple[int, list[int]]] = []
        self.dec = Decoder(self.table, emit, on_cloexec=lambda t, fds: self.cloexec.append((t, fds)))
        self.p = Process(pid=100, ppid=1, name="bash", exe="bash", cwd="/home/u", cgroup_id=self.host_cg)
        self.table.procs[100] = self.p

    def syscall(self, name: str, res: int, args: tuple[int, ...] = (), strs: tuple[str, ...] = (),
                addr: bytes = b"", tgid: int = 100, cgroup: int | None = None, dirpath: str = "",
                **extra: Any) -> bool:
        sc = BY_NAME[name]
        lens, tail = strings(*strs)
        if dirpath:
            tail += dirpath.encode() + b"\0"
            lens["l_dir"] = len(dirpath) + 1
        vals = header(layout.K_SYSCALL, tgid, nr=sc.nr, cgroup=self.host_cg if cgroup is None else cgroup)
        vals.update(res=res, laddr=len(addr), **lens, **extra)
        for i, a in enumerate(args):
            vals[f"a{i}"] = a & 0xFFFFFFFFFFFFFFFF
        view = pack("syscall", vals, addr + tail)       # the probe writes the address first
        return self.dec.handle(view, 0, len(view))

    def take(self) -> list:
        out, self.dec.events = self.dec.events, []
        return out


AT_FDCWD = -100


def test_a_relative_path_resolves_against_the_directory_path_the_kernel_read(tmp_path: Path) -> None:
    # The directory was opened as fd 7 without an event (directory opens stay in the kernel): the
    # record carries the directory's path, and the table learns the fd from it.
    w = World(tmp_path)
    assert w.syscall("openat", 3, (7, 0, os.O_RDONLY), strs=("secret",), dirpath="/srv/app")
    (ev,) = w.take()
    assert ev.fd.name == "/srv/app/secret" and ev.args["name"] == "/srv/app/secret"
    assert (w.p.fds[7].type, w.p.fds[7].name) == ("directory", "/srv/app")
    assert w.syscall("fchdir", 0, (7,), dirpath="/srv/other")       # fd 7 is another directory now
    w.take()
    assert w.p.cwd == "/srv/other"


def test_open_resolves_the_path_and_adds_the_fd(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.syscall("openat", 3, (AT_FDCWD, 0, os.O_RDONLY | os.O_CLOEXEC, 0), ("notes/../todo.txt",),
              imode=0o100644, ino=77, dev=0x800001, xflags=layout.X_HAVE_FILE)
    (ev,) = w.take()
    assert (ev.type, ev.res, ev.proc, ev.time_ns) == ("openat", 3, w.p, BOOT + 5_000)
    assert ev.args == {"fd": 3, "dirfd": -100, "name": "/home/u/todo.txt", "flags": "O_RDONLY|O_CLOEXEC",
                       "mode": "0", "dev": "800001", "ino": 77}
    assert ev.rawargs["flags"] == render.PPM_O_RDONLY | render.PPM_O_CLOEXEC
    assert ev.rawargs["name"] == "notes/../todo.txt"
    assert ev.fd is w.p.fds[3] and (ev.fd.name, ev.fd.type, ev.fd.ino) == ("/home/u/todo.txt", "file", 77)


def test_a_failed_open_has_an_fd_with_no_number(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.syscall("open", -2, (0, os.O_RDONLY), ("/etc/nope",))
    (ev,) = w.take()
    assert ev.res == -2 and ev.fd.num == -1 and ev.fd.name == "/etc/nope" and -2 not in w.p.fds


def test_created_files_carry_o_f_created(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.syscall("openat", 4, (AT_FDCWD, 0, os.O_WRONLY | os.O_CREAT, 0o644), ("new",), fmode=0x100000)
    (ev,) = w.take()
    assert ev.args["flags"] == "O_CREAT|O_WRONLY|O_F_CREATED" and ev.args["mode"] == "0644"
    assert ev.rawargs["flags"] & render.PPM_O_F_CREATED


def test_dirfd_close_and_dup(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.p.fds[5] = Fd(num=5, type="directory", name="/srv/data")
    w.syscall("openat", 6, (5, 0, os.O_RDONLY, 0), ("x/y",))
    w.syscall("dup2", 1, (6, 1))
    w.syscall("close", 0, (6,))
    opened, duped, closed = w.take()
    assert opened.fd.name == "/srv/data/x/y"
    assert duped.fd is w.p.fds[1] and duped.fd.name == "/srv/data/x/y" and duped.fd.num == 1
    assert closed.fd.name == "/srv/data/x/y" and 6 not in w.p.fds


def test_connect_names_the_socket_client_to_server(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.syscall("socket", 7, (socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC, 0))
    sa = (b"\x02\x00" + (22).to_bytes(2, "big") + socket.inet_aton("10.0.0.2") + b"\0" * 8)
    w.syscall("connect", 0, (7, 0, len(sa)), addr=sa, xflags=layout.X_HAVE_SOCK, sk_family=2, sk_type=1,
              sk_proto=6, lport=5555, rport=22, laddr_raw=socket.inet_aton("10.0.0.1") + b"\0" * 12,
              raddr_raw=socket.inet_aton("10.0.0.2") + b"\0" * 12)
    created, ev = w.take()
    assert created.fd.type == "ipv4" and created.fd.l4proto == "tcp" and created.fd.flags & os.O_CLOEXEC
    f = ev.fd
    assert (f.name, f.cip, f.cport, f.sip, f.sport) == ("10.0.0.1:5555->10.0.0.2:22", "10.0.0.1", 5555,
                                                        "10.0.0.2", 22)
    assert f.local_is_server is False and f.connected and w.p.fds[7] is f and f.flags & os.O_CLOEXEC
    assert ev.args["tuple"] == f.name and ev.args["addr"] == "10.0.0.2:22"


def exec_record(w: World, tgid: int, filename: str, argv: list[str], env: list[str], *,
                cgroup: int | None = None, leaf: str = "", parent: str = "", **extra: Any) -> memoryview:
    fn = filename.encode() + b"\0"
    args = b"".join(a.encode() + b"\0" for a in argv)
    envb = b"".join(e.encode() + b"\0" for e in env)
    exe = b"cat\0"
    cg = (parent.encode() + b"\0" if leaf else b"") + (leaf.encode() + b"\0" if leaf else b"")
    vals = header(layout.K_EXEC, tgid, cgroup=w.host_cg if cgroup is None else cgroup, comm=b"cat")
    vals.update(l_filename=len(fn), l_args=len(args), l_env=len(envb), l_exe=len(exe),
                l_cg_parent=len(parent) + 1 if leaf else 0, l_cg_leaf=len(leaf) + 1 if leaf else 0, **extra)
    return pack("exec", vals, fn + args + envb + exe + cg)


def test_exec_replaces_the_program_and_closes_cloexec_fds(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.p.fds[3] = Fd(num=3, name="/etc/x", flags=os.O_CLOEXEC)
    w.p.fds[4] = Fd(num=4, name="/etc/y")
    view = exec_record(w, 100, "./bin/cat", ["cat", "-n", "a b"], ["HOME=/root", "LANG=C"], ppid=1, vpid=100,
                       sid=90, vpgid=100, loginuid=0xFFFFFFFF, tty=(4 << 8) | 1, euid=0, egid=0,
                       cap_eff=1 << 21, exe_ino=99)
    assert w.dec.handle(view, 0, len(view))
    p = w.p
    assert (p.name, p.exe, p.args, p.exepath) == ("cat", "cat", ["-n", "a b"], "/home/u/bin/cat")
    assert (p.env, p.loginuid, p.tty, p.sid, p.vpgid) == (["HOME=/root", "LANG=C"], -1, 1025, 90, 100)
    assert p.cap_effective == "CAP_SYS_ADMIN" and p.exe_ino == 99 and p.exe_from_memfd is False
    assert set(p.fds) == {4} and w.cloexec == [(100, [3])]
    w.syscall("execve", 0, (0, 0, 0))
    (ev,) = w.take()
    assert ev.args["filename"] == "/home/u/bin/cat" and ev.args["exe"] == "cat" and ev.args["args"] == "-n a b"


def test_fork_exit_and_procexit(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.p.fds[0] = Fd(num=0, name="/dev/pts/0")
    vals = header(layout.K_FORK, 100, cgroup=w.host_cg)
    vals.update(child_tid=101, child_tgid=101, child_ppid=100, child_vpid=101, child_start=42)
    view = pack("fork", vals)
    w.dec.handle(view, 0, len(view))
    kid = w.table.procs[101]
    assert kid.parent is w.p and kid.cwd == "/home/u" and kid.fds[0] is w.p.fds[0]
    assert kid.start_ns == BOOT + 42
    vals = header(layout.K_EXIT, 101, cgroup=w.host_cg)
    vals.update(exit_code=9)
    view = pack("exit", vals)
    w.dec.handle(view, 0, len(view))
    (ev,) = w.take()
    assert ev.type == "procexit" and ev.args["sig"] == 9 and 101 not in w.table.procs


def test_an_exec_waits_for_the_events_before_it(tmp_path: Path) -> None:
    # Events are matched after their batch; an exec in the same batch would rename their process.
    w = World(tmp_path)
    w.syscall("openat", 3, (AT_FDCWD, 0, 0, 0), ("/etc/shadow",))
    view = exec_record(w, 100, "/bin/cat", ["cat"], [])
    assert w.dec.handle(view, 0, len(view)) is False
    (ev,) = w.take()
    assert ev.proc.name == "bash"
    assert w.dec.handle(view, 0, len(view)) is True and w.p.name == "cat"
    assert w.syscall("setuid", 0, (1000,)) is True          # no event waiting: no barrier
    w.syscall("openat", 3, (AT_FDCWD, 0, 0, 0), ("/etc/shadow",))
    assert w.syscall("chdir", 0, (0,), ("/tmp",)) is False


def test_only_wanted_types_become_events_but_all_change_state(tmp_path: Path) -> None:
    w = World(tmp_path, emit=frozenset({"openat"}))
    w.syscall("chdir", 0, (0,), ("/var/tmp",))
    w.syscall("openat", 3, (AT_FDCWD, 0, 0, 0), ("f",))
    (ev,) = w.take()
    assert ev.type == "openat" and ev.args["name"] == "/var/tmp/f" and ev.num == 1


def test_a_new_container_is_announced_once(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.table.procs[200] = Process(pid=200, name="sh", cgroup_id=w.host_cg)     # then moved in
    w.syscall("openat", 3, (AT_FDCWD, 0, 0, 0), ("/etc/hostname",), tgid=200, cgroup=w.docker_cg)
    w.syscall("openat", 4, (AT_FDCWD, 0, 0, 0), ("/etc/hosts",), tgid=200, cgroup=w.docker_cg)
    evs = w.take()
    assert [e.type for e in evs] == ["container", "openat", "openat"]
    assert evs[0].args["id"] == CID[:12] and evs[1].proc.container.id == CID[:12]


def test_exec_from_a_vanished_container_cgroup_still_names_it(tmp_path: Path) -> None:
    w = World(tmp_path)
    view = exec_record(w, 300, "/bin/sh", ["sh"], [], cgroup=4242, parent="system.slice",
                       leaf=f"docker-{CID}.scope", xflags=layout.X_EXE_MEMFD)
    w.dec.handle(view, 0, len(view))
    p = w.table.procs[300]
    assert p.container.id == CID[:12] and p.container.type == "docker" and p.exe_from_memfd is True


@pytest.mark.parametrize("kind", [0, 99])
def test_unknown_records_are_counted_not_lost_silently(tmp_path: Path, kind: int) -> None:
    w = World(tmp_path)
    view = pack("exit", header(kind, 100, cgroup=w.host_cg))
    w.dec.handle(view, 0, len(view))
    assert w.dec.decode_errors == 1
