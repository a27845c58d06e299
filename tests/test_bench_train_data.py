"""drope-bench train-data: the rigid scene multiplier, dataset writing/reuse, the loader and
cost measurements, ratios, the projection and the report (drope-train runs are not started here)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from drope.bench import train_data as td
from drope.bench.womd_scenes import MANIFEST, rigid_copies, rigid_copy, write_dataset
from drope.geometry import rot2


@pytest.fixture(scope="module")
def womd_scene(womd_path):
    from drope.data.womd import read_scenarios

    return next(iter(read_scenarios(womd_path)))


def test_rigid_copy_moves_the_whole_world_rigidly_with_new_ids(womd_scene):
    s = womd_scene
    c = rigid_copy(s, 7, seed=3)
    c.validate()
    rng = np.random.default_rng([3, 7])
    theta, t = rng.uniform(-math.pi, math.pi), rng.uniform(-5000, 5000, 2)
    w0, w1 = s.to_world(), c.to_world()
    valid = s.agent_valid.numpy()
    np.testing.assert_allclose(w1.agent_pos[valid], (rot2(w0.agent_pos, theta) + t)[valid], atol=1e-6)
    np.testing.assert_allclose(w1.map_xy, rot2(w0.map_xy, theta) + t, atol=1e-6)
    dh = np.angle(np.exp(1j * (w1.agent_heading - w0.agent_heading)))[valid]
    np.testing.assert_allclose(dh, np.angle(np.exp(1j * theta)), atol=1e-5)
    assert c.scenario_id != s.scenario_id
    assert len(set(c.agent_id.tolist())) == s.num_agents
    assert not set(c.agent_id.tolist()) & set(s.agent_id.tolist())
    assert set(c.objects_of_interest.tolist()) <= set(c.agent_id.tolist())
    # same scene-frame content, so sizes (and what a model sees) are those of the base scene
    assert torch.equal(c.agent_pos, s.agent_pos) and torch.equal(c.map_points, s.map_points)


def test_rigid_copies_are_distinct_and_reproducible(womd_scene):
    a = [c.scenario_id for c in rigid_copies([womd_scene], 5, seed=1)]
    b = list(rigid_copies([womd_scene], 2, seed=1, start=3))
    assert len(set(a)) == 5 and [c.scenario_id for c in b] == a[3:]
    assert torch.equal(b[0].origin_xy, rigid_copy(womd_scene, 3, seed=1).origin_xy)
    assert not torch.equal(rigid_copy(womd_scene, 3, seed=1).origin_xy, rigid_copy(womd_scene, 4, seed=1).origin_xy)
    with pytest.raises(ValueError, match="no base scenes"):
        list(rigid_copies([], 1))


def test_write_dataset_cache_and_shards_stream_back_and_are_reused(womd_path, tmp_path):
    from drope.data.stream import SceneStreamDataset

    cache = write_dataset(tmp_path / "c", 5, "cache", per_file=2, workers=1)
    shards = write_dataset(tmp_path / "t", 3, "tfrecord", per_file=2, workers=1)
    assert [p.name for p in cache] == ["part-00000.scenes.npz", "part-00001.scenes.npz", "part-00002.scenes.npz"]
    ids = [SceneStreamDataset(str(tmp_path / "c"))[i].scenario_id for i in range(5)]
    assert len(set(ids)) == 5
    ts = SceneStreamDataset(str(tmp_path / "t"))
    assert len(ts) == 3 and ts[2].scenario_id == ids[2]
    mtime = cache[0].stat().st_mtime_ns
    assert write_dataset(tmp_path / "c", 5, "cache", per_file=2, workers=1) == cache
    assert cache[0].stat().st_mtime_ns == mtime  # reused, not rewritten
    assert json.loads((tmp_path / "c" / MANIFEST).read_text())["n"] == 5
    assert (tmp_path / "c" / "drope-index.json").exists() and (tmp_path / "t" / "drope-index.json").exists()
    probe = td.probe_subprocess(tmp_path / "c", reads=4)  # what the bench reports per dataset size
    assert probe["scenes"] == 5 and probe["files"] == 3 and probe["reads"] == 4 and probe["index_s"] >= 0
    write_dataset(tmp_path / "c", 2, "cache", per_file=2, workers=1)  # another request replaces it
    assert len(SceneStreamDataset(str(tmp_path / "c"))) == 2
    with pytest.raises(ValueError, match="format"):
        write_dataset(tmp_path / "x", 2, "parquet")


def test_flatness_ratios_use_medians_of_the_smallest_and_largest_size():
    run = lambda rss, t: {"peak_rss_mb": rss, "peak_pss_mb": rss / 2, "first_step_s": t, "wall_s": 2 * t}  # noqa: E731
    f = td.flatness({100: [run(900, 10), run(1000, 12), run(950, 11)], 4000: [run(1045, 11), run(990, 30), run(2000, 11)]})
    assert f["sizes"] == [100, 4000]
    assert f["peak_rss_mb_ratio"] == pytest.approx(1045 / 950, abs=1e-3)
    assert f["first_step_s_ratio"] == 1.0 and f["wall_s_ratio"] == 1.0


def test_projection_is_bounded_by_the_slower_of_loader_and_gpu():
    costs = {"decode_cache_cpu_s": 0.01, "collate_cpu_s[m]": 0.03, "step_s": {"m": 0.8}}
    p = td.projection(costs, "m", gpu_scenes_per_s=500, workers_per_gpu=8, epoch_scenes=360_000)
    assert p["loader_scenes_per_s_per_gpu"] == 200 and p["bound"] == "loader"
    assert p["hours_per_epoch"] == {"1": 0.5, "8": 0.06}
    assert p["workers_needed_per_gpu"] == 20 and "projection" in p["label"]
    fast = td.projection(costs, "m", gpu_scenes_per_s=100, workers_per_gpu=8, epoch_scenes=360_000)
    assert fast["bound"] == "model" and fast["hours_per_epoch"]["1"] == 1.0
    cpu = td.cpu_projection(costs, "m", batch_size=8, workers=2, epoch_scenes=360_000)
    assert cpu["scenes_per_s"] == 10.0 and cpu["hours_per_epoch"] == 10.0


def test_quick_run_measures_loader_and_costs_and_writes_json_and_markdown(womd_path, tmp_path):
    out = tmp_path / "r.json"
    rc = td.main(["--quick", "--skip-train", "--work", str(tmp_path / "w"), "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert {(r["source"], r["workers"]) for r in res["loader"]} == {("cache", 0), ("cache", 1), ("tfrecord", 0),
                                                                    ("tfrecord", 1)}
    assert all(r["scenes_per_s"] > 0 for r in res["loader"])
    c = res["costs"]
    assert 0 < c["decode_cache_cpu_s"] < 5 and 0 < c["decode_shard_cpu_s"] < 5 and c["step_s"]["drope_small"] > 0
    assert res["projection"]["hours_per_epoch"]["8"] < res["projection"]["hours_per_epoch"]["1"]
    md = out.with_suffix(".md").read_text()
    assert "| tfrecord | 1 |" in md and "**Projection** (not measured)" in md and "drope-bench train-data" in md


def test_cli_lists_train_data():
    from drope.bench.cli import SUBCOMMANDS

    assert SUBCOMMANDS["train-data"][0] == "drope.bench.train_data"
