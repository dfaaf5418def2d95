"""sensor/capture/kfilter.py: the rules' predicates as the probe's tables.

The property test is the filter's contract: for records as the probe writes them, decoded by the
real decoder and matched by the real rules, every record a rule matches is one the probe keeps (the
probe's decision modelled in tests/capture/kmodel.py from the same tables). Falco's official rule
files and the bundled ones are the rules.
"""

from __future__ import annotations

import os
import random
import socket
import struct
from pathlib import Path

import pytest
from conftest import compat_file

from capture.kmodel import Kernel, Model, record
from sensor.capture import kfilter, render
from sensor.capture.containers import ContainerResolver
from sensor.capture.decoder import Decoder
from sensor.capture.procstate import ProcessTable
from sensor.capture.syscalls import BY_NAME, select
from sensor.engine import load_rules
from sensor.engine.kernel_filter import derive, to_data

ROOT = Path(__file__).resolve().parents[2]
CID = "c0ffee" * 10 + "abcd"


def tables_for(*files: Path) -> tuple[kfilter.Tables, object]:
    rs = load_rules(list(files))
    selected, _ = select(rs.event_types("syscall"))
    preds = {t: to_data(p) for t, p in derive(rs).items()}
    return kfilter.build(selected, preds), rs


def test_the_automaton_finds_what_a_search_finds() -> None:
    rng = random.Random(7)
    patterns = [(b"../", "contains", 1), (b"id_rsa", "contains", 2), (b"/.ssh/", "contains", 4),
                (b"release_agent", "suffix", 8), (b"/auth.log", "suffix", 16), (b"ssh", "contains", 32)]
    rows, any_bits, end_bits = kfilter.aho_corasick(patterns)
    alphabet = b"/._ahsidrelotgu"
    for _ in range(3000):
        s = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        state, bits = 0, 0
        for c in s:
            bits |= any_bits[state]
            state = rows[state][c]
        bits |= any_bits[state] | end_bits[state]
        want = 0
        for p, kind, bit in patterns:
            if (kind == "contains" and p in s) or (kind == "suffix" and s.endswith(p)):
                want |= bit
        assert bits == want, s


def test_trie_entries_carry_the_sets_of_shorter_prefixes_and_the_first_two_table_agrees() -> None:
    from sensor.capture.loader import first_two_table

    tables, _ = tables_for(compat_file("falco_rules.yaml"), ROOT / "rules" / "falconet_rules.yaml")
    entries = tables.path_entries()
    assert entries[b"/etc/shadow\0"] & entries[b"/etc/"]          # /etc/shadow is also below /etc/
    first2 = first_two_table(list(entries))
    for key in entries:
        # a string the key matches, with its NUL, as the probe reads it; under 3 bytes the probe
        # skips the table
        probe = key if key.endswith(b"\0") else key + b"x\0"
        if len(probe) < 3:
            continue
        c1, c2 = probe[1], probe[2]
        assert first2[c1][c2 >> 6] >> (c2 & 63) & 1, key


def test_with_the_stable_rules_sendto_is_not_attached_and_each_syscall_says_what_it_keeps() -> None:
    tables, _ = tables_for(compat_file("falco_rules.yaml"))
    assert {"sendto", "sendmsg"} <= set(tables.detached)
    assert tables.described["sendto"] == ["nothing: no rule can match it, so it is not attached"]
    assert tables.described["chdir"] == ["every event (the process and fd state need it)"]
    assert any("fd.nameraw (contains '../')" in t for t in tables.described["openat"])
    assert tables.specs["openat"]["kf_count"] == 5


