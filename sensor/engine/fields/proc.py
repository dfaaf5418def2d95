"""The proc.* field class: the process that generated the event, its ancestors and its leaders.

Everything is read from `event.proc` (sensor.event.Process) and its `parent` chain, as Falco's
sinsp_filter_check_thread reads its thread table. Indexed ancestor fields count from the process
itself: `proc.aname[0]` is proc.name, `[1]` the parent, `[2]` the grandparent. Without an index,
`proc.aname`, `proc.apid`, `proc.aexe`, `proc.aexepath` and `proc.acmdline` return the list of every
known ancestor's value, parent first (the process itself excluded), which the compiler matches
with "any ancestor" semantics as Falco does.
"""

from __future__ import annotations

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import Process, SyscallEvent

# A parent chain longer than this can only be a loop in the process table; stop walking.
MAX_DEPTH = 256


def ancestors(p: Process) -> list[Process]:
    """The known ancestors of a process, parent first."""
    out: list[Process] = []
    a = p.parent
    while a is not None and len(out) < MAX_DEPTH:
        out.append(a)
        a = a.parent
    return out


def ancestor(p: Process, arg: str | None) -> Process | None:
    """The ancestor `arg` levels up ("0" is the process itself); None beyond the known chain."""
    if arg is None or not arg.isdigit():
        return None
    n = int(arg)
    if n > MAX_DEPTH:
        return None
    q: Process | None = p
    while n and q is not None:
        q = q.parent
        n -= 1
    return q


def cmdline(p: Process) -> str:
    """Falco's proc.cmdline: comm followed by the arguments, separated by spaces."""
    args = p.args
    return p.name + " " + " ".join(args) if args else p.name


def _group_leader(p: Process, attr: str) -> Process:
    # The eldest ancestor sharing the id is the leader (Falco walks the lineage the same way when
    # it cannot look the leader up by pid).
    value = getattr(p, attr)
    leader = p
    a = p.parent
    depth = 0
    while a is not None and depth < MAX_DEPTH and getattr(a, attr) == value:
        leader = a
        a = a.parent
        depth += 1
    return leader


# --- the process itself ----------------------------------------------------------------------

def _pid(ev: SyscallEvent, arg: str | None) -> int:
    return ev.proc.pid


def _ppid(ev: SyscallEvent, arg: str | None) -> int:
    return ev.proc.ppid


def _vpid(ev: SyscallEvent, arg: str | None) -> int | None:
    return ev.proc.vpid


def _name(ev: SyscallEvent, arg: str | None) -> str:
    return ev.proc.name


def _exe(ev: SyscallEvent, arg: str | None) -> str:
    return ev.proc.exe


def _exepath(ev: SyscallEvent, arg: str | None) -> str:
    return ev.proc.exepath


def _args(ev: SyscallEvent, arg: str | None) -> str:
    return " ".join(ev.proc.args)


def _cmdline(ev: SyscallEvent, arg: str | None) -> str:
    return cmdline(ev.proc)


def _cmdnargs(ev: SyscallEvent, arg: str | None) -> int:
    return len(ev.proc.args)


def _cmdlenargs(ev: SyscallEvent, arg: str | None) -> int:
    return sum(len(a) for a in ev.proc.args)


def _exeline(ev: SyscallEvent, arg: str | None) -> str:
    p = ev.proc
    return p.exe + " " + " ".join(p.args)


def _env(ev: SyscallEvent, arg: str | None) -> str | None:
    env = ev.proc.env
    if env is None:
        return None
    if arg is None:
        return " ".join(env)
    prefix = arg + "="
    for item in env:
        if item.startswith(prefix):
            return item[len(prefix):]
    return None


def _cwd(ev: SyscallEvent, arg: str | None) -> str:
    # Falco keeps a process's cwd with a trailing '/' (sinsp_threadinfo::set_cwd)
    cwd = ev.proc.cwd
    return cwd if cwd.endswith("/") else cwd + "/"


def _tty(ev: SyscallEvent, arg: str | None) -> int:
    return ev.proc.tty


def _sid(ev: SyscallEvent, arg: str | None) -> int:
    return ev.proc.sid


def _sname(ev: SyscallEvent, arg: str | None) -> str:
    return _group_leader(ev.proc, "sid").name


def _sid_exe(ev: SyscallEvent, arg: str | None) -> str:
    return _group_leader(ev.proc, "sid").exe


def _sid_exepath(ev: SyscallEvent, arg: str | None) -> str:
    return _group_leader(ev.proc, "sid").exepath


