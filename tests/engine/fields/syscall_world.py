"""Realistic syscall events for the field tests: a shell in a Kubernetes container exec'ing cat,
its ancestors up to the host's init, its open files and sockets, and a host process.

`make_world(tmp, monkeypatch)` builds them, writes the passwd/group files that the host and the
container see under `tmp` and points the user lookup (with a cache of its own) at them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensor.capture import accounts
from sensor.event import Container, Fd, Process, SyscallEvent

T0 = 1_714_557_600_123_456_789          # 2024-05-01T10:00:00.123456789Z
SEC = 1_000_000_000

HOST_PASSWD = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/zsh\n"
HOST_GROUP = "root:x:0:\nalice:x:1000:\n"
CONTAINER_PASSWD = ("root:x:0:0:root:/root:/bin/ash\n# the image's web user\n"
                    "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n")
CONTAINER_GROUP = "root:x:0:\nwww-data:x:33:\n"

POD = Container(
    id="3ad7b26ded6d", full_id="3ad7b26ded6d" + "a" * 52, type="containerd", name="web",
    image="docker.io/library/nginx:1.25", image_repository="docker.io/library/nginx", image_tag="1.25",
    image_digest="sha256:" + "b" * 64, privileged=False,
    mounts=[{"source": "/var/run/docker.sock", "dest": "/var/run/docker.sock", "mode": "",
             "rdwr": True, "propagation": "rprivate"},
            {"source": "/proc", "dest": "/host/proc", "mode": "ro", "rdwr": False,
             "propagation": "rslave"}],
    start_ts=T0 - 3600 * SEC, pod_uid="3e41dc6b-08a8-44db-bc2a-3724b18ab19a", pod_name="web-7d9c",
    pod_namespace="shop", pod_labels={"app": "web", "tier": "", "io.kubernetes.pod.name": "web-7d9c"},
    labels={"app": "web", "tier": "", "io.kubernetes.pod.name": "web-7d9c"})


@dataclass
class World:
    init: Process
    shim: Process
    nginx: Process
    sh: Process
    cat: Process
    bash: Process           # a host login shell of alice
    shadow: Fd
    conn: Fd
    accepted: Fd
    events: dict[str, SyscallEvent]


def _proc(**kw: Any) -> Process:
    return Process(**kw)


def build(tmp: Path) -> World:
    """The processes, fds and events; writes the account files under `tmp`."""
    (tmp / "etc").mkdir(parents=True, exist_ok=True)
    (tmp / "etc" / "passwd").write_text(HOST_PASSWD)
    (tmp / "etc" / "group").write_text(HOST_GROUP)

    init = _proc(pid=1, ppid=0, vpid=1, name="systemd", exe="/sbin/init", exepath="/usr/lib/systemd/systemd",
                 args=["--system"], cwd="/", sid=1, vpgid=1, start_ns=T0 - 86400 * SEC)
    shim = _proc(pid=900, ppid=1, vpid=900, name="containerd-shim", exe="/usr/bin/containerd-shim-runc-v2",
                 exepath="/usr/bin/containerd-shim-runc-v2", args=["-namespace", "k8s.io"], cwd="/",
                 sid=900, vpgid=900, start_ns=T0 - 3601 * SEC, parent=init)
    nginx = _proc(pid=1200, ppid=900, vpid=1, name="nginx", exe="nginx", exepath="/usr/sbin/nginx",
                  args=["-g", "daemon off;"], cwd="/", sid=1, vpgid=1, uid=0, gid=0,
                  start_ns=T0 - 3600 * SEC, container=POD, parent=shim)
    sh = _proc(pid=1300, ppid=1200, vpid=7, name="sh", exe="/bin/sh", exepath="/bin/busybox",
               args=["-c", "cat /etc/shadow"], cwd="/tmp", tty=34816, sid=7, vpgid=7, uid=33, gid=33,
               loginuid=-1, start_ns=T0 - 2 * SEC, container=POD, parent=nginx,
               env=["PATH=/usr/bin:/bin", "HOME=/var/www"])
    cat = _proc(pid=1301, ppid=1300, vpid=8, name="cat", exe="cat", exepath="/bin/busybox",
                args=["/etc/shadow"], cwd="/tmp", tty=34816, sid=7, vpgid=7, uid=33, gid=33, euid=33,
                egid=33, loginuid=4294967295, start_ns=T0 - SEC, exe_writable=False,
                exe_upper_layer=True, exe_from_memfd=False, exe_ino=393219,
                exe_ino_ctime=T0 - 10 * SEC, exe_ino_mtime=T0 - 20 * SEC,
                cap_permitted="CAP_CHOWN|CAP_KILL", cap_effective="CAP_CHOWN",
                cap_inheritable="", env=["PATH=/usr/bin:/bin", "HOME=/var/www", "LANG=C.UTF-8"],
                container=POD, parent=sh)
    bash = _proc(pid=4711, ppid=4700, vpid=4711, name="bash", exe="-bash", exepath="/usr/bin/bash",
                 args=[], cwd="/home/alice", tty=34817, sid=4711, vpgid=4711, uid=1000, gid=1000,
                 loginuid=1000, start_ns=T0 - 600 * SEC, parent=None)

    for p in (nginx, sh, cat):      # the container's own view of /etc, under /proc/<pid>/root
        etc = tmp / "proc" / str(p.pid) / "root" / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "passwd").write_text(CONTAINER_PASSWD)
        (etc / "group").write_text(CONTAINER_GROUP)

    stdin = Fd(num=0, type="file", name="/dev/pts/0")
    shadow = Fd(num=3, type="file", name="/etc/shadow", flags=0o2000000, nameraw="/etc/shadow",
                dev=0x803, ino=1234)
    conn = Fd(num=4, type="ipv4", name="172.17.0.2:51234->10.0.0.5:443", l4proto="tcp", sockfamily="ip",
              cip="172.17.0.2", cport=51234, sip="10.0.0.5", sport=443, local_is_server=False,
              connected=True)
    listener = Fd(num=5, type="ipv4", name="0.0.0.0:8080", l4proto="tcp", sip="0.0.0.0", sport=8080)
    accepted = Fd(num=6, type="ipv4", name="10.0.0.9:40000->172.17.0.2:8080", l4proto="tcp",
                  cip="10.0.0.9", cport=40000, sip="172.17.0.2", sport=8080, local_is_server=True,
                  connected=True)
    pipe = Fd(num=7, type="pipe", name="pipe:[4711]")
    created = Fd(num=8, type="file", name="/tmp/dropper", nameraw="dropper")
    cat.fds.update({0: stdin, 3: shadow, 4: conn, 7: pipe, 8: created})
    nginx.fds.update({5: listener, 6: accepted})

    def ev(type_: str, proc: Process, n: int, **kw: Any) -> SyscallEvent:
        return SyscallEvent(type=type_, time_ns=T0 + n * 1000, num=n, proc=proc, tid=proc.pid, cpu=1, **kw)

    events = {
        "execve": ev("execve", cat, 1, res=0,
                     args={"res": 0, "exe": "cat", "args": "/etc/shadow", "tid": 1301, "pid": 1301,
                           "ptid": 1300, "cwd": "/tmp"}),
        "open_shadow": ev("openat", cat, 2, res=3, fd=shadow,
                          args={"fd": 3, "dirfd": -100, "name": "/etc/shadow",
                                "flags": "O_RDONLY|O_CLOEXEC", "mode": 0, "dev": 2051},
                          rawargs={"flags": 0o2000000}),
        "open_missing": ev("openat", cat, 3, res=-2,
                           args={"fd": -2, "dirfd": -100, "name": "/tmp/missing.conf",
                                 "flags": "O_RDONLY", "mode": 0},
                           rawargs={"name": "missing.conf", "flags": 0}),
        "connect": ev("connect", cat, 4, res=0, fd=conn,
                      args={"res": 0, "tuple": "172.17.0.2:51234->10.0.0.5:443", "fd": 4}),
        "connect_refused": ev("connect", cat, 5, res=-111, fd=conn,
                              args={"res": -111, "tuple": "172.17.0.2:51236->10.0.0.5:443", "fd": 4}),
        "accept": ev("accept4", nginx, 6, res=6, fd=accepted,
                     args={"fd": 6, "tuple": "10.0.0.9:40000->172.17.0.2:8080", "queuepct": 0,
                           "queuelen": 0, "queuemax": 511, "flags": 0}),
        "unlink": ev("unlinkat", sh, 7, res=0,
                     args={"res": 0, "dirfd": -100, "name": "/tmp/x.log", "flags": ""},
                     rawargs={"name": "x.log", "flags": 0}),
        "create_exec": ev("openat", cat, 8, res=8, fd=created,
                          args={"fd": 8, "dirfd": -100, "name": "/tmp/dropper",
                                "flags": "O_WRONLY|O_CREAT|O_TRUNC|O_F_CREATED", "mode": "0755"},
                          rawargs={"name": "dropper", "flags": 0o1101, "mode": 0o755}),
        "read_buffer": ev("read", cat, 9, res=4, fd=shadow, args={"res": 4, "data": b"\xca\xfe\xba\xbe"}),
        "setuid": ev("setuid", bash, 10, res=0, args={"res": 0, "uid": 0}),
        "rename": ev("renameat2", sh, 11, res=0,
                     args={"res": 0, "olddirfd": -100, "oldpath": "/tmp/a", "newdirfd": -100,
                           "newpath": "/usr/bin/a", "flags": ""},
                     rawargs={"oldpath": "a", "newpath": "/usr/bin/a", "flags": 0}),
        "poll": ev("poll", cat, 12, res=1, args={"res": 1, "fds": "4:p1 7:p1"}),
        "chmod": ev("fchmodat", sh, 13, res=0,
                    args={"res": 0, "dirfd": -100, "filename": "/tmp/dropper",
                          "mode": "S_IRUSR|S_IWUSR|S_IXUSR|S_ISUID"}),
        "host_open": ev("openat", bash, 14, res=-13,
                        args={"fd": -13, "dirfd": -100, "name": "/etc/sudoers", "flags": "O_RDWR", "mode": 0}),
    }
    return World(init, shim, nginx, sh, cat, bash, shadow, conn, accepted, events)


def make_world(tmp: Path, monkeypatch: Any) -> World:
    """`build(tmp)`, with user/group lookups reading its files through a cache of the test's own."""
    monkeypatch.setattr(accounts, "HOST_ETC", str(tmp / "etc"))
    monkeypatch.setattr(accounts, "PROC_ROOT", str(tmp / "proc"))
    monkeypatch.setattr(Process, "accounts", accounts.account)
    monkeypatch.setattr(accounts, "_cache", {})
    return build(tmp)
