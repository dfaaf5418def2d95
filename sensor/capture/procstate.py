"""The process table: bootstrapped from /proc, then kept from fork, exec and exit records.

Times: the kernel stamps events with CLOCK_BOOTTIME and tasks with `start_boottime` (what
/proc/<pid>/stat field 22 counts in clock ticks); both become ns since the epoch by adding the
boot time measured once as CLOCK_REALTIME - CLOCK_BOOTTIME.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import time
from collections.abc import Iterator

from sensor.capture import render
from sensor.capture.containers import ContainerResolver
from sensor.event import HOST, Container, Fd, Process

CLK_TCK = os.sysconf("SC_CLK_TCK")
NS_PER_TICK = 1_000_000_000 // CLK_TCK
UNSET_LOGINUID = 0xFFFFFFFF


def boot_epoch_ns() -> int:
    """Epoch ns at boot: add to a CLOCK_BOOTTIME reading to get epoch ns."""
    # Read the two clocks back to back, twice, and keep the pair closest together.
    best = None
    for _ in range(3):
        a = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        r = time.clock_gettime_ns(time.CLOCK_REALTIME)
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        cand = (b - a, r - (a + b) // 2)
        if best is None or cand < best:
            best = cand
    assert best is not None
    return best[1]


def resolve_path(base: str, path: str) -> str:
    """Falco's fd.name for a path: absolute, lexically normalised, symlinks not followed."""
    if not path:
        return base
    full = path if path[0] == "/" else (base.rstrip("/") + "/" + path if base else path)
    if "/." not in full and "//" not in full and (len(full) == 1 or full[-1] != "/"):
        return full
    parts: list[str] = []
    for part in full.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def fd_type_of_mode(imode: int) -> str:
    """Falco's fd.type from an inode's file type."""
    fmt = stat.S_IFMT(imode)
    if fmt == stat.S_IFDIR:
        return "directory"
    if fmt == stat.S_IFIFO:
        return "pipe"
    if fmt == stat.S_IFSOCK:
        return "unix"
    return "file"


