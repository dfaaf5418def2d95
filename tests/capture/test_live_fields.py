"""Every field Falco's official rule files read from what the kernel reports, live (root + eBPF).

One capture (no kernel filter, so every event of the attached syscalls arrives) watches one
scenario run in a container-shaped cgroup: a process with a known command line, environment,
working directory, terminal and login uid opens files, connects a socket, execs a child and a
program from a memfd. Each field is then checked against what the scenario did or against /proc.
docs/capture.md lists how each field is computed. proc.is_exe_upper_layer is checked by
tests/e2e/test_live_stable_rules.py (an overlayfs in a private mount namespace).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sensor.engine.fields  # noqa: F401  (binds the extractors: ev.value() answers)
from sensor.capture.session import Capture, CaptureOptions
from sensor.event import SyscallEvent

pytestmark = pytest.mark.ebpf
TYPES = {"open", "openat", "openat2", "connect", "socket", "execve", "execveat", "memfd_create", "dup2"}

SCENARIO = r"""
import os, socket, sys
port, work, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
os.chdir(work)
fd = os.open('/etc/hostname', os.O_RDONLY); os.close(fd)
try: os.open('../missing/x', os.O_RDONLY)
except OSError: pass
fd = os.open('made.sh', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755); os.close(fd)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.connect(('127.0.0.1', port)); s.close()
pid = os.fork()
if pid == 0:
    os.execve('/bin/sh', ['sh', '-c', 'exit 0', 'child-of-scenario'], {'CHILD': '1'})
os.waitpid(pid, 0)
m = os.memfd_create('payload', 0)
os.write(m, open('/bin/true', 'rb').read())
pid = os.fork()
if pid == 0:
    os.execve(f'/proc/self/fd/{m}', ['fileless'], {})
