"""sensor/capture/loader.py and compile.py: the program is built in a child; this process never
imports bcc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.capture import loader, syscalls

pytestmark = pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="no kernel BTF")


def test_print_only_gives_the_final_program_and_its_offsets_without_bcc_here() -> None:
    chosen, _ = syscalls.select(frozenset({"openat", "connect"}))
    probe = loader.load(chosen, ringbuf_bytes=1 << 20, self_tgid=os.getpid(), print_only=True)
    assert probe.text is not None
    assert "struct rec_syscall {" in probe.text and "int sys_exit(void *ctx)" in probe.text
    flags = dict(f[2:].split("=", 1) for f in probe.cflags)
    assert int(flags["RINGBUF_PAGES"]) == (1 << 20) // loader.PAGE
    assert int(flags["OFF_TASK_TGID"]) > 0 and int(flags["SIZEOF_UPID"]) == 16


@pytest.mark.ebpf
def test_the_loading_process_never_imports_bcc_and_holds_the_attachments() -> None:
    # In a fresh interpreter: the test runner itself has imported bcc to check for eBPF.
    code = ("import os, sys\nfrom sensor.capture import loader, syscalls\n"
            "p = loader.load(syscalls.select({'openat'})[0], ringbuf_bytes=1 << 20, self_tgid=os.getpid())\n"
            "print('bcc' in sys.modules, sorted(p.maps), len(p.attach_fds), sorted(p.counters()))\n"
            "p.close()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    bcc_loaded, rest = out.stdout.strip().split(" ", 1)
    assert bcc_loaded == "False"
    assert "'events'" in rest and "'drops'" in rest


@pytest.mark.parametrize("size", [1000, 3 * 4096])
def test_ring_buffer_size_must_be_a_power_of_two_pages(size: int) -> None:
    with pytest.raises(loader.LoadError, match="power of two"):
        loader.load([], ringbuf_bytes=size, self_tgid=0)


def test_only_syscalls_without_an_exit_tracepoint_are_reported_as_raw() -> None:
    # The start-up log names the syscalls served by raw sys_enter; the probe attaches sys_exit_*.
    from types import SimpleNamespace

    from sensor.capture.session import Capture, CaptureOptions

    cap = Capture(CaptureOptions(event_types=frozenset({"openat", "init_module"}), emit=lambda ev: None,
                                 raw_hook=True))
    attached = [f"syscalls:sys_exit_{s.tracepoint}" for s in cap.selected if s.name != "init_module"]
    cap.probe = SimpleNamespace(attached=attached)  # type: ignore[assignment]
    assert cap.raw_syscalls == ["init_module"]


def test_by_default_syscalls_without_a_tracepoint_are_skipped_not_hooked() -> None:
    # This kernel has no module support (no sys_exit_init_module): by default nothing goes
    # through raw sys_enter, whose cost every syscall would pay.
    from sensor.capture.session import Capture, CaptureOptions

    assert not loader.has_tracepoint("init_module")
    cap = Capture(CaptureOptions(event_types=frozenset({"openat", "init_module"}), emit=lambda ev: None))
    assert cap.skipped == ["init_module"]
    assert [s.name for s in cap.selected if s.name in ("openat", "init_module")] == ["openat"]


def test_the_first_two_characters_table_never_hides_a_trie_match() -> None:
    # The probe skips the trie when a string's second and third characters have no bit; that must
    # never skip a string some key matches. Strings under three bytes skip the table.
    keys = [b"/", b"/etc/shadow\0", b"/root/.ssh/", b"/x", b"/\0", b"/ab\0", b"../"]
    rows = loader.first_two_table(keys)

    def bit(path: bytes) -> bool:
        if len(path) < 3:
            return True
        c1, c2 = path[1], path[2]
        return bool(rows[c1][c2 >> 6] >> (c2 & 63) & 1)

    paths = [b"/etc/shadow", b"/etc/passwd", b"/root/.ssh/id_rsa", b"/x", b"/xy/z", b"/", b"/ab", b"/abc",
             b"/tmp/file", b"/e", b"/r", b"../x", b".."]
    for path in paths:
        key = path + b"\0"
        matched = any(key.startswith(k) for k in keys)
        assert not matched or bit(key), path
    # and it is a filter at all, once no key of one byte matches everything
    rows = loader.first_two_table([b"/etc/shadow\0", b"/root/.ssh/"])
    assert not rows[ord("t")][ord("m") >> 6] >> (ord("m") & 63) & 1
    assert rows[ord("e")][ord("t") >> 6] >> (ord("t") & 63) & 1
