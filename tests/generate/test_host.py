"""sensor/generate/: an action this host does not allow says exactly why (read-only mount, missing
capability, port in use), and the others still run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.generate import host

FALCONET = str(Path(sys.executable).with_name("falconet"))
root_only = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                               reason="needs root (mount namespaces, capabilities)")


def test_capabilities_are_read_from_proc_status() -> None:
    status = "Name:\tx\nCapEff:\t0000000000200400\n"          # bits 10 and 21
    assert host.effective_capabilities(status) == {"CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"}
    assert host.effective_capabilities("CapEff:\t0000000000000000\n") == set()


def test_mount_point_sees_bind_mounts() -> None:
    info = ("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
            "30 22 8:1 /etc /etc ro - ext4 /dev/sda1 ro\n"
            "31 22 0:27 / /sys/fs/cgroup ro - cgroup2 cgroup2 ro\n")
    assert host.mount_point("/etc/shadow", info) == "/etc"
    assert host.mount_point("/sys/fs/cgroup/system.slice", info) == "/sys/fs/cgroup"
    assert host.mount_point("/usr/bin", info) == "/"


def test_port_in_use_only_when_it_is() -> None:
    e = host.explain(OSError(errno.EADDRINUSE, "Address already in use"), "listening on 127.0.0.1:22")
    assert str(e) == "listening on 127.0.0.1:22: the port is in use; stop what listens there"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    from sensor.generate.container import listener
    from sensor.generate.host import CannotRun

    try:
        with pytest.raises(CannotRun, match=r"the port is in use"), listener(busy.getsockname()[1]):
            pass
    finally:
        busy.close()


@root_only
def test_a_read_only_etc_and_cgroupfs_are_named(tmp_path: Path) -> None:
    from sensor.sources.syscall import cgroup_root

    cgroups = cgroup_root()
    script = ("mount --bind /etc /etc && mount -o remount,bind,ro /etc && "
              f"mount --bind {cgroups} {cgroups} && mount -o remount,bind,ro {cgroups} && "
              f"exec {FALCONET} generate --json write-below-etc shell-in-container read-sensitive-file")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr                      # some could not run; the rest did
    results = {x["action"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert results["write-below-etc"]["error"].startswith("creating a file below /etc: /etc is mounted read-only")
    assert results["shell-in-container"]["error"].startswith(f"creating the cgroup {cgroups}/")
    assert f"{cgroups} is mounted read-only" in results["shell-in-container"]["error"]
    assert results["read-sensitive-file"]["ok"]
    assert "needs root" not in r.stdout + r.stderr and "in use" not in r.stdout


@root_only
def test_a_missing_capability_is_named() -> None:
    r = subprocess.run(["setpriv", "--bounding-set=-sys_admin,-net_bind_service", FALCONET, "generate",
                        "shell-in-container", "ssh-from-container", "memfd-exec"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert any(line.startswith("shell-in-container: cannot run here: running a process in the imitated container: "
                               "new PID, UTS and IPC namespaces need CAP_SYS_ADMIN, which this process does not "
                               "have") for line in lines), r.stderr
    low_ports = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if low_ports > 22:
        want = ("ssh-from-container: cannot run here: listening on 127.0.0.1:22 needs CAP_NET_BIND_SERVICE, "
                "which this process does not have")
        assert any(line.startswith(want) for line in lines), r.stderr
    assert r.stdout.splitlines() == ["memfd-exec: done (Fileless execution via memfd)"]
