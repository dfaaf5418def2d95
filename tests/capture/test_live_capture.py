"""Live capture against the kernel (root + eBPF): exact event counts, /proc truth, containers, drops.

Every test attaches its own probe through sensor.capture.session.Capture, makes a child process do
something known, and reads the ring buffer until it has seen it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sensor.capture.procstate import NS_PER_TICK, boot_epoch_ns
from sensor.capture.session import Capture, CaptureOptions
from sensor.event import SyscallEvent

pytestmark = pytest.mark.ebpf

PRIME = 23


@pytest.fixture
def capture() -> Iterator[Callable[..., Capture]]:
    started: list[Capture] = []

    def make(types: set[str], **opts: object) -> Capture:
        cap = Capture(CaptureOptions(event_types=frozenset(types), **opts))  # type: ignore[arg-type]
        cap.start()
        started.append(cap)
        return cap

    yield make
    for cap in started:
        cap.stop()


def drain(cap: Capture, until: Callable[[list[SyscallEvent]], bool] = lambda _: False,
          timeout: float = 10.0, settle: float = 0.3) -> list[SyscallEvent]:
    """Every event until `until(events)` holds and the ring stays empty for `settle` seconds."""
    out: list[SyscallEvent] = []
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        got = cap.poll(0.05)
        out.extend(got)
        if got or cap.ring.pending():
            quiet_since = None
            continue
        quiet_since = quiet_since or time.monotonic()
        if until(out) and time.monotonic() - quiet_since >= settle:
            break
    return out


def wanting(tmp_path: Path, *conditions: str) -> dict:
    """The kernel filter's predicates for rules with these conditions."""
    import json

    from sensor.engine import load_rules
    from sensor.engine.kernel_filter import derive, to_data

    f = tmp_path / "rules.yaml"
    f.write_text("".join(f"- rule: r{i}\n  desc: t\n  condition: {json.dumps(c)}\n  output: x\n  priority: Debug\n"
                         for i, c in enumerate(conditions)))
    return {t: to_data(p) for t, p in derive(load_rules([f])).items()}


def opener(path: Path, n: int, flags: int = os.O_RDONLY) -> subprocess.CompletedProcess[bytes]:
    code = f"import os\nfor _ in range({n}): os.close(os.open({str(path)!r}, {flags}))"
    return subprocess.run([sys.executable, "-c", code], check=True)


def named(events: list[SyscallEvent], etype: str, path: Path) -> list[SyscallEvent]:
    return [e for e in events if e.type == etype and e.fd is not None and e.fd.name == str(path)]


def test_a_prime_number_of_opens_arrives_exactly(capture: Callable[..., Capture], tmp_path: Path) -> None:
    path = tmp_path / f"unique-{secrets.token_hex(6)}"
    path.write_text("x")
    cap = capture({"openat", "open", "close"})
    opener(path, PRIME)
    events = drain(cap, lambda evs: len(named(evs, "close", path)) >= PRIME)
    opens = named(events, "openat", path)
    assert len(opens) == PRIME
    assert len(named(events, "close", path)) == PRIME
    # Python opens with O_CLOEXEC (PEP 446)
    assert {e.args["flags"] for e in opens} == {"O_RDONLY|O_CLOEXEC"} and all(e.res >= 0 for e in opens)
    assert len({e.proc.pid for e in opens}) == 1 and opens[0].proc.name == "python"
    assert cap.stats()["drops"] == 0


