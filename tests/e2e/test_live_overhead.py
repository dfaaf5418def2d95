"""bench/overhead.py --quick runs end to end (a smoke test: the figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ebpf

ROOT = Path(__file__).resolve().parents[2]


def test_the_overhead_bench_measures_every_figure() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--quick", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    result = json.loads(lines[-1])
    assert result["quick"] is True
    for part in ("micro", "macro"):
        assert result[part]["ratio"] > 0 and result[part]["ratio_raw_hook"] > 0
    assert isinstance(result["micro"]["drops"], int)
    assert result["rss_mib"]["bundled"] > 0
    steps = result["rate"]["steps"]
    assert steps and all(s["events"] > 0 for s in steps)
    # the human-readable lines carry the same figures
    assert any(line.startswith("micro (open+close") for line in lines)
    assert any(line.startswith("rate: highest sustained") for line in lines)
