"""``drope-data`` command line: the info --json contract, errors as exit codes, stats, cache."""
from __future__ import annotations

import json
import pytest

from drope.data.cli import main
from drope.data.tfrecord import encode_record, iter_records

CONTRACT_KEYS = {
    "scenario_id", "num_agents", "agent_types", "num_steps", "current_index", "sdc_index", "sdc_world_pose",
    "map_feature_counts", "tracks_to_predict", "num_valid_at_current",
}


@pytest.fixture
def corrupt_shard(womd_path, tmp_path):
    ((_, _, raw),) = list(iter_records(womd_path))
    path = tmp_path / "mixed.tfrecord"
    path.write_bytes(encode_record(raw) + encode_record(b"garbage") + encode_record(raw))
    return path, len(encode_record(raw))


def test_info_json_contract(womd_path, capsys):
    assert main(["info", str(womd_path), "--json"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    rec = json.loads(line)
    assert CONTRACT_KEYS <= rec.keys()
    assert rec["scenario_id"] == "637f20cafde22ff8" and rec["num_agents"] == 83 and rec["num_steps"] == 91
    assert rec["agent_types"] == {"TYPE_VEHICLE": 70, "TYPE_PEDESTRIAN": 10, "TYPE_CYCLIST": 3}
    assert rec["map_feature_counts"]["lane"] == 199 and rec["map_feature_counts"]["stop_sign"] == 8
    assert rec["sdc_world_pose"] == pytest.approx([-7785.9165, -6683.4059, -1.54576], abs=1e-3)
    assert rec["tracks_to_predict"] == [72, 43, 42] and rec["num_valid_at_current"] == 50


def test_info_text(womd_path, capsys):
    assert main(["info", str(womd_path)]) == 0
    out = capsys.readouterr().out
    assert "637f20cafde22ff8: 83 agents (vehicle 70, pedestrian 10, cyclist 3), 91 steps" in out
    assert "(-7785.916, -6683.406)" in out


def test_corrupt_input_exit_codes(corrupt_shard, capsys):
    path, first_len = corrupt_shard
    assert main(["info", str(path), "--on-corrupt", "raise"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: record 1 at byte offset {first_len}" in err
    assert len(captured.out.strip().splitlines()) == 1  # the record before the bad one was printed
    assert main(["info", str(path), "--on-corrupt", "skip", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 2 and "skipped 1 corrupt record" in captured.err


@pytest.mark.parametrize("sub", ["info", "stats"])
def test_missing_file_is_one_line_exit_2(tmp_path, capsys, sub):
    assert main([sub, str(tmp_path / "nope.tfrecord")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such scenario file" in err and "Traceback" not in err


def test_stats_json_and_table(womd_path, capsys):
    assert main(["stats", str(womd_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_scenes"] == 1 and stats["agents_per_scene"]["TYPE_VEHICLE"]["mean"] == 70
    assert 0 < stats["speed_mps"]["TYPE_PEDESTRIAN"]["p50"] < 3
    assert stats["map_features_per_scene"]["road_edge"]["p50"] == 28
    assert main(["stats", str(womd_path)]) == 0
    table = capsys.readouterr().out
    assert "speed_mps/TYPE_VEHICLE" in table and "scene_extent_m" in table


def test_cache_command(womd_path, tmp_path, capsys):
    assert main(["cache", str(womd_path), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert "1 file(s) written" in capsys.readouterr().out
    assert main(["cache", str(womd_path), "--out", str(tmp_path / "c"), "--workers", "0"]) == 2


def test_help_and_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "--help"])
    assert e.value.code == 0 and "sdc_world_pose" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["bogus"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
