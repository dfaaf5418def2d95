"""What the sensor costs the workloads it watches, measured in one run with and without it.

`falconet run` with the bundled rules runs as a separate process, as in production; each workload
runs in a child process. micro and macro run in cycles: without the sensor, with it, with it and
the raw sys_enter hook (syscall.unimplemented_syscalls=capture), and without it again; a ratio
compares a run with the sensor to the mean of the runs without on either side, each run is the
best of two (other load only ever slows a run down), and the median over five cycles is
reported, since this VM's speed drifts by several percent within a minute.
Needs root and eBPF.

- micro: a tight open+close loop (Python, os.open/os.close of one file, O_RDONLY); goal <= 1.35x
  with zero drops.
- macro: redis-benchmark (SET and GET) against a local redis-server; goal <= 1.05x.
- rate: the highest event rate sustained for 30 s with zero drops: paced open(O_WRONLY) calls that
  fail, one event each, all of which reach the rules (the bundled rules keep every write open in
  the kernel); goal >= 50,000/s.
- memory: the sensor's RSS with the bundled rules, and with Falco's official syscall rules added
  (the project's compatibility corpus, when it is beside the checkout), after the workloads;
  goal <= 100 MiB.

    .venv/bin/python bench/overhead.py            # the full run, several minutes
    .venv/bin/python bench/overhead.py --quick    # a smoke run; figures are not meaningful
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FALCONET = str(Path(sys.executable).with_name("falconet"))
BUNDLED = ROOT / "rules" / "falconet_rules.yaml"
COMPAT = ROOT.parent / "shared" / "compat"
PROBE_RULE = "Falconet bench probe"
GOALS = {"micro": 1.35, "macro": 1.05, "rate": 50_000, "rss_mib": 100}


class Sensor:
    """`falconet run` in the background with a probe rule that tells when capture is attached."""

    def __init__(self, workdir: Path, rules: list[Path], *overrides: str) -> None:
        self.probe = workdir / "probe"
        self.probe.write_text("probe\n")
        probe_rules = workdir / "probe_rules.yaml"
        probe_rules.write_text(f"""
- rule: {PROBE_RULE}
  desc: The benchmark opened its probe file.
  condition: evt.type in (open, openat, openat2) and evt.dir = < and fd.name = {self.probe}
  output: probe (pid=%proc.pid)
  priority: Debug
