"""The worker: submit never blocks, limits hold, every outcome and every drop is on the record."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from sensor.alert import Priority
from sensor.response.spec import parse_actions
from sensor.response.worker import ResponseWorker

from .helpers import Records, alert, dead_within, event_fields, response_settings


def worker_for(tmp_path, actions: str, records: Records, dry_run: bool = False, capacity: int = 1000,
               exclude=("kube-system",)) -> ResponseWorker:
    settings = response_settings(tmp_path, "response:\n  enabled: true\n  actions:\n" + actions)
    w = ResponseWorker(parse_actions(settings), records, dry_run=dry_run, capacity=capacity,
                       exclude_namespaces=exclude, hostname="testhost")
    w.start()
    return w


KILL = """
    - name: kill-shadow-readers
      match: {rules: ["Read sensitive file*"], priority: Warning}
      do: kill_process
      cooldown: {cooldown}
      max_per_minute: {max}
"""


def kill_action(cooldown: str = "0s", max_per_minute: int = 60) -> str:
    return KILL.replace("{cooldown}", cooldown).replace("{max}", str(max_per_minute))


def test_kills_and_records_with_the_alerts_uuid(tmp_path, spawn):
    records = Records()
    w = worker_for(tmp_path, kill_action(), records)
    p = spawn()
    a = alert(event_fields(p.pid))
    w.submit(a)
    (rec,) = records.wait(1)
    assert dead_within(p)
    w.stop()
    assert rec.source == "internal" and rec.rule == "Falconet internal: response"
    assert rec.uuid != a.uuid
    assert rec.extra["falconet"]["response"]["alert_id"] == a.uuid
    assert rec.extra["falconet"]["response"]["action"] == "kill-shadow-readers"
    assert rec.extra["event"] == {"kind": "event", "category": ["process"], "type": ["end"],
                                  "outcome": "success", "action": "kill-shadow-readers"}
    assert rec.hostname == "testhost"
    assert w.stats()["done"] == 1


def test_alerts_that_do_not_match_are_ignored(tmp_path, spawn):
    records = Records()
    w = worker_for(tmp_path, kill_action(), records)
    p = spawn()
    w.submit(alert(event_fields(p.pid), rule="Terminal shell in container"))
    w.submit(alert(event_fields(p.pid), priority="Notice"))
    w.stop()
    assert records.items == []
    assert not dead_within(p, 0.1)
    assert w.stats()["queued"] == 0


def test_cooldown_holds_per_target(tmp_path, spawn):
    records = Records()
    w = worker_for(tmp_path, kill_action(cooldown="1m"), records, dry_run=True)
    p, q = spawn(), spawn()
    fp, fq = event_fields(p.pid), event_fields(q.pid)
    for fields in (fp, fp, fq, fp):
        w.submit(alert(fields))
    w.stop()
    assert records.reasons() == ["dry_run", "cooldown", "dry_run", "cooldown"]
    assert "cooldown left" in records.items[1].output


def test_rate_limit_holds_and_spares_the_process(tmp_path, spawn):
    records = Records()
    w = worker_for(tmp_path, kill_action(max_per_minute=2), records)
    procs = [spawn() for _ in range(3)]
    alerts = [alert(event_fields(p.pid)) for p in procs]
    for a in alerts:
        w.submit(a)
    w.stop()
    assert records.reasons() == ["done", "done", "rate_limit"]
    assert dead_within(procs[0]) and dead_within(procs[1])
    assert not dead_within(procs[2], 0.2)
    assert records.items[2].extra["falconet"]["response"]["alert_id"] == alerts[2].uuid


def test_excluded_namespace_spares_the_process(tmp_path, spawn):
    records = Records()
    w = worker_for(tmp_path, kill_action(), records)
    p = spawn()
    w.submit(alert(event_fields(p.pid, **{"k8s.ns.name": "kube-system"})))
    w.stop()
    assert records.reasons() == ["excluded_namespace"]
    assert not dead_within(p, 0.2)


SLOW = """
    - name: slow-hook
      match: {rules: ["*"]}
      do: program
      with: {command: "sleep 0.3"}