def _vpgid(ev: SyscallEvent, arg: str | None) -> int:
    return ev.proc.vpgid


def _vpgid_name(ev: SyscallEvent, arg: str | None) -> str:
    return _group_leader(ev.proc, "vpgid").name


def _vpgid_exe(ev: SyscallEvent, arg: str | None) -> str:
    return _group_leader(ev.proc, "vpgid").exe


def _vpgid_exepath(ev: SyscallEvent, arg: str | None) -> str:
    return _group_leader(ev.proc, "vpgid").exepath


def _own_vpid(p: Process) -> int:
    return p.vpid if p.vpid is not None else p.pid


def _is_sid_leader(ev: SyscallEvent, arg: str | None) -> bool:
    p = ev.proc
    return p.sid == _own_vpid(p)


def _is_vpgid_leader(ev: SyscallEvent, arg: str | None) -> bool:
    p = ev.proc
    return p.vpgid == _own_vpid(p)


def _duration(ev: SyscallEvent, arg: str | None) -> int | None:
    start = ev.proc.start_ns
    return ev.time_ns - start if start else None


def _pid_ts(ev: SyscallEvent, arg: str | None) -> int | None:
    return ev.proc.start_ns or None


def _is_exe_writable(ev: SyscallEvent, arg: str | None) -> bool | None:
    return ev.proc.exe_writable


def _is_exe_upper_layer(ev: SyscallEvent, arg: str | None) -> bool | None:
    return ev.proc.exe_upper_layer


def _is_exe_from_memfd(ev: SyscallEvent, arg: str | None) -> bool | None:
    return ev.proc.exe_from_memfd


def _exe_ino(ev: SyscallEvent, arg: str | None) -> int | None:
    return ev.proc.exe_ino or None       # inode 0 means "none" in Falco


def _exe_ino_ctime(ev: SyscallEvent, arg: str | None) -> int | None:
    return ev.proc.exe_ino_ctime or None


def _exe_ino_mtime(ev: SyscallEvent, arg: str | None) -> int | None:
    return ev.proc.exe_ino_mtime or None


def _ctime_to_start(ev: SyscallEvent, arg: str | None) -> int | None:
    # Falco keeps this only when the executable changed before the process was cloned.
    p = ev.proc
    ctime, start = p.exe_ino_ctime, p.start_ns
    if not ctime or not start or start <= ctime:
        return None
    return start - ctime


def _pidns_start(ev: SyscallEvent, arg: str | None) -> int | None:
    # The capture learns a pid namespace's start only for containers (container.start_ts).
    c = ev.proc.container
    return c.start_ts if c.id != "host" else None


def _ctime_to_pidns_start(ev: SyscallEvent, arg: str | None) -> int | None:
    ctime, ns_start = ev.proc.exe_ino_ctime, _pidns_start(ev, None)
    if not ctime or not ns_start or ctime <= ns_start:
        return None
    return ctime - ns_start


def _loginshellid(ev: SyscallEvent, arg: str | None) -> int | None:
    # The eldest shell (a comm ending in "sh") among the process and its ancestors.
    p = ev.proc
    found = p.pid if p.name.endswith("sh") else None
    for a in ancestors(p):
        if a.name.endswith("sh"):
            found = a.pid
    return found


def _fdopencount(ev: SyscallEvent, arg: str | None) -> int:
    return len(ev.proc.fds)


# --- the parent ------------------------------------------------------------------------------

def _pname(ev: SyscallEvent, arg: str | None) -> str | None:
    p = ev.proc.parent
    return p.name if p is not None else None


def _pexe(ev: SyscallEvent, arg: str | None) -> str | None:
    p = ev.proc.parent
    return p.exe if p is not None else None


def _pexepath(ev: SyscallEvent, arg: str | None) -> str | None:
    p = ev.proc.parent
    return p.exepath if p is not None else None


def _pcmdline(ev: SyscallEvent, arg: str | None) -> str | None:
    p = ev.proc.parent
    return cmdline(p) if p is not None else None


def _pvpid(ev: SyscallEvent, arg: str | None) -> int | None:
    p = ev.proc.parent
    return p.vpid if p is not None else None


def _ppid_ts(ev: SyscallEvent, arg: str | None) -> int | None:
    p = ev.proc.parent
    return (p.start_ns or None) if p is not None else None


