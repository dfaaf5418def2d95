"""sensor/engine/kernel_filter.py: conditions in, the predicate the kernel may test out.

Fixture pairs (tests/engine/data/kernel_filter.yaml) pin the derivation; the property test checks
the one promise that matters, on Falco's official rules: every event a rule matches satisfies the
predicate of its type, so nothing a rule could match is ever dropped.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import compat_file

from sensor.engine import kernel_filter as kf
from sensor.engine import load_rules
from sensor.engine.kernel_filter import Flags, IntSet, Names, Nets, Predicate, Strs
from sensor.event import Fd, Process, SyscallEvent

DATA = Path(__file__).parent / "data" / "kernel_filter.yaml"
CASES = yaml.safe_load(DATA.read_text())
ROOT = Path(__file__).resolve().parents[2]


def rules_file(tmp_path: Path, *conditions: str) -> Path:
    f = tmp_path / "rules.yaml"
    f.write_text("".join(f"- rule: r{i}\n  desc: t\n  condition: {json.dumps(c)}\n  output: x\n  priority: Debug\n"
                         for i, c in enumerate(conditions)))
    return f


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture(case: dict[str, Any], tmp_path: Path) -> None:
    cond = case["condition"]
    if "evt.type" not in cond:
        cond = f"evt.type = {case['type']} and ({cond})"
    rs = load_rules([rules_file(tmp_path, cond)])
    pred = kf.derive(rs).get(case["type"], kf.Predicate(()))
    if case["expect"] == "every event":
        assert pred.keeps_all, pred.text()
    else:
        assert pred.terms is not None, "expected terms, got every event"
        assert [t.text() for t in pred.terms] == case["expect"]


def test_several_rules_are_one_disjunction(tmp_path: Path) -> None:
    rs = load_rules([rules_file(tmp_path, "evt.type = openat and fd.name = /a",
                                "evt.type in (openat, connect) and proc.name = nc")])
    preds = kf.derive(rs)
    assert [t.text() for t in preds["openat"].terms or ()] == ["fd.name is '/a'", "proc.name in (nc)"]
    assert [t.text() for t in preds["connect"].terms or ()] == ["proc.name in (nc)"]


def test_a_rule_of_any_type_leaves_no_predicate(tmp_path: Path) -> None:
    rs = load_rules([rules_file(tmp_path, "proc.name = nc")])
    assert kf.derive(rs) == {}


def test_plain_data_for_the_sources() -> None:
    t = kf.Term.of(**{"evt.rawres": IntSet.of((0, 2)), "fd.type": Names.of("ipv4"),
                      "fd.sip": Nets(None, frozenset({ipaddress.ip_network("10.0.0.0/8")})),
                      "evt.arg.flags": Flags(frozenset({"O_WRONLY"}), frozenset({"O_TRUNC"})),
                      "fd.name": Strs(frozenset({kf.Str(prefix="/etc/")}))})
    data = kf.to_data(Predicate((t,)))
    assert data == [{
        "evt.arg.flags": {"kind": "flags", "access": ["O_WRONLY"], "all": ["O_TRUNC"], "none": []},
        "evt.rawres": {"kind": "ints", "spans": [[0, 2]]},
        "fd.name": {"kind": "strs", "alternatives": [{"exact": None, "prefix": "/etc/", "suffix": "", "contains": []}]},
        "fd.sip": {"kind": "nets", "only": None, "without": ["10.0.0.0/8"]},
        "fd.type": {"kind": "names", "only": ["ipv4"], "without": []},
    }]
    assert kf.to_data(kf.ALL) is None


def test_set_algebra() -> None:
    a = IntSet.of((0, 10), (20, 30))
    assert a.intersect(IntSet.of((5, 25))) == IntSet.of((5, 10), (20, 25))
    assert a.complement().complement() == a and 15 in a.complement()
    assert Names.of("a", "b").intersect(Names(None, frozenset({"b"}))) == Names.of("a")
    assert Names.of("a").union(Names(None, frozenset({"a", "c"}))) == Names(None, frozenset({"c"}))
    n8 = ipaddress.ip_network("10.0.0.0/8")
    n16 = ipaddress.ip_network("10.1.0.0/16")
    assert Nets(frozenset({n8})).intersect(Nets(frozenset({n16}))) == Nets(frozenset({n16}))
    # outside 10/8 or inside 10.1/16: only the parts of 10/8 away from 10.1/16 can be excluded, none here
    assert Nets(None, frozenset({n8})).union(Nets(frozenset({n16}))) == Nets()


# -- soundness on Falco's rules: what a rule matches, the predicate keeps --------------------------


def holds(pred: Predicate, ev: SyscallEvent) -> bool:
    """The predicate evaluated on an event's own values, as a source that reads every fact would:
    a fact the event has no value for passes."""
    if pred.terms is None:
        return True
    return any(all(_fact_ok(k, c, ev) for k, c in t.facts) for t in pred.terms)


def _fact_ok(fact: str, c: Any, ev: SyscallEvent) -> bool:
    if fact == "evt.arg.flags":
        names = set(str(ev.args.get("flags", "")).split("|"))
        acc = next((n for n in ("O_RDONLY", "O_WRONLY", "O_RDWR") if n in names), "O_ACCMODE")
        return (c.access is None or acc in c.access) and c.all <= names and not (c.none & names)
    if fact.startswith("evt.arg."):
        v = ev.value("evt.arg", fact[8:])
    else:
        v = ev.value(fact)
    if v is None:
        return True
    if isinstance(c, IntSet):
        return int(v) in c
    if isinstance(c, Names):
        return c.allows(str(v))
    if isinstance(c, Strs):
        return any(a.matches(str(v)) for a in c.alternatives)
    if isinstance(c, Nets):
        ip = ipaddress.ip_address(v)
        inside = lambda nets: any(ip.version == n.version and ip in n for n in nets)  # noqa: E731
        return (c.only is None or inside(c.only)) and not inside(c.without)
    raise TypeError(c)


PATHS = ["/etc/shadow", "/etc/sudoers.d/x", "/etc/pam.d/login", "/etc/passwd", "/etc/../etc/shadow",
         "/var/log/auth.log", "/var/log/x/syslog", "/home/u/.ssh/id_rsa", "/root/.ssh/authorized_keys",
         "/tmp/x/../../etc/hosts", "/sys/fs/cgroup/x/release_agent", "/proc/1/environ", "/dev/mem",
         "/usr/bin/ls", "/bin/sh", "/etc/cron.d/job", "/home/u/.bash_history", "/tmp/file", "/",
         "/dev/sda", "/etc/ld.so.preload", "/usr/lib/liblzma.so.5.6.1", "/root/.aws/credentials"]
NAMES = ["cat", "bash", "sshd", "python3", "nginx", "tar", "docker", "systemd", "vi", "nc", "ssh", "sudo",
         "runc", "kubelet", "ls", "node", "<NA>"]
ADDRS = ["127.0.0.1", "10.1.2.3", "192.168.1.9", "8.8.8.8", "169.254.169.254", "0.0.0.0", "172.20.0.1",
         "::1", "2001:db8::1"]
OPEN_FLAGS = ["O_RDONLY", "O_WRONLY|O_CREAT|O_TRUNC", "O_RDWR", "O_WRONLY|O_APPEND", "O_RDONLY|O_CLOEXEC",
              "O_WRONLY|O_TRUNC|O_F_CREATED"]


def _events(rng: random.Random, container: Any) -> list[SyscallEvent]:
    out = []
    for i in range(4000):
        name = rng.choice(NAMES)
        p = Process(pid=100 + i, name=name, exe=name, exepath=f"/usr/bin/{name}", euid=rng.choice((0, 1000)),
                    container=rng.choice((container, Process(pid=1).container)))
        p.parent = Process(pid=1, name=rng.choice(NAMES))
        etype = rng.choice(["openat", "open", "openat2", "connect", "sendto", "accept4", "dup2", "creat",
                            "link", "symlink", "ptrace", "mkdir", "rename", "unlink", "execve", "chmod",
                            "setuid", "socket", "listen"])
        res = rng.choice((0, 1, 2, 3, 7, -2, -13, -115, -111))
        ev = SyscallEvent(type=etype, time_ns=1, num=1, proc=p, tid=p.pid, res=res)
        path = rng.choice(PATHS)
        if etype in ("openat", "open", "openat2", "creat"):
            raw = path if rng.random() < 0.8 else rng.choice(["../" + path.lstrip("/"), "x/../" + path])
            ev.fd = Fd(num=res if res >= 0 else -1, type=rng.choice(("file", "file", "directory")), name=path,
                       nameraw=raw)
            ev.args = {"fd": res, "name": path, "flags": rng.choice(OPEN_FLAGS), "mode": "0755"}
            ev.rawargs = {"name": raw}
        elif etype in ("connect", "sendto", "accept4", "dup2", "socket", "listen"):
            local, remote = rng.choice(ADDRS), rng.choice(ADDRS)
            ftype = "ipv6" if ":" in local else "ipv4"
            if ":" in local != (":" in remote):
                remote = local
            server = etype in ("accept4", "listen")
            cip, sip = (remote, local) if server else (local, remote)
            ev.fd = Fd(num=3, type=rng.choice((ftype, ftype, "unix", "pipe")), name=f"{cip}:1->{sip}:2",
                       l4proto=rng.choice(("tcp", "udp")), cip=cip, sip=sip, cport=rng.choice((22, 53, 4444, 5000)),
                       sport=rng.choice((22, 53, 80, 443, 6443, 8080)), local_is_server=server,
                       connected=rng.random() < 0.5, name_changed=rng.random() < 0.5)
            if ev.fd.type not in ("ipv4", "ipv6"):
                ev.fd.cip = ev.fd.sip = None
            ev.args = {"domain": rng.choice(("AF_INET", "AF_PACKET", "AF_UNIX")), "request": "PTRACE_ATTACH"}
        else:
            ev.args = {"oldpath": path, "newpath": rng.choice(PATHS), "target": rng.choice([*PATHS, "/etc"]),
                       "path": path, "name": path, "filename": path, "request": rng.choice(
                           ("PTRACE_ATTACH", "PTRACE_TRACEME", "PTRACE_PEEKDATA")), "mode": "S_ISUID|S_IXUSR",
                       "uid": rng.choice((0, 1000))}
        out.append(ev)
    return out


def test_every_event_a_rule_matches_satisfies_its_predicate() -> None:
    from sensor.event import Container

    files = [compat_file(n) for n in ("falco_rules.yaml", "falco-incubating_rules.yaml",
                                      "falco-sandbox_rules.yaml")] + [ROOT / "rules" / "falconet_rules.yaml"]
    rs = load_rules(files)
    preds = kf.derive(rs)
    rng = random.Random(23)
    matched = kept = 0
    for ev in _events(rng, Container(id="a1b2c3d4e5f6", full_id="a1b2c3d4e5f6" * 5 + "abcd")):
        pred = preds.get(ev.type, kf.ALL)
        alerts = rs.process(ev)
        keep = holds(pred, ev)
        assert keep or not alerts, f"{ev.type} matched {alerts[0].rule} but the predicate drops it"
        matched += bool(alerts)
        kept += keep
    assert matched > 30                 # the events do reach rules
    assert kept < 3000                  # and the predicates do drop events


def test_errno_names_are_read_as_the_fields_print_them() -> None:
    # An errno with two names prints as one of them only: the other never equals evt.res.
    printed = errno.errorcode[errno.EAGAIN]
    other = "EWOULDBLOCK" if printed == "EAGAIN" else "EAGAIN"
    assert -errno.EAGAIN in kf._res_set("=", (printed,))[0]
    assert -errno.EAGAIN not in kf._res_set("=", (other,))[0]
    # a number prints only for a result errno has no name for: -1 is EPERM, so "!= -1" always holds
    assert kf._res_set("!=", ("-1",)) == (kf.INT_ALL, True)
    assert kf._res_set("=", ("-600",)) == (IntSet.point(-600), True)