"""


def test_submit_never_blocks_and_counts_what_it_drops(tmp_path):
    records = Records()
    w = worker_for(tmp_path, SLOW, records, capacity=2)
    started = time.perf_counter()
    for _ in range(50):
        w.submit(alert({"proc.pid": 1}))
    assert time.perf_counter() - started < 0.05
    w.stop(timeout=5)
    stats = w.stats()
    # One runs at once, two wait; the rest are dropped, counted and reported.
    assert stats["drops"] >= 47 - 1
    assert stats["done"] + stats["drops"] == 50
    drops = [r for r in records.items if r.extra["falconet"]["response"]["reason"] == "queue_full"]
    assert sum(int(r.output.split("dropped ")[1].split()[0]) for r in drops) == stats["drops"]
    assert drops[0].extra["falconet"]["response"]["alert_id"] is None


def test_stop_records_what_it_could_not_finish(tmp_path):
    records = Records()
    w = worker_for(tmp_path, SLOW, records, capacity=10)
    for _ in range(5):
        w.submit(alert({"proc.pid": 1}))
    w.stop(timeout=0.1)
    time.sleep(0.5)     # the one that was running when stop gave up finishes and is recorded
    stats = w.stats()
    assert stats["done"] + stats["drops"] == 5
    assert stats["drops"] >= 3
    stopped = [r for r in records.items if r.extra["falconet"]["response"]["reason"] == "stopped"]
    assert len(stopped) == 1
    assert "not yet acted on" in stopped[0].output


def test_each_action_has_its_own_lane(tmp_path, spawn):
    """A slow webhook does not delay a kill."""
    records = Records()
    w = worker_for(tmp_path, SLOW.replace("0.3", "1") + kill_action(), records)
    p = spawn()
    w.submit(alert(event_fields(p.pid)))
    started = time.monotonic()
    assert dead_within(p, 0.5)
    assert time.monotonic() - started < 0.5
    w.stop(timeout=5)
    assert sorted(records.reasons()) == ["done", "done"]


def test_response_records_never_trigger_actions(tmp_path):
    records = Records()
    w = worker_for(tmp_path, SLOW.replace("0.3", "0"), records)
    w.submit(alert({"proc.pid": 1}))
    records.wait(1)
    w.submit(records.items[0])
    w.stop()
    assert len(records.items) == 1


def test_a_failing_sink_is_counted_not_raised(tmp_path, spawn):
    def sink(_):
        raise RuntimeError("outputs are gone")

    settings = response_settings(tmp_path, "response:\n  enabled: true\n  actions:\n" + kill_action())
    w = ResponseWorker(parse_actions(settings), sink)
    w.start()
    p = spawn()
    w.submit(alert(event_fields(p.pid)))
    assert dead_within(p)
    w.stop()
    assert w.stats()["record_errors"] == 1


@pytest.mark.parametrize("enabled", [False, True])
def test_build_follows_response_enabled(tmp_path, enabled):
    from sensor.response.build import build_response

    settings = response_settings(tmp_path, f"response:\n  enabled: {str(enabled).lower()}\n  actions:\n"
                                 + kill_action())
    w = build_response(settings, Records())
    try:
        assert (w is not None) == enabled
    finally:
        if w is not None:
            w.stop()


def test_program_gets_the_alert_json(tmp_path):
    import json

    out = tmp_path / "got.json"
    records = Records()
    w = worker_for(tmp_path, SLOW.replace("sleep 0.3", f"cat > {out}"), records)
    a = alert({"proc.pid": 1, "proc.name": "cat"})
    w.submit(a)
    w.stop()
    got = json.loads(out.read_text())
    assert got["uuid"] == a.uuid and got["rule"] == a.rule
    assert got["output_fields"] == {"proc.pid": 1, "proc.name": "cat"}


def test_describe_for_the_dry_run(tmp_path):
    from sensor.response.build import describe_response

    settings = response_settings(tmp_path, "response:\n  enabled: true\n  dry_run: true\n  actions:\n"
                                 + kill_action(cooldown="30s"))
    assert describe_response(settings) == [
        "Response: 1 action(s) (dry run: record only)",
        "Response action kill-shadow-readers: kill_process on rules ['Read sensitive file*'], "
        f"priority >= Warning; cooldown 30s, max 60/min ({tmp_path}/falconet.yaml:6)"]
    off = response_settings(tmp_path, "response:\n  enabled: false\n")
    assert describe_response(off) == ["Response: off"]


def test_a_condition_that_raises_is_counted_and_the_engine_goes_on(tmp_path):
    from sensor.response.match import AlertMatch
    from sensor.response.spec import ActionSpec

    def broken(event):
        raise KeyError("proc.aname")

    spec = ActionSpec("k", "kill_process", AlertMatch(sources=frozenset({"syscall"}),
                                                      conditions={"syscall": broken}),
                      {"signal": "KILL", "tree": False}, 0.0, 0, "test")
    records = Records()
    w = ResponseWorker([spec], records)
    w.start()
    w.submit(alert({"proc.pid": 1}))
    w.stop()
    assert w.stats()["match_errors"] == 1
    assert records.items == []


# ---------------------------------------------------------------------------------------------
# Decoys cannot use up a kill action's budget (issue 14, finding 10)
# ---------------------------------------------------------------------------------------------

def _cgroup2_mount() -> Path | None:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2" and os.access(fields[1], os.W_OK):
            return Path(fields[1])
    return None


@pytest.fixture
def decoy_cgroup(spawn):
    """A cgroup of its own (cgroup v2) to move processes into; removed when they are gone."""
    mount = _cgroup2_mount()
    if os.geteuid() != 0 or mount is None:
        pytest.skip("needs root and a writable cgroup2 hierarchy")
    path = mount / f"falconet-test-decoys-{os.getpid()}"
    path.mkdir()
    moved: list[int] = []

    def move(pid: int) -> None:
        (path / "cgroup.procs").write_text(str(pid))
        moved.append(pid)

    yield move
    for pid in moved:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            path.rmdir()
            break
        except OSError:
            time.sleep(0.05)


def test_decoys_in_one_cgroup_cannot_spend_the_real_readers_kill_and_withholding_is_loud(
        tmp_path, spawn, decoy_cgroup):
    records = Records()
    w = worker_for(tmp_path, kill_action(max_per_minute=5), records)
    decoys = [spawn() for _ in range(8)]
    for p in decoys:
        decoy_cgroup(p.pid)
    real = spawn()                                   # the real reader, in the test's own cgroup
    for p in [*decoys, real]:
        w.submit(alert(event_fields(p.pid)))
    w.stop()
    assert records.reasons() == ["done"] * 5 + ["rate_limit"] * 3 + ["done"]
    assert dead_within(real)
    withheld = records.items[5:8]
    assert all(r.priority == Priority.CRITICAL for r in withheld)
    assert all(r.output.startswith("Falconet response WITHHELD: action kill-shadow-readers") for r in withheld)
    assert f"falconet-test-decoys-{os.getpid()}" in withheld[0].output
    assert "was not acted on" in withheld[0].output
