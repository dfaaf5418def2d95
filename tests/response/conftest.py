"""Fixtures for the response tests: real processes to act on."""

from __future__ import annotations

import subprocess

import pytest

from .helpers import wait_started


@pytest.fixture
def spawn():
    """Start `sleep 60` (or the given command) and kill and reap whatever is left at the end."""
    procs: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        argv = argv or ("sleep", "60")
        p = subprocess.Popen(argv)
        procs.append(p)
        wait_started(p.pid, argv[0])
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
