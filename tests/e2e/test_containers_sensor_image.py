"""End to end, as root: the sensor's own image, built by podman from the project's Dockerfile with no
registry (its base a Debian root filesystem made here by debootstrap), run as
compose/docker-compose.yml declares the sensor (the same capabilities, not privileged, the host's
PID namespace and cgroups, read-only, exactly the host paths it lists), detects an action on the
host and one in a podman container, the container named through the Docker socket it mounts
(Podman's compat API here).

Both images are cached by content (LAB_ROOT): the first run on a machine debootstraps and builds
(a few minutes, apt and PyPI downloads), later runs build only when the context changed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from containers_lab import ALERT_FIELDS, LAB_ROOT, Podman, PodmanService, busybox_image, podman_fixture, require

pytestmark = pytest.mark.ebpf

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_SUITE, DEBIAN_MIRROR = "bookworm", "http://deb.debian.org/debian"
SENSOR_NAME = "falconet-e2e-sensor-image"
PROBE_RULE = "Falconet e2e image probe"


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    yield from podman_fixture("debootstrap")


def debian_base(podman: Podman) -> str:
    """A Debian bookworm minbase root filesystem as an image, made once per suite and mirror."""
    key = hashlib.sha256(f"{DEBIAN_SUITE} minbase {DEBIAN_MIRROR}".encode()).hexdigest()[:12]
    ref = f"localhost/falconet-test/debian:{DEBIAN_SUITE}-minbase-{key}"
    if podman.has_image(ref):
        return ref
    with tempfile.TemporaryDirectory(dir=LAB_ROOT) as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
                       check=True, capture_output=True, timeout=900)
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True, timeout=300)
        podman("import", str(tar), ref, timeout=300)
    return ref


def context_digest(base: str) -> str:
    """What the build reads: the Dockerfile, .dockerignore, the trees it copies, and the base."""
    from deploy.dockerfile import ignore_patterns, is_ignored
    from deploy.dockerfile import parse as parse_dockerfile

    h = hashlib.sha256(base.encode())
    patterns = ignore_patterns(ROOT / ".dockerignore")
    paths = [ROOT / "Dockerfile", ROOT / ".dockerignore"]
    for i in parse_dockerfile(ROOT / "Dockerfile"):
        if i.keyword in ("COPY", "ADD"):
            for src in i.positional()[:-1]:
                top = ROOT / src
                paths += sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
    for p in paths:
        rel = str(p.relative_to(ROOT))
        if p.name in ("Dockerfile", ".dockerignore") or not is_ignored(rel, patterns):
            h.update(rel.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def _host_trust(work: Path) -> list[str]:
    # Machines here reach PyPI through a proxy that only the host's CA bundle trusts. pip in the
    # build's RUN steps is given that bundle (podman build -v: seen while building, not kept in the
    # image), away from the image's own /etc/ssl/certs, which ca-certificates rewrites.
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        return []
    pip_conf = work / "pip.conf"
    pip_conf.write_text("[global]\ncert = /run/falconet-build/ca.crt\n")
    return ["-v", f"{bundle}:/run/falconet-build/ca.crt:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]


@pytest.fixture(scope="module")
def sensor_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    base = debian_base(podman)
    ref = f"localhost/falconet-test/sensor:{context_digest(base)}"
    if not podman.has_image(ref):
        trust = _host_trust(tmp_path_factory.mktemp("build"))
        podman("build", "--network", "host", *trust, "--build-arg", f"BASE_IMAGE={base}",
               "-t", ref, "-f", str(ROOT / "Dockerfile"), str(ROOT), timeout=1800)
        # Earlier builds' tags go (their layers stay as the build cache for the next change).
        repo = ref.rsplit(":", 1)[0]
        for old in podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
            if old.startswith(repo + ":") and old != ref:
                podman("rmi", old, check=False)
    return ref


def seccomp_with_bpf(path: Path) -> Path:
    """Podman's default seccomp profile with the two rules Docker 23's and containerd 1.7's defaults
    have and Debian's podman 4.3 (containers-common 0.50) lacks: bpf() for CAP_BPF and
    perf_event_open() for CAP_PERFMON. Everything else stays as podman has it."""
    profile = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ERRNO" and rule.get("excludes", {}).get("caps") == ["CAP_SYS_ADMIN"]:
            rule["names"] = [n for n in rule["names"] if n not in ("bpf", "perf_event_open")]
    profile["syscalls"] += [{"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_BPF"]}},
                            {"names": ["perf_event_open"], "action": "SCMP_ACT_ALLOW",
                             "includes": {"caps": ["CAP_PERFMON"]}}]
    path.write_text(json.dumps(profile))
    return path


def run_options(service: dict[str, Any], docker_sock: Path, work: Path) -> list[str]:
    """`podman run` options for the compose sensor service as declared: only the lab's own files
    (configuration, rules, certificates, state) are the test's instead."""
    opts = []
    if service.get("pid") == "host":
        opts += ["--pid", "host"]
    if service.get("cgroup") == "host":
        opts += ["--cgroupns", "host"]
    assert not service.get("privileged"), "the sensor is not privileged"
    opts += [f"--cap-drop={c}" for c in service.get("cap_drop", [])]
    opts += [f"--cap-add={c}" for c in service.get("cap_add", [])]
    opts += [f"--security-opt={o}" for o in service.get("security_opt", [])]
    if service.get("read_only"):
        opts.append("--read-only")
    opts += [f"--tmpfs={t}" for t in service.get("tmpfs", [])]
    for volume in service["volumes"]:
        source, target, *mode = volume.split(":")
        suffix = f":{mode[0]}" if mode else ""
        if source == "/var/run/docker.sock":
            opts += ["-v", f"{docker_sock}:{target}{suffix}"]
        elif source.startswith("/"):
            opts += ["-v", f"{source}:{target}{suffix}"]          # a host path, exactly as listed
        elif target == "/etc/falconet/falconet.yaml":
            opts += ["-v", f"{work / 'falconet.yaml'}:{target}:ro"]
        elif target == "/etc/falconet/rules.d":
            opts += ["-v", f"{work / 'rules.d'}:{target}:ro"]
        elif target == "/var/lib/falconet":
            opts += ["-v", f"{work / 'state'}:{target}"]
        # the lab's certificates volume is the fluent channel's, which this run does not use
    if "FALCONET_HOSTNAME" in (service.get("environment") or {}):
        opts += ["-e", "FALCONET_HOSTNAME=falconet-e2e-image"]
    return opts


