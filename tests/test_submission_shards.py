"""Sharded official sim-agents submissions: drope-sim submission_dir=DIR and drope-score wosac on a
file, a shard directory and the .tar.gz (issue 15 part 4)."""
from __future__ import annotations

import json
import re
import tarfile

import pytest

from drope.metrics.cli import main as score
from drope.metrics.submission import SHARD_PATTERN, iter_rollouts, write_sim_agents_submission_shards
from drope.sim.cli import main as sim


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One drope-sim run over 3 generated scenes writing both the single file and 1-scenario shards."""
    from drope.data.womd import write_scenarios
    from drope.sim.generate.scenario import generate_scene

    d = tmp_path_factory.mktemp("shards")
    write_scenarios(d / "scenes.tfrecord", [generate_scene(11, i)[0] for i in range(3)])
    assert sim([f"data=[{d / 'scenes.tfrecord'}]", "rollouts=2", "policy=idm", "controlled=all", "animate=0",
                "workers=1", "save_rollouts=false", f"out={d / 'o'}", f"submission={d / 'one.binproto'}",
                f"submission_dir={d / 'sub'}", "submission_shard_size=1",
                "submission_meta.account_name=me@example.org"]) == 0
    return d


def _score(path, scenes, capsys):
    capsys.readouterr()
    assert score(["wosac", str(path), "--scenarios", str(scenes), "--json", "--rollouts-per-scenario", "2"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def test_shard_names_headers_and_tar(run_dir):
    from waymo_open_dataset.protos import sim_agents_submission_pb2 as sa

    shards = sorted((run_dir / "sub").glob("submission.binproto-*"))
    assert [p.name for p in shards] == [f"submission.binproto-{i:05d}-of-00003" for i in range(3)]
    assert all(re.fullmatch(SHARD_PATTERN, p.name) for p in shards)
    for p in shards:
        sub = sa.SimAgentsChallengeSubmission.FromString(p.read_bytes())
        assert len(sub.scenario_rollouts) == 1 and sub.account_name == "me@example.org"
        assert sub.submission_type == sub.SIM_AGENTS_SUBMISSION and sub.acknowledge_complies_with_closed_loop_requirement
        assert sub.unique_method_name and list(sub.authors)
    with tarfile.open(run_dir / "sub" / "submission.tar.gz") as tar:
        assert sorted(tar.getnames()) == [p.name for p in shards]
    res = json.loads((run_dir / "o" / "metrics.json").read_text())["submission_shards"]
    assert res["scenarios"] == 3 and len(res["shards"]) == 3


def test_score_file_dir_and_tar_agree(run_dir, capsys):
    scenes = run_dir / "scenes.tfrecord"
    one = _score(run_dir / "one.binproto", scenes, capsys)
    assert len(one) == 3 and len({r["scenario_id"] for r in one}) == 3
    assert _score(run_dir / "sub", scenes, capsys) == one
    assert _score(run_dir / "sub" / "submission.tar.gz", scenes, capsys) == one


def test_shard_writer_sizes_and_errors(run_dir, tmp_path):
    ros = list(iter_rollouts(run_dir / "one.binproto"))
    shards, tar = write_sim_agents_submission_shards(tmp_path / "s", ros, shard_size=2)
    assert [p.name for p in shards] == ["submission.binproto-00000-of-00002", "submission.binproto-00001-of-00002"]
    assert [ro.scenario_id for ro in iter_rollouts(tar)] == [ro.scenario_id for ro in ros]
    # a rerun with fewer shards leaves no stale ones behind
    shards, _ = write_sim_agents_submission_shards(tmp_path / "s", ros, shard_size=5)
    assert [p.name for p in sorted((tmp_path / "s").glob("*.binproto-*"))] == ["submission.binproto-00000-of-00001"]
    with pytest.raises(ValueError, match="no shards"):
        list(iter_rollouts(tmp_path))
    assert sim(["generate.num_scenes=1", "submission_shard_size=0", f"out={tmp_path / 'x'}"]) == 2


def test_sharding_keys_in_yaml_and_help(capsys):
    from drope.sim.cli import load_config

    cfg = load_config([])
    assert cfg.submission_dir is None and cfg.submission_shard_size == 200
    assert sim(["--help"]) == 0
    assert "submission_dir" in capsys.readouterr().out
