"""Rules-engine throughput on one core: a realistic synthetic syscall mix through every bundled
rule plus Falco's official stable rules, as live (structured) events and as replayed (recorded) ones.

Prints events/s and the per-event cost, and beside them a baseline measured in the same run: the
same events through a ruleset with no rules (event dispatch alone). Goal: 250,000 events/s or more
(Falco's published per-core figure).

    .venv/bin/python bench/engine.py [--events 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensor.engine.fields.record import record_fields  # noqa: E402
from sensor.engine.loader import load_rules  # noqa: E402
from sensor.engine.ruleset import Ruleset  # noqa: E402
from sensor.event import Container, Fd, Process, RecordedEvent, SyscallEvent  # noqa: E402

COMPAT = ROOT.parent / "shared" / "compat" / "falco_rules.yaml"

# (evt.type, weight): what a busy node's capture hands the engine once it only attaches to what the
# rules need (opens dominate; exec, network and file changes are rarer).
MIX = [("openat", 40), ("close", 14), ("execve", 5), ("clone", 4), ("connect", 9), ("accept4", 5),
       ("socket", 6), ("sendto", 3), ("unlink", 3), ("unlinkat", 2), ("renameat2", 2), ("dup2", 3),
       ("setuid", 1), ("ptrace", 1), ("mkdirat", 2)]

PROCS = [  # name, exepath, args, parent name
    ("nginx", "/usr/sbin/nginx", ["-g", "daemon off;"], "containerd-shim"),
    ("python3", "/usr/bin/python3.11", ["app.py", "--port", "8000"], "bash"),
    ("node", "/usr/local/bin/node", ["server.js"], "npm"),
    ("java", "/usr/lib/jvm/java-17/bin/java", ["-jar", "app.jar"], "bash"),
    ("postgres", "/usr/lib/postgresql/15/bin/postgres", ["-D", "/var/lib/postgresql"], "postgres"),
    ("sshd", "/usr/sbin/sshd", ["-D"], "systemd"),
    ("cron", "/usr/sbin/cron", ["-f"], "systemd"),
    ("bash", "/usr/bin/bash", ["-c", "ls -l /tmp"], "sshd"),
    ("kubelet", "/usr/bin/kubelet", ["--config=/var/lib/kubelet/config.yaml"], "systemd"),
    ("containerd", "/usr/bin/containerd", [], "systemd"),
    ("ls", "/usr/bin/ls", ["-l", "/tmp"], "bash"),
    ("cat", "/usr/bin/cat", ["/etc/hosts"], "bash"),
]
PATHS = ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/ld.so.cache", "/proc/self/stat", "/etc/hosts",
         "/var/log/nginx/access.log", "/tmp/tmp8a7sd/data.json", "/usr/share/zoneinfo/UTC", "/etc/passwd",
         "/var/lib/postgresql/15/main/base/16384/2619", "/dev/null", "/sys/fs/cgroup/cpu.max",
         "/home/app/.cache/pip/http/1/2/3", "/etc/nsswitch.conf", "/usr/lib/python3.11/os.py"]

WRITE_PATHS = ["/tmp/tmp8a7sd/data.json", "/var/log/nginx/access.log", "/var/lib/postgresql/15/main/pg_wal/000001",
               "/home/app/.cache/pip/http/1/2/3", "/dev/null", "/run/app/app.pid"]


def build_events(n: int, seed: int = 7) -> list[SyscallEvent]:
    rnd = random.Random(seed)
    containers = [Container()] * 3 + [
        Container(id=f"{i:012x}", full_id=f"{i:064x}", type="containerd", name=f"app-{i}",
                  image="registry.example/app:1.2", image_repository="registry.example/app", image_tag="1.2",
                  pod_name=f"app-{i}-7d9f", pod_namespace="default", pod_uid=f"uid-{i}")
        for i in range(1, 5)]
    systemd = Process(pid=1, name="systemd", exe="/sbin/init", exepath="/usr/lib/systemd/systemd")
    procs = []
    for i, (name, exe, args, pname) in enumerate(PROCS * 4):
        parent = Process(pid=1000 + i, ppid=1, name=pname, exe=pname, exepath=f"/usr/bin/{pname}",
                         parent=systemd, uid=0)
        p = Process(pid=2000 + i, ppid=parent.pid, name=name, exe=exe.rsplit("/", 1)[-1], exepath=exe, args=args,
                    cwd="/srv", uid=rnd.choice([0, 33, 1000]), gid=0, loginuid=-1, parent=parent,
                    container=rnd.choice(containers), start_ns=1_700_000_000_000_000_000)
        procs.append(p)
    types = [t for t, w in MIX for _ in range(w)]
    out = []
    for k in range(n):
        t = rnd.choice(types)
        p = rnd.choice(procs)
        ev = SyscallEvent(type=t, time_ns=1_700_000_000_000_000_000 + k * 1000, num=k + 1, proc=p, tid=p.pid, res=0)
        if t == "openat":
            write = rnd.random() < 0.2
            path = "/etc/shadow" if k % 5000 == 0 else rnd.choice(WRITE_PATHS if write else PATHS)
            ev.fd = Fd(num=rnd.randint(3, 60), type="file", name=path, flags=(0o1101 if write else 0o2000000))
            ev.args = {"fd": ev.fd.num, "dirfd": -100, "name": path,
                       "flags": "O_WRONLY|O_CREAT|O_APPEND" if write else "O_RDONLY|O_CLOEXEC", "mode": 0o644}
            ev.res = ev.fd.num
        elif t in ("connect", "accept4", "sendto"):
            port = rnd.choice([443, 443, 80, 5432, 6379, 53, 8080])
            ev.fd = Fd(num=rnd.randint(3, 60), type="ipv4", l4proto="tcp", sockfamily="ip",
                       cip="10.0.0.5", cport=rnd.randint(30000, 60000), sip=f"10.96.{rnd.randint(0, 9)}.10", sport=port,
                       local_is_server=(t == "accept4"), connected=True)
            ev.fd.name = f"{ev.fd.cip}:{ev.fd.cport}->{ev.fd.sip}:{ev.fd.sport}"
            ev.args = {"fd": ev.fd.num, "addr": f"{ev.fd.sip}:{ev.fd.sport}"}
        elif t in ("unlink", "unlinkat"):
            ev.args = {"name": rnd.choice(["/tmp/x.lock", "/home/app/.cache/a", "/var/log/app.log.9.gz"])}
            ev.args["path"] = ev.args["name"]
        elif t == "renameat2":
            ev.args = {"oldpath": "/tmp/a.tmp", "newpath": "/tmp/a"}
        elif t == "execve":
            ev.args = {"filename": p.exepath}
        elif t == "ptrace":
            ev.args = {"request": "PTRACE_PEEKDATA", "pid": 1}
        out.append(ev)
    return out


def run(rs: Ruleset, events: list, rounds: int) -> tuple[float, int]:
    process = rs.process
    for e in events[:2000]:       # warm up: generate the per-type matchers
        process(e)
    gc.collect()
    gc.disable()
    alerts = 0
    t0 = time.perf_counter()
    for _ in range(rounds):
        for e in events:
            if process(e):
                alerts += 1
    dt = time.perf_counter() - t0
    gc.enable()
    return dt, alerts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events evaluated per mode")
    ap.add_argument("--quick", action="store_true", help="100,000 events (a smoke run)")
    a = ap.parse_args()
    total = 100_000 if a.quick else a.events
    unique = min(total, 50_000)
    rounds = max(1, total // unique)
    files = [ROOT / "rules" / "falconet_rules.yaml"]
    if COMPAT.exists():
        files.append(COMPAT)
    rs = load_rules(files)
    empty = Ruleset([])
    live = build_events(unique)
    recorded = [RecordedEvent("syscall", record_fields(e), e.num) for e in live]
    n = unique * rounds
    print(f"rules: {len(rs.rules)} enabled ({', '.join(f.name for f in files)}); events: {n:,} "
          f"({unique:,} distinct x {rounds})")
    print(f"{'mode':<10} {'events/s':>12} {'us/event':>9} {'baseline ev/s':>14} {'x baseline':>10} {'alerts':>7}")
    for label, evs in (("live", live), ("replay", recorded)):
        dt, alerts = run(rs, evs, rounds)
        bdt, _ = run(empty, evs, rounds)
        print(f"{label:<10} {n / dt:>12,.0f} {dt / n * 1e6:>9.2f} {n / bdt:>14,.0f} {dt / bdt:>10.2f} {alerts:>7}")


if __name__ == "__main__":
    main()
