"""scripts/setup.sh and scripts/run.sh as a user meets them: a second start installs nothing, redis
comes only with the test extras, and run.sh as another user says it needs root (not a Python error
about .venv)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="setup.sh runs as root")


@root_only
def test_a_second_setup_reinstalls_nothing() -> None:
    # The venv the tests run in is made by `FALCONET_EXTRAS=test scripts/setup.sh` (scripts/test.sh):
    # run it once more (it reinstalls only if pyproject.toml changed since), then again.
    env = {**os.environ, "FALCONET_EXTRAS": "test"}
    first = subprocess.run(["scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    stamp = ROOT / ".venv" / ".falconet-installed"
    assert stamp.read_text().endswith(" extras=test\n")
    trace = subprocess.run(["bash", "-x", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True,
                           env=env, timeout=300)
    assert trace.returncode == 0, trace.stderr
    assert "pip install" not in trace.stderr
    assert "apt-get install" not in trace.stderr
    assert "dpkg -s redis-server" in trace.stderr            # the test/bench path checks redis


def test_redis_is_installed_only_for_the_tests_and_benchmarks() -> None:
    lines = (ROOT / "scripts" / "setup.sh").read_text().splitlines()
    redis = [i for i, line in enumerate(lines) if "redis-server" in line and not line.lstrip().startswith("#")]
    assert len(redis) == 1
    assert lines[redis[0] - 1].strip() == 'case ",$EXTRAS," in' and lines[redis[0]].strip().startswith("*,test,*)")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_run_sh_as_another_user_says_it_needs_root() -> None:
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "scripts/run.sh", "-M", "5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 4
    assert res.stderr == ("scripts/run.sh: the sensor needs root (eBPF capture); run it as root: "
                          "sudo scripts/run.sh -M 5\n")