def test_the_kernel_filter_keeps_the_opens_rules_want_and_drops_the_rest(capture: Callable[..., Capture],
                                                                          tmp_path: Path) -> None:
    wanted = tmp_path / "wanted"
    other = tmp_path / "other"
    for p in (wanted, other):
        p.write_text("x")
    # Only reads of `wanted` and writes anywhere below tmp_path interest the rules.
    cap = capture({"openat", "close"}, predicates=wanting(
        tmp_path, f"evt.type = openat and fd.name = {wanted} and evt.is_open_read = true",
        f"evt.type = openat and fd.name startswith {tmp_path}/ and evt.is_open_write = true"))
    opener(wanted, PRIME)
    opener(other, PRIME)
    opener(other, 7, os.O_WRONLY)
    events = drain(cap, lambda evs: len(named(evs, "openat", other)) >= 7)
    assert len(named(events, "openat", wanted)) == PRIME
    assert len(named(events, "close", wanted)) == PRIME
    kept = named(events, "openat", other)
    assert len(kept) == 7 and {e.args["flags"] for e in kept} == {"O_WRONLY|O_CLOEXEC"}
    assert len(named(events, "close", other)) == 7                 # closes of filtered fds stay in the kernel
    assert cap.stats()["filtered"] >= 2 * PRIME