os.waitpid(pid, 0)
print(os.getpid(), flush=True)
os.read(hold, 1)          # alive until the test has read its events: /proc still answers for it
"""


@dataclass
class World:
    events: list[SyscallEvent]
    pid: int
    port: int
    work: Path
    cgroup_id: int
    container_id: str
    tty: int
    extra: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def one(self, etype: str, test: Callable[[SyscallEvent], bool] = lambda e: True) -> SyscallEvent:
        found = [e for e in self.events if e.type == etype and test(e)]
        assert found, f"no {etype} event of the scenario matched"
        return found[0]


def _drain(cap: Capture, until: Callable[[list[SyscallEvent]], bool], timeout: float = 15.0) -> list[SyscallEvent]:
    out: list[SyscallEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(out):
        out += cap.poll(0.05)
    for _ in range(10):
        out += cap.poll(0.05)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from sensor.generate import FakeContainer

    work = tmp_path_factory.mktemp("fields")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    c = FakeContainer("docker")
    cap = Capture(CaptureOptions(event_types=frozenset(TYPES)))
    cap.start()
    master, slave = os.openpty()

    def setup() -> None:
        (c.path / "cgroup.procs").write_text(str(os.getpid()))
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        Path("/proc/self/loginuid").write_text("4242")

    hold_r, hold_w = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-c", SCENARIO, str(port), str(work), str(hold_r),
                                  "scenario-marker"],
                                 stdin=slave, stdout=subprocess.PIPE, text=True, pass_fds=(hold_r,),
                                 env={"SCENARIO": "fields", "PATH": "/usr/bin:/bin"}, preexec_fn=setup)
        os.close(hold_r)
        conn, _ = srv.accept()
        conn.close()
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        cgroup_id = os.stat(c.path).st_ino
        events = _drain(cap, lambda evs: any(e.type in ("execve", "execveat") and e.proc.exe == "fileless"
                                             for e in evs))
        mine = [e for e in events if e.proc.cgroup_id == cgroup_id]
        tty = os.stat(f"/proc/self/fd/{slave}").st_rdev
        w = World(mine, pid, port, work, cgroup_id, c.id, tty, {"hold": hold_r})
        # Every value is read while the scenario still runs, as the sensor reads them: a container
        # process's user names come from its own /etc/passwd, through /proc/<pid>/root.
        for name, (pick, _want) in CHECKS.items():
            try:
                w.values[name] = _value(pick(w), name)
            except AssertionError as e:
                w.values[name] = e
        os.close(hold_w)
        assert child.wait(30) == 0
        yield w
    finally:
        cap.stop()
        os.close(master)
        os.close(slave)
        srv.close()
        c.remove()


def _opened(w: World, name: str) -> SyscallEvent:
    return w.one("openat", lambda e: e.proc.pid == w.pid and e.rawargs.get("name") == name)


def _connect(w: World) -> SyscallEvent:
    # glibc's name lookups connect to nscd's unix socket first; this is the scenario's own connect
    return w.one("connect", lambda e: e.proc.pid == w.pid and e.args.get("addr") == f"127.0.0.1:{w.port}")


def _child_exec(w: World) -> SyscallEvent:
    return w.one("execve", lambda e: e.proc.ppid == w.pid and e.proc.name == "sh")


def _fileless(w: World) -> SyscallEvent:
    return w.one("execve", lambda e: e.proc.ppid == w.pid and e.proc.exe == "fileless")


ROOT_NAME = pwd.getpwuid(0).pw_name

# field (with argument) -> (the event, the value it must have; a callable gets the World)
CHECKS: dict[str, tuple[Callable[[World], SyscallEvent], Any]] = {
    "container.id": (lambda w: _opened(w, "/etc/hostname"), lambda w: w.container_id),
    "evt.arg.flags": (lambda w: _opened(w, "made.sh"), "O_TRUNC|O_CREAT|O_WRONLY|O_CLOEXEC|O_F_CREATED"),
    "evt.arg.name": (lambda w: _opened(w, "made.sh"), lambda w: f"{w.work}/made.sh"),
    "evt.is_open_read": (lambda w: _opened(w, "/etc/hostname"), True),
    "evt.is_open_write": (lambda w: _opened(w, "made.sh"), True),
    "evt.is_open_exec": (lambda w: _opened(w, "made.sh"), True),
    "evt.rawres": (lambda w: _opened(w, "../missing/x"), -2),
    "evt.res": (lambda w: _opened(w, "../missing/x"), "ENOENT"),
    "fd.name": (lambda w: _opened(w, "/etc/hostname"), "/etc/hostname"),
    "fd.nameraw": (lambda w: _opened(w, "../missing/x"), "../missing/x"),
    "fd.directory": (lambda w: _opened(w, "made.sh"), lambda w: str(w.work)),
    "fd.filename": (lambda w: _opened(w, "made.sh"), "made.sh"),
    "fd.num": (lambda w: _opened(w, "../missing/x"), -1),
    "fd.type": (lambda w: _connect(w), "ipv4"),
    "fd.typechar": (lambda w: _opened(w, "/etc/hostname"), "f"),
    "fd.sockfamily": (lambda w: _connect(w), "ip"),
    "fd.l4proto": (lambda w: _connect(w), "tcp"),
    "fd.sip": (lambda w: _connect(w), "127.0.0.1"),
    "fd.cip": (lambda w: _connect(w), "127.0.0.1"),
    "fd.ip": (lambda w: _connect(w), ["127.0.0.1", "127.0.0.1"]),
    "fd.net": (lambda w: _connect(w), ["127.0.0.1", "127.0.0.1"]),
    "fd.snet": (lambda w: _connect(w), "127.0.0.1"),
    "fd.cnet": (lambda w: _connect(w), "127.0.0.1"),
    "fd.rnet": (lambda w: _connect(w), "127.0.0.1"),
    "fd.sport": (lambda w: _connect(w), lambda w: w.port),
    "fd.port": (lambda w: _connect(w), lambda w: [_connect(w).fd.cport, w.port]),
    "fd.connected": (lambda w: _connect(w), True),
    "fd.name_changed": (lambda w: _connect(w), False),
    "proc.name": (lambda w: _opened(w, "/etc/hostname"), "python"),
    "proc.exe": (lambda w: _child_exec(w), "sh"),
    "proc.exepath": (lambda w: _child_exec(w), lambda w: os.path.realpath("/bin/sh")),     # symlinks resolved
    "proc.args": (lambda w: _child_exec(w), "-c exit 0 child-of-scenario"),
    "proc.cmdline": (lambda w: _child_exec(w), "sh -c exit 0 child-of-scenario"),
    "proc.env": (lambda w: _child_exec(w), "CHILD=1"),
    "proc.cwd": (lambda w: _child_exec(w), lambda w: f"{w.work}/"),
    "proc.pname": (lambda w: _child_exec(w), "python"),
    "proc.pexe": (lambda w: _child_exec(w), sys.executable),
    "proc.pcmdline": (lambda w: _child_exec(w), lambda w: f"python -c {SCENARIO} {w.port} {w.work} "
                      f"{w.extra['hold']} scenario-marker"),
    "proc.aname[2]": (lambda w: _child_exec(w), lambda w: os.path.basename(sys.executable)[:15]),
    "proc.aexe[1]": (lambda w: _child_exec(w), sys.executable),
    "proc.vpid": (lambda w: _opened(w, "/etc/hostname"), lambda w: w.pid),
    "proc.tty": (lambda w: _opened(w, "/etc/hostname"), lambda w: w.tty),
    "proc.is_vpgid_leader": (lambda w: _opened(w, "/etc/hostname"), True),
    "proc.duration": (lambda w: _opened(w, "/etc/hostname"), lambda w: (0, 60 * 10**9)),
    "proc.is_exe_from_memfd": (lambda w: _fileless(w), True),
    "proc.exepath[memfd]": (lambda w: _fileless(w), "memfd:payload"),
    "proc.exe_ino": (lambda w: _child_exec(w), lambda w: os.stat("/bin/sh").st_ino),
    "proc.exe_ino.mtime": (lambda w: _child_exec(w), lambda w: os.stat(os.path.realpath("/bin/sh")).st_mtime_ns),
    "proc.exe_ino.ctime": (lambda w: _child_exec(w), lambda w: os.stat(os.path.realpath("/bin/sh")).st_ctime_ns),
    "proc.is_exe_upper_layer": (lambda w: _child_exec(w), False),
    "user.uid": (lambda w: _opened(w, "/etc/hostname"), 0),
    "user.name": (lambda w: _opened(w, "/etc/hostname"), ROOT_NAME),
    "user.loginuid": (lambda w: _opened(w, "/etc/hostname"), 4242),
    "thread.cap_effective": (lambda w: _opened(w, "/etc/hostname"), lambda w: ("CAP_SYS_ADMIN", "contains")),
    "thread.cap_permitted": (lambda w: _opened(w, "/etc/hostname"), lambda w: ("CAP_SYS_ADMIN", "contains")),
}


def _value(ev: SyscallEvent, name: str) -> Any:
    fname, arg = name, None
    if name.endswith("[memfd]"):
        fname = name[: -len("[memfd]")]
    elif "[" in name:
        fname, arg = name[:-1].split("[")
    elif name.startswith("evt.arg."):
        fname, arg = "evt.arg", name[8:]
    return ev.value(fname, arg)


@pytest.mark.parametrize("name", list(CHECKS))
def test_field(world: World, name: str) -> None:
    got = world.values[name]
    if isinstance(got, AssertionError):
        raise got
    want = CHECKS[name][1]
    if callable(want):
        want = want(world)
    if isinstance(want, tuple) and want[1] == "contains":
        assert want[0] in (got or "").split("|")
    elif isinstance(want, tuple):
        assert want[0] <= got <= want[1]
    else:
        assert got == want
