"""kill_process safety, against real processes this test spawns and synthetic events about them."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sensor.response import procfs
from sensor.response.kill import START_TOLERANCE_NS, KillProcess, parse_signal
from sensor.response.records import Outcome
from sensor.response.target import Target

from .helpers import alert, dead_within, event_fields, wait_started

ROOT = os.geteuid() == 0


def act(fields: dict, dry_run: bool = False, **params) -> Outcome:
    action = KillProcess({"signal": params.get("signal", "KILL"), "tree": params.get("tree", False)})
    a = alert(fields)
    target = action.resolve(a)
    if isinstance(target, Outcome):
        return target
    assert isinstance(target, Target)
    return action.execute(a, target, dry_run)


def test_kills_the_alerts_process(spawn):
    p = spawn()
    out = act(event_fields(p.pid))
    assert (out.result, out.reason) == ("done", "done")
    assert dead_within(p)
    assert p.returncode == -signal.SIGKILL
    assert out.target == f"pid {p.pid} (sleep)"


def test_sends_the_configured_signal(spawn):
    p = spawn()
    out = act(event_fields(p.pid), signal="TERM")
    assert out.result == "done"
    assert dead_within(p)
    assert p.returncode == -signal.SIGTERM


def test_dry_run_leaves_the_process_alive(spawn):
    p = spawn()
    out = act(event_fields(p.pid), dry_run=True)
    assert (out.result, out.reason) == ("skipped", "dry_run")
    assert "would send SIGKILL" in out.text
    assert not dead_within(p, 0.2)


def test_start_time_mismatch_is_pid_reuse(spawn):
    p = spawn()
    fields = event_fields(p.pid)
    # The alert's process started 5 s before the one that now holds its PID.
    fields["proc.pid.ts"] -= 5_000_000_000
    out = act(fields)
    assert (out.result, out.reason) == ("skipped", "pid_reused")
    assert "+5.0" in out.text
    assert not dead_within(p, 0.2)


def test_start_time_within_two_ticks_is_the_same_process(spawn):
    p = spawn()
    fields = event_fields(p.pid)
    fields["proc.pid.ts"] += START_TOLERANCE_NS - 2_000_000   # the capture's rounding, still the same
    assert act(fields).result == "done"
    assert dead_within(p)


@pytest.mark.skipif(not ROOT, reason="needs root to steer the next PID through ns_last_pid")
def test_real_pid_reuse_kills_nothing(spawn):
    """The alert's process exits and a new process gets its PID: the newcomer survives."""
    first = spawn()
    fields = event_fields(first.pid)
    # Start times tell processes apart only beyond the capture's 2-tick precision: a PID that is
    # reused within 20 ms of its first process's start needs a PID wrap-around that fast.
    time.sleep(3 * START_TOLERANCE_NS / 1e9)
    first.kill()
    first.wait()
    second = None
    for _ in range(20):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(first.pid - 1))
        candidate = subprocess.Popen(["sleep", "60"])
        if candidate.pid == first.pid:
            second = candidate
            break
        candidate.kill()
        candidate.wait()
    if second is None:
        pytest.fail(f"could not get PID {first.pid} again (other processes raced for it 20 times)")
    try:
        wait_started(second.pid, "sleep")
        out = act(fields)
        assert (out.result, out.reason) == ("skipped", "pid_reused")
        assert not dead_within(second, 0.2)
    finally:
        second.kill()
        second.wait()


def test_exited_process_is_gone(spawn):
    p = spawn()
    fields = event_fields(p.pid)
    p.kill()
    p.wait()
    out = act(fields)
    assert (out.result, out.reason) == ("skipped", "process_gone")


def test_no_start_time_is_unverifiable(spawn):
    p = spawn()
    fields = event_fields(p.pid)
    del fields["proc.pid.ts"]
    out = act(fields)
    assert (out.result, out.reason) == ("skipped", "unverifiable")
    assert not dead_within(p, 0.2)


def test_no_pid_is_no_target():
    out = act({"proc.name": "cat"})
    assert (out.result, out.reason) == ("skipped", "no_target")


@pytest.mark.parametrize("who", ["self", "parent", "init"])
def test_never_the_sensor_its_ancestors_or_init(who):
    pid = {"self": os.getpid(), "parent": os.getppid(), "init": 1}[who]
    out = act(event_fields(pid))
    assert (out.result, out.reason) == ("skipped", "protected_process")


