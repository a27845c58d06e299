"""drope-sim over shards: num_shards/shard_index (or RANK/WORLD_SIZE), restart skips complete shards,
failing scenarios are reported by id, and merging the parts equals one process exactly."""
from __future__ import annotations

import dataclasses
import json
import tarfile

import pytest
import torch

from drope.shards import shard_of
from drope.sim.cli import main as sim


def _no_map(scene):
    z = lambda *shape: torch.zeros(shape, dtype=torch.int64)  # noqa: E731
    return dataclasses.replace(scene, map_id=z(0), map_type=z(0), map_subtype=z(0), map_offsets=z(1),
                               map_points=torch.zeros(0, 3), lane_speed_limit=torch.zeros(0),
                               lane_interpolating=torch.zeros(0, dtype=torch.bool), lane_links=z(0, 7),
                               stop_sign_lanes=z(0, 2))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, gen_scenes):
    """Four scenes (the third has no map) run once in one process and once as 2 shards + merge."""
    from drope.data.womd import write_scenarios

    d = tmp_path_factory.mktemp("shards")
    scenes = [gen_scenes[0], gen_scenes[1], _no_map(gen_scenes[2]), gen_scenes[3]]
    write_scenarios(d / "scenes.tfrecord", scenes)
    common = [f"data=[{d / 'scenes.tfrecord'}]", "rollouts=2", "policy=constant_velocity", "controlled=all",
              "animate=0", "workers=1", "save_rollouts=false", "wosac=true", "submission_shard_size=2"]

    def outs(name):
        return [f"out={d / name}", f"submission={d / name / 'one.binproto'}", f"submission_dir={d / name / 'sub'}"]

    assert sim(common + outs("single")) == 0
    assert sim(common + outs("sharded") + ["num_shards=2", "shard_index=0"]) == 0
    with pytest.MonkeyPatch.context() as mp:  # the second shard as torchrun would start it
        mp.setenv("WORLD_SIZE", "2")
        mp.setenv("RANK", "1")
        assert sim(common + outs("sharded")) == 0
    assert not (d / "sharded" / "metrics.json").exists()  # nothing aggregated before the merge
    assert sim(["merge", str(d / "sharded")]) == 0
    return d, common, outs


def _load(p):
    res = json.loads(p.read_text())
    for e in res["scenarios"]:
        e.pop("sim_seconds")
    res["aggregate"].pop("wall_seconds")
    return res


def test_merged_shards_equal_one_process(runs):
    d, _, _ = runs
    one, merged = _load(d / "single" / "metrics.json"), _load(d / "sharded" / "metrics.json")
    assert merged["scenarios"] == one["scenarios"] and merged["aggregate"] == one["aggregate"]
    assert merged["failed"] == one["failed"]
    assert [e["index"] for e in one["scenarios"]] == [0, 1, 3]
    assert one["aggregate"]["num_scenarios"] == 3 and one["aggregate"]["wosac"]["num_scenarios"] == 3
    # submissions: the single file and every official shard byte for byte, the archive member by member
    assert (d / "sharded" / "one.binproto").read_bytes() == (d / "single" / "one.binproto").read_bytes()
    names = sorted(p.name for p in (d / "single" / "sub").glob("submission.binproto-*"))
    assert names == ["submission.binproto-00000-of-00002", "submission.binproto-00001-of-00002"]
    assert sorted(p.name for p in (d / "sharded" / "sub").glob("submission.binproto-*")) == names
    for n in names:
        assert (d / "sharded" / "sub" / n).read_bytes() == (d / "single" / "sub" / n).read_bytes()
    with tarfile.open(d / "single" / "sub" / "submission.tar.gz") as a, tarfile.open(d / "sharded" / "sub" / "submission.tar.gz") as b:
        assert a.getnames() == b.getnames() == names
        assert all(a.extractfile(n).read() == b.extractfile(n).read() for n in names)


def test_failed_scenario_is_reported_by_id_and_the_others_run(runs, capsys):
    d, _, _ = runs
    one = json.loads((d / "single" / "metrics.json").read_text())
    (f,) = one["failed"]
    assert f["index"] == 2 and f["scenario_id"] == "sim-11-0000002" and "no road edges" in f["error"]
    part = json.loads((d / "sharded" / "shards" / "00000-of-00002" / "metrics.json").read_text())
    assert [e["index"] for e in part["scenarios"]] == [0] and [x["index"] for x in part["failed"]] == [2]


def test_restart_skips_complete_shards_and_merge_checks_completeness(runs, capsys):
    d, common, outs = runs
    capsys.readouterr()
    part = d / "sharded" / "shards" / "00001-of-00002"
    before = (part / "metrics.json").read_text()
    assert sim(common + outs("sharded") + ["num_shards=2", "shard_index=1", "workers=2"]) == 0
    assert "already complete, skipped" in capsys.readouterr().out
    assert (part / "metrics.json").read_text() == before
    (part / "COMPLETE").unlink()
    assert sim(["merge", str(d / "sharded"), f"out={d / 'm2'}"]) == 2
    assert "shard 1 of 2 is not complete" in capsys.readouterr().err
    assert sim(["merge", str(d / "sharded" / "shards" / "00000-of-00002")]) == 2
    assert "shards [1] of 2 not found" in capsys.readouterr().err
    # a rerun with another configuration is not "complete": it simulates again
    assert sim(common + outs("sharded") + ["num_shards=2", "shard_index=1", "rollouts=1"]) == 0
    assert "done" in capsys.readouterr().out and json.loads((part / "metrics.json").read_text())["config"]["rollouts"] == 1
    assert sim(["merge", str(d / "sharded"), f"out={d / 'm3'}"]) == 2
    assert "configuration differs from shard 0 in ['rollouts']" in capsys.readouterr().err


def test_shard_of_explicit_wins_over_torchrun_env():
    env = {"RANK": "3", "WORLD_SIZE": "4"}
    assert shard_of(None, None, env) == (3, 4) and shard_of(None, None, {}) == (0, 1)
    assert shard_of(2, 0, env) == (0, 2) and shard_of(None, 1, env) == (1, 4)
    with pytest.raises(ValueError, match=r"shard_index must be in \[0, 2\), got 3 \(from RANK\)"):
        shard_of(2, None, env)
    with pytest.raises(ValueError, match="num_shards must be >= 1"):
        shard_of(0, None, {})


def test_drope_score_shards_merge_to_the_unsharded_rows(runs, capsys, tmp_path, monkeypatch):
    from drope.metrics.cli import main as score

    d, _, _ = runs
    base = ["wosac", str(d / "single" / "sub"), "--scenarios", str(d / "scenes.tfrecord"), "--json",
            "--rollouts-per-scenario", "2"]
    capsys.readouterr()
    assert score(base) == 0
    whole = capsys.readouterr().out
    parts = []
    for i in range(2):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(1 - i))  # the flags win over torchrun's variables
        assert score(base + ["--num-shards", "2", "--shard-index", str(i)]) == 0
        parts.append(tmp_path / f"part{i}.jsonl")
        parts[-1].write_text(capsys.readouterr().out)
    rows = [json.loads(x) for x in parts[1].read_text().splitlines()]
    assert [r["index"] for r in rows] == [1]  # scenarios 0, 2 in shard 0; 1 in shard 1
    assert score(["merge", str(parts[1]), str(parts[0]), "--json"]) == 0
    assert capsys.readouterr().out == whole and len(whole.splitlines()) == 3
    assert score(["merge", str(parts[0])]) == 2
    assert "miss or repeat scenario indices" in capsys.readouterr().err
