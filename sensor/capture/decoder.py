"""Ring-buffer records -> process/fd state changes and `SyscallEvent`s.

Each record kind has one precompiled struct (sensor/capture/layout.py). Syscall arguments are
rendered under Falco's names by one generated function per syscall (sensor/capture/argcode.py),
built once from the parameter table of sensor/syscalls.py.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable

from sensor.capture import argcode, render
from sensor.capture.layout import (
    K_EXEC,
    K_EXIT,
    K_FORK,
    K_SYSCALL,
    LAYOUTS,
    X_EXE_MEMFD,
    X_EXE_UPPER,
    X_HAVE_FILE,
    X_HAVE_SOCK,
)
from sensor.capture.procstate import ProcessTable, exe_path, exe_writable, fd_type_of_mode, resolve_path
from sensor.event import HOST, Fd, Process, SyscallEvent
from sensor.syscalls import BY_NR, FD_ARG0, Syscall

_SYSCALL = LAYOUTS["syscall"].struct
_EXEC = LAYOUTS["exec"].struct
_FORK = LAYOUTS["fork"].struct
_EXIT = LAYOUTS["exit"].struct
_SC_FIXED = _SYSCALL.size
_EX_FIXED = _EXEC.size
_L4 = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp", 255: "raw", 0: None}
_SOCK_STREAM, _SOCK_DGRAM, _SOCK_RAW = 1, 2, 3
_FD_KINDS = {"memfd_create": "memfd", "userfaultfd": "userfaultfd", "bpf": "bpf"}
_CLOEXEC = os.O_CLOEXEC
_FMODE_CREATED = 0x100000          # file->f_mode: this open created the file
_OPENS = frozenset({"open", "openat", "openat2", "creat"})
# syscalls whose success changes what a process's fields answer
_IDENTITY_NRS = frozenset(sc.nr for sc in BY_NR.values() if sc.name in (
    "chdir", "fchdir", "setuid", "setgid", "setresuid", "setresgid", "setsid", "setpgid"))
_EXECS = frozenset({"execve", "execveat"})


def _text(b: bytes | memoryview) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


class Ctx:
    """One syscall record as the state changes read it; `fd` is what they set."""

    __slots__ = ("a", "addr", "fd", "proc", "res", "s")

    def __init__(self, res: int, a: tuple[int, ...], s: tuple[str, str, str], addr: bytes,
                 proc: Process, fd: Fd | None) -> None:
        self.res = res
        self.a = a
        self.s = s
        self.addr = addr
        self.proc = proc
        self.fd = fd


# Positions in the unpacked syscall record of what the state changes read of the kernel's view.
_I = {name: i for i, name in enumerate(LAYOUTS["syscall"].names)}
I_FAM, I_STYPE, I_PROTO, I_LPORT, I_RPORT = _I["sk_family"], _I["sk_type"], _I["sk_proto"], _I["lport"], _I["rport"]
I_LADDR, I_RADDR, I_XFLAGS, I_FMODE = _I["laddr_raw"], _I["raddr_raw"], _I["xflags"], _I["fmode"]
I_INO, I_DEV, I_IMODE, I_STATE, I_LDIR = _I["ino"], _I["dev"], _I["imode"], _I["sk_state"], _I["l_dir"]


class Decoder:
    """Turns records into state changes and events; `events` collects what one batch produced."""

    def __init__(self, table: ProcessTable, emit: frozenset[str] | None = None,
                 on_cloexec: Callable[[int, list[int]], None] | None = None,
                 on_host_cgroup: Callable[[int], None] | None = None) -> None:
        self.table = table
        self.on_host_cgroup = on_host_cgroup       # a cgroup id found to be the host's, for good
        self.procs = table.procs
        self.containers = table.containers
        self.boot_ns = table.boot_ns
        self.emit = emit                       # evt.types to produce (None: all)
        self.on_cloexec = on_cloexec
        self.events: list[SyscallEvent] = []
        self.num = 0
        self.records = 0
        self.decode_errors = 0
        self._host_cgroups: set[int] = set()
        self._comm: dict[int, bytes] = {}          # tgid -> the comm bytes p.name was made from
        self._params: dict[int, tuple[Syscall, argcode.Builder]] = {
            nr: (sc, argcode.builder(sc)) for nr, sc in BY_NR.items()}
        self._state = {
            "open": self._open, "openat": self._open, "openat2": self._open, "creat": self._open,
            "close": self._close, "dup": self._dup, "dup2": self._dup, "dup3": self._dup,
            "socket": self._socket, "connect": self._net, "bind": self._net, "listen": self._net,
            "accept": self._accept, "accept4": self._accept, "sendto": self._net,
            "sendmsg": self._net, "recvfrom": self._net, "recvmsg": self._net,
            "chdir": self._chdir, "fchdir": self._chdir, "setsid": self._setsid,
            "setpgid": self._setpgid, "memfd_create": self._newfd,
            "userfaultfd": self._newfd, "bpf": self._newfd, "fchmod": self._usefd,
            "setns": self._usefd, "finit_module": self._usefd,
        }

    # -- dispatch ------------------------------------------------------------------------------
    # Events of one batch are matched after the whole batch is decoded, and they point at live
    # Process objects. A record that changes who a process is (an exec, a new uid, a new cwd)
    # therefore ends the batch when events are waiting: they are matched with the state they
    # happened in, and the record is decoded first thing in the next batch.
    def handle(self, view: memoryview, off: int, length: int) -> bool:
        """Ring-buffer callback: decode one record; False leaves it for the next batch."""
        kind = view[off]                        # the low byte of the u16 kind
        try:
            if kind == K_SYSCALL:
                t = _SYSCALL.unpack_from(view, off)
                if self.events and self._changes_identity(t):
                    return False
                self.records += 1
                self._syscall(t, view, off)
                return True
            if kind == K_EXEC:
                if self.events:
                    return False
                self.records += 1
                self._exec(view, off, length)
                return True
            self.records += 1
            if kind == K_FORK:
                self._fork(view, off)
            elif kind == K_EXIT:
                self._exit(view, off)
            else:
                self.decode_errors += 1
        except (struct.error, ValueError, IndexError, KeyError):
            self.decode_errors += 1
        return True

    def _changes_identity(self, t: tuple) -> bool:
        if t[1] in _IDENTITY_NRS:
            return True
        p = self.procs.get(t[3])
        return p is not None and (p.uid != t[4] or p.gid != t[5] or p.euid != t[6] or p.egid != t[7]
                                  or p.cgroup_id != t[10] or self._comm.get(t[3]) != t[11])

    def _proc(self, tgid: int, comm: bytes, uid: int, gid: int, cgroup: int) -> Process:
        p = self.procs.get(tgid)
        if p is None:
            p = self.table.get(tgid, comm, uid, gid, cgroup)
        if p.cgroup_id != cgroup:
            p.cgroup_id = cgroup
            p.container = self.containers.get(cgroup, tgid)
            if p.container is HOST and self.on_host_cgroup is not None and cgroup not in self._host_cgroups:
                self._host_cgroups.add(cgroup)
                self.on_host_cgroup(cgroup)
        return p

    def _identity(self, p: Process, uid: int, gid: int, euid: int, egid: int, comm: bytes) -> None:
        """What every record says about its process: ids and name (the kernel filter tests these
        same values, so user space must not keep older ones)."""
        p.uid, p.gid, p.euid, p.egid = uid, gid, euid, egid
        if self._comm.get(p.pid) != comm:
            self._comm[p.pid] = comm
            p.name = comm.split(b"\0", 1)[0].decode(errors="replace")

    def _new_event(self, etype: str, p: Process, tid: int, ts: int, cpu: int,
                   res: int | None) -> SyscallEvent:
        self.num += 1
        if self.containers.new_containers:
            self._containers_seen(p, tid, ts, cpu)
        return SyscallEvent(type=etype, time_ns=self.boot_ns + ts, num=self.num, proc=p, tid=tid,
                            res=res, cpu=cpu)

    def _containers_seen(self, p: Process, tid: int, ts: int, cpu: int) -> None:
        # Falco's `container` event: once per container, before its first event.
        new = self.containers.new_containers
        if not new:
            return
        self.containers.new_containers = []
        if self.emit is not None and "container" not in self.emit:
            return
        for c in new:
            self.num += 1
            ev = SyscallEvent(type="container", time_ns=self.boot_ns + ts, num=self.num, proc=p,
                              tid=tid, res=0, cpu=cpu)
            ev.args = {"id": c.id, "type": c.type, "name": c.name, "image": c.image}
            self.events.append(ev)

    # -- records -------------------------------------------------------------------------------
    def _syscall(self, t: tuple, view: memoryview, off: int) -> None:
        (_k, nr, tid, tgid, uid, gid, euid, egid, cpu, ts, cgroup, comm, res, a0, a1, a2, a3, a4, a5,
         l0, l1, l2, laddr) = t[:23]
        entry = self._params.get(nr)
        if entry is None:
            self.decode_errors += 1
            return
        sc, build = entry
        p = self.procs.get(tgid)
        if p is None or p.cgroup_id != cgroup:
            p = self._proc(tgid, comm, uid, gid, cgroup)
        if p.euid != euid or self._comm.get(tgid) != comm or p.uid != uid or p.gid != gid or p.egid != egid:
            self._identity(p, uid, gid, euid, egid, comm)
        # the tail: the socket address, then the strings
        pos = off + _SC_FIXED
        addr = bytes(view[pos:pos + laddr]) if laddr else b""
        pos += laddr
        s0 = bytes(view[pos:pos + l0 - 1]).decode("utf-8", "surrogateescape") if l0 else ""
        s1 = s2 = ""
        l_dir = t[I_LDIR]
        if l1 or l2 or l_dir:
            pos += l0
            s1 = _text(view[pos:pos + l1 - 1]) if l1 else ""
            pos += l1
            s2 = _text(view[pos:pos + l2 - 1]) if l2 else ""
            pos += l2
            if l_dir:
                self._directory(sc, p, a0, _text(view[pos:pos + l_dir - 1]))
        fd = None
        state = self._state.get(sc.name)
        if state is not None:
            c = Ctx(res, (a0, a1, a2, a3, a4, a5), (s0, s1, s2), addr, p, None)
            state(sc, c, t)
            fd = c.fd
        emit = self.emit
        if emit is not None and sc.name not in emit:
            return
        self.num += 1
        if self.containers.new_containers:
            self._containers_seen(p, tid, ts, cpu)
        args, rawargs = build(res, a0, a1, a2, a3, a4, a5, s0, s1, s2, addr, p, fd, tid)
        if res == 0 and sc.name in _EXECS:
            # The path argument left with the old address space; the kernel told us the program.
            args["filename" if sc.name == "execve" else "pathname"] = p.exepath
        elif t[I_FMODE] & _FMODE_CREATED and res >= 0 and sc.name in _OPENS:
            args["flags"] += "|O_F_CREATED"
            rawargs["flags"] = rawargs.get("flags", 0) | render.PPM_O_F_CREATED
        self.events.append(SyscallEvent(sc.name, self.boot_ns + ts, self.num, p, tid, res, "<", args, rawargs,
                                        fd, cpu))

    def _exec(self, view: memoryview, off: int, length: int) -> None:
        (_k, _nr, _tid, tgid, uid, gid, euid, egid, _cpu, _ts, cgroup, comm, ppid, vpid, sid, vpgid,
         loginuid, tty, _old, xflags, cap_inh, cap_perm, cap_eff, _start, exe_ino, exe_ctime,
         exe_mtime, l_fn, l_args, l_env, l_exe, l_cgp, l_cgl, l_exepath, _pad) = _EXEC.unpack_from(view, off)
        pos = off + _EX_FIXED
        filename = _text(view[pos:pos + l_fn - 1]) if l_fn else ""
        pos += l_fn
        argv = [_text(a) for a in bytes(view[pos:pos + l_args]).split(b"\0")]
        if argv and argv[-1] == "":
            argv.pop()
        pos += l_args
        env_raw = bytes(view[pos:pos + l_env])
        pos += l_env + l_exe
        p = self._proc(tgid, comm, uid, gid, cgroup)
        exepath = _text(view[pos + l_cgp + l_cgl:pos + l_cgp + l_cgl + l_exepath - 1]) if l_exepath else ""
        if l_cgl:
            parent = _text(view[pos:pos + l_cgp - 1]) if l_cgp else ""
            leaf = _text(view[pos + l_cgp:pos + l_cgp + l_cgl - 1])
            self.containers.hint(cgroup, f"{parent}/{leaf}")
        if self.table.read_env:
            p.env = [_text(e) for e in env_raw.split(b"\0") if e]
        self._comm[tgid] = comm
        p.name = comm.split(b"\0", 1)[0].decode(errors="replace")
        p.exe = argv[0] if argv else filename
        p.args = argv[1:]
        # the kernel's path of the executable (symlinks resolved, as Falco's driver reports it);
        # the name the caller used when it could not be read
        p.exepath = exe_path(exepath) if exepath else resolve_path(p.cwd, filename)
        p.uid, p.gid, p.euid, p.egid = uid, gid, euid, egid
        p.vpid, p.sid, p.vpgid, p.tty = vpid, sid, vpgid, tty
        p.loginuid = -1 if loginuid == 0xFFFFFFFF else loginuid
        p.cap_inheritable = render.capabilities(cap_inh)
        p.cap_permitted = render.capabilities(cap_perm)
        p.cap_effective = render.capabilities(cap_eff)
        p.exe_ino = exe_ino
        p.exe_ino_ctime = exe_ctime or None
        p.exe_ino_mtime = exe_mtime or None
        p.exe_upper_layer = bool(xflags & X_EXE_UPPER)
        p.exe_from_memfd = bool(xflags & X_EXE_MEMFD)
        p.exe_writable = exe_writable(p.exepath, euid, egid)
        if ppid != p.ppid:
            p.ppid = ppid
            p.parent = self.procs.get(ppid) or p.parent
        # The kernel closed the O_CLOEXEC descriptors without a close(2).
        gone = [n for n, f in p.fds.items() if f.flags & _CLOEXEC]
        if gone:
            for n in gone:
                del p.fds[n]
            if self.on_cloexec is not None:
                self.on_cloexec(tgid, gone)

    def _fork(self, view: memoryview, off: int) -> None:
        (_k, _nr, _tid, tgid, uid, gid, _euid, _egid, _cpu, _ts, cgroup, comm, _ctid, child_tgid, child_ppid,
         child_vpid, child_start) = _FORK.unpack_from(view, off)
        self.table.fork(tgid, child_tgid, child_ppid, child_vpid, child_start, comm, uid, gid, cgroup)

    def _exit(self, view: memoryview, off: int) -> None:
        (_k, _nr, tid, tgid, _uid, _gid, _euid, _egid, cpu, ts, _cg, _comm, code, _pad) = _EXIT.unpack_from(view, off)
        p = self.table.exit(tgid)
        self._comm.pop(tgid, None)
        if p is None or (self.emit is not None and "procexit" not in self.emit):
            return
        ev = self._new_event("procexit", p, tid, ts, cpu, 0)
        ev.args = {"status": code, "ret": code >> 8, "sig": code & 0x7F, "core": int(bool(code & 0x80))}
        self.events.append(ev)

    @staticmethod
    def _directory(sc: Syscall, p: Process, a0: int, path: str) -> None:
        """The kernel's path of the directory fd the event uses (a dirfd a relative path is
        relative to, or the fd of fchdir and the like): directory opens are not sent for the
        state, so this is what the table knows the fd by."""
        arg = 0 if sc.fd_path or sc.filefd == FD_ARG0 else sc.dirfd_of(0)
        if arg < 0:
            return
        num = render.s32(a0) if arg == 0 else None
        if num is None:
            return
        old = p.fds.get(num)
        if old is None or old.type != "directory" or old.name != path:
            p.fds[num] = Fd(num=num, type="directory", name=path,
                            flags=old.flags if old is not None and old.type == "directory" else 0)

    # -- state changes by syscall ----------------------------------------------------------------
    # `t` is the unpacked record; the kernel's view of the file or socket is at the I_* positions.
    def _open(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        p = c.proc
        if sc.name == "openat2":
            flags = argcode.how(c.addr)[0]
            base = argcode.dirfd_base(p, render.s32(c.a[0]))
        elif sc.name == "openat":
            flags = c.a[2]
            base = argcode.dirfd_base(p, render.s32(c.a[0]))
        elif sc.name == "open":
            flags, base = c.a[1], p.cwd
        else:
            flags, base = os.O_CREAT | os.O_WRONLY | os.O_TRUNC, p.cwd
        name = resolve_path(base, c.s[0])
        res = c.res
        imode = t[I_IMODE]
        f = Fd(num=res if res >= 0 else -1, type=fd_type_of_mode(imode) if imode else "file",
               name=name, flags=flags & 0xFFFFFFFF, nameraw=c.s[0],
               dev=t[I_DEV] if res >= 0 else None, ino=t[I_INO] if res >= 0 else None)
        if res >= 0:
            p.fds[res] = f
        c.fd = f

    def _close(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        fd = render.s32(c.a[0])
        f = c.proc.fds.get(fd)
        if c.res == 0:
            c.proc.fds.pop(fd, None)
        c.fd = f

    def _dup(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        # The kernel read the old fd's file (and socket): a dup of a descriptor the table never
        # heard of, or whose number was reused, is still named for what it is now.
        old = _current_fd(c.proc, render.s32(c.a[0]), t)
        if c.res < 0 or old is None:
            c.fd = old
            return
        cloexec = _CLOEXEC if sc.name == "dup3" and c.a[2] & _CLOEXEC else 0
        f = _copy_fd(old, c.res, (old.flags & ~_CLOEXEC) | cloexec)
        c.proc.fds[c.res] = f
        c.fd = f

    def _socket(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        if c.res < 0:
            return
        family, stype, proto = c.a[0] & 0xFFFF, c.a[1], c.a[2]
        f = Fd(num=c.res, type=_sock_type(family), flags=_CLOEXEC if stype & 0x80000 else 0,
               l4proto=_l4(family, stype & 0xF, proto), sockfamily=_sockfamily(family))
        c.proc.fds[c.res] = f
        c.fd = f

    def _net(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        fdnum = render.s32(c.a[0])
        old = c.proc.fds.get(fdnum)
        if old is not None and old.type in _SOCKETS and not t[I_XFLAGS] & X_HAVE_SOCK:
            # The kernel found no socket behind that number: the entry is stale (closed, and the
            # number free or reused by an open the kernel filtered).
            del c.proc.fds[fdnum]
            c.fd = None
            return
        f = _socket_fd(fdnum, old, t, c.addr, sc.name)
        if f is not old and f is not None:
            c.proc.fds[fdnum] = f
        c.fd = f

    def _accept(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        if c.res < 0:
            return
        f = _socket_fd(c.res, None, t, c.addr, sc.name)
        if f is None:
            f = Fd(num=c.res, type="unix", sockfamily="unix")
        if sc.name == "accept4" and c.a[3] & 0x80000:
            f = _copy_fd(f, c.res, f.flags | _CLOEXEC)
        c.proc.fds[c.res] = f
        c.fd = f

    def _chdir(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        if c.res != 0:
            return
        if sc.name == "chdir":
            c.proc.cwd = resolve_path(c.proc.cwd, c.s[0])
        else:
            f = _current_fd(c.proc, render.s32(c.a[0]), t)
            c.fd = f
            if f is not None and f.name:
                c.proc.cwd = f.name

    def _setsid(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        if c.res >= 0:
            c.proc.sid = c.proc.pid
            c.proc.vpgid = c.res

    def _setpgid(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        if c.res != 0:
            return
        pid, pgid = render.s32(c.a[0]), render.s32(c.a[1])
        target = c.proc if pid in (0, c.proc.pid, c.proc.vpid) else self.procs.get(pid)
        if target is not None:
            target.vpgid = pgid or (target.vpid or target.pid)

    def _newfd(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        if c.res < 0:
            return
        if sc.name == "bpf" and c.a[0] not in (0, 5, 14, 18):   # MAP_CREATE, PROG_LOAD, *_GET_FD_BY_ID
            return
        kind = _FD_KINDS[sc.name]
        name = f"memfd:{c.s[0]}" if kind == "memfd" else ""
        cloexec = _CLOEXEC if (kind == "memfd" and c.a[1] & 1) or (
            kind == "userfaultfd" and c.a[0] & _CLOEXEC) else 0
        f = Fd(num=c.res, type=kind, name=name, flags=cloexec)
        c.proc.fds[c.res] = f
        c.fd = f

    def _usefd(self, sc: Syscall, c: Ctx, t: tuple) -> None:
        c.fd = _current_fd(c.proc, render.s32(c.a[0]), t)


_SOCKETS = frozenset({"ipv4", "ipv6", "unix", "netlink"})
_IP = frozenset({"ipv4", "ipv6"})
# What kind of file each fd type is, as the kernel's inode type tells it (0: an anonymous inode,
# which has no type bits: eventfd, epoll, signalfd, ...).
_KIND_OF_TYPE = {"pipe": stat.S_IFIFO, "directory": stat.S_IFDIR, "file": stat.S_IFREG, "memfd": stat.S_IFREG,
                 **{t: stat.S_IFSOCK for t in _SOCKETS}}
_ANON_TYPES = frozenset({"event", "signalfd", "eventpoll", "inotify", "timerfd", "bpf", "userfaultfd", "io_uring"})


def _same_kind(f: Fd, imode: int) -> bool:
    """Whether a table entry can be the file the kernel found behind its number."""
    fmt = stat.S_IFMT(imode)
    if f.type in _ANON_TYPES:
        return fmt == 0
    want = _KIND_OF_TYPE.get(f.type)
    if want is None:
        return True
    if f.type == "file":          # what /proc called a file may be a device or an anonymous inode
        return fmt not in (stat.S_IFIFO, stat.S_IFDIR, stat.S_IFSOCK)
    return fmt == want


def _current_fd(p: Process, num: int, t: tuple) -> Fd | None:
    """The table's entry for fd `num`, unless the kernel's view of that fd shows it is stale.

    close is not captured unless a rule names it (syscalls.BASE), so after a close the number may
    have been reused, by an open the kernel filtered or by a pipe, an eventfd, another socket. The
    kernel read the file (and the socket) behind the fd for this event: an entry naming another
    file (dev, ino), another kind of file, or another connection is replaced by what the kernel
    found.
    """
    f = p.fds.get(num)
    xflags = t[I_XFLAGS]
    if xflags & X_HAVE_SOCK and t[I_FAM] in (1, 2, 10):
        g = _socket_fd(num, f if f is not None and f.type in _SOCKETS else None, t, b"", "dup")
        if g is not None and g is not f:
            p.fds[num] = g
        return g
    if f is None or not xflags & X_HAVE_FILE:
        return f
    dev, ino, imode = t[I_DEV], t[I_INO], t[I_IMODE]
    if f.ino is not None and f.dev is not None:
        stale = (f.dev, f.ino) != (dev, ino)
    elif f.ino is not None:
        stale = f.ino != ino or not _same_kind(f, imode)
    else:
        stale = not _same_kind(f, imode)
    if not stale:
        return f
    f = Fd(num=num, type=fd_type_of_mode(imode), dev=dev, ino=ino)
    p.fds[num] = f
    return f


def _copy_fd(f: Fd, num: int, flags: int) -> Fd:
    return Fd(num=num, type=f.type, name=f.name, flags=flags, nameraw=f.nameraw,
              name_changed=f.name_changed, dev=f.dev, ino=f.ino, l4proto=f.l4proto,
              sockfamily=f.sockfamily, cip=f.cip, cport=f.cport, sip=f.sip, sport=f.sport,
              local_is_server=f.local_is_server, connected=f.connected)


def _sock_type(family: int) -> str:
    return {2: "ipv4", 10: "ipv6", 1: "unix", 16: "netlink"}.get(family, "file")


def _sockfamily(family: int) -> str | None:
    return {2: "ip", 10: "ip", 1: "unix"}.get(family)


def _l4(family: int, stype: int, proto: int) -> str | None:
    if family not in (2, 10):
        return None
    if proto in _L4 and proto:
        return _L4[proto]
    return {_SOCK_STREAM: "tcp", _SOCK_DGRAM: "udp", _SOCK_RAW: "raw"}.get(stype)


def _socket_fd(num: int, old: Fd | None, t: tuple, addr: bytes, call: str) -> Fd | None:
    """The fd after a socket call, from what the kernel read of the socket and the address given.

    Falco orders a tuple client->server: for a connect/send the local end is the client; for an
    accept (and a bind or listen) the local end is the server. Type, protocol and addresses are
    always the kernel's (the kernel filter tests the same values); the table's entry is kept only
    when it says the same.
    """
    family, stype, proto, lport, rport = t[I_FAM], t[I_STYPE], t[I_PROTO], t[I_LPORT], t[I_RPORT]
    lraw, rraw, xflags = t[I_LADDR], t[I_RADDR], t[I_XFLAGS]
    if not xflags & X_HAVE_SOCK:
        return old
    if family == 1:                                    # AF_UNIX
        path = None
        if addr:
            _fam, path, _port = render.sockaddr(addr)
        if old is not None and old.type == "unix" and (not path or old.name == path):
            return old
        return Fd(num=num, type="unix", name=path or "", sockfamily="unix",
                  flags=old.flags if old else 0, connected=call == "connect")
    if family not in (2, 10):
        return old
    ftype = "ipv4" if family == 2 else "ipv6"
    l4 = _l4(family, stype, proto)
    local = render.ip_text(family, lraw)
    remote = render.ip_text(family, rraw)
    if rport == 0 and addr:                            # unconnected datagram: the peer is the address
        _fam, a, port = render.sockaddr(addr)
        if a is not None and port is not None:
            remote, rport = a, port
    if old is not None and old.type != ftype:
        old = None                                     # another socket now has that number
    if call == "dup" and old is not None and old.l4proto == l4 and {
            (old.cip, old.cport), (old.sip, old.sport)} == {(local, lport), (remote, rport)}:
        return old                                     # the same connection, whichever end is which
    server_side = call in ("accept", "accept4", "bind", "listen") or (call == "dup" and t[I_STATE] == 10)
    if server_side:
        sip, sport, cip, cport = local, lport, remote, rport
    else:
        cip, cport, sip, sport = local, lport, remote, rport
    name = f"{cip}:{cport}->{sip}:{sport}"
    if old is not None and old.name == name and old.l4proto == l4:
        return old
    connected = call in ("connect", "accept", "accept4") or (old is not None and old.connected)
    return Fd(num=num, type=ftype, name=name, flags=old.flags if old else 0,
              l4proto=l4, sockfamily="ip", cip=cip, cport=cport, sip=sip,
              sport=sport, local_is_server=server_side, connected=connected,
              name_changed=old is not None and bool(old.name) and old.name != name)
