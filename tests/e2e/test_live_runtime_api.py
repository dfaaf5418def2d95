"""End to end, as root: a container whose runtime says it is privileged and mounts the Docker socket.

No container runtime exists here, so a Docker Engine API peer in the test answers
`GET /containers/<id>/json` as Docker documents it; everything else is real: the cgroup with
Docker's layout, the process moved into it, its own PID namespace (so it is the container's PID 1),
and `falconet run` with the bundled rules asking that socket about the container.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakes.docker_api import FakeDockerAPI

pytestmark = pytest.mark.ebpf

ROOT = Path(__file__).resolve().parents[2]
FALCONET = str(Path(sys.executable).with_name("falconet"))
BUNDLED = ROOT / "rules" / "falconet_rules.yaml"


def test_privileged_container_with_the_docker_socket_mounted(tmp_path: Path) -> None:
    from sensor.generate import FakeContainer

    c = FakeContainer("docker")            # a real cgroup v2 directory with Docker's layout
    cid = c.full_id
    docs = {cid: {
        "Id": cid, "Created": "2024-05-01T09:59:59Z", "Name": "/falconet-e2e", "Image": "sha256:" + "cd" * 32,
        "Config": {"Image": "docker.io/library/alpine:3.20", "Labels": {}},
        "HostConfig": {"Privileged": True},
        "State": {"StartedAt": "2024-05-01T10:00:00Z"},
        "Mounts": [{"Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock", "Mode": "",
                    "RW": True, "Propagation": "rprivate"}],
    }}
    sock = tmp_path / "docker.sock"
    server = FakeDockerAPI(str(sock), docs).start()
    probe = tmp_path / "probe"
    probe.write_text("x")
    ready = tmp_path / "ready.yaml"
    ready.write_text(f"""
- rule: e2e probe
  desc: t
  condition: evt.type in (open, openat) and fd.name = {probe}
  output: probe
  priority: Debug
""")
    run = subprocess.Popen([FALCONET, "run", "-M", "90", "-r", str(BUNDLED), "-r", str(ready),
                            "-o", "json_output=true", "-o", "rule_matching=all", "-o", "webserver.enabled=false",
                            "-o", f"syscall.container_sockets=[{sock}]"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(run.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not any("e2e probe" in line for line in lines):
            assert time.monotonic() < deadline and run.poll() is None, "the sensor did not start"
            probe.read_text()
            time.sleep(0.2)
        subprocess.run(["unshare", "--pid", "--fork", "--", "sleep", "1.5"], check=True,
                       preexec_fn=lambda: (c.path / "cgroup.procs").write_text(str(os.getpid())))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = {json.loads(line)["rule"] for line in list(lines) if line.startswith("{")}
            if {"Privileged container started", "Container with sensitive mount started"} <= got:
                break
            time.sleep(0.2)
    finally:
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
        server.stop()
        c.remove()
    alerts = {a["rule"]: a for a in map(json.loads, (line for line in lines if line.startswith("{")))
              if a["rule"] in ("Privileged container started", "Container with sensitive mount started")}
    assert set(alerts) == {"Privileged container started", "Container with sensitive mount started"}, err
    priv = alerts["Privileged container started"]["output_fields"]
    assert priv["container.id"] == cid[:12] and priv["container.name"] == "falconet-e2e"
    assert priv["container.image.repository"] == "docker.io/library/alpine"
    assert priv["container.image.tag"] == "3.20" and priv["proc.cmdline"] == "sleep 1.5"
    mounts = alerts["Container with sensitive mount started"]["output_fields"]["container.mounts"]
    assert mounts == "/var/run/docker.sock:/var/run/docker.sock::true:rprivate"