def test_a_term_the_probe_cannot_read_keeps_every_event(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("- rule: r\n  desc: t\n  condition: evt.type = sendto and proc.pname = bash\n"
                 "  output: x\n  priority: Debug\n")
    tables, _ = tables_for(f)
    assert tables.specs["sendto"]["kf_mode"] == 0 and "sendto" not in tables.detached


def test_off_and_unfiltered_keep_every_event() -> None:
    rs = load_rules([compat_file("falco_rules.yaml")])
    selected, _ = select(rs.event_types("syscall"))
    preds = {t: to_data(p) for t, p in derive(rs).items()}
    off = kfilter.build(selected, preds, enabled=False)
    assert not off.detached and all(s["kf_mode"] == 0 for s in off.specs.values())
    some = kfilter.build(selected, preds, unfiltered=("openat",))
    assert some.specs["openat"]["kf_mode"] == 0 and some.specs["open"]["kf_mode"] == 1


# -- the contract, on records through the real decoder ---------------------------------------------

PATHS = [b"/etc/shadow", b"/etc/sudoers.d/x", b"/etc/pam.d/login", b"/etc/passwd", b"/etc/../etc/shadow",
         b"/var/log/auth.log", b"/var/log/x/syslog", b"/home/u/.ssh/id_rsa", b"/root/.ssh/authorized_keys",
         b"../../etc/shadow", b"x/release_agent", b"/sys/fs/cgroup/x/release_agent", b"/proc/1/environ",
         b"/dev/mem", b"/usr/bin/ls", b"/bin/sh", b"/etc/cron.d/job", b"/home/u/.bash_history", b"/tmp/file",
         b"/", b"shadow", b"/dev/sda1", b"/etc//shadow", b"/usr/lib/liblzma.so.5.6.1", b"/etc/ld.so.preload",
         b"/root/.ssh", b"/etc", b"/etc/pam.d"]
COMMS = [b"cat", b"bash", b"sshd", b"python3", b"nginx", b"tar", b"docker", b"systemd", b"ssh", b"sudo",
         b"runc", b"kubelet", b"ls", b"logrotate", b"dpkg", b"scp", b"<NA>"]
V4 = ["127.0.0.1", "10.1.2.3", "192.168.1.9", "8.8.8.8", "169.254.169.254", "0.0.0.0", "172.20.0.1", "1.2.3.4"]
V6 = ["::1", "2001:db8::1", "::ffff:8.8.8.8", "::ffff:127.0.0.1", "::"]
PORTS = [0, 22, 53, 80, 443, 4444, 6443, 8080, 5000, 123]
OPEN_FLAGS = [os.O_RDONLY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.O_RDWR, os.O_WRONLY | os.O_APPEND,
              os.O_RDONLY | os.O_CLOEXEC, os.O_WRONLY | os.O_TRUNC, os.O_RDONLY | 0o200000, os.O_WRONLY | 3]
IMODES = [0o100644, 0o040755, 0o010600, 0o140777, 0o020666]
TYPES = ["open", "openat", "openat2", "creat", "connect", "sendto", "sendmsg", "recvfrom", "accept4", "bind",
         "listen", "socket", "dup2", "dup3", "link", "linkat", "symlink", "symlinkat", "ptrace", "mkdir",
         "rename", "unlink", "chmod", "fchmod", "setuid", "setns", "unshare", "bpf", "execve", "userfaultfd"]


def _addr(text: str) -> tuple[int, bytes]:
    if ":" in text:
        return 10, socket.inet_pton(socket.AF_INET6, text)
    return 2, socket.inet_aton(text)


def _sockaddr(fam: int, raw: bytes, port: int) -> bytes:
    if fam == 2:
        return struct.pack("<H", 2) + struct.pack(">H", port) + raw[:4] + b"\0" * 8
    return struct.pack("<H", 10) + struct.pack(">H", port) + b"\0" * 4 + raw[:16] + b"\0" * 4


def _kernel(rng: random.Random, sc_name: str) -> Kernel:
    sc = BY_NAME[sc_name]
    res = rng.choice((0, 1, 2, 3, 5, -2, -13, -115, -111))
    args = [rng.choice((0, 3, 5, -100 & 0xFFFFFFFF)) for _ in range(6)]
    k = Kernel(res=res, args=tuple(args), comm=rng.choice(COMMS), euid=rng.choice((0, 1000)),
               imode=rng.choice(IMODES))
    if sc.open_flags_arg >= 0 or sc_name == "creat":
        flags = rng.choice(OPEN_FLAGS)
        if sc.open_flags_arg >= 0:
            args[sc.open_flags_arg] = flags
        k.how_flags = flags
        if sc_name == "openat2":
            k.sockaddr = struct.pack("<QQQ", flags, 0o644, 0)
    if sc.sockfd or sc_name.startswith("dup"):
        fam = rng.choice((2, 2, 10, 1, 16))
        pool = V4 if fam == 2 else V6
        stype, proto = rng.choice(((1, 6), (2, 17), (1, 0), (2, 0), (3, 255), (2, 1)))
        if sc_name == "socket":
            args[0], args[1], args[2] = fam, stype | rng.choice((0, 0o2000000)), proto
        elif rng.random() < 0.9:
            k.sock = (fam, stype, proto)
            if fam in (2, 10):
                l_ = _addr(rng.choice(pool))
                r_ = _addr(rng.choice(pool))
                k.local = (l_[0], l_[1], rng.choice(PORTS))
                k.remote = (r_[0], r_[1], rng.choice(PORTS))
                if rng.random() < 0.5 and sc.addr[2]:
                    a = _addr(rng.choice(pool))
                    k.sockaddr = _sockaddr(a[0], a[1], rng.choice(PORTS))
    strs = []
    for _ in sc.strings:
        strs.append(rng.choice(PATHS))
    k.strings = tuple(strs)
    k.args = tuple(args)
    return k


def test_every_record_a_rule_matches_is_one_the_probe_keeps(tmp_path: Path) -> None:
    files = [compat_file(n) for n in ("falco_rules.yaml", "falco-incubating_rules.yaml",
                                      "falco-sandbox_rules.yaml")] + [ROOT / "rules" / "falconet_rules.yaml"]
    tables, rs = tables_for(*files)
    model = Model(tables)
    root = tmp_path / "cgroup"
    (root / "user.slice").mkdir(parents=True)
    (root / "system.slice" / f"docker-{CID}.scope").mkdir(parents=True)
    host_cg, docker_cg = (os.stat(root / p).st_ino for p in ("user.slice", f"system.slice/docker-{CID}.scope"))
    table = ProcessTable(ContainerResolver(root=root), boot_ns=0)
    dec = Decoder(table)
    rng = random.Random(23)
    matched = kept = total = 0
    for i in range(6000):
        name = rng.choice(TYPES)
        sc = BY_NAME[name]
        k = _kernel(rng, name)
        in_container = rng.random() < 0.4
        k.host = not in_container
        tgid = 4_000_000 + i % 50                     # no such pids: the table makes them from the record
        dec.events = []
        view = record(sc, k, tgid=tgid, cgroup=docker_cg if in_container else host_cg)
        assert dec.handle(view, 0, len(view))
        events = [e for e in dec.events if e.type == name]
        if not events:
            continue
        ev = events[0]
        alerts = rs.process(ev)
        keep = model.keeps(sc, k)
        if alerts and not keep:
            pytest.fail(f"{name} {k} matches {alerts[0].rule!r} but the probe would drop it")
        total += 1
        matched += bool(alerts)
        kept += keep
    assert matched > 40, matched              # the records do reach rules
    assert kept < total * 0.8, (kept, total)  # and the probe does drop some


def test_the_flags_the_probe_tests_are_the_ones_the_rules_read() -> None:
    # evt.arg.flags names -> the bits that make the renderer print them
    for name, bits in kfilter._FLAG_BITS.items():
        assert name in render.open_flags(bits | os.O_WRONLY).split("|"), name
    for name in kfilter._SINGLE_BIT:
        bits = kfilter._FLAG_BITS[name]
        assert bits & (bits - 1) == 0, name
