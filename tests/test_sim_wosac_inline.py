"""drope-sim wosac=true: the official WOSAC components in-process, equal to drope-score wosac on the
submission written by the same run."""
from __future__ import annotations

import json
import logging

import pytest

from drope.metrics.cli import main as score
from drope.sim.cli import main as sim


def test_inline_wosac_equals_drope_score_on_the_same_runs_submission(tmp_path, womd_path, capsys, caplog):
    sub = tmp_path / "sub.binproto"
    with caplog.at_level(logging.WARNING):
        assert sim([f"data=[{womd_path}]", "rollouts=2", "policy=constant_velocity", "controlled=all", "animate=0",
                    "workers=1", "save_rollouts=false", "wosac=true", f"submission={sub}", f"out={tmp_path / 'o'}"]) == 0
    assert "with rollouts=2: the official sim-agents challenge needs rollouts=32" in caplog.text
    res = json.loads((tmp_path / "o" / "metrics.json").read_text())
    inline = res["scenarios"][0]["wosac"]
    capsys.readouterr()
    assert score(["wosac", str(sub), "--scenarios", str(womd_path), "--json", "--rollouts-per-scenario", "2"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert row.pop("scenario_id") == res["scenarios"][0]["scenario_id"]
    assert set(inline) == set(row) and {"metametric", "linear_speed_likelihood", "time_to_collision_likelihood"} <= set(row)
    for k, v in row.items():
        assert inline[k] == pytest.approx(v, abs=1e-6, nan_ok=True), k
    assert 0 < inline["metametric"] < 1
    agg = res["aggregate"]["wosac"]
    assert agg["num_scenarios"] == 1 and all(agg[k] == inline[k] for k in inline)


def test_inline_wosac_warns_on_rollouts_and_refuses_replayed_sim_agents(tmp_path, capsys, caplog):
    out = f"out={tmp_path / 'x'}"
    assert sim(["wosac=true", "controlled=sdc", out]) == 2
    err = capsys.readouterr().err
    assert "wosac=true" in err and "controlled=all or background=idm" in err
    assert sim(["wosac=true", "policy=log_replay", out]) == 2
    assert "replays the logged future" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING):
        assert sim(["wosac=true", "rollouts=1", "generate.num_scenes=0", "workers=1", out]) == 2  # no scenes: stops early
    assert "wosac=true with rollouts=1: the official sim-agents challenge needs rollouts=32" in caplog.text
