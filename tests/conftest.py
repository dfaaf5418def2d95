"""Suite-wide switches: which tests need root/eBPF or a real cluster, and what happens without them."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
COMPAT = SHARED / "compat"
STRICT = os.environ.get("FALCONET_STRICT") == "1"


def ebpf_missing() -> str | None:
    """Why eBPF tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    try:
        import bcc  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        return f"bcc is not importable ({e}); run scripts/setup.sh"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "no BTF at /sys/kernel/btf/vmlinux"
    if not Path("/sys/kernel/tracing/events/syscalls").exists() and \
            not Path("/sys/kernel/debug/tracing/events/syscalls").exists():
        return "tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing)"
    return None


E2E = ROOT / "tests" / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = None
    checked = False
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("ebpf"):
            if not checked:
                why, checked = ebpf_missing(), True
            if why:
                if STRICT:
                    item.add_marker(pytest.mark.usefixtures("_ebpf_required"))
                else:
                    item.add_marker(pytest.mark.skip(reason=f"eBPF unavailable: {why}"))
        if item.get_closest_marker("cluster"):
            if not (os.environ.get("FALCONET_ES_URL") or os.environ.get("FALCONET_KIBANA_URL")):
                item.add_marker(pytest.mark.skip(reason="set FALCONET_ES_URL/FALCONET_KIBANA_URL"))


@pytest.fixture
def _ebpf_required() -> None:
    why = ebpf_missing()
    if why:
        pytest.fail(f"eBPF test cannot run under FALCONET_STRICT=1: {why}")


def compat_file(name: str) -> Path:
    """A file of Falco's official rules from ../shared/compat/ (skip when absent, fail when strict)."""
    p = COMPAT / name
    if not p.exists():
        if STRICT:
            pytest.fail(f"{p} is missing: the compatibility corpus must be beside the checkout")
        pytest.skip(f"{p} not present")
    return p


def interrupt(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a `falconet` child as Ctrl-C would (it flushes and prints its summary), killing it
    only if it has not exited within `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
