"""The capture and generate commands from the command line: listing, printing the BPF program,
recording events as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FALCONET = str(Path(sys.executable).with_name("falconet"))
BUNDLED = ROOT / "rules" / "falconet_rules.yaml"


def falconet(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FALCONET, *args], capture_output=True, text=True, timeout=timeout)


def test_generate_lists_an_action_for_every_bundled_rule_it_can_imitate() -> None:
    out = falconet("generate", "--list")
    assert out.returncode == 0, out.stderr
    from sensor.engine import load_rules

    rules = {r.name for r in load_rules([BUNDLED]).rules}
    listed = {line.split("  ", 1)[1].split(":", 1)[0].strip() for line in out.stdout.splitlines()}
    assert listed == rules
    assert "Privileged container started: not generated here" in out.stdout


def test_generate_refuses_unknown_actions() -> None:
    out = falconet("generate", "no-such-action")
    assert out.returncode == 2 and "unknown action(s): no-such-action" in out.stderr


@pytest.mark.ebpf
def test_generate_says_when_the_default_sensor_cannot_see_a_module_load() -> None:
    # This kernel has no module support: no finit_module tracepoint, and by default the sensor
    # skips what has none. The action still runs, and says how to make it visible.
    from sensor.sources.syscall import has_tracepoint

    out = falconet("generate", "--json", "load-kernel-module")
    assert out.returncode == 0, out.stderr
    (result,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert result["ok"] and result["rule"] == "Kernel module loaded"
    if has_tracepoint("finit_module"):
        assert "note" not in result
    else:
        assert "syscall.unimplemented_syscalls=capture" in result["note"]


@pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="no kernel BTF")
def test_capture_prints_the_final_bpf_program() -> None:
    out = falconet("capture", "--print-bpf", "-r", str(BUNDLED))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("// cflags: ") and "-DOFF_TASK_TGID=" in out.stdout
    assert "int sys_exit(void *ctx)" in out.stdout and "_Static_assert(sizeof(struct rec_syscall)" in out.stdout


def test_capture_needs_a_file() -> None:
    out = falconet("capture", "-r", str(BUNDLED))
    assert out.returncode == 2 and "-w FILE is required" in out.stderr


@pytest.mark.ebpf
def test_capture_records_json_lines_that_replay(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    marker = tmp_path / "marker"
    marker.write_text("x")
    rules.write_text(f"""
- rule: marker read
  desc: t
  condition: evt.type in (open, openat) and fd.name = {marker}
  output: marker read by %proc.name
  priority: Notice
""")
    out_file = tmp_path / "events.jsonl"
    proc = subprocess.Popen([FALCONET, "capture", "-w", str(out_file), "-r", str(rules), "-M", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            subprocess.run(["cat", str(marker)], stdout=subprocess.DEVNULL, check=True)
            if out_file.exists() and str(marker) in out_file.read_text():
                break
            time.sleep(0.3)
        for _ in range(22):
            subprocess.run(["cat", str(marker)], stdout=subprocess.DEVNULL, check=True)
        time.sleep(1.5)
    finally:
        proc.send_signal(2)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Events captured:" in err and "drops: 0;" in err
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert all(line["source"] == "syscall" and "evt.type" in line["fields"] for line in lines)
    reads = [f for f in (line["fields"] for line in lines)
             if f["evt.type"] in ("open", "openat") and f.get("fd.name") == str(marker)
             and f.get("proc.name") == "cat"]
    assert len(reads) >= 23
    assert reads[-1]["evt.arg.flags"] == "O_RDONLY" and reads[-1]["proc.cmdline"] == f"cat {marker}"
    types = {line["fields"]["evt.type"] for line in lines}
    assert {"procexit", "dup2"} <= types  # process and fd state (sched tracepoints, base set) too
    assert "close" not in types         # no rule names close, so it is not attached
    replay = falconet("replay", str(out_file), "-r", str(rules), "--json")
    assert replay.returncode == 0, replay.stderr
    alerts = [json.loads(line) for line in replay.stdout.splitlines()]
    assert sum(a["output"].endswith("marker read by cat") for a in alerts) == len(reads)
