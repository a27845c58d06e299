"""The attention benchmark's child measurement and table (tiny sizes; numbers are not asserted)."""
from __future__ import annotations

from drope.bench.attention import _child, estimate_gb, table


def test_child_reports_memory_and_time():
    r = _child("drope_rope", 64, 1)
    assert set(r) == {"encoding", "n", "peak_mb", "ms"} and r["ms"] > 0 and r["peak_mb"] >= 0


def test_skip_rule_and_table():
    assert estimate_gb("rpe", 4096) > 16 and estimate_gb("drope_rope", 16384) < 16
    rows = [{"encoding": "rpe", "n": 4096, "skipped": True, "estimate_gb": estimate_gb("rpe", 4096), "peak_mb": None,
             "ms": None}, {"encoding": "none", "n": 4096, "peak_mb": 70.0, "ms": 3.0}]
    t = table(rows)
    assert "skipped" in t and "70 / 3.0" in t
