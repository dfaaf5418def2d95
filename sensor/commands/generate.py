"""`falconet generate [ACTION...]`: harmless versions of what the bundled rules detect.

Each action does for real, on this host, the smallest thing its rule looks for, and undoes it:
reads /etc/shadow and throws the bytes away, creates and removes a file below /etc, runs a shell,
a package manager or a connection inside a throw-away cgroup laid out like a container runtime's
(a real cgroup v2 directory; the process is moved in through cgroup.procs and gets its own PID,
UTS and IPC namespaces), attaches ptrace to a child it owns, runs /bin/true from a memfd, deletes
a file named like a shell history, and asks the kernel to load an empty file as a module (which it
refuses: nothing is loaded). Nothing is loaded into the kernel and everything created is removed.

With --json each action prints what it did as one JSON object: the rule it should trigger and the
values that rule's alert should carry (proc.name, proc.cmdline, fd.name, container.id, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sensor.errors import UnavailableError

LINGER_S = 1.0     # container processes stay this long, so the sensor can read their /proc entry


@dataclass(frozen=True)
class Action:
    name: str
    rule: str
    desc: str
    run: Callable[[], dict[str, Any]]
    note: Callable[[], str | None] | None = None     # what the user should know about this host


def _me() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()


def _user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                          timeout=30, **kw)


_FIELD_NAMES = {"evt_arg_name": "evt.arg.name", "evt_arg_request": "evt.arg.request"}


def _expect(**fields: Any) -> dict[str, Any]:
    """The alert's expected fields, by Falco field name (proc_pname -> proc.pname)."""
    return {_FIELD_NAMES.get(k, k.replace("_", ".", 1)): v for k, v in fields.items()}


# ---------------------------------------------------------------------------------------------
# A throw-away container: a cgroup with a runtime's layout, and new PID/UTS/IPC namespaces.
# ---------------------------------------------------------------------------------------------

class FakeContainer:
    """A real cgroup v2 directory named as Docker (systemd driver) or a kubelet would name it."""

    def __init__(self, kind: str = "docker") -> None:
        from sensor.sources.syscall import cgroup_root

        root = cgroup_root()
        if root is None:
            raise UnavailableError("no cgroup v2 hierarchy is mounted; containers cannot be imitated here")
        self.full_id = secrets.token_hex(32)
        self.id = self.full_id[:12]
        self.pod_uid = str(uuid.uuid4()) if kind == "kubepods" else None
        if kind == "kubepods":
            pod = self.pod_uid.replace("-", "_")      # type: ignore[union-attr]
            rel = ["kubepods.slice", "kubepods-besteffort.slice",
                   f"kubepods-besteffort-pod{pod}.slice", f"cri-containerd-{self.full_id}.scope"]
        else:
            rel = ["system.slice", f"docker-{self.full_id}.scope"]
        self.created: list[Path] = []
        path = root
        for part in rel:
            path = path / part
            if not path.exists():
                try:
                    path.mkdir()
                except OSError as e:
                    self.remove()
                    raise UnavailableError(f"cannot create cgroup {path}: {e.strerror} (needs root)") from e
                self.created.append(path)
        self.path = path

    def _join(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        """Run argv inside: moved into the cgroup before exec, as PID 1 of a new PID namespace."""
        ns = ["unshare", "--pid", "--fork", "--uts", "--ipc", "--"]
        return _run(ns + argv, preexec_fn=self._join)

    def remove(self) -> None:
        # A cgroup can be removed once its last process is gone; exits are reaped asynchronously.
        for path in reversed(self.created):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        self.created = []


@contextlib.contextmanager
def _container(kind: str = "docker") -> Iterator[FakeContainer]:
    c = FakeContainer(kind)
    try:
        yield c
    finally:
        c.remove()


@contextlib.contextmanager
def _listener(port: int = 0) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 (the port asked for, or any free one) that accepts and closes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as e:
        s.close()
        raise UnavailableError(f"127.0.0.1:{port} is in use ({e.strerror}); stop what listens there") from e
    s.listen(8)
    s.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = s.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield s.getsockname()[1]
    finally:
        done.set()
        t.join()
        s.close()


def _connect_code(port: int) -> str:
    return f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5).close()"


# ---------------------------------------------------------------------------------------------
# The actions
# ---------------------------------------------------------------------------------------------