""")
        argv = [FALCONET, "run", "-o", "json_output=true", "-o", "webserver.enabled=false"]
        for r in [*rules, probe_rules]:
            argv += ["-r", str(r)]
        for o in overrides:
            argv += ["-o", o]
        self.out = open(workdir / "alerts.jsonl", "w+")      # closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.PIPE, text=True)
        self.stderr = ""

    def _probes(self) -> int:
        with open(self.out.name) as f:
            return f.read().count(PROBE_RULE)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until an open of the probe file comes back as an alert: the capture is attached."""
        self.barrier(timeout)

    def barrier(self, timeout: float = 120.0) -> None:
        """Until the sensor has matched every event before now (the ring is first in, first out)."""
        seen = self._probes()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sensor exited: {self.proc.communicate()[1][-2000:]}")
            self.probe.read_text()
            time.sleep(0.2)
            if self._probes() > seen:
                return
        raise RuntimeError("the sensor did not catch up in time")

    def rss_mib(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the sensor process in MiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024        # type: ignore[union-attr]
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024        # type: ignore[union-attr]
        return rss, hwm

    def __enter__(self) -> Sensor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:          # an error on the way: never leave a sensor behind
            self.proc.kill()
            self.proc.wait()
            self.out.close()

    def stop(self) -> dict[str, int]:
        """Stop it; its summary: events processed and events dropped."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, self.stderr = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
        self.out.close()
        m = re.search(r"events processed: (\d+); drops: (\d+) events", self.stderr)
        if m is None:
            raise RuntimeError(f"no summary from the sensor: {self.stderr[-2000:]}")
        return {"events": int(m.group(1)), "drops": int(m.group(2))}


def micro(path: Path, iterations: int) -> float:
    """Seconds for `iterations` open+close of one file, in a child process."""
    code = ("import os, time\n"
            f"p = {str(path)!r}\n"
            "t = time.perf_counter()\n"
            f"for _ in range({iterations}):\n"
            "    os.close(os.open(p, os.O_RDONLY))\n"
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def bench(self, requests: int) -> float:
        """Requests per second, SET and GET averaged."""
        out = subprocess.run(["redis-benchmark", "-p", str(self.port), "-q", "-n", str(requests), "-c", "50",
                              "-t", "set,get"], capture_output=True, text=True, check=True)
        rates = [float(x) for x in re.findall(r"([\d.]+) requests per second", out.stdout)]
        if len(rates) != 2:
            raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout!r}")
        return statistics.mean(rates)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def paced(path: Path, rate: int, seconds: float) -> float:
    """Run failing open(O_WRONLY) calls at `rate` per second; the rate achieved.

    One call is one event: it fails (ENOENT), so no fd and no close follows, and every one of them
    reaches the rules (the bundled rules keep every write open in the kernel).
    """
    per_tick = max(1, rate // 100)          # calls per 10 ms
    code = ("import os, time\n"
            f"p, n, end = {str(path / 'missing' / 'file')!r}, {per_tick}, time.monotonic() + {seconds}\n"
            "done, t0 = 0, time.monotonic()\n"
            "nxt = t0\n"
            "while True:\n"
            "    now = time.monotonic()\n"
            "    if now >= end: break\n"
            "    if now < nxt: time.sleep(nxt - now); continue\n"
            "    for _ in range(n):\n"
            "        try: os.open(p, os.O_WRONLY)\n"
            "        except OSError: pass\n"
            "    done += n\n"
            "    nxt += 0.01\n"
            "print(done / (time.monotonic() - t0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and short runs (a smoke test)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object at the end")
    ap.add_argument("--rate-seconds", type=float, default=30.0, help="duration of each rate step")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/overhead.py needs root (it attaches the sensor)", file=sys.stderr)
        return 2
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install redis-server redis-tools)", file=sys.stderr)
            return 2
    quick = args.quick
    iterations = 20_000 if quick else 300_000
    requests = 20_000 if quick else 300_000
    rate_seconds = 2.0 if quick else args.rate_seconds
    repeat = 1 if quick else 2
    n_cycles = 1 if quick else 5
    rates = [5_000, 10_000] if quick else [50_000, 75_000, 100_000, 110_000, 120_000, 130_000]
    result: dict[str, Any] = {"quick": quick}
    with tempfile.TemporaryDirectory(prefix="falconet-bench-") as tmp:
        work = Path(tmp)
        target = work / "file"
        target.write_text("x")
        redis = Redis(work)
        cycles: list[dict[str, Any]] = []
        try:
            # micro and macro in cycles of without / with / with the raw hook, then once more
            # without at the end; each figure the best of `repeat` runs (other load on the host
            # only ever slows a run down), each ratio against the mean of the runs without on
            # either side of it, and the median over the cycles reported: this VM's speed drifts.
            def best_micro() -> float:
                return min(micro(target, iterations) for _ in range(repeat))

            def best_macro() -> float:
                return max(redis.bench(requests) for _ in range(repeat))

            def with_sensor(*overrides: str) -> tuple[float, float, dict[str, int], tuple[float, float]]:
                with Sensor(work, [BUNDLED], *overrides) as sensor:
                    sensor.wait_ready()
                    m, r = best_micro(), best_macro()
                    rss = sensor.rss_mib()
                    return m, r, sensor.stop(), rss

            base = (best_micro(), best_macro())
            for _ in range(n_cycles):
                m, r, summary, (rss, hwm) = with_sensor()
                m2, r2, summary2, _ = with_sensor("syscall.unimplemented_syscalls=capture")
                after = (best_micro(), best_macro())
                bm, br = (base[0] + after[0]) / 2, (base[1] + after[1]) / 2
                cycles.append({"baseline_s": bm, "sensor_s": m, "micro": m / bm, "drops": summary["drops"],
                               "baseline_rps": br, "sensor_rps": r, "macro": br / r,
                               "micro_raw_hook": m2 / bm, "macro_raw_hook": br / r2,
                               "drops_raw_hook": summary2["drops"]})
                base = after
        finally:
            redis.stop()

        def med(key: str) -> float:
            return statistics.median(c[key] for c in cycles)

        drops = sum(c["drops"] + c["drops_raw_hook"] for c in cycles)
        result["micro"] = {"iterations": iterations, "ratio": med("micro"), "drops": drops, "goal": GOALS["micro"],
                           "ratio_raw_hook": med("micro_raw_hook")}
        result["macro"] = {"requests": requests, "ratio": med("macro"), "goal": GOALS["macro"],
                           "ratio_raw_hook": med("macro_raw_hook")}
        result["cycles"] = cycles
        for i, c in enumerate(cycles):
            print(f"cycle {i + 1}: micro baseline {c['baseline_s']:.3f} s, with sensor {c['sensor_s']:.3f} s "
                  f"-> {c['micro']:.3f}x; macro baseline {c['baseline_rps']:,.0f} req/s, with sensor "
                  f"{c['sensor_rps']:,.0f} req/s -> {c['macro']:.3f}x; with the raw hook "
                  f"{c['micro_raw_hook']:.3f}x / {c['macro_raw_hook']:.3f}x")
        print(f"micro (open+close x{iterations}, median of {len(cycles)}): {med('micro'):.3f}x "
              f"(goal <= {GOALS['micro']}x), drops {drops}")
        print(f"macro (redis-benchmark SET/GET x{requests}, median of {len(cycles)}): {med('macro'):.3f}x "
              f"(goal <= {GOALS['macro']}x)")
        print(f"  with the raw sys_enter hook (syscall.unimplemented_syscalls=capture): micro "
              f"{med('micro_raw_hook'):.3f}x, macro {med('macro_raw_hook'):.3f}x")
        result["rss_mib"] = {"bundled": rss, "bundled_peak": hwm, "goal": GOALS["rss_mib"]}
        print(f"memory: sensor RSS {rss:.1f} MiB (peak {hwm:.1f} MiB) with the bundled rules, after the "
              f"workloads (goal <= {GOALS['rss_mib']} MiB)")
        compat = [COMPAT / n for n in ("falco_rules.yaml", "falco-incubating_rules.yaml",
                                       "falco-sandbox_rules.yaml")]
        if not quick and all(p.exists() for p in compat):
            with Sensor(work, [BUNDLED, *compat]) as sensor:
                sensor.wait_ready()
                time.sleep(3)
                rss_all, hwm_all = sensor.rss_mib()
                sensor.stop()
            result["rss_mib"].update({"all": rss_all, "all_peak": hwm_all})
            print(f"memory: sensor RSS {rss_all:.1f} MiB (peak {hwm_all:.1f} MiB) with the bundled rules and "
                  f"Falco's official syscall rules")
        # the event rate: one sensor per step, so that each step's drops are its own
        best = 0.0
        steps = []
        for rate in rates:
            with Sensor(work, [BUNDLED]) as sensor:
                sensor.wait_ready()
                achieved = paced(target, rate, rate_seconds)
                sensor.barrier()
                s = sensor.stop()
            ok = s["drops"] == 0 and achieved >= 0.95 * rate
            steps.append({"target": rate, "achieved": achieved, "drops": s["drops"], "events": s["events"],
                          "ok": ok})
            print(f"rate: {rate:,}/s asked, {achieved:,.0f}/s made for {rate_seconds:.0f} s, "
                  f"{s['events']:,} events processed, {s['drops']:,} dropped -> {'ok' if ok else 'no'}")
            if not ok:
                break
            best = achieved
        result["rate"] = {"seconds": rate_seconds, "best_zero_drop": best, "steps": steps, "goal": GOALS["rate"]}
        print(f"rate: highest sustained with zero drops {best:,.0f} events/s over {rate_seconds:.0f} s "
              f"(goal >= {GOALS['rate']:,}/s)")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