def _ppid_duration(ev: SyscallEvent, arg: str | None) -> int | None:
    p = ev.proc.parent
    if p is None or not p.start_ns:
        return None
    return ev.time_ns - p.start_ns


# --- ancestors -------------------------------------------------------------------------------

def _aname(ev: SyscallEvent, arg: str | None) -> str | list[str] | None:
    if arg is None:
        return [a.name for a in ancestors(ev.proc)] or None
    a = ancestor(ev.proc, arg)
    return a.name if a is not None else None


def _apid(ev: SyscallEvent, arg: str | None) -> int | list[int] | None:
    if arg is None:
        return [a.pid for a in ancestors(ev.proc)] or None
    a = ancestor(ev.proc, arg)
    return a.pid if a is not None else None


def _aexe(ev: SyscallEvent, arg: str | None) -> str | list[str] | None:
    if arg is None:
        return [a.exe for a in ancestors(ev.proc)] or None
    a = ancestor(ev.proc, arg)
    return a.exe if a is not None else None


def _aexepath(ev: SyscallEvent, arg: str | None) -> str | list[str] | None:
    if arg is None:
        return [a.exepath for a in ancestors(ev.proc)] or None
    a = ancestor(ev.proc, arg)
    return a.exepath if a is not None else None


def _acmdline(ev: SyscallEvent, arg: str | None) -> str | list[str] | None:
    if arg is None:
        return [cmdline(a) for a in ancestors(ev.proc)] or None
    a = ancestor(ev.proc, arg)
    return cmdline(a) if a is not None else None


def _ancestor_levels(ev: SyscallEvent) -> list[str]:
    return [str(i) for i in range(len(ancestors(ev.proc)) + 1)]


# Which arguments `falconet capture` records for the fields that take one (see record.py).
# proc.env[NAME] is not enumerated: the whole environment is recorded as proc.env.
RECORD_ARGS = {name: _ancestor_levels
               for name in ("proc.aname", "proc.apid", "proc.aexe", "proc.aexepath", "proc.acmdline")}

_ANCESTOR_NOTE = (" With an index, one ancestor: [0] is the process itself, [1] its parent, [2] the "
                  "grandparent. Without one, the list of every known ancestor (parent first), and a "
                  "condition matches when any of them does.")

