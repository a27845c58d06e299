"""Argoverse 2 through every drope-data command and drope-viz: stats, cache (scenario dirs, chunked
split roots, resume), bad input named per file, --on-corrupt skip, the format registry."""
from __future__ import annotations

import json

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from drope.data.av2 import Av2FormatError, av2_track_id, read_av2_scenario, write_av2_scenario  # noqa: E402
from drope.data.cache import CachedSceneDataset, build_cache, load_cached_scenes, read_meta  # noqa: E402
from drope.data.cli import main  # noqa: E402
from drope.data.formats import FORMATS, detect_format, read_scenes  # noqa: E402
from drope.data.womd import ReadStats, write_scenarios  # noqa: E402
from drope.sim.generate.scenario import generate_scene  # noqa: E402


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A split root with 3 written AV2 scenarios, and the scenes they were written from."""
    root = tmp_path_factory.mktemp("av2") / "val"
    scenes = [generate_scene(4, i)[0] for i in range(3)]
    for s in scenes:
        write_av2_scenario(s, root)
    return root, scenes


def _broken_copy(split, tmp_path, how: str):
    """A copy of the split whose first scenario is broken ``how``; returns (root, broken dir)."""
    import shutil

    root = tmp_path / "val"
    shutil.copytree(split[0], root)
    bad = sorted(root.iterdir())[0]
    pq_path = next(bad.glob("scenario_*.parquet"))
    if how == "no_map":
        next(bad.glob("log_map_archive_*.json")).unlink()
    elif how == "columns":
        pq.write_table(pq.read_table(pq_path).drop(["track_id", "timestep"]), pq_path)
    elif how == "not_parquet":
        pq_path.write_bytes(b"PK\x03\x04 this is a zip, not parquet")
    elif how == "bad_map":
        next(bad.glob("log_map_archive_*.json")).write_text('{"lane_segments": {}, "pedestrian_crossings": {"5": {"id": 5, "edge1": []}}}')
    return root, bad


def _leaves(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_registry_detects_formats(split, tmp_path):
    root, scenes = split
    assert set(FORMATS.names()) >= {"av2", "womd"}
    shard = tmp_path / "s.tfrecord"
    write_scenarios(shard, scenes[:1])
    assert detect_format(root) == detect_format(sorted(root.iterdir())[0]) == "av2"
    assert detect_format(shard) == "womd"
    assert [s.source for s in read_scenes([shard, root])] == ["womd", "av2", "av2", "av2"]
    with pytest.raises(KeyError, match="unknown scene format 'nope'"):
        list(read_scenes(root, fmt="nope"))


def test_stats_on_split_root_matches_womd_copy(split, tmp_path, capsys):
    root, scenes = split
    assert main(["stats", str(root), "--json"]) == 0
    av2 = json.loads(capsys.readouterr().out)
    shard = tmp_path / "s.tfrecord"
    write_scenarios(shard, [read_av2_scenario(d) for d in sorted(root.iterdir())])
    assert main(["stats", str(shard), "--json"]) == 0
    womd = json.loads(capsys.readouterr().out)
    assert av2["num_scenes"] == 3 and av2["corrupt_records_skipped"] == 0
    # same scenes, same statistics, whichever file format carried them (WOMD stores float32)
    assert _leaves(av2).keys() == _leaves(womd).keys()
    for k, v in _leaves(av2).items():
        assert v == pytest.approx(_leaves(womd)[k], abs=1e-4), k
    assert av2["agents_per_scene"]["all"]["mean"] == pytest.approx(np.mean([s.num_agents for s in scenes]))
    assert main(["stats", str(root)]) == 0
    assert "scenes: 3" in capsys.readouterr().out


def test_cache_scenario_dir_and_chunked_split_root(split, tmp_path, capsys):
    root, scenes = split
    one = sorted(root.iterdir())[0]
    out = tmp_path / "c"
    assert main(["cache", str(one), str(root), "--out", str(out), "--workers", "1", "--no-progress",
                 "--scenes-per-file", "2"]) == 0
    assert "3 file(s) written" in capsys.readouterr().out
    names = sorted(p.name for p in out.glob("*.scenes.npz"))
    assert names == [f"{one.name}.scenes.npz", "val-00000.scenes.npz", "val-00001.scenes.npz"]
    meta = read_meta(out / "val-00000.scenes.npz")
    assert meta["source"]["scenarios"] == [d.name for d in sorted(root.iterdir())[:2]]
    cached = {s.scenario_id: s for s in CachedSceneDataset(out)}
    assert len(CachedSceneDataset(out)) == 4 and set(cached) == {s.scenario_id for s in scenes}
    for s in scenes:
        r = read_av2_scenario(root / s.scenario_id)
        c = cached[s.scenario_id]
        assert c.source == "av2" and c.num_steps == r.num_steps
        np.testing.assert_array_equal(c.agent_pos.numpy(), r.agent_pos.numpy())
    # resume: nothing to do; one changed scenario rebuilds only its chunk
    rep = build_cache([one, root], out, workers=1, progress=False, scenes_per_file=2)
    assert (rep.shards_written, rep.shards_skipped) == (0, 3)
    last = sorted(root.iterdir())[2]
    p = next(last.glob("scenario_*.parquet"))
    import os

    os.utime(p, ns=(0, 10**9))
    rep = build_cache([root], out, workers=1, progress=False, scenes_per_file=2)
    assert (rep.shards_written, rep.shards_skipped) == (1, 1)
    # fewer chunks than last time: the stale one is removed, never loaded twice; a cache file of
    # another kind that happens to match the chunk pattern stays
    from drope.data.cache import save_scenes

    save_scenes(out / "val-00009.scenes.npz", scenes[:1])
    rep = build_cache([root], out, workers=1, progress=False, scenes_per_file=3)
    assert not (out / "val-00001.scenes.npz").exists() and (out / "val-00009.scenes.npz").exists()
    assert sum(1 for _ in load_cached_scenes(out)) == 1 + 3 + 1


@pytest.mark.parametrize(
    "how, needle",
    [("no_map", "log_map_archive_"), ("columns", "track_id, timestep"), ("not_parquet", "not a readable parquet"),
     ("bad_map", "malformed AV2 map JSON")],
)
def test_bad_scenario_is_named_and_skippable(split, tmp_path, capsys, how, needle):
    root, bad = _broken_copy(split, tmp_path, how)
    for cmd in (["info", str(root), "--json"], ["stats", str(root)],
                ["cache", str(root), "--out", str(tmp_path / "c"), "--workers", "1", "--no-progress"]):
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert needle in err and bad.name in err, (cmd, err)
        assert err.count("\n") == 1  # one line, no traceback
    assert main(["info", str(root), "--json", "--on-corrupt", "skip"]) == 0
    cap = capsys.readouterr()
    assert len(cap.out.strip().splitlines()) == 2 and "skipped 1" in cap.err
    assert main(["stats", str(root), "--json", "--on-corrupt", "skip"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["num_scenes"] == 2 and rec["corrupt_records_skipped"] == 1
    out = tmp_path / "c2"
    assert main(["cache", str(root), "--out", str(out), "--workers", "1", "--no-progress", "--on-corrupt", "skip"]) == 0
    assert "2 scenes" in capsys.readouterr().out and len(list(load_cached_scenes(out))) == 2


def test_read_scenes_skip_counts(split, tmp_path):
    root, _ = _broken_copy(split, tmp_path, "columns")
    stats = ReadStats()
    with pytest.raises(Av2FormatError, match="missing column"):
        list(read_scenes(root, stats=stats))
    stats = ReadStats()
    assert len(list(read_scenes(root, on_corrupt="skip", stats=stats))) == 2
    assert (stats.records, stats.skipped) == (2, 1)


def test_track_ids_come_back(split):
    root, scenes = split
    from drope.data.av2 import read_av2_scenario_with_extras

    s, extras = read_av2_scenario_with_extras(sorted(root.iterdir())[0])
    assert [av2_track_id(i) for i in s.agent_id.tolist()] == extras.track_ids
    assert av2_track_id(int(s.agent_id[s.sdc_index])) == "AV"


def test_viz_draws_an_av2_scenario(split, tmp_path, capsys):
    from PIL import Image

    from drope.viz.cli import main as viz

    root, scenes = split
    out = tmp_path / "av2.png"
    assert viz([str(root / scenes[1].scenario_id), "--out", str(out), "--dpi", "40"]) == 0
    assert scenes[1].scenario_id in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    assert viz([str(root), "--index", "2", "--out", str(out), "--dpi", "40"]) == 0
    assert sorted(s.scenario_id for s in scenes)[2] in capsys.readouterr().out
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "scenario_x.parquet").write_text("nope")
    (bad / "log_map_archive_x.json").write_text("{}")
    assert viz([str(bad), "--out", str(out)]) == 2
    assert "scenario_x.parquet" in capsys.readouterr().err
