"""bench/overhead.py --quick runs end to end (a smoke test: the figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ebpf

ROOT = Path(__file__).resolve().parents[2]


def test_the_overhead_bench_measures_every_figure_for_every_condition() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--quick", "--json"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    result = json.loads(lines[-1])
    assert result["quick"] is True
    conds = result["conditions"]
    assert "bundled" in conds
    for name, c in conds.items():
        for part in ("micro", "macro"):
            assert c[part]["ratio"] > 0, name
        assert isinstance(c["micro"]["drops"], int) and c["rss_mib"]["rss"] > 0
        assert c["visible_rate"]["steps"] and all(s["events"] > 0 for s in c["visible_rate"]["steps"])
        assert c["loop_rate"]["achieved"] > 0 and isinstance(c["loop_rate"]["drops"], int)
    # the human-readable lines carry the same figures
    assert any(line.startswith("bundled: micro (open+close") for line in lines)
    assert any("visible rate: highest sustained" in line for line in lines)
    assert any("loop rate:" in line for line in lines)
