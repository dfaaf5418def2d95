"""A throw-away container for the actions: a real cgroup v2 directory laid out as a container
runtime's, and new PID, UTS and IPC namespaces; and a TCP listener to connect to."""

from __future__ import annotations

import contextlib
import errno
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sensor.generate.host import CannotRun, child_errno, explain, run, unshare_failed

# Writes its own PID into the cgroup named by argv[1], then becomes argv[2:]; says `errno NAME` and
# exits 111 when the kernel refuses the move.
_JOIN = ("import errno, os, sys\n"
         "try:\n    open(sys.argv[1], 'w').write(str(os.getpid()))\n"
         "except OSError as e:\n    print('errno', errno.errorcode[e.errno], file=sys.stderr); sys.exit(111)\n"
         "os.execvp(sys.argv[2], sys.argv[2:])")


class FakeContainer:
    """A real cgroup v2 directory named as Docker (systemd driver) or a kubelet would name it."""

    def __init__(self, kind: str = "docker") -> None:
        from sensor.sources.syscall import cgroup_root

        root = cgroup_root()
        if root is None:
            raise CannotRun("imitating a container needs the cgroup v2 hierarchy, which is not mounted here")
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
                    raise explain(e, f"creating the cgroup {path}", str(root), "CAP_SYS_ADMIN") from e
                self.created.append(path)
        self.path = path

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        """Run argv inside: moved into the cgroup before exec, as PID 1 of a new PID namespace."""
        doing = "running a process in the imitated container"
        proc = run([sys.executable, "-c", _JOIN, str(self.path / "cgroup.procs"),
                    "unshare", "--pid", "--fork", "--uts", "--ipc", "--", *argv], doing)
        if proc.returncode == 111:
            e = child_errno(proc) or OSError(errno.EPERM, "Operation not permitted")
            raise explain(e, f"moving a process into the cgroup {self.path}", str(self.path), "CAP_SYS_ADMIN")
        failed = unshare_failed(proc, doing)
        if failed is not None:
            raise failed
        if proc.returncode:
            raise CannotRun(f"{doing}: {' '.join(argv)} exited with {proc.returncode}: "
                            f"{proc.stderr.decode(errors='replace').strip()[-200:]}")
        return proc

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
def container(kind: str = "docker") -> Iterator[FakeContainer]:
    c = FakeContainer(kind)
    try:
        yield c
    finally:
        c.remove()


@contextlib.contextmanager
def listener(port: int = 0) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 (the port asked for, or any free one) that accepts and closes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as e:
        s.close()
        cap = "CAP_NET_BIND_SERVICE" if 0 < port < 1024 else ""
        raise explain(e, f"listening on 127.0.0.1:{port}", cap=cap) from e
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
