"""sensor/sources/syscall.py: what the rules need from the capture, and the live source itself."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from sensor import config
from sensor.engine import load_rules
from sensor.errors import ConfigError, UnavailableError
from sensor.sources import syscall
from sensor.sources.settings import SyscallSettings
from sensor.sources.syscall import SyscallSource

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "rules" / "falconet_rules.yaml"


def settings(*overrides: str) -> SyscallSettings:
    return SyscallSettings.from_config(config.load(None, list(overrides)))

def test_the_dry_run_says_per_syscall_what_the_kernel_keeps() -> None:
    from conftest import compat_file

    lines = syscall.describe(settings(), load_rules([compat_file("falco_rules.yaml")]))
    assert lines[0] == "Syscall kernel filter: on"
    assert "  sendto: nothing: no rule can match it, so it is not attached" in lines
    assert "  chdir: every event (the process and fd state need it)" in lines
    off = syscall.describe(settings("syscall.kernel_filter=false"), load_rules([BUNDLED]))
    assert off[0].startswith("Syscall kernel filter: off")
    assert all("every event" in line or "not captured" in line for line in off[1:])


def test_unfiltered_syscalls_must_be_syscalls() -> None:
    with pytest.raises(ConfigError, match="frobnicate"):
        config.load(None, ["syscall.unfiltered_syscalls=[connect, frobnicate]"])
    cfg = config.load(None, ["syscall.unfiltered_syscalls=[connect]"])
    assert cfg.get("syscall.unfiltered_syscalls") == ["connect"]
    with pytest.raises(ConfigError, match="process_budget"):
        config.load(None, ["syscall.process_budget=0"])


def test_no_predicates_when_the_filter_is_off() -> None:
    rs = load_rules([BUNDLED])
    assert syscall.predicates(settings("syscall.kernel_filter=false"), rs) is None
    preds = syscall.predicates(settings(), rs)
    assert preds is not None and preds["openat"] is not None and preds["execve"] is not None


def test_configuration_is_checked_before_anything_is_loaded() -> None:
    with pytest.raises(ConfigError, match=r"-o syscall.ring_buffer_size=3MiB: .*power of two"):
        SyscallSource(settings("syscall.ring_buffer_size=3MiB"), None)


def test_without_root_the_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    why = syscall.preflight()
    assert why is not None and "root" in why and "syscall.enabled=false" in why
    src = SyscallSource(settings(), load_rules([BUNDLED]))
    with pytest.raises(UnavailableError, match="needs root"):
        src.start()


@pytest.mark.ebpf
def test_live_source_through_the_runtime_with_the_bundled_rules() -> None:
    from sensor.runtime import Runtime

    rs = load_rules([BUNDLED])
    src = SyscallSource(settings(), rs)
    alerts = []
    rt = Runtime(rs, [src], alerts.append)

    def act() -> None:
        deadline = time.monotonic() + 60
        while not src.attached and time.monotonic() < deadline:    # compiled and attached in a child
            time.sleep(0.1)
        subprocess.run(["cat", "/etc/shadow"], stdout=subprocess.DEVNULL, check=True)
        time.sleep(1)
        rt.stop()

    import threading

    threading.Thread(target=act, daemon=True).start()
    summary = rt.run(30)
    mine = [a for a in alerts if a.rule == "Sensitive file read" and a.output_fields.get("proc.name") == "cat"
            and a.output_fields.get("proc.cmdline") == "cat /etc/shadow"]
    assert mine, [a.rule for a in alerts]
    assert mine[0].output_fields["fd.name"] == "/etc/shadow"
    stats = summary.by_source["syscall"]
    assert stats.drops == 0 and stats.events > 0 and stats.counters["processes"] > 0
