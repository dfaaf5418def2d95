"""The user.* field class, and the account lookup group.py and evt.arg share.

Names come from the passwd/group file the process itself sees: the capture that keeps the
process state answers (sensor/capture/accounts.py, through Process.accounts), so the engine reads
no file.

user.uid is the effective uid, which is what Falco's driver reports for a process.
"""

from __future__ import annotations

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import Process, SyscallEvent

_UNSET_LOGINUID = 0xFFFFFFFF

def account(proc: Process, db: str, ident: int) -> tuple[str, ...] | None:
    """The entry for `ident` in the passwd or group file `proc` sees, without the id fields:
    passwd → (name, home, shell); group → (name,). The capture looks it up (Process.accounts);
    None when nothing answers."""
    look = Process.accounts
    return look(proc, db, ident) if look is not None else None


def effective_uid(p: Process) -> int:
    return p.euid if p.euid is not None else p.uid


def _uid(ev: SyscallEvent, arg: str | None) -> int:
    return effective_uid(ev.proc)


def _passwd(ev: SyscallEvent) -> tuple[str, ...] | None:
    return account(ev.proc, "passwd", effective_uid(ev.proc))


def _name(ev: SyscallEvent, arg: str | None) -> str | None:
    e = _passwd(ev)
    return e[0] if e else None


def _homedir(ev: SyscallEvent, arg: str | None) -> str | None:
    e = _passwd(ev)
    return e[1] if e else None


def _shell(ev: SyscallEvent, arg: str | None) -> str | None:
    e = _passwd(ev)
    return e[2] if e else None


def _loginuid_of(p: Process) -> int:
    uid = p.loginuid
    return -1 if uid < 0 or uid >= _UNSET_LOGINUID else uid


def _loginuid(ev: SyscallEvent, arg: str | None) -> int:
    return _loginuid_of(ev.proc)


def _loginname(ev: SyscallEvent, arg: str | None) -> str | None:
    uid = _loginuid_of(ev.proc)
    if uid < 0:
        return None
    e = account(ev.proc, "passwd", uid)
    return e[0] if e else None


CLASS = FieldClass("user", "syscall", "The user the process runs as, and the user who logged in.", (
    Field("user.uid", "UINT32", "Effective user id of the process.", _uid),
    Field("user.name", "CHARBUF",
          "Name of the user, from the passwd file the process sees (its container's for a container "
          "process).", _name),
    Field("user.homedir", "CHARBUF", "Home directory of the user.", _homedir),
    Field("user.shell", "CHARBUF", "Login shell of the user.", _shell),
    Field("user.loginuid", "INT64",
          "Audit user id (the uid that logged in, kept across su/sudo); -1 when unset.", _loginuid),
    Field("user.loginname", "CHARBUF", "Name of the audit user (user.loginuid).", _loginname),
))