def test_never_a_kernel_thread():
    kthreads = [st for st in procfs.children_map().get(2, []) if st.kernel_thread]
    assert kthreads, "kthreadd has no children on this kernel?"
    out = act(event_fields(kthreads[0].pid))
    assert (out.result, out.reason) == ("skipped", "protected_process")


def test_process_outside_the_alerts_container_is_left_alone(spawn):
    p = spawn()
    out = act(event_fields(p.pid, **{"container.id": "0123456789ab"}))
    assert (out.result, out.reason) == ("skipped", "other_container")
    assert "not in the alert's container 0123456789ab" in out.text
    assert not dead_within(p, 0.2)


def test_tree_kills_descendants_too(spawn, tmp_path):
    pids = tmp_path / "pids"
    p = spawn("sh", "-c", f"sleep 60 & echo $! > {pids}; sh -c 'sleep 60 & wait' & wait")
    deadline = time.monotonic() + 5
    while len(procfs.descendants(p.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    below = procfs.descendants(p.pid)
    assert len(below) == 3
    out = act(event_fields(p.pid), tree=True)
    assert out.result == "done"
    assert "and 3 descendant(s)" in out.text
    assert dead_within(p)
    deadline = time.monotonic() + 2
    while any(procfs.read_stat(st.pid) for st in below) and time.monotonic() < deadline:
        time.sleep(0.01)
    # Reparented to init (or a subreaper) and reaped there: none of them is left.
    left = [st for st in below if (now := procfs.read_stat(st.pid))
            and abs(now.start_ns - st.start_ns) < 1_000_000 and not _zombie(st.pid)]
    assert left == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_without_tree_children_survive(spawn):
    p = spawn("sh", "-c", "sleep 60 & wait")
    deadline = time.monotonic() + 5
    while not procfs.descendants(p.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    (child,) = procfs.descendants(p.pid)
    assert act(event_fields(p.pid)).result == "done"
    assert dead_within(p)
    try:
        st = procfs.read_stat(child.pid)
        assert st is not None and abs(st.start_ns - child.start_ns) < 1_000_000
    finally:
        os.kill(child.pid, signal.SIGKILL)


@pytest.mark.parametrize("given,expected", [
    ("KILL", signal.SIGKILL), ("SIGTERM", signal.SIGTERM), ("int", signal.SIGINT), (9, signal.SIGKILL),
    ("15", signal.SIGTERM)])
def test_signal_names(given, expected):
    assert parse_signal(given) == expected


def test_unknown_signal_names_the_choices():
    with pytest.raises(ValueError, match="KILL, TERM"):
        parse_signal("NOPE")


# ---------------------------------------------------------------------------------------------
# A tree kill when the sensor is short of file descriptors (issue 14, finding 15)
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def fd_pressure(free: int):
    """Only `free` more file descriptors can be opened in this process until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = max(int(n) for n in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (top + 64, hard))
    held: list[int] = []
    try:
        while True:
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as e:
                if e.errno != errno.EMFILE:
                    raise
                break
        for _ in range(free):
            os.close(held.pop())
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.parametrize(("free", "result", "text"), [
    (3, "done", "sent SIGKILL to pid {pid} and 3 descendant(s)"),
    (2, "failed", "sent SIGKILL to pid {pid} and 0 descendant(s); the descendants could not all be listed "
                  "(Too many open files)"),
    (1, "failed", "cannot act on pid {pid}: Too many open files; SIGKILL not sent"),
])
def test_a_tree_kill_short_of_descriptors_counts_truly_and_leaves_nothing_stopped(spawn, free, result, text):
    p = spawn("sh", "-c", "sleep 60 & sleep 60 & sleep 60 & wait")
    deadline = time.monotonic() + 5
    while len(procfs.descendants(p.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    below = procfs.descendants(p.pid)
    assert len(below) == 3
    action = KillProcess({"signal": "KILL", "tree": True})
    a = alert(event_fields(p.pid))
    target = action.resolve(a)
    assert isinstance(target, Target)
    try:
        with fd_pressure(free):
            out = action.execute(a, target, False)
        assert out.result == result and out.text == text.format(pid=p.pid), out
        states = [_state(pid) for pid in (p.pid, *(st.pid for st in below))]
        assert "T" not in states, states          # nothing left stopped
        if result == "done":
            assert dead_within(p)
    finally:
        for st in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, signal.SIGKILL)
