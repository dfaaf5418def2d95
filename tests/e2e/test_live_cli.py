"""The capture and generate commands from the command line: listing, printing the BPF program,
recording events as JSON lines."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
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
    from sensor.sources.replay import read_events

    with out_file.open() as f:                # contexts resolved, as replay reads them
        lines = [{"source": ev.source, "fields": ev.fields} for ev in read_events(f, str(out_file))]
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


# -- Falco's invocation with live capture; the recording's size and mode ---------------------------

MARKER_RULE = """
- rule: marker read
  desc: the test read its marker file
  condition: evt.type in (open, openat, openat2) and fd.name = {marker}
  output: marker read by %proc.name
  priority: Notice
"""


@pytest.mark.ebpf
def test_falco_style_run_counts_M_from_the_attach_and_v_summarises(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.write_text("x")
    rules = tmp_path / "rules.yaml"
    rules.write_text(MARKER_RULE.format(marker=marker))
    argv = [FALCONET, "-r", str(rules), "-M", "5", "-v", "-o", "json_output=true", "-o", "webserver.enabled=false"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads = 0
    while proc.poll() is None:
        subprocess.run(["cat", str(marker)], stdout=subprocess.DEVNULL, check=True)
        reads += 1
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert any(line.endswith("Opening 'syscall' source with eBPF: compiling the eBPF program (a few seconds)...")
               for line in lines)
    attach_re = re.compile(r"'syscall' source attached in ([\d.]+)s$")
    attached = [float(m.group(1)) for line in lines if (m := attach_re.search(line))]
    assert len(attached) == 1
    elapsed = float(re.search(r"elapsed: ([\d.]+)s", lines[-1]).group(1))       # type: ignore[union-attr]
    assert elapsed >= 5 + attached[0] - 0.1, (elapsed, attached)               # -M counts from the attach
    alerts = [json.loads(line) for line in out.splitlines()]
    mine = [a for a in alerts if a["rule"] == "marker read" and a["output"].endswith("marker read by cat")]
    assert mine and len(mine) <= reads
    i = lines.index(f"Events detected: {len(alerts)}")
    assert lines[i + 1:i + 3] == ["Rule counts by severity:", f"   NOTICE: {len(alerts)}"]
    assert lines[i + 3:i + 5] == ["Triggered rules by rule name:", f"   marker read: {len(alerts)}"]


@pytest.mark.ebpf
def test_capture_files_are_private_compact_and_without_environments(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.write_text("x")
    rules = tmp_path / "rules.yaml"
    rules.write_text(MARKER_RULE.format(marker=marker))
    compact, full = tmp_path / "compact.jsonl", tmp_path / "full.jsonl"
    # The same events recorded both ways at once: the default, and every event in full with proc.env
    # (what capture wrote before).
    env = {**os.environ, "SECRET_TOKEN": "hunter2"}
    runs = [subprocess.Popen([FALCONET, "capture", "-w", str(path), "-r", str(rules), "-M", "60", *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for path, extra in ((compact, []), (full, ["--full", "--with-env"]))]

    def both_ready() -> bool:
        return all(p.exists() and str(marker) in p.read_text() for p in (compact, full))

    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not both_ready():
            subprocess.run(["cat", str(marker)], stdout=subprocess.DEVNULL, check=True)
            time.sleep(0.3)
        # 30 reads by one process: the kernel filter sends only the opens the rule can match, so
        # what a compact file shares is the context of one process across its events
        subprocess.run(["cat", *[str(marker)] * 30], stdout=subprocess.DEVNULL, check=True, env=env)
        time.sleep(1.5)
    finally:
        for p in runs:
            p.send_signal(2)
    results = [p.communicate(timeout=60) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], results
    per_event = [int(re.search(r"; (\d+) bytes per event", err).group(1)) for _, err in results]   # type: ignore[union-attr]
    assert per_event[0] * 2 < per_event[1], per_event
    for path in (compact, full):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "hunter2" not in compact.read_text() and "proc.env" not in compact.read_text()
    assert "SECRET_TOKEN=hunter2" in full.read_text()
    for path in (compact, full):                      # both replay; the 30 reads after both were ready
        r = falconet("replay", str(path), "-r", str(rules), "--json")
        assert r.returncode == 0, r.stderr
        assert sum(json.loads(line)["output"].endswith("marker read by cat") for line in r.stdout.splitlines()) >= 30