def test_closes_are_not_captured_unless_a_rule_names_them(capture: Callable[..., Capture],
                                                          tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    cap = capture({"openat"})
    opener(path, PRIME)
    events = drain(cap, lambda evs: len(named(evs, "openat", path)) >= PRIME)
    assert len(named(events, "openat", path)) == PRIME
    assert not [e for e in events if e.type == "close"]


def test_a_reused_descriptor_number_is_not_taken_for_the_closed_file(capture: Callable[..., Capture],
                                                                     tmp_path: Path) -> None:
    # close is not captured and the second open is filtered in the kernel, so user space still
    # holds `wanted` under that number: the dup and fchmod of it must not be reported as `wanted`.
    wanted, other = tmp_path / "wanted", tmp_path / "other"
    for p in (wanted, other):
        p.write_text("x")
    cap = capture({"openat", "fchmod"}, predicates=wanting(
        tmp_path, f"evt.type = openat and fd.name = {wanted} and evt.is_open_read = true"))
    code = (f"import os\nfd = os.open({str(wanted)!r}, os.O_RDONLY)\nos.close(fd)\n"
            f"fd2 = os.open({str(other)!r}, os.O_RDONLY)\nassert fd2 == fd\n"
            "d = os.dup2(fd2, 20)\nos.fchmod(fd2, 0o644)\nos.fchmod(d, 0o644)\nprint(os.getpid(), d)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    pid, d = map(int, out.stdout.split())
    events = drain(cap, lambda evs: len([e for e in evs if e.type == "fchmod"]) >= 2)
    assert len(named(events, "openat", wanted)) == 1 and not named(events, "openat", other)
    dup = [e for e in events if e.type.startswith("dup") and e.proc.pid == pid and e.res == d]
    chmods = [e for e in events if e.type == "fchmod" and e.proc.pid == pid]
    assert len(dup) == 1 and len(chmods) == 2
    for e in dup + chmods:
        assert e.fd is not None and e.fd.name != str(wanted) and e.fd.type == "file"
    # the same file, as the kernel saw it, on both numbers
    assert chmods[0].fd.ino == chmods[1].fd.ino == other.stat().st_ino


def test_a_reused_socket_number_is_not_taken_for_the_closed_socket(capture: Callable[..., Capture],
                                                                          tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("x")
    cap = capture({"socket", "connect", "openat"}, predicates=wanting(
        tmp_path, "evt.type = openat and fd.name = /nothing-wanted"))
    code = ("import ctypes, os, socket, struct\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.connect(('127.0.0.1', 9))\n"
            f"n = s.fileno()\ns.close()\nfd = os.open({str(other)!r}, os.O_RDONLY)\nassert fd == n\n"
            "addr = struct.pack('<HH4s8x', socket.AF_INET, socket.htons(9), socket.inet_aton('127.0.0.1'))\n"
            "assert ctypes.CDLL(None, use_errno=True).connect(fd, addr, len(addr)) == -1\n"
            "print(os.getpid())")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    pid = int(out.stdout)
    events = drain(cap, lambda evs: len([e for e in evs if e.type == "connect" and e.proc.pid == pid]) >= 2)
    first, second = [e for e in events if e.type == "connect" and e.proc.pid == pid]
    assert first.res == 0 and first.fd is not None and first.fd.name.endswith("->127.0.0.1:9")
    assert second.res == -88                                  # ENOTSOCK: a file now has that number
    assert second.fd is None or second.fd.type not in ("ipv4", "ipv6")


def test_only_lexically_normal_paths_are_judged_in_the_kernel(capture: Callable[..., Capture],
                                                              tmp_path: Path) -> None:
    # A rule sees the normalized path, so "." and ".." components, "//" and a trailing '/' must
    # reach user space; a dotfile is an ordinary name and is filtered like any other.
    secret = tmp_path / "secret"
    (tmp_path / "sub").mkdir()
    for name in ("secret", ".hidden", "..dots"):
        (tmp_path / name).write_text("x")
    cap = capture({"openat"}, predicates=wanting(
        tmp_path, f"evt.type = openat and fd.name = {secret} and evt.is_open_read = true"))
    kept = [f"{tmp_path}/./secret", f"{tmp_path}/sub/../secret", f"{tmp_path}//secret", f"{tmp_path}/secret/"]
    dropped = [f"{tmp_path}/.hidden", f"{tmp_path}/..dots"]
    code = ("import os\nfor p in " + repr(kept + dropped) + ":\n"
            "    try: os.close(os.open(p, os.O_RDONLY))\n"
            "    except OSError: pass\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    events = drain(cap, lambda evs: {e.rawargs.get("name") for e in evs} >= set(kept))
    names = [e.rawargs.get("name") for e in events if e.type == "openat"]
    assert sorted(n for n in names if n in kept + dropped) == sorted(kept)
    # the three that open the secret (the trailing '/' fails with ENOTDIR) resolve to its name
    assert [e.fd.name for e in events if e.rawargs.get("name") in kept and e.res >= 0] == [str(secret)] * 3


@pytest.mark.parametrize("held", [0, 100])
def test_relative_opens_resolve_without_the_directory_open(capture: Callable[..., Capture], tmp_path: Path,
                                                           held: int) -> None:
    # open(dir) without O_DIRECTORY, then openat(dirfd, ...) and fchdir: the rules want only the
    # secret, and the directory open does not leave the kernel; the events that use the directory
    # fd carry its path, read from the kernel's dentries, so the secret's path is still whole. The
    # probe reads a small fd table (FDSize 64: files_struct's own array) and a grown one in two
    # different ways. The work runs in a fork of a fresh interpreter: a child's table is sized by
    # the parent's highest open fd, and the test runner's is above 64.
    secret = tmp_path / "secret"
    secret.write_text("x")
    cap = capture({"openat"}, predicates=wanting(
        tmp_path, f"evt.type = openat and fd.name = {secret} and evt.is_open_read = true"))
    code = ("import os, re\nif os.fork() == 0:\n"
            f"    held = [os.open('/dev/null', os.O_RDONLY) for _ in range({held})]\n"
            "    size = int(re.search(r'FDSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            f"    d = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
            "    os.close(os.open('secret', os.O_RDONLY, dir_fd=d))\n"
            "    os.fchdir(d)\n    os.close(os.open('secret', os.O_RDONLY))\n"
            "    print(size, flush=True)\n    os._exit(0)\nos.wait()")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert (int(out.stdout) > 64) == (held > 64)
    events = drain(cap, lambda evs: len(named(evs, "openat", secret)) >= 2)
    found = named(events, "openat", secret)
    assert len(found) == 2
    assert [e.rawargs["name"] for e in found] == ["secret", "secret"]
    assert found[1].proc.cwd == str(tmp_path)
    pid = found[0].proc.pid
    assert not [e for e in events if e.type == "openat" and e.proc.pid == pid
                and e.rawargs.get("name") == str(tmp_path)]             # the directory open stayed out


def _controlling_tty(slave: int) -> Callable[[], None]:
    def setup() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        Path("/proc/self/loginuid").write_text("4242")
    return setup


def test_processes_match_proc(capture: Callable[..., Capture], tmp_path: Path) -> None:
    cap = capture({"execve"})
    master, slave = os.openpty()
    child = subprocess.Popen(["sleep", "7.5"], cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave,
                             preexec_fn=_controlling_tty(slave), env={"CAPTURE_TEST": "yes"})
    try:
        drain(cap, lambda _: child.pid in cap.table.procs and cap.table.procs[child.pid].name == "sleep",
              timeout=30)
        assert child.pid in cap.table.procs, cap.stats()
        p = cap.table.procs[child.pid]
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2:].split()
        assert (p.name, p.exe, p.args) == ("sleep", "sleep", ["7.5"])
        assert p.ppid == int(fields[1]) == os.getpid() and p.parent is cap.table.procs[os.getpid()]
        assert os.path.basename(p.exepath) == "sleep"
        assert os.path.realpath(p.exepath) == os.readlink(f"/proc/{child.pid}/exe")
        assert p.cwd == os.readlink(f"/proc/{child.pid}/cwd") == str(tmp_path)
        assert p.loginuid == int(Path(f"/proc/{child.pid}/loginuid").read_text()) == 4242
        assert p.tty == int(fields[4]) != 0
        assert p.sid == int(fields[3]) == child.pid and p.vpgid == int(fields[2])
        assert p.vpid == child.pid and p.env == ["CAPTURE_TEST=yes"]
        assert abs(p.start_ns - (boot_epoch_ns() + int(fields[19]) * NS_PER_TICK)) <= 2 * NS_PER_TICK
        assert (p.uid, p.euid) == (os.getuid(), os.geteuid())
        assert p.container.id == "host"
    finally:
        child.kill()
        child.wait()
        os.close(master)
        os.close(slave)
    drain(cap, lambda _: child.pid not in cap.table.procs)
    assert child.pid not in cap.table.procs


def test_a_container_cgroup_is_named_even_after_it_is_gone(capture: Callable[..., Capture]) -> None:
    from sensor.generate import FakeContainer

    c = FakeContainer("docker")           # a real cgroup v2 directory with Docker's layout
    cap = capture({"openat"})
    marker = f"/etc/hostname-{c.id[:8]}"
    try:
        subprocess.run(["sh", "-c", f"cat /etc/hostname {marker} 2>/dev/null; true"], check=True,
                       preexec_fn=lambda: (c.path / "cgroup.procs").write_text(str(os.getpid())))
    finally:
        c.remove()                         # gone before user space looks at the events
    events = drain(cap, lambda evs: any(e.fd is not None and e.fd.name == marker for e in evs))
    mine = [e for e in events if e.fd is not None and e.fd.name == marker]
    assert len(mine) == 1 and mine[0].res == -2
    got = mine[0].proc.container
    assert (got.id, got.full_id, got.type) == (c.id, c.full_id, "docker")
    assert mine[0].proc.name == "cat" and mine[0].proc.parent.name == "sh"


def test_every_record_the_ring_could_not_take_is_counted(capture: Callable[..., Capture], tmp_path: Path) -> None:
    path = tmp_path / "flood"
    path.write_text("x")
    cap = capture({"openat"}, ringbuf_bytes=64 * 1024)
    opener(path, 20_000)                      # ~40,000 records into a ring that holds a few hundred
    drain(cap, lambda _: True, settle=0.5)
    cap.stop()                                # the counters stop moving: other processes open files too
    stats = cap.stats()
    assert stats["drops"] > 0
    per_cpu = stats["drops_by_cpu"]
    assert sum(per_cpu) == stats["drops_ring"]      # type: ignore[arg-type]
    assert stats["drops"] == (stats["drops_ring"] + stats["drops_regs"] + stats["drops_budget"]
                              + stats["drops_state"] + stats["drops_stage"])
    assert stats["records"] + stats["unread"] == stats["kernel_records"]   # what the kernel wrote, we read