def test_the_sensor_image_runs_as_compose_declares_and_sees_host_and_containers(
        podman: Podman, sensor_image: str, tmp_path: Path) -> None:
    require("podman", "runc", "busybox")
    image = busybox_image(podman)
    service = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())["services"]["sensor"]
    api = PodmanService(podman, tmp_path / "podman.sock")
    (tmp_path / "state").mkdir()
    (tmp_path / "rules.d").mkdir()
    probe = tmp_path / "probe"
    probe.write_text("x")
    (tmp_path / "rules.d" / "probe.yaml").write_text(f"""
- rule: {PROBE_RULE}
  desc: the sensor in its image is attached and its alerts flow
  condition: evt.type in (open, openat) and fd.name = {probe}
  output: probe
  priority: Debug
""")
    (tmp_path / "falconet.yaml").write_text(json.dumps({
        "json_output": True, "rule_matching": "all", "webserver": {"enabled": False},
        "append_output": [{"match": {"source": "syscall"}, "extra_fields": ALERT_FIELDS}]}))
    argv = ["podman", "run", "--rm", "--name", SENSOR_NAME, "--network", "none",
            f"--security-opt=seccomp={seccomp_with_bpf(tmp_path / 'seccomp.json')}",
            *run_options(service, api.sock, tmp_path), sensor_image, *service["command"]]
    podman("rm", "-f", "-t", "0", SENSOR_NAME, check=False)
    proc = subprocess.Popen(argv, env=podman.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    errors: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()       # type: ignore[arg-type]
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()      # type: ignore[arg-type]

    def alerts() -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(lines) if line.startswith("{")]

    try:
        deadline = time.monotonic() + 180
        while not any(a["rule"] == PROBE_RULE for a in alerts()):
            assert proc.poll() is None and time.monotonic() < deadline, \
                "the sensor in its image did not start: " + "".join(errors)[-3000:]
            probe.read_text()
            time.sleep(0.3)
        host = subprocess.run(["cat", "/etc/shadow"], capture_output=True)
        assert host.returncode == 0
        cid = podman.run_detached("falconet-e2e-image-target", image, "sleep", "300")
        podman("exec", "falconet-e2e-image-target", "cat", "/etc/shadow")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reads = [a["output_fields"] for a in alerts() if a["rule"] == "Sensitive file read"]
            if {r["container.id"] for r in reads} >= {"host", cid[:12]}:
                break
            time.sleep(0.3)
    finally:
        podman("stop", "-t", "20", SENSOR_NAME, check=False, timeout=60)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        api.stop()
    reads = [a["output_fields"] for a in alerts() if a["rule"] == "Sensitive file read"]
    on_host = [r for r in reads if r["container.id"] == "host" and r["proc.name"] == "cat"]
    assert on_host, f"no host read seen; stderr: {''.join(errors)[-2000:]}"
    assert on_host[0]["fd.name"] == "/etc/shadow" and on_host[0]["container.name"] == "host"
    inside = [r for r in reads if r["container.id"] == cid[:12]]
    assert inside, f"no container read seen; stderr: {''.join(errors)[-2000:]}"
    assert (inside[0]["container.name"], inside[0]["container.type"]) == ("falconet-e2e-image-target", "podman")
    assert inside[0]["container.image"] == image
    assert all(a["hostname"] == "falconet-e2e-image" for a in alerts())
    assert "Traceback" not in "".join(errors)
