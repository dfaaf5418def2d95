"""sensor/capture/syscalls.py: the one table both the kernel spec and the decoder come from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import compat_file

from sensor.capture import layout, syscalls
from sensor.capture.argcode import builder
from sensor.capture.syscalls import BY_NAME, SYSCALLS, select
from sensor.event import Process

ROOT = Path(__file__).resolve().parents[2]
UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


def test_names_and_numbers_are_unique() -> None:
    assert len({s.name for s in SYSCALLS}) == len(SYSCALLS)
    assert len({s.nr for s in SYSCALLS}) == len(SYSCALLS)


@pytest.mark.skipif(not UNISTD.exists(), reason="no x86_64 unistd header to compare with")
def test_numbers_are_the_x86_64_syscall_numbers() -> None:
    nrs = dict(re.findall(r"#define __NR_(\w+) (\d+)", UNISTD.read_text()))
    for s in SYSCALLS:
        assert int(nrs[s.name]) == s.nr, s.name


def test_every_parameter_has_a_renderer_and_every_spec_fits_the_probe() -> None:
    for s in SYSCALLS:
        build = builder(s)              # compiles the syscall's args builder; unknown kinds raise
        args, _raw = build(0, 1, 2, 3, 4, 5, 6, "a", "b", "c", b"", Process(pid=1, cwd="/"), None, 1)
        assert list(args) == [name for name, _kind, _src in s.params], s.name
        row = syscalls.kernel_spec(s, True, False)
        assert len(row) == layout.LAYOUTS["spec"].size
        assert len(s.strings) <= 3


def test_fd_creating_syscalls_are_named_as_falco_names_their_result() -> None:
    for name in ("open", "openat", "openat2", "creat", "socket", "accept", "accept4", "memfd_create", "bpf"):
        assert BY_NAME[name].params[0][:2] == ("fd", "fd")
        assert BY_NAME[name].creates_fd
    assert BY_NAME["close"].closes_fd


def _rule_types(*paths: Path) -> frozenset[str]:
    from sensor.engine import load_rules

    types = load_rules(list(paths)).event_types("syscall")
    assert types is not None
    return types


def test_every_event_type_of_the_bundled_rules_is_captured() -> None:
    chosen, unknown = select(_rule_types(ROOT / "rules" / "falconet_rules.yaml"))
    assert unknown == []
    names = {s.name for s in chosen}
    assert {"chdir", "dup2", "fchdir"} <= names        # the base set rides along
    assert "close" not in names                        # no rule names it; stale fds are caught at use


def test_every_event_type_falcos_rules_compare_against_is_captured() -> None:
    files = [compat_file(n) for n in ("falco_rules.yaml", "falco-incubating_rules.yaml",
                                      "falco-sandbox_rules.yaml")]
    types = set()
    for f in files[1:]:
        types |= _rule_types(files[0], f)
    chosen, unknown = select(frozenset(types))
    assert unknown == [], f"event types of Falco's rules the capture cannot produce: {unknown}"
    assert {"execve", "connect", "ptrace", "init_module", "userfaultfd", "bpf"} <= {s.name for s in chosen}