CLASS = FieldClass("proc", "syscall",
                   "The process that generated the event, its parent, ancestors and session/group leaders.", (
    Field("proc.pid", "INT64", "Id of the process that generated the event (its thread group id).", _pid),
    Field("proc.ppid", "INT64", "Id of the parent of the process.", _ppid),
    Field("proc.vpid", "INT64", "Id of the process as its own pid namespace sees it.", _vpid),
    Field("proc.pvpid", "INT64", "Id of the parent as the parent's pid namespace sees it.", _pvpid),
    Field("proc.name", "CHARBUF",
          "Name of the process (the kernel's comm, at most 15 characters); may differ from the "
          "executable's name.", _name),
    Field("proc.exe", "CHARBUF",
          "First command-line argument (argv[0]): usually the executable's name or path, but the "
          "caller chooses it.", _exe),
    Field("proc.exepath", "CHARBUF", "Full path of the process's executable, symlinks resolved.", _exepath),
    Field("proc.args", "CHARBUF", "Command-line arguments after argv[0], separated by spaces.", _args),
    Field("proc.cmdline", "CHARBUF", "proc.name followed by the arguments (proc.args), separated by spaces.",
          _cmdline),
    Field("proc.cmdnargs", "UINT64", "Number of command-line arguments (proc.args).", _cmdnargs),
    Field("proc.cmdlenargs", "UINT64", "Total length of the command-line arguments, spaces not counted.",
          _cmdlenargs),
    Field("proc.exeline", "CHARBUF", "proc.exe followed by the arguments, separated by spaces.", _exeline),
    Field("proc.env", "CHARBUF",
          "Environment of the process as 'NAME=value' items separated by spaces; proc.env[NAME] is "
          "one variable's value (no value when it is not set).", _env, arg="key"),
    Field("proc.cwd", "CHARBUF", "Current working directory of the process, ending with '/' as Falco's does.",
          _cwd),
    Field("proc.tty", "UINT32", "Controlling terminal of the process; 0 when it has none.", _tty),
    Field("proc.sid", "INT64", "Session id of the process.", _sid),
    Field("proc.sname", "CHARBUF",
          "Name of the session leader: the eldest known ancestor in the same session.", _sname),
    Field("proc.sid.exe", "CHARBUF", "proc.exe of the session leader.", _sid_exe),
    Field("proc.sid.exepath", "CHARBUF", "proc.exepath of the session leader.", _sid_exepath),
    Field("proc.is_sid_leader", "BOOL", "True when the process leads its session (proc.sid == proc.vpid).",
          _is_sid_leader),
    Field("proc.vpgid", "INT64", "Process group id, as the process's pid namespace sees it.", _vpgid),
    Field("proc.vpgid.name", "CHARBUF",
          "Name of the process group leader: the eldest known ancestor in the same process group.",
          _vpgid_name),
    Field("proc.vpgid.exe", "CHARBUF", "proc.exe of the process group leader.", _vpgid_exe),
    Field("proc.vpgid.exepath", "CHARBUF", "proc.exepath of the process group leader.", _vpgid_exepath),
    Field("proc.is_vpgid_leader", "BOOL",
          "True when the process leads its process group (proc.vpgid == proc.vpid), as a command "
          "typed at a shell does; false for processes a script spawns in its own group.",
          _is_vpgid_leader),
    Field("proc.duration", "RELTIME", "Nanoseconds since the process started.", _duration),
    Field("proc.pid.ts", "RELTIME", "Start of the process (clone time), nanoseconds since the epoch.", _pid_ts),
    Field("proc.ppid.ts", "RELTIME", "Start of the parent process, nanoseconds since the epoch.", _ppid_ts),
    Field("proc.ppid.duration", "RELTIME", "Nanoseconds since the parent process started.", _ppid_duration),
    Field("proc.is_exe_writable", "BOOL",
          "True when the executable is writable by the user that started the process.", _is_exe_writable),
    Field("proc.is_exe_upper_layer", "BOOL",
          "True when the executable lives in the upper (writable) layer of an overlay filesystem, "
          "i.e. it was not part of the container image.", _is_exe_upper_layer),
    Field("proc.is_exe_from_memfd", "BOOL",
          "True when the executable is an anonymous memfd_create() file run through its fd (code "
          "that never touched the disk).", _is_exe_from_memfd),
    Field("proc.exe_ino", "INT64", "Inode number of the executable file.", _exe_ino),
    Field("proc.exe_ino.ctime", "ABSTIME",
          "Last status change of the executable's inode (ctime), nanoseconds since the epoch.", _exe_ino_ctime),
    Field("proc.exe_ino.mtime", "ABSTIME",
          "Last modification of the executable's contents (mtime), nanoseconds since the epoch.",
          _exe_ino_mtime),
    Field("proc.exe_ino.ctime_duration_proc_start", "ABSTIME",
          "Nanoseconds between the executable's last status change and the process start.", _ctime_to_start),
    Field("proc.exe_ino.ctime_duration_pidns_start", "ABSTIME",
          "Nanoseconds between the pid namespace's start and the executable's last status change, when "
          "the change came later.", _ctime_to_pidns_start),
    Field("proc.pidns_init_start_ts", "UINT64",
          "Start of the process's pid namespace, nanoseconds since the epoch (known for containers).",
          _pidns_start),
    Field("proc.loginshellid", "INT64", "Pid of the eldest shell among the process and its ancestors.",
          _loginshellid),
    Field("proc.fdopencount", "UINT64", "Number of file descriptors the process has open.", _fdopencount),
    Field("proc.pname", "CHARBUF", "proc.name of the parent process.", _pname),
    Field("proc.pexe", "CHARBUF", "proc.exe (argv[0]) of the parent process.", _pexe),
    Field("proc.pexepath", "CHARBUF", "proc.exepath of the parent process.", _pexepath),
    Field("proc.pcmdline", "CHARBUF", "proc.cmdline of the parent process.", _pcmdline),
    Field("proc.aname", "CHARBUF", "proc.name of an ancestor." + _ANCESTOR_NOTE, _aname,
          arg="index"),
    Field("proc.apid", "INT64", "proc.pid of an ancestor." + _ANCESTOR_NOTE, _apid, arg="index"),
    Field("proc.aexe", "CHARBUF", "proc.exe of an ancestor." + _ANCESTOR_NOTE, _aexe, arg="index"),
    Field("proc.aexepath", "CHARBUF", "proc.exepath of an ancestor." + _ANCESTOR_NOTE, _aexepath,
          arg="index"),
    Field("proc.acmdline", "CHARBUF", "proc.cmdline of an ancestor." + _ANCESTOR_NOTE, _acmdline,
          arg="index"),
))
