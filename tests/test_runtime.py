"""sensor/runtime.py: the engine loop, the sensor around it (reload, drops, metrics, webserver), and
`falconet run` (sensor/commands/run.py) without eBPF: fake sources, real rules, real outputs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sensor.alert import Priority
from sensor.engine import load_rules
from sensor.event import RecordedEvent
from sensor.runtime import RunOptions, Runtime, Sensor

ROOT = Path(__file__).resolve().parent.parent

RULES = """\
- rule: Shell spawned
  desc: a shell started
  condition: evt.type = execve and proc.name = bash
  output: Shell spawned (user=%user.name pid=%proc.pid)
  priority: Notice
  tags: [shell, mitre_execution]
- rule: Passwd read
  desc: someone read /etc/passwd
  condition: evt.type = openat and fd.name = /etc/passwd
  output: Passwd read (proc=%proc.name)
  priority: Warning
"""


def event(n: int, evt_type: str = "execve", name: str = "bash", **fields: Any) -> RecordedEvent:
    f = {"evt.type": evt_type, "proc.name": name, "proc.pid": n, "user.name": "root",
         "evt.rawtime": 1_709_296_496_000_000_000 + n, **fields}
    return RecordedEvent("syscall", f, n)


class ListSource:
    """A source that hands out prepared events, then idles (or finishes); its drops are settable."""

    def __init__(self, events: list[Any], name: str = "fake", finish: bool = True, batch: int = 10) -> None:
        self.name = name
        self.source = "syscall"
        self.events = list(events)
        self.finish = finish
        self.batch = batch
        self.drops = 0
        self.sent = 0
        self.started = self.stopped = 0
        self.lock = threading.Lock()

    def add(self, *events: Any) -> None:
        with self.lock:
            self.events.extend(events)

    def start(self) -> None:
        self.started += 1

    def poll(self, timeout: float) -> list[Any]:
        with self.lock:
            out, self.events = self.events[:self.batch], self.events[self.batch:]
        if not out:
            time.sleep(min(timeout, 0.05))
        self.sent += len(out)
        return out

    def stop(self) -> None:
        self.stopped += 1

    def stats(self) -> dict[str, int]:
        return {"events": self.sent, "drops": self.drops}

    @property
    def finished(self) -> bool:
        return self.finish and not self.events


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(RULES)
    return p


# -- Runtime ---------------------------------------------------------------------------------------


def test_runtime_runs_events_through_rules_into_the_sink(rules_file: Path) -> None:
    rs = load_rules([rules_file])
    got: list[Any] = []
    src = ListSource([event(1), event(2, "openat", "cat", **{"fd.name": "/etc/passwd"}), event(3, name="sh")])
    summary = Runtime(rs, [src], got.append).run()
    assert [a.rule for a in got] == ["Shell spawned", "Passwd read"]
    assert got[0].output == "Shell spawned (user=root pid=1)"
    assert (summary.events, summary.alerts) == (3, 2)
    assert summary.line().startswith("Events detected: 2; events processed: 3; drops: 0 events, 0 alerts")
    assert src.started == 1 and src.stopped == 1


def test_runtime_counts_events_by_type_and_matches_across_swaps(rules_file: Path) -> None:
    rs = load_rules([rules_file])
    src = ListSource([event(1), event(2), event(3, "openat", "cat", **{"fd.name": "/etc/passwd"})])
    rt = Runtime(rs, [src], lambda a: None)
    rt.run()
    assert rt.event_counts == {("syscall", "execve"): 2, ("syscall", "openat"): 1}
    rt.swap(ruleset=load_rules([rules_file]))
    src.add(event(4))
    src2 = ListSource([event(5)], name="other")
    rt.swap(sources=[src, src2])
    rt.run()
    assert src2.started == 1
    assert rt.matches() == {("Shell spawned", Priority.NOTICE, "syscall"): 4,
                            ("Passwd read", Priority.WARNING, "syscall"): 1}


def test_runtime_stops_on_duration(rules_file: Path) -> None:
    src = ListSource([], finish=False)
    started = time.monotonic()
    Runtime(load_rules([rules_file]), [src], lambda a: None).run(0.3)
    assert 0.25 <= time.monotonic() - started < 3


# -- Sensor ----------------------------------------------------------------------------------------


def options(tmp_path: Path, rules_file: Path, *overrides: str) -> RunOptions:
    return RunOptions(rules_files=[str(rules_file)],
                      overrides=["syscall.enabled=false", "stdout_output.enabled=false", "webserver.enabled=false",
                                 f"state_dir={tmp_path / 'state'}", "file_output.enabled=true",
                                 f"file_output.filename={tmp_path / 'alerts.jsonl'}", "json_output=true",
                                 *overrides])


def alerts_in(tmp_path: Path) -> list[dict[str, Any]]:
    p = tmp_path / "alerts.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def wait_for(pred: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_sensor_runs_to_the_outputs(tmp_path: Path, rules_file: Path) -> None:
    src = ListSource([event(i) for i in range(5)])
    sensor = Sensor(options(tmp_path, rules_file), make_sources=lambda cfg, rs: [src])
    summary = sensor.run(install_signals=False)
    got = alerts_in(tmp_path)
    assert [a["output_fields"]["proc.pid"] for a in got] == [0, 1, 2, 3, 4]
    assert got[0]["rule"] == "Shell spawned" and got[0]["tags"] == ["mitre_execution", "shell"]
    assert summary.outputs["channels"]["file"]["sent"] == 5
    assert summary.alerts == 5


def test_event_drops_become_internal_alerts(tmp_path: Path, rules_file: Path) -> None:
    src = ListSource([event(1)], finish=False)
    sensor = Sensor(options(tmp_path, rules_file, "event_drops.interval=1h"), make_sources=lambda c, r: [src])
    sensor.start()
    th = threading.Thread(target=sensor.run, kwargs={"install_signals": False})
    th.start()
    try:
        src.drops = 17
        assert wait_for(lambda: any(a["source"] == "internal" for a in alerts_in(tmp_path)), 10)
        src.drops = 20                          # within the interval: reported at exit
    finally:
        sensor.stop()
        th.join(10)
    drops = [a for a in alerts_in(tmp_path) if a["source"] == "internal"]
    assert [a["rule"] for a in drops] == ["Falconet internal: syscall event drop"] * 2
    assert drops[0]["priority"] == "Critical"
    assert drops[0]["output_fields"]["n_drops"] == 17 and drops[1]["output_fields"]["n_drops"] == 3
    assert drops[0]["output"].endswith("17 syscall events dropped by fake since the last report (17 in total); "
                                       "rules did not see them")


def test_reload_keeps_old_rules_on_error_then_swaps(tmp_path: Path, rules_file: Path) -> None:
    src = ListSource([], finish=False)
    sensor = Sensor(options(tmp_path, rules_file), make_sources=lambda c, r: [src])
    sensor.start()
    th = threading.Thread(target=sensor.run, kwargs={"install_signals": False})
    th.start()
    rt = sensor.runtime
    assert rt is not None
    try:
        rules_file.write_text(RULES + "- rule: Broken\n  desc: x\n  condition: proc.name =\n  output: x\n"
                              "  priority: Notice\n")
        rt.request_reload()
        assert wait_for(lambda: sensor.reload_failures == 1)
        src.add(event(1))
        assert wait_for(lambda: any(a["rule"] == "Shell spawned" for a in alerts_in(tmp_path)))
        rules_file.write_text(RULES.replace("proc.name = bash", "proc.name = zsh"))
        rt.request_reload()
        assert wait_for(lambda: sensor.reloads == 1)
        src.add(event(2), event(3, name="zsh"))
        assert wait_for(lambda: len([a for a in alerts_in(tmp_path) if a["rule"] == "Shell spawned"]) == 2)
    finally:
        sensor.stop()
        th.join(10)
    got = alerts_in(tmp_path)
    failed = next(a for a in got if a["rule"] == "Falconet internal: rules reload failed")
    assert failed["priority"] == "Critical"
    error = failed["output_fields"]["falconet.reload.error"]
    assert f"{rules_file}:" in error and "LOAD_ERR_COMPILE_CONDITION: unexpected end of condition" in error
    assert failed["output"].endswith(": Critical Reloading configuration and rules failed; still running the "
                                     f"previous ones: {error}")
    assert [a["output_fields"]["proc.pid"] for a in got if a["rule"] == "Shell spawned"] == [1, 3]
    assert any(a["rule"] == "Falconet internal: rules reloaded" for a in got)
    assert src.started == 1                 # the event types did not change: the source kept running


def test_reload_rebuilds_exactly_the_parts_whose_settings_changed(tmp_path: Path, rules_file: Path) -> None:
    conf = tmp_path / "falconet.yaml"
    conf.write_text("flood_control:\n  window: 30s\n")
    opts = options(tmp_path, rules_file)
    opts.config_path = str(conf)
    made: list[Any] = []

    def make_sources(settings: Any, ruleset: Any) -> list[Any]:
        made.append(settings)
        return [ListSource([], finish=False)]

    sensor = Sensor(opts, make_sources=make_sources)
    sensor.start()
    try:
        first_outputs = sensor.outputs
        # The same values written otherwise, and rules that changed: nothing is rebuilt.
        conf.write_text("# moved\nflood_control: {window: 30s}\n")
        rules_file.write_text(RULES.replace("proc.name = bash", "proc.name = zsh"))
        sensor.reload()
        assert (sensor.reloads, len(made), sensor.outputs) == (1, 1, first_outputs)
        # An output setting: the outputs, and only they.
        conf.write_text("flood_control: {window: 45s}\n")
        sensor.reload()
        assert sensor.outputs is not first_outputs and len(made) == 1
        second_outputs = sensor.outputs
        # A source setting: the sources, and only they.
        conf.write_text(f"flood_control: {{window: 45s}}\nk8s_audit: {{files: [{tmp_path}/audit.log]}}\n")
        sensor.reload()
        assert len(made) == 2 and made[1].k8s_audit.files == (f"{tmp_path}/audit.log",)
        assert sensor.outputs is second_outputs and sensor.reloads == 3
    finally:
        sensor.close()


def test_webserver_health_and_metrics(tmp_path: Path, rules_file: Path) -> None:
    src = ListSource([event(1), event(2), event(3, "openat", "cat", **{"fd.name": "/etc/passwd"})], finish=False)
    sensor = Sensor(options(tmp_path, rules_file, "webserver.enabled=true", "webserver.listen_port=0",
                            "webserver.listen_address=127.0.0.1", "webserver.token=scrape"),
                    make_sources=lambda c, r: [src])
    sensor.start()
    src.drops = 4
    th = threading.Thread(target=sensor.run, kwargs={"install_signals": False})
    th.start()
    try:
        port = sensor.webserver.port
        assert wait_for(lambda: len(alerts_in(tmp_path)) >= 3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert (r.status, json.loads(r.read())) == (200, {"status": "ok"})
        # Per-rule metrics need the token (sensor/webserver.py).
        scrape = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer scrape"})
        with urllib.request.urlopen(scrape, timeout=10) as r:
            text = r.read().decode()
    finally:
        sensor.stop()
        th.join(10)
    lines = set(text.splitlines())
    assert 'falcosecurity_falco_rules_matches_total{priority="5",rule_name="Shell spawned",source="syscall"} 2.0' \
        in lines
    assert 'falcosecurity_falco_rules_matches_total{priority="4",rule_name="Passwd read",source="syscall"} 1.0' \
        in lines
    assert 'falconet_events_total{evt_type="execve",source="syscall"} 2.0' in lines
    assert 'falconet_events_total{evt_type="openat",source="syscall"} 1.0' in lines
    assert "falcosecurity_scap_n_drops_total 4.0" in lines
    assert "falcosecurity_scap_n_evts_total 3.0" in lines
    assert 'falconet_output_queue_depth{channel="file",store="memory"} 0.0' in lines
    assert "falcosecurity_falco_outputs_queue_num_drops_total 0.0" in lines
    assert any(line.startswith("falcosecurity_falco_version_info{version=") for line in lines)
    assert any(line.startswith('falconet_output_alerts_total{channel="file"}') for line in lines)


def test_metrics_snapshot_alerts(tmp_path: Path, rules_file: Path) -> None:
    src = ListSource([event(1)], finish=False)
    sensor = Sensor(options(tmp_path, rules_file, "metrics.enabled=true", "metrics.interval=1s",
                            f"metrics.output_file={tmp_path / 'metrics.jsonl'}"), make_sources=lambda c, r: [src])
    sensor.start()
    th = threading.Thread(target=sensor.run, kwargs={"install_signals": False})
    th.start()
    try:
        assert wait_for(lambda: any(a["rule"] == "Falconet internal: metrics snapshot" for a in alerts_in(tmp_path)))
    finally:
        sensor.stop()
        th.join(10)
    snap = next(a for a in alerts_in(tmp_path) if a["rule"] == "Falconet internal: metrics snapshot")
    assert snap["priority"] == "Informational" and snap["output"].endswith("Falconet metrics snapshot")
    assert snap["output_fields"]["falco.num_evts"] == 1 and snap["output_fields"]["scap.n_evts"] == 1
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert line["output_fields"]["falconet.num_alerts"] == 1


# -- falconet run ----------------------------------------------------------------------------------


def falconet(*args: str, timeout: float = 60, prefix: tuple[str, ...] = (), **kw: Any
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, str(ROOT / ".venv" / "bin" / "falconet"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def test_run_dry_run_prints_what_would_run(tmp_path: Path, rules_file: Path) -> None:
    audit_rules = tmp_path / "audit_rules.yaml"
    audit_rules.write_text("- rule: Secret read\n  desc: t\n  condition: ka.target.resource = secrets\n"
                           "  output: secret read by %ka.user.name\n  priority: Warning\n  source: k8s_audit\n")
    res = falconet("run", "--dry-run", "-r", str(rules_file), "-r", str(audit_rules), "-o", "syscall.enabled=false",
                   "-o", f"k8s_audit.files=[{tmp_path}/audit.log]", "-o", "fluent_output.enabled=true",
                   "-o", f"state_dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert f"Rules file: {rules_file}" in out
    assert "Rules: 3 enabled of 3 loaded, sources k8s_audit, syscall" in out
    assert f"Sources: k8s_audit file {tmp_path}/audit.log" in out
    assert "Output stdout: in-memory queue of 10000 alerts" in out
    assert f"Output fluent: spooled in {tmp_path}/spool/fluent (up to 1GiB)" in out
    assert not (tmp_path / "spool").exists()            # a dry run opens nothing


def test_run_exit_codes(tmp_path: Path, rules_file: Path) -> None:
    # Without root the syscall source cannot start: one sentence on stderr, exit code 4.
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups") if os.geteuid() == 0 else ()
    with tempfile.TemporaryDirectory() as public:        # readable by that user, unlike tmp_path
        os.chmod(public, 0o755)
        readable = Path(public, "rules.yaml")
        readable.write_text(RULES)
        readable.chmod(0o644)
        res = falconet("run", "-r", str(readable), "-o", "webserver.enabled=false", "-o", f"state_dir={public}",
                       "-M", "1", prefix=nobody)
    assert res.returncode == 4, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("falconet: error: ")
    assert "needs root" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: x\n  desc: x\n  condition: proc.name =\n  output: x\n  priority: Notice\n")
    res = falconet("run", "--dry-run", "-r", str(bad))
    assert res.returncode == 1 and "LOAD_ERR_COMPILE_CONDITION" in res.stderr
    res = falconet("run", "--dry-run", "-r", str(rules_file), "-o", "fluent_output.prot=1")
    assert res.returncode == 3 and "unknown configuration key 'fluent_output.prot'" in res.stderr
    res = falconet("run", "-r", str(rules_file), "-o", "syscall.enabled=false", "-o", "webserver.enabled=false",
                   "-M", "1")
    assert res.returncode == 3 and "no event source is enabled" in res.stderr


def test_webserver_tls_and_unhealthy(tmp_path: Path) -> None:
    import ssl

    from fakes.tls import make_tls_files

    from sensor.webserver import WebServer

    tls = make_tls_files(tmp_path / "tls")
    pem = tmp_path / "falconet.pem"
    pem.write_bytes(tls.server_cert.read_bytes() + tls.server_key.read_bytes())
    healthy = [True]
    web = WebServer("127.0.0.1", 0, healthy=lambda: healthy[0], tls_certificate=str(pem)).start()
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    try:
        url = f"https://127.0.0.1:{web.port}/healthz"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            assert r.status == 200
        healthy[0] = False
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, context=ctx, timeout=10)
        assert e.value.code == 503 and json.loads(e.value.read()) == {"status": "unhealthy"}
        with pytest.raises(urllib.error.HTTPError) as e:          # no collector: no /metrics
            urllib.request.urlopen(f"https://127.0.0.1:{web.port}/metrics", context=ctx, timeout=10)
        assert e.value.code == 404
    finally:
        web.stop()
    from sensor.errors import UnavailableError

    busy = WebServer("127.0.0.1", 0, healthy=lambda: True).start()
    try:
        with pytest.raises(UnavailableError, match=r"webserver: cannot listen on 127\.0\.0\.1:\d+"):
            WebServer("127.0.0.1", busy.port, healthy=lambda: True).start()
    finally:
        busy.stop()


def test_run_dry_run_checks_response_conditions_with_the_rules_macros(tmp_path: Path) -> None:
    # falconet_container is a macro of the bundled rules, which `run` loads by default
    cfg = tmp_path / "falconet.yaml"
    cfg.write_text("""
response:
  enabled: true
  actions:
    - name: kill-in-containers
      match: {sources: [syscall], condition: "falconet_container and proc.name = cat"}
      do: kill_process
""")
    res = falconet("run", "--dry-run", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    assert any(line.startswith("Response action kill-in-containers: kill_process on sources ['syscall'], "
                               "condition 'falconet_container and proc.name = cat'")
               for line in res.stdout.splitlines()), res.stdout
