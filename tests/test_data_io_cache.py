"""Training cache: exact round trip, size, random access, resume, rebuild, clashes, parallel errors."""
from __future__ import annotations

import dataclasses
import os
import pickle
import shutil

import pytest
import torch

from drope.data.cache import (
    CacheError,
    CachedSceneDataset,
    build_cache,
    cache_path_for,
    load_cached_scenes,
    load_scene,
    read_meta,
)
from drope.data.tfrecord import CorruptRecordError, encode_record, iter_records
from drope.data.womd import read_scenarios, write_scenarios


@pytest.fixture(scope="module")
def scene(womd_path):
    (s,) = list(read_scenarios(womd_path))
    return s


def _same(a, b):
    assert (a.scenario_id, a.source, a.current_index, a.sdc_index, a.dt) == (
        b.scenario_id, b.source, b.current_index, b.sdc_index, b.dt
    )
    for f in type(a).tensor_fields():
        assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name


def test_round_trip_size_and_resume(womd_path, tmp_path, scene):
    rep = build_cache([womd_path], tmp_path / "c", workers=1, progress=False)
    assert (rep.shards_written, rep.scenes, rep.corrupt_records) == (1, 1, 0)
    assert 0 < rep.bytes_per_scene < 1e6  # goal: at most 1 MB per WOMD scene
    (cached,) = list(load_cached_scenes(tmp_path / "c"))
    _same(cached.validate(), scene)
    again = build_cache([womd_path], tmp_path / "c", workers=1, progress=False)
    assert (again.shards_skipped, again.shards_written) == (1, 0)


def test_dataset_random_access_and_pickling(tmp_path, scene):
    other = dataclasses.replace(scene, scenario_id="second")
    write_scenarios(tmp_path / "a.tfrecord", [scene, other])
    write_scenarios(tmp_path / "b.tfrecord.gz", [other])
    build_cache([tmp_path / "a.tfrecord", tmp_path / "b.tfrecord.gz"], tmp_path / "c", workers=1, progress=False)
    ds = CachedSceneDataset(tmp_path / "c")
    assert len(ds) == 3 and [ds[i].scenario_id for i in (2, 0, 1)] == ["second", scene.scenario_id, "second"]
    assert load_scene(cache_path_for(tmp_path / "a.tfrecord", tmp_path / "c"), 1).scenario_id == "second"
    ds2 = pickle.loads(pickle.dumps(ds))
    _same(ds2[0], ds[0])


def test_changed_source_is_rebuilt_and_broken_cache_file_replaced(womd_path, tmp_path):
    shard = tmp_path / "s.tfrecord"
    shutil.copy(womd_path, shard)
    out = tmp_path / "c"
    build_cache([shard], out, workers=1, progress=False)
    assert read_meta(cache_path_for(shard, out))["source"]["name"] == "s.tfrecord"
    os.utime(shard, ns=(0, 12345))
    assert build_cache([shard], out, workers=1, progress=False).shards_written == 1
    cache_path_for(shard, out).write_bytes(b"not a zip")
    with pytest.raises(CacheError, match="not a drope scene cache"):
        read_meta(cache_path_for(shard, out))
    assert build_cache([shard], out, workers=1, progress=False).shards_written == 1


def test_name_clash_and_missing_dir(tmp_path, womd_path):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        shutil.copy(womd_path, tmp_path / d / "s.tfrecord")
    with pytest.raises(CacheError, match="share the file name"):
        build_cache([tmp_path / "x" / "s.tfrecord", tmp_path / "y" / "s.tfrecord"], tmp_path / "c", progress=False)
    with pytest.raises(CacheError, match="does not exist"):
        CachedSceneDataset(tmp_path / "nope")


def test_parallel_build_reports_corrupt_shard(tmp_path, womd_path):
    ((_, _, raw),) = list(iter_records(womd_path))
    (tmp_path / "good.tfrecord").write_bytes(encode_record(raw))
    (tmp_path / "bad.tfrecord").write_bytes(encode_record(raw) + encode_record(b"garbage"))
    shards = [tmp_path / "good.tfrecord", tmp_path / "bad.tfrecord"]
    with pytest.raises(CorruptRecordError) as e:  # raised in a worker process, attributes intact
        build_cache(shards, tmp_path / "c", workers=2, progress=False)
    assert e.value.record_index == 1 and e.value.path.endswith("bad.tfrecord")
    rep = build_cache(shards, tmp_path / "c", workers=2, on_corrupt="skip", progress=False)
    assert rep.corrupt_records == 1 and rep.scenes + rep.shards_skipped == 2