class ProcessTable:
    """Processes by tgid. Dead entries leave the table but stay reachable as someone's parent."""

    def __init__(self, containers: ContainerResolver, boot_ns: int | None = None,
                 read_env: bool = True) -> None:
        self.containers = containers
        self.boot_ns = boot_epoch_ns() if boot_ns is None else boot_ns
        self.read_env = read_env
        self.procs: dict[int, Process] = {}
        self.unknown_seen = 0          # processes first met on an event, not at fork/bootstrap
        self._socket_table: dict[int, Fd] = {}
        self._sockets_at = -1e9

    # -- bootstrap ------------------------------------------------------------------------------
    def bootstrap(self, proc_root: str = "/proc") -> int:
        """Read every process in /proc. Returns how many were loaded."""
        pids = [int(d) for d in os.listdir(proc_root) if d.isdigit()]
        for pid in pids:
            p = self.from_proc(pid, proc_root)
            if p is not None:
                self.procs[pid] = p
        for p in self.procs.values():
            p.parent = self.procs.get(p.ppid)
        return len(self.procs)

    def _sockets(self, proc_root: str) -> dict[int, Fd]:
        # Read once per second at most: an unknown process met on an event reads it again.
        now = time.monotonic()
        if now - self._sockets_at > 1.0:
            self._socket_table = socket_table(proc_root)
            self._sockets_at = now
        return self._socket_table

    def from_proc(self, pid: int, proc_root: str = "/proc", with_fds: bool = True) -> Process | None:
        """One process as /proc shows it now, or None when it is gone or a kernel thread."""
        base = f"{proc_root}/{pid}"
        try:
            with open(f"{base}/stat", "rb") as f:
                statline = f.read().decode(errors="replace")
            with open(f"{base}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            return None
        lpar, rpar = statline.find("("), statline.rfind(")")
        comm = statline[lpar + 1:rpar]
        fields = statline[rpar + 2:].split()
        # fields[0] is field 3 (state): field N is fields[N - 3]
        ppid, pgrp, session, tty_nr = int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4])
        flags, starttime = int(fields[6]), int(fields[19])
        if flags & 0x00200000:        # PF_KTHREAD: kernel threads have no user-space state
            return None
        argv = [a.decode(errors="replace") for a in cmdline.split(b"\0")]
        if argv and argv[-1] == "":
            argv.pop()
        status = self._status(base)
        uids = status.get("Uid", "0 0").split()
        gids = status.get("Gid", "0 0").split()
        nspid = status.get("NSpid", str(pid)).split()
        nspgid = status.get("NSpgid", str(pgrp)).split()
        p = Process(
            pid=pid, ppid=ppid, vpid=int(nspid[-1]), name=comm,
            exe=argv[0] if argv else comm, exepath=_readlink(f"{base}/exe"),
            args=argv[1:], cwd=_readlink(f"{base}/cwd"), tty=tty_nr, sid=session,
            vpgid=int(nspgid[-1]), loginuid=_loginuid(base), uid=int(uids[0]), gid=int(gids[0]),
            euid=int(uids[1]), egid=int(gids[1]),
            start_ns=self.boot_ns + starttime * NS_PER_TICK,
        )
        p.cap_inheritable = render.capabilities(int(status.get("CapInh", "0"), 16))
        p.cap_permitted = render.capabilities(int(status.get("CapPrm", "0"), 16))
        p.cap_effective = render.capabilities(int(status.get("CapEff", "0"), 16))
        p.exepath = exe_path(p.exepath)
        p.exe_from_memfd = p.exepath.startswith("memfd:")
        p.exe_writable = exe_writable(p.exepath, p.euid or 0, p.egid or 0)
        if self.read_env:
            p.env = _read_env(f"{base}/environ")
        p.cgroup_id, p.container = self._cgroup(pid, base)
        if with_fds:
            p.fds = _read_fds(base, self._sockets(proc_root))
        return p

    @staticmethod
    def _status(base: str) -> dict[str, str]:
        out = {}
        try:
            with open(f"{base}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    out[k] = v.strip()
        except OSError:
            pass
        return out

    def _cgroup(self, pid: int, base: str) -> tuple[int, Container]:
        root = self.containers.root
        if root is None:
            return 0, HOST
        try:
            with open(f"{base}/cgroup") as f:
                for line in f:
                    if line.startswith("0::"):
                        rel = line[3:].strip()
                        ino = os.stat(str(root) + rel).st_ino
                        return ino, self.containers.get(ino, pid)
        except OSError:
            pass
        return 0, HOST

    # -- lookups --------------------------------------------------------------------------------
    def get(self, tgid: int, comm: bytes, uid: int, gid: int, cgroup: int) -> Process:
        """The process for an event; a process met for the first time is read from /proc."""
        p = self.procs.get(tgid)
        if p is not None:
            return p
        self.unknown_seen += 1
        p = self.from_proc(tgid)
        if p is None:
            # Already gone: what the event itself says is all there is.
            name = comm.split(b"\0", 1)[0].decode(errors="replace")
            p = Process(pid=tgid, name=name, exe=name, uid=uid, gid=gid, cgroup_id=cgroup)
            p.container = self.containers.get(cgroup, tgid)
        p.parent = self.procs.get(p.ppid)
        self.procs[tgid] = p
        return p

    def __iter__(self) -> Iterator[Process]:
        return iter(self.procs.values())

    def __len__(self) -> int:
        return len(self.procs)

    # -- updates from records -------------------------------------------------------------------
    def fork(self, parent_tgid: int, child_tgid: int, ppid: int, vpid: int, start_boottime: int,
             comm: bytes, uid: int, gid: int, cgroup: int) -> Process:
        """A new process: a copy of its parent (the fork's caller) with its own identity."""
        src = self.procs.get(parent_tgid)
        if src is None:
            src = self.get(parent_tgid, comm, uid, gid, cgroup)
        # The record's cgroup is the parent's at the fork. It differs from the one the table has
        # for the parent when the parent moved since its last event (runc's init joins the
        # container's cgroup, then forks): the child's container is that cgroup's, not the copy.
        container = src.container if cgroup == src.cgroup_id else self.containers.get(cgroup, child_tgid)
        p = Process(
            pid=child_tgid, ppid=ppid, vpid=vpid, name=src.name, exe=src.exe, exepath=src.exepath,
            args=src.args, cwd=src.cwd, tty=src.tty, sid=src.sid, vpgid=src.vpgid,
            loginuid=src.loginuid, uid=uid, gid=gid, euid=src.euid, egid=src.egid,
            start_ns=self.boot_ns + start_boottime, exe_writable=src.exe_writable,
            exe_upper_layer=src.exe_upper_layer, exe_from_memfd=src.exe_from_memfd,
            exe_ino=src.exe_ino, cap_permitted=src.cap_permitted,
            cap_effective=src.cap_effective, cap_inheritable=src.cap_inheritable, env=src.env,
            cgroup_id=cgroup, container=container,
            # Fd objects are never changed in place, so the child can share them.
            fds=dict(src.fds),
        )
        p.parent = self.procs.get(ppid) or src
        self.procs[child_tgid] = p
        return p

    def exit(self, tgid: int) -> Process | None:
        p = self.procs.pop(tgid, None)
        if p is not None:
            p.alive = False
        return p


def exe_path(path: str) -> str:
    """proc.exepath from a path the kernel gave (a dentry walk, or /proc/<pid>/exe): a program run
    from a memfd is `memfd:NAME`, as Falco names it, and a deleted file keeps its name."""
    if path.endswith(" (deleted)"):
        path = path[: -len(" (deleted)")]
    return path[1:] if path.startswith("/memfd:") else path


def exe_writable(path: str, euid: int, egid: int) -> bool | None:
    """Whether the executable is writable by the user running it (Falco's proc.is_exe_writable).

    Root passes the permission check for any writable filesystem, as the kernel's
    inode_permission() does.
    """
    if not path or path[0] != "/":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if euid == 0:
        return True
    if st.st_uid == euid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid == egid:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _loginuid(base: str) -> int:
    try:
        with open(f"{base}/loginuid") as f:
            v = int(f.read().strip())
    except (OSError, ValueError):
        return -1
    return -1 if v == UNSET_LOGINUID else v


def _read_env(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(65536)
    except OSError:
        return None
    return [e.decode(errors="replace") for e in raw.split(b"\0") if e]


def _hex_ip(text: str) -> str:
    # /proc/net addresses are the kernel's words in host (little-endian) order.
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return socket.inet_ntoa(raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return render.ip_text(socket.AF_INET6, words)


def socket_table(proc_root: str = "/proc") -> dict[int, Fd]:
    """Sockets of this network namespace by inode, as Fd templates (num 0), from /proc/net.

    Which end is the server is known for listening sockets and for connections to a local
    listening port; otherwise the local end is taken as the client, as for a connect.
    """
    # (inode, family, l4proto, local ip, local port, remote ip, remote port, listening)
    rows: list[tuple[int, int, str, str, int, str, int, bool]] = []
    for name, family, l4 in (("tcp", 4, "tcp"), ("tcp6", 6, "tcp"), ("udp", 4, "udp"), ("udp6", 6, "udp")):
        try:
            with open(f"{proc_root}/net/{name}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10:
                        continue
                    lip_hex, lport_hex = parts[1].split(":")
                    rip_hex, rport_hex = parts[2].split(":")
                    rows.append((int(parts[9]), family, l4, _hex_ip(lip_hex), int(lport_hex, 16), _hex_ip(rip_hex),
                                 int(rport_hex, 16), parts[3] == "0A"))
        except (OSError, ValueError):
            continue
    listening = {lport for (_i, _f, l4, _lip, lport, _rip, _rp, listen) in rows if listen and l4 == "tcp"}
    out: dict[int, Fd] = {}
    for ino, family, l4, lip, lport, rip, rport, listen in rows:
        if not ino:                      # TIME_WAIT and orphans: nobody's fd
            continue
        ftype = "ipv4" if family == 4 else "ipv6"
        if listen or (rport == 0 and l4 == "udp"):
            out[ino] = Fd(num=0, type=ftype, name=f"{lip}:{lport}", l4proto=l4, sockfamily="ip",
                          sip=lip, sport=lport, local_is_server=True, ino=ino)
            continue
        server = l4 == "tcp" and lport in listening
        cip, cport, sip, sport = (rip, rport, lip, lport) if server else (lip, lport, rip, rport)
        out[ino] = Fd(num=0, type=ftype, name=f"{cip}:{cport}->{sip}:{sport}", l4proto=l4, sockfamily="ip",
                      cip=cip, cport=cport, sip=sip, sport=sport, local_is_server=server,
                      connected=l4 == "tcp", ino=ino)
    try:
        with open(f"{proc_root}/net/unix") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) >= 7:
                    ino = int(parts[6])
                    out[ino] = Fd(num=0, type="unix", name=parts[7] if len(parts) > 7 else "",
                                  sockfamily="unix", ino=ino)
    except (OSError, ValueError):
        pass
    return out


def _read_fds(base: str, sockets: dict[int, Fd] | None = None) -> dict[int, Fd]:
    out: dict[int, Fd] = {}
    try:
        names = os.listdir(f"{base}/fd")
    except OSError:
        return out
    for n in names:
        try:
            num = int(n)
            target = os.readlink(f"{base}/fd/{n}")
        except (OSError, ValueError):
            continue
        flags = 0
        try:
            with open(f"{base}/fdinfo/{n}") as f:
                for line in f:
                    if line.startswith("flags:"):
                        flags = int(line.split()[1], 8)
                        break
        except (OSError, ValueError):
            pass
        fd = fd_from_link(num, target, flags)
        if sockets and fd.ino is not None and target.startswith("socket:"):
            known = sockets.get(fd.ino)
            if known is not None:
                fd = dataclasses.replace(known, num=num, flags=flags)
        out[num] = fd
    return out


def fd_from_link(num: int, target: str, flags: int = 0) -> Fd:
    """An Fd from a /proc/<pid>/fd link: a path, socket:[ino], pipe:[ino], anon_inode:[kind]."""
    if target.startswith("/"):
        name = target[: -len(" (deleted)")] if target.endswith(" (deleted)") else target
        ftype = "directory" if os.path.isdir(name) else "file"
        if name.startswith("/memfd:"):
            ftype, name = "memfd", name[1:]
        return Fd(num=num, type=ftype, name=name, flags=flags)
    if target.startswith("socket:"):
        return Fd(num=num, type="unix", name="", flags=flags, ino=int(target[8:-1] or 0))
    if target.startswith("pipe:"):
        return Fd(num=num, type="pipe", name="", flags=flags, ino=int(target[6:-1] or 0))
    if target.startswith("anon_inode:"):
        kind = target[len("anon_inode:"):].strip("[]")
        ftype = {"eventfd": "event", "eventpoll": "eventpoll", "signalfd": "signalfd",
                 "inotify": "inotify", "timerfd": "timerfd", "bpf-map": "bpf", "bpf-prog": "bpf",
                 "userfaultfd": "userfaultfd", "io_uring": "io_uring"}.get(kind, "file")
        return Fd(num=num, type=ftype, name=target, flags=flags)
    return Fd(num=num, type="file", name=target, flags=flags)