def read_sensitive_file() -> dict[str, Any]:
    p = subprocess.Popen(["cat", "/etc/shadow"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.wait(timeout=30)
    return _expect(proc_name="cat", proc_pname=_me(), proc_cmdline="cat /etc/shadow",
                   fd_name="/etc/shadow", user_name=_user(), container_id="host", proc_pid=p.pid)


def write_below_etc() -> dict[str, Any]:
    path = f"/etc/falconet-generate-{secrets.token_hex(4)}"
    try:
        p = subprocess.Popen(["touch", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.wait(timeout=30)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return _expect(proc_name="touch", proc_pname=_me(), proc_cmdline=f"touch {path}", fd_name=path,
                   user_name=_user(), container_id="host", proc_pid=p.pid)


def delete_shell_history() -> dict[str, Any]:
    d = tempfile.mkdtemp(prefix="falconet-generate-")
    path = os.path.join(d, ".bash_history")
    try:
        # Created without O_TRUNC, which the rule would rightly report as truncating a history.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"echo hello\n")
        os.close(fd)
        p = subprocess.Popen(["rm", "-f", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.wait(timeout=30)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return _expect(proc_name="rm", proc_pname=_me(), proc_cmdline=f"rm -f {path}", fd_name=None,
                   evt_arg_name=path, user_name=_user(), container_id="host", proc_pid=p.pid)


def _shell_cmd(work: str) -> str:
    return f"{work}; sleep {LINGER_S}"


def shell_in_container() -> dict[str, Any]:
    cmd = _shell_cmd("true")
    with _container() as c:
        c.run(["sh", "-c", cmd])
    return _expect(proc_name="sh", proc_pname="unshare", proc_cmdline=f"sh -c {cmd}", fd_name=None,
                   user_name=_user(), container_id=c.id)


def package_manager_in_container() -> dict[str, Any]:
    cmd = _shell_cmd("dpkg --version >/dev/null")
    with _container() as c:
        c.run(["sh", "-c", cmd])
    return _expect(proc_name="dpkg", proc_pname="sh", proc_cmdline="dpkg --version", fd_name=None,
                   user_name=_user(), container_id=c.id)


def _connect_in(kind: str, port: int) -> tuple[FakeContainer, str]:
    code = _connect_code(port)
    with _container(kind) as c:
        c.run(["sh", "-c", _shell_cmd(f"{sys.executable} -c \"{code}\"")])
    return c, code


def _connection(kind: str, port: int, listen_port: int = 0) -> dict[str, Any]:
    with _listener(listen_port) as got:
        c, code = _connect_in(kind, got if port == 0 else port)
    name = os.path.basename(sys.executable)
    exp = _expect(proc_name=name, proc_pname="sh", proc_cmdline=f"{name} -c {code}",
                  fd_rip="127.0.0.1", fd_rport=got if port == 0 else port, user_name=_user(),
                  container_id=c.id)
    if c.pod_uid:
        exp["k8s.pod.uid"] = c.pod_uid
    return exp


def outbound_from_container() -> dict[str, Any]:
    return _connection("docker", 0)


def ssh_from_container() -> dict[str, Any]:
    return _connection("docker", 22, 22)


def k8s_api_from_pod() -> dict[str, Any]:
    return _connection("kubepods", 6443, 6443)


_FINIT_MODULE = 313


def load_kernel_module() -> dict[str, Any]:
    # An empty file is not a module: the kernel refuses it (ENOSYS without module support, ENOEXEC
    # or EINVAL with), so the request is made and nothing is loaded.
    code = ("import ctypes, os, tempfile; f = tempfile.TemporaryFile(); "
            f"ctypes.CDLL(None, use_errno=True).syscall({_FINIT_MODULE}, f.fileno(), b'', 0)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.wait(timeout=30)
    name = os.path.basename(sys.executable)
    return _expect(proc_name=name, proc_pname=_me(), proc_cmdline=f"{name} -c {code}", user_name=_user(),
                   container_id="host", proc_pid=p.pid)


def module_support_note() -> str | None:
    from sensor.sources.syscall import has_tracepoint

    if has_tracepoint("finit_module"):
        return None
    return ("this kernel has no module support, so a sensor sees the attempt only when run with "
            "-o syscall.unimplemented_syscalls=capture")


def ptrace_attach() -> dict[str, Any]:
    code = ("import ctypes, os, signal, time; libc = ctypes.CDLL(None, use_errno=True); "
            "pid = os.fork()\n"
            "if pid == 0:\n    time.sleep(5); os._exit(0)\n"
            "libc.ptrace(16, pid, 0, 0); os.waitpid(pid, 0); libc.ptrace(17, pid, 0, 0); "
            "os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.wait(timeout=30)
    name = os.path.basename(sys.executable)
    return _expect(proc_name=name, proc_pname=_me(), evt_arg_request="PTRACE_ATTACH", user_name=_user(),
                   container_id="host", proc_pid=p.pid)


def memfd_exec() -> dict[str, Any]:
    code = ("import os; fd = os.memfd_create('falconet-generate', 0); "
            "os.write(fd, open('/bin/true', 'rb').read()); "
            "os.execv(f'/proc/self/fd/{fd}', ['falconet-memfd'])")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.wait(timeout=30)
    return _expect(proc_is_exe_from_memfd=True, proc_pname=_me(), user_name=_user(), container_id="host",
                   proc_pid=p.pid)


ACTIONS: tuple[Action, ...] = (
    Action("read-sensitive-file", "Sensitive file read", "cat /etc/shadow, output discarded.",
           read_sensitive_file),
    Action("write-below-etc", "Write below system directory",
           "touch a new file below /etc, then remove it.", write_below_etc),
    Action("shell-in-container", "Shell spawned in container",
           "sh in a Docker-style cgroup and new namespaces.", shell_in_container),
    Action("package-manager-in-container", "Package manager run in container",
           "dpkg --version in a Docker-style cgroup.", package_manager_in_container),
    Action("outbound-from-container", "Unexpected outbound connection from container",
           "connect to a listener on a free 127.0.0.1 port from a Docker-style cgroup.",
           outbound_from_container),
    Action("ssh-from-container", "SSH connection out of container",
           "connect to a listener on 127.0.0.1:22 from a Docker-style cgroup.", ssh_from_container),
    Action("k8s-api-from-pod", "Kubernetes API contacted from pod",
           "connect to a listener on 127.0.0.1:6443 from a kubepods-style cgroup.", k8s_api_from_pod),
    Action("load-kernel-module", "Kernel module loaded",
           "finit_module() on an empty file, which the kernel refuses.", load_kernel_module,
           module_support_note),
    Action("ptrace-attach", "Ptrace attached to process",
           "PTRACE_ATTACH to a child it started, then detach and kill it.", ptrace_attach),
    Action("memfd-exec", "Fileless execution via memfd",
           "copy /bin/true into a memfd and execute it from there.", memfd_exec),
    Action("delete-shell-history", "Log or history file deleted",
           "rm a file named .bash_history in a temporary directory.", delete_shell_history),
)
BY_NAME = {a.name: a for a in ACTIONS}

# Rules whose alert needs what only a container runtime can tell (its API): no harmless local
# version exists without one.
NOT_GENERATED = {
    "Privileged container started": "container.privileged comes from the container runtime's API",
    "Container with sensitive mount started": "container.mounts come from the container runtime's API",
}


@click.command("generate")
@click.argument("actions", nargs=-1, metavar="[ACTION]...")
@click.option("--list", "list_only", is_flag=True, help="List the actions and the rules they trigger.")
@click.option("--json", "as_json", is_flag=True,
              help="Print what each action did as one JSON object per line.")
@click.option("--sleep", "pause", type=float, default=0.0, metavar="SECONDS",
              help="Pause between actions.")
def generate(actions: tuple[str, ...], list_only: bool, as_json: bool, pause: float) -> None:
    """Do harmless versions of what the bundled rules detect (all actions when none is named)."""
    if list_only:
        width = max(len(a.name) for a in ACTIONS)
        for a in ACTIONS:
            click.echo(f"{a.name:<{width}}  {a.rule}: {a.desc}")
        for rule, why in NOT_GENERATED.items():
            click.echo(f"{'(none)':<{width}}  {rule}: not generated here, {why}")
        return
    unknown = [n for n in actions if n not in BY_NAME]
    if unknown:
        raise click.UsageError(f"unknown action(s): {', '.join(unknown)}; see `falconet generate --list`")
    if os.geteuid() != 0:
        raise UnavailableError("falconet generate needs root (it reads /etc/shadow, writes below /etc and "
                               "creates cgroups)")
    failed = 0
    for i, a in enumerate([BY_NAME[n] for n in actions] if actions else ACTIONS):
        if i and pause:
            time.sleep(pause)
        try:
            result: dict[str, Any] = {"action": a.name, "rule": a.rule, "ok": True, "expect": a.run()}
            note = a.note() if a.note else None
            if note:
                result["note"] = note
        except (UnavailableError, OSError, subprocess.SubprocessError) as e:
            failed += 1
            result = {"action": a.name, "rule": a.rule, "ok": False, "error": str(e)}
        if as_json:
            click.echo(json.dumps(result, sort_keys=True))
        elif result["ok"]:
            click.echo(f"{a.name}: done ({a.rule})" + (f"; note: {result['note']}" if "note" in result else ""))
        else:
            click.echo(f"{a.name}: failed: {result['error']}", err=True)
    if failed:
        sys.exit(1)
