"""The actions: for each bundled rule that a harmless local action can trigger, the smallest thing
it looks for, done for real and undone. Each returns the fields the rule's alert should carry, or
raises CannotRun saying exactly why this host does not allow it."""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sensor.generate.container import FakeContainer, container, listener
from sensor.generate.host import CannotRun, child_errno, explain

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


_FIELD_NAMES = {"evt_arg_name": "evt.arg.name", "evt_arg_request": "evt.arg.request"}


def _expect(**fields: Any) -> dict[str, Any]:
    """The alert's expected fields, by Falco field name (proc_pname -> proc.pname)."""
    return {_FIELD_NAMES.get(k, k.replace("_", ".", 1)): v for k, v in fields.items()}


def _python(code: str, doing: str, path: str = "", cap: str = "") -> int:
    """Run a helper in a python child (so proc.name is python's); CannotRun when it reports an errno.
    Returns the child's PID."""
    wrapped = ("import errno, sys\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines())
               + "except OSError as e:\n    print('errno', errno.errorcode[e.errno], file=sys.stderr); sys.exit(111)\n")
    p = subprocess.Popen([sys.executable, "-c", wrapped], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=30)
    proc = subprocess.CompletedProcess(p.args, p.returncode, b"", err)
    if p.returncode == 111:
        e = child_errno(proc) or OSError(errno.EPERM, os.strerror(errno.EPERM))
        raise explain(e, doing, path, cap)
    if p.returncode:
        said = err.decode(errors="replace").strip()[-200:]
        raise CannotRun(f"{doing}: the helper exited with {p.returncode}: {said}")
    return p.pid


def read_sensitive_file() -> dict[str, Any]:
    if not os.path.exists("/etc/shadow"):
        raise CannotRun("reading /etc/shadow: there is no /etc/shadow here")
    p = subprocess.Popen(["cat", "/etc/shadow"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=30)
    if p.returncode:
        raise explain(OSError(errno.EACCES, err.decode(errors="replace").strip()), "reading /etc/shadow",
                      "/etc/shadow", "CAP_DAC_READ_SEARCH")
    return _expect(proc_name="cat", proc_pname=_me(), proc_cmdline="cat /etc/shadow",
                   fd_name="/etc/shadow", user_name=_user(), container_id="host", proc_pid=p.pid)


def write_below_etc() -> dict[str, Any]:
    path = f"/etc/falconet-generate-{secrets.token_hex(4)}"
    try:
        p = subprocess.Popen(["touch", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = p.communicate(timeout=30)
    finally:
        with contextlib.suppress(OSError):          # not there (it failed), or a read-only /etc
            os.unlink(path)
    if p.returncode:
        code = errno.EROFS if b"Read-only" in err else errno.EACCES
        raise explain(OSError(code, os.strerror(code)), "creating a file below /etc", "/etc", "CAP_DAC_OVERRIDE")
    return _expect(proc_name="touch", proc_pname=_me(), proc_cmdline=f"touch {path}", fd_name=path,
                   user_name=_user(), container_id="host", proc_pid=p.pid)


def delete_shell_history() -> dict[str, Any]:
    try:
        d = tempfile.mkdtemp(prefix="falconet-generate-")
    except OSError as e:
        raise explain(e, "creating a temporary directory", tempfile.gettempdir()) from e
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
    with container() as c:
        c.run(["sh", "-c", cmd])
    return _expect(proc_name="sh", proc_pname="unshare", proc_cmdline=f"sh -c {cmd}", fd_name=None,
                   user_name=_user(), container_id=c.id)


def package_manager_in_container() -> dict[str, Any]:
    if shutil.which("dpkg") is None:
        raise CannotRun("running dpkg in the imitated container: dpkg is not installed here")
    cmd = _shell_cmd("dpkg --version >/dev/null")
    with container() as c:
        c.run(["sh", "-c", cmd])
    return _expect(proc_name="dpkg", proc_pname="sh", proc_cmdline="dpkg --version", fd_name=None,
                   user_name=_user(), container_id=c.id)


def _connect_code(port: int) -> str:
    return f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5).close()"


def _connection(kind: str, port: int, listen_port: int = 0) -> dict[str, Any]:
    with listener(listen_port) as got:
        target = got if port == 0 else port
        code = _connect_code(target)
        with container(kind) as c:
            c.run(["sh", "-c", _shell_cmd(f"{sys.executable} -c \"{code}\"")])
    name = os.path.basename(sys.executable)
    exp = _expect(proc_name=name, proc_pname="sh", proc_cmdline=f"{name} -c {code}",
                  fd_rip="127.0.0.1", fd_rport=target, user_name=_user(), container_id=c.id)
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
    # or EINVAL with, EPERM without CAP_SYS_MODULE), so the request is made and nothing is loaded.
    code = ("import ctypes, os, tempfile; f = tempfile.TemporaryFile(); "
            f"ctypes.CDLL(None, use_errno=True).syscall({_FINIT_MODULE}, f.fileno(), b'', 0)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=30)
    if p.returncode:
        raise explain(OSError(errno.EROFS if b"Read-only" in err else errno.EACCES, err.decode().strip()[-200:]),
                      "asking the kernel to load an empty module (it needs a temporary file)",
                      tempfile.gettempdir())
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
    code = ("import ctypes, os, signal, time\nlibc = ctypes.CDLL(None, use_errno=True)\npid = os.fork()\n"
            "if pid == 0:\n    time.sleep(5); os._exit(0)\n"
            "if libc.ptrace(16, pid, 0, 0) != 0:\n"
            "    err = ctypes.get_errno(); os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)\n"
            "    raise OSError(err, os.strerror(err))\n"
            "os.waitpid(pid, 0); libc.ptrace(17, pid, 0, 0)\n"
            "os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)")
    try:
        pid = _python(code, "attaching ptrace to a child process", cap="CAP_SYS_PTRACE")
    except CannotRun as e:
        scope = _ptrace_scope()
        if scope is not None and scope >= 2:
            raise CannotRun(f"{e} (kernel.yama.ptrace_scope is {scope}: "
                            f"{'only CAP_SYS_PTRACE may attach' if scope == 2 else 'no process may attach'})") from e
        raise
    name = os.path.basename(sys.executable)
    return _expect(proc_name=name, proc_pname=_me(), evt_arg_request="PTRACE_ATTACH", user_name=_user(),
                   container_id="host", proc_pid=pid)


def _ptrace_scope() -> int | None:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def memfd_exec() -> dict[str, Any]:
    code = ("import os\nfd = os.memfd_create('falconet-generate', 0)\n"
            "os.write(fd, open('/bin/true', 'rb').read())\n"
            "os.execv(f'/proc/self/fd/{fd}', ['falconet-memfd'])")
    pid = _python(code, "executing /bin/true from a memfd (vm.memfd_noexec or a noexec /proc refuses it)")
    return _expect(proc_is_exe_from_memfd=True, proc_pname=_me(), user_name=_user(), container_id="host",
                   proc_pid=pid)


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

__all__ = ["ACTIONS", "BY_NAME", "NOT_GENERATED", "Action", "FakeContainer"]
