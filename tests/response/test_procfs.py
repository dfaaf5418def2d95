"""Reading /proc: start times in epoch ns, container ids from cgroup paths, process trees."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from sensor.response import procfs


def test_start_time_of_a_new_process_is_now():
    before = time.time_ns()
    p = subprocess.Popen(["sleep", "5"])
    try:
        st = procfs.read_stat(p.pid)
        assert st is not None
        # Clock ticks are 10 ms; the process started between `before` and now.
        assert before - 2 * procfs.TICK_NS <= st.start_ns <= time.time_ns() + procfs.TICK_NS
        assert st.ppid == os.getpid()
        assert not st.kernel_thread
    finally:
        p.kill()
        p.wait()


def test_comm_with_spaces_and_parentheses(tmp_path):
    odd = tmp_path / "a) b (c"
    odd.symlink_to("/bin/sleep")
    p = subprocess.Popen([str(odd), "5"])
    try:
        deadline = time.monotonic() + 5
        while (st := procfs.read_stat(p.pid)) and st.comm != "a) b (c" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert st is not None and st.comm == "a) b (c"
        assert st.ppid == os.getpid()
    finally:
        p.kill()
        p.wait()


def test_missing_process():
    assert procfs.read_stat(2**22 + 1) is None
    assert procfs.container_id(2**22 + 1) is None


@pytest.mark.parametrize("cgroup,expected", [
    ("0::/system.slice/docker-" + "ab" * 32 + ".scope\n", ("ab" * 32)[:12]),
    ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_5678.slice/"
     "cri-containerd-" + "0f" * 32 + ".scope\n", ("0f" * 32)[:12]),
    ("12:pids:/kubepods/burstable/pod0d5d1e58-1f3a-4a55-9d2e-0c3f5a7d9e11/" + "9a" * 32 + "\n",
     ("9a" * 32)[:12]),
    ("0::/machine.slice/libpod-" + "c3" * 32 + ".scope/container\n", ("c3" * 32)[:12]),
    ("0::/user.slice/user-0.slice/session-1.scope\n", "host"),
    ("0::/\n", "host"),
])
def test_container_id_from_cgroup(tmp_path, cgroup, expected):
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "cgroup").write_text(cgroup)
    assert procfs.container_id(77, Path(tmp_path)) == expected


def test_this_process_is_on_the_host_with_init_as_its_last_ancestor():
    assert procfs.container_id(os.getpid()) in ("host", procfs.container_id(1))
    chain = procfs.ancestors(os.getpid())
    assert chain[0] == os.getppid()
    assert chain[-1] == 1


def test_descendants_parents_first():
    p = subprocess.Popen(["sh", "-c", "sh -c 'sleep 5 & wait' & wait"])
    try:
        deadline = time.monotonic() + 5
        while len(procfs.descendants(p.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        child, grandchild = procfs.descendants(p.pid)
        assert child.ppid == p.pid
        assert grandchild.ppid == child.pid
    finally:
        for st in procfs.descendants(p.pid):
            os.kill(st.pid, 9)
        p.kill()
        p.wait()
