"""The attention benchmark's child measurement and table (tiny sizes; numbers are not asserted)."""
from __future__ import annotations

import json

from drope.bench.attention import measure_encoding, estimate_gb, merge_saved, table


def test_child_reports_memory_and_time():
    r = measure_encoding("drope_rope", 64, 1)
    assert set(r) == {"encoding", "n", "peak_mb", "ms"} and r["ms"] > 0 and r["peak_mb"] >= 0


def test_skip_rule_and_table():
    assert estimate_gb("rpe", 4096) > 16 and estimate_gb("drope_rope", 16384) < 16
    rows = [{"encoding": "rpe", "n": 4096, "skipped": True, "estimate_gb": estimate_gb("rpe", 4096), "peak_mb": None,
             "ms": None}, {"encoding": "none", "n": 4096, "peak_mb": 70.0, "ms": 3.0}]
    t = table(rows)
    assert "skipped" in t and "70 / 3.0" in t


def test_saved_results_keep_points_not_measured_again(tmp_path):
    path = tmp_path / "attention.json"
    path.write_text(json.dumps([{"encoding": "none", "n": 4096, "peak_mb": 70.0, "ms": 3.0},
                                {"encoding": "rpe", "n": 256, "peak_mb": 400.0, "ms": 800.0}]))
    merged = merge_saved(path, [{"encoding": "rpe", "n": 256, "peak_mb": 410.0, "ms": 790.0}])
    assert merged == [{"encoding": "rpe", "n": 256, "peak_mb": 410.0, "ms": 790.0},
                      {"encoding": "none", "n": 4096, "peak_mb": 70.0, "ms": 3.0}]
    assert merge_saved(tmp_path / "missing.json", []) == []


def test_invariance_report_is_saved(tmp_path, capsys):
    from drope.bench.attention import main

    assert main(["--invariance", "--json", "--out", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["encoding"] for r in rows] == ["none", "absolute", "rpe", "rope2d", "drope", "drope_rope"]
    assert rows[-1]["rotate scene 0.7 rad"] > 1e-2 and rows[2]["rotate scene 0.7 rad"] < 1e-5
    assert "| drope_rope |" in (tmp_path / "attention.invariance.md").read_text()
