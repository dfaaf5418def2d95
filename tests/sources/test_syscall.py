"""sensor/sources/syscall.py: what the rules need from the capture, and the live source itself."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from pathlib import Path

import pytest

from sensor import config
from sensor.engine import load_rules
from sensor.errors import ConfigError, UnavailableError
from sensor.event import Fd, Process, SyscallEvent
from sensor.sources import syscall
from sensor.sources.syscall import SyscallSource, open_filter_from_rules

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "rules" / "falconet_rules.yaml"

RULES = """
- rule: secret read
  desc: t
  condition: evt.type = openat and fd.name startswith /srv/secret and evt.is_open_read = true
  output: x
  priority: Warning
- rule: config written
  desc: t
  condition: >
    evt.type in (open, openat) and not evt.is_open_read = true
    and (fd.directory in (/etc/ssl, /opt) or fd.name pmatch (/var/lib/app))
  output: x
  priority: Warning
- rule: keys
  desc: t
  condition: evt.type = openat2 and fd.name glob "/data/*.key"
  output: x
  priority: Warning
- rule: exact by cat
  desc: t
  condition: evt.type = openat and fd.name = /exact/file and proc.name = cat
  output: x
  priority: Warning
- rule: not about opens
  desc: t
  condition: evt.type = connect and fd.name contains 9
  output: x
  priority: Warning
"""


def kernel_wants(entries: dict[tuple[bytes, bool], int], path: str, flags: int) -> bool:
    """What the probe decides: the classes of every entry that is a prefix of the path (with its NUL)."""
    parts = path.split("/")
    if not path.startswith("/") or "//" in path or (path.endswith("/") and path != "/") \
            or any(p in (".", "..") for p in parts):
        return True
    key = path.encode() + b"\0"
    classes = 0
    for (p, is_prefix), c in entries.items():
        if key.startswith(p if is_prefix else p + b"\0"):
            classes |= c
    return bool(classes >> (flags & 3) & 1)


def open_event(etype: str, path: str, flags: int, proc: str = "cat") -> SyscallEvent:
    from sensor.capture import render  # only for the test's rendering of flags

    p = Process(pid=10, name=proc, exe=proc)
    ev = SyscallEvent(type=etype, time_ns=1, num=1, proc=p, tid=10, res=3)
    ev.args = {"fd": 3, "dirfd": -100, "name": path, "flags": render.open_flags(flags), "mode": "0"}
    ev.fd = Fd(num=3, type="file", name=path, flags=flags)
    return ev


def test_the_filter_never_drops_an_open_a_rule_matches(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(RULES)
    rs = load_rules([f])
    entries = open_filter_from_rules(rs)
    assert entries is not None
    paths = ["/srv/secret", "/srv/secret/db.pw", "/srv/secrets", "/srv/other", "/etc/ssl/cert.pem",
             "/etc/ssl/x/y", "/etc/ssl", "/opt/tool", "/var/lib/app", "/var/lib/app/state", "/var/lib/apple",
             "/data/a.key", "/data/dir/b.key", "/database", "/exact/file", "/exact/file2", "/tmp/x"]
    dropped = 0
    for path, flags, etype, proc in itertools.product(paths, (os.O_RDONLY, os.O_WRONLY, os.O_RDWR),
                                                      ("open", "openat", "openat2"), ("cat", "vi")):
        matched = bool(rs.process(open_event(etype, path, flags, proc)))
        wanted = kernel_wants(entries, path, flags)
        assert wanted or not matched, f"{etype} {path} flags={flags} matches a rule but would be dropped"
        dropped += not wanted
    assert dropped > 100        # and it does drop what no rule can match
    assert not kernel_wants(entries, "/tmp/x", os.O_RDONLY)
    assert kernel_wants(entries, "/tmp/../srv/secret", os.O_RDONLY)     # not lexically normal: kept
    assert kernel_wants(entries, "relative", os.O_RDONLY)


def test_bundled_rules_filter_reads_to_credentials_and_keep_every_write() -> None:
    entries = open_filter_from_rules(load_rules([BUNDLED]))
    assert entries is not None
    assert kernel_wants(entries, "/etc/shadow", os.O_RDONLY)
    assert kernel_wants(entries, "/root/.ssh/id_ed25519", os.O_RDONLY)
    assert not kernel_wants(entries, "/usr/lib/x86_64-linux-gnu/libc.so.6", os.O_RDONLY)
    assert not kernel_wants(entries, "/etc/passwd", os.O_RDONLY)
    # history files are matched by fd.filename, which a path prefix cannot express: every write stays
    assert kernel_wants(entries, "/home/u/.bash_history", os.O_WRONLY)


def test_no_filter_when_a_rule_matches_any_open(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("- rule: all opens\n  desc: t\n  condition: evt.type = openat and proc.name = cat\n"
                 "  output: x\n  priority: Debug\n")
    assert open_filter_from_rules(load_rules([f])) is None


def test_configuration_is_checked_before_anything_is_loaded() -> None:
    cfg = config.load(None, ["syscall.ring_buffer_size=3MiB"])
    with pytest.raises(ConfigError, match="power of two"):
        SyscallSource(cfg, None)


def test_without_root_the_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    why = syscall.preflight()
    assert why is not None and "root" in why and "syscall.enabled=false" in why
    src = SyscallSource(config.load(None, []), load_rules([BUNDLED]))
    with pytest.raises(UnavailableError, match="needs root"):
        src.start()


@pytest.mark.ebpf
def test_live_source_through_the_runtime_with_the_bundled_rules() -> None:
    from sensor.runtime import Runtime

    rs = load_rules([BUNDLED])
    src = SyscallSource(config.load(None, []), rs)
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
