"""The repository explains itself: no doc, README or comment points to ../shared, which users of a
release do not have (the tests may use it: the compatibility corpus and the offline validators)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_nothing_but_the_tests_points_outside_the_repository() -> None:
    found = subprocess.run(["git", "grep", "-n", "-I", "../shared", "--", ".", ":!tests"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert found.stdout == "", f"these refer users to ../shared, which they do not have:\n{found.stdout}"
