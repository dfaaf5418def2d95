"""Real containers for the end-to-end tests: Debian's podman and runc, containerd and ctr, and a
`falconet run` watching them.

Nothing can be pulled on our machines, so images are made here: a root filesystem from Debian's
busybox-static, imported with `podman import`; for the sensor's own image a Debian root
filesystem from `debootstrap --variant=minbase`. Both are cached under LAB_ROOT, keyed by their
content, so a second run (or a second test) reuses them.

Podman runs with its own storage (overlay) and configuration, never the machine's: `runc` (crun
refuses this host's hybrid cgroup v1+v2 layout), the cgroupfs manager (no systemd here),
`default_ulimits = []` (root here lacks CAP_SYS_RESOURCE, and podman's default ulimits fail
without it), and events in a file (no journald). containerd gets its own root, state and socket.

Under FALCONET_STRICT=1 a missing tool fails the test instead of skipping it; scripts/test.sh
installs them (scripts/test-setup.sh).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import COMPAT, STRICT, ebpf_missing, interrupt

ROOT = Path(__file__).resolve().parents[2]
FALCONET = str(Path(sys.executable).with_name("falconet"))
LAB_ROOT = Path(os.environ.get("FALCONET_CONTAINER_LAB", "/var/tmp/falconet-container-lab"))
RUN_ROOT = Path("/run/falconet-container-lab")
BUSYBOX = Path("/bin/busybox")           # Debian's busybox-static: one static binary, every applet
IMAGE_REPO = "localhost/falconet-test/busybox"
BUNDLED_RULES = ROOT / "rules" / "falconet_rules.yaml"
FALCO_RULES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")
# Fields every syscall alert carries in these tests, whatever the rule prints.
ALERT_FIELDS = ["container.id", "container.full_id", "container.name", "container.type", "container.image",
                "container.image.repository", "container.image.tag", "container.image.digest",
                "container.privileged", "container.mounts", "container.labels", "proc.name", "proc.pid",
                "proc.vpid", "proc.tty", "proc.exepath", "proc.pname", "fd.name"]


def unavailable(why: str) -> None:
    """Skip, or fail under FALCONET_STRICT=1: a real-runtime test that cannot run is a failure there."""
    if STRICT:
        pytest.fail(f"container test cannot run under FALCONET_STRICT=1: {why} (scripts/test-setup.sh)")
    pytest.skip(why)


def require(*tools: str) -> None:
    """eBPF and the named programs, or skip/fail."""
    why = ebpf_missing()
    if why:
        unavailable(f"eBPF unavailable: {why}")
    for tool in tools:
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    if "busybox" in tools and not _is_static(BUSYBOX):
        unavailable(f"{BUSYBOX} is not a static binary (install busybox-static)")


def _is_static(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"\x7fELF") and b"/lib64/ld-linux" not in head and b"/lib/ld-linux" not in head


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300,
         check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, env=env, timeout=timeout, text=True, capture_output=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


# -- podman ---------------------------------------------------------------------------------------

class Podman:
    """The podman CLI on the lab's own storage and configuration."""

    def __init__(self, root: Path = LAB_ROOT / "podman", run_root: Path = RUN_ROOT / "podman") -> None:
        root.mkdir(parents=True, exist_ok=True)
        run_root.mkdir(parents=True, exist_ok=True)
        self.conf = root / "containers.conf"
        self.conf.write_text(
            "[containers]\n"
            "# root here lacks CAP_SYS_RESOURCE: podman's default ulimits cannot be set\n"
            "default_ulimits = []\n"
            "[engine]\n"
            "runtime = \"runc\"\n"
            "cgroup_manager = \"cgroupfs\"\n"
            "events_logger = \"file\"\n"
            f"events_logfile_path = \"{run_root}/events.log\"\n")
        self.storage_conf = root / "storage.conf"
        self.storage_conf.write_text(
            "[storage]\n"
            "driver = \"overlay\"\n"
            f"graphroot = \"{root}/storage\"\n"
            f"runroot = \"{run_root}/storage\"\n")
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.conf),
                    "CONTAINERS_STORAGE_CONF": str(self.storage_conf)}
        self.names: list[str] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(["podman", *args], env=self.env, timeout=timeout, check=check)

    def has_image(self, ref: str) -> bool:
        return self("image", "exists", ref, check=False).returncode == 0

    def image_digest(self, ref: str) -> str:
        return self("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()

    def run_detached(self, name: str, image: str, *args: str, options: tuple[str, ...] = (),
                     network: bool = True) -> str:
        """Start a container in the background (with no network unless `network` is False: then
        it has its pod's); its full id. Removed by remove_all()."""
        self.names.append(name)
        self("rm", "-f", "-t", "0", name, check=False)
        net = ("--network", "none") if network else ()
        return self("run", "-d", *net, "--name", name, *options, image, *args).stdout.strip()

    def remove_all(self) -> None:
        for name in self.names:
            self("rm", "-f", "-t", "0", name, check=False)
        self.names.clear()


def _tar_rootfs(files: dict[str, tuple[int, bytes | str]]) -> bytes:
    """A tar of a root filesystem: path -> (mode, content bytes, or a symlink target str).
    Deterministic (sorted, mtime 0, root-owned), so its digest names its content."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in files} - {"."} | {"proc", "sys", "dev", "tmp", "root",
                                                                        "etc", "bin", "run"})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for path in sorted(files):
            mode, content = files[path]
            info = tarfile.TarInfo(path)
            info.mode = mode
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def busybox_image(podman: Podman) -> str:
    """localhost/falconet-test/busybox:<content digest>: busybox-static with every applet linked
    in /bin, root in /etc/passwd, and an /etc/shadow to read."""
    exe = BUSYBOX.read_bytes()
    applets = _run([str(BUSYBOX), "--list"]).stdout.split()
    files: dict[str, tuple[int, bytes | str]] = {"bin/busybox": (0o755, exe)}
    files.update({f"bin/{a}": (0o777, "busybox") for a in applets if a != "busybox"})
    files["etc/passwd"] = (0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    files["etc/group"] = (0o644, b"root:x:0:\nnogroup:x:65534:\n")
    files["etc/shadow"] = (0o640, b"root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n")
    data = _tar_rootfs(files)
    ref = f"{IMAGE_REPO}:{hashlib.sha256(data).hexdigest()[:12]}"
    if not podman.has_image(ref):
        tar = LAB_ROOT / "busybox-rootfs.tar"
        tar.write_bytes(data)
        podman("import", str(tar), ref)
    return ref


class PodmanService:
    """`podman system service` on a Unix socket of its own: the Docker-compatible API."""

    def __init__(self, podman: Podman, sock: Path) -> None:
        self.sock = sock
        sock.unlink(missing_ok=True)
        self.proc = subprocess.Popen(["podman", "system", "service", "--time", "0", f"unix://{sock}"],
                                     env=podman.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"podman system service did not start: {self.proc.stderr.read()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- containerd -----------------------------------------------------------------------------------

class Containerd:
    """Debian's containerd with a root, state and socket of its own (its CRI plugin off)."""

    def __init__(self, root: Path = LAB_ROOT / "containerd", run_root: Path = RUN_ROOT / "containerd") -> None:
        root.mkdir(parents=True, exist_ok=True)
        run_root.mkdir(parents=True, exist_ok=True)
        self.sock = run_root / "containerd.sock"
        config = root / "config.toml"
        config.write_text(
            "version = 2\n"
            f"root = \"{root}/root\"\n"
            f"state = \"{run_root}/state\"\n"
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
            "[grpc]\n"
            f"  address = \"{self.sock}\"\n"
            "[ttrpc]\n"
            f"  address = \"{self.sock}.ttrpc\"\n")
        self.log = open(root / "containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"containerd did not start: {(root / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(["ctr", "--address", str(self.sock), *args], timeout=timeout, check=check)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- the sensor -----------------------------------------------------------------------------------

PROBE_RULE = "Falconet e2e containers probe"


class Sensor:
    """`falconet run` with the bundled rules and Falco's official ones, JSON alerts on stdout,
    asking `sockets` about containers. Ready once a probe file's read raised the probe rule."""

    def __init__(self, workdir: Path, sockets: list[str], rules: list[Path] | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.probe = workdir / "probe"
        self.probe.write_text("x")
        probe_rules = workdir / "probe_rules.yaml"
        probe_rules.write_text(f"""
- rule: {PROBE_RULE}
  desc: the sensor is attached and its alerts flow
  condition: evt.type in (open, openat) and fd.name = {self.probe}
  output: probe
  priority: Debug
""")
        config = workdir / "falconet.yaml"
        config.write_text(json.dumps({
            "json_output": True, "rule_matching": "all", "webserver": {"enabled": False},
            "state_dir": str(workdir), "syscall": {"container_sockets": sockets},
            "append_output": [{"match": {"source": "syscall"}, "extra_fields": ALERT_FIELDS}],
        }))
        if rules is None:
            rules = [BUNDLED_RULES, *(COMPAT / name for name in FALCO_RULES)]
        argv = [FALCONET, "run", "-c", str(config), *(a for r in rules for a in ("-r", str(r))),
                "-r", str(probe_rules), *extra_args]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True).start()
        deadline = time.monotonic() + 120
        while not any(a["rule"] == PROBE_RULE for a in self.alerts()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("the sensor did not start: " + "".join(self.stderr)[-3000:])
            self.probe.read_text()
            time.sleep(0.2)

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], count: int = 1,
                 timeout: float = 30) -> list[dict[str, Any]]:
        """The alerts that satisfy `predicate`, once there are `count` of them (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [a for a in self.alerts() if predicate(a)]
            if len(got) >= count or time.monotonic() > deadline or self.proc.poll() is not None:
                return got
            time.sleep(0.2)

    def of_container(self, full_id: str, settle: float = 30, rules: set[str] | None = None) -> dict[str, list]:
        """Alerts of one container by rule, waiting until every rule in `rules` has one."""
        def mine(a: dict[str, Any]) -> bool:
            return a["output_fields"].get("container.id") == full_id[:12]
        deadline = time.monotonic() + settle
        while True:
            by_rule: dict[str, list] = {}
            for a in self.alerts():
                if mine(a):
                    by_rule.setdefault(a["rule"], []).append(a)
            if rules is None or rules <= set(by_rule) or time.monotonic() > deadline or \
                    self.proc.poll() is not None:
                return by_rule
            time.sleep(0.2)

    def stop(self) -> None:
        interrupt(self.proc, timeout=30)


def podman_fixture(*extra_tools: str) -> Iterator[Podman]:
    """A module fixture's body: podman (with runc and busybox, and `extra_tools`), its containers
    removed at the end."""
    require("podman", "runc", "busybox", *extra_tools)
    p = Podman()
    try:
        yield p
    finally:
        p.remove_all()


def sensor_fixture(tmp_path_factory: pytest.TempPathFactory, name: str,
                   sockets: list[str]) -> Iterator[Sensor]:
    s = Sensor(tmp_path_factory.mktemp(name), sockets)
    try:
        yield s
    finally:
        s.stop()

