"""bench/ablation.py end to end on a tiny budget: one table row per encoding plus the baselines."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ablation_writes_one_table(tmp_path, capsys, monkeypatch):
    # importable by name: the spawned training processes unpickle its functions (sys.path is inherited)
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    rc = importlib.import_module("ablation").main(["--train-scenes", "3", "--val-scenes", "2", "--steps", "2", "--batch-size", "2",
                           "--encodings", "drope_rope", "--out", str(tmp_path)])
    assert rc == 0
    md = (tmp_path / "ablation.md").read_text()
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["method", "drope_rope", "constant_velocity", "constant_turn_rate"]
    run = json.loads((tmp_path / "ablation.json").read_text())["runs"][0]
    assert run["peak_mb"] > 0 and run["train_s"] > 0 and run["metrics"]["drope"]["ALL"]["8s"]["count"] > 0
    assert "drope_rope" in capsys.readouterr().out
