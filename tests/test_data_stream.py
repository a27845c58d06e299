"""drope.data.stream: header-only index, disjoint per-rank epochs, corrupt skip, source errors."""
from __future__ import annotations

import pytest
import torch

from drope.data import stream
from drope.data.cache import save_scenes
from drope.data.womd import write_scenarios


@pytest.fixture
def shards(tmp_path, gen_scenes):
    write_scenarios(tmp_path / "a.tfrecord", gen_scenes[:4])
    write_scenarios(tmp_path / "b.tfrecord.gz", gen_scenes[4:])
    return tmp_path


def test_index_does_not_decode(shards, monkeypatch):
    import drope.data.womd as womd

    def boom(*a, **k):
        raise AssertionError("decoded at index time")

    monkeypatch.setattr(womd, "scene_from_bytes", boom)
    ds = stream.SceneStreamDataset([str(shards)])
    assert len(ds) == 6


def test_getitem_decodes_one_scene(shards, gen_scenes):
    ds = stream.SceneStreamDataset([str(shards / "*.tfrecord*")])
    assert len(ds) == 6
    s = ds[5]
    assert s is not None
    f = s.tensor_fields()[0].name
    assert getattr(s, f).shape == getattr(gen_scenes[5], f).shape


def test_cache_dir(tmp_path, gen_scenes):
    save_scenes(tmp_path / "x.scenes.npz", gen_scenes)
    ds = stream.SceneStreamDataset(str(tmp_path))
    assert len(ds) == 6 and ds[2] is not None
    loader = stream.make_loader(ds, 2, stream.EpochSampler(len(ds), seed=1), num_workers=2)
    got = [len(b) for b in loader]
    assert sum(got) == 6


@pytest.mark.parametrize("n,world,drop", [(10, 3, False), (10, 3, True), (12, 4, False)])
def test_sampler_disjoint_cover(n, world, drop):
    parts = []
    for r in range(world):
        s = stream.EpochSampler(n, seed=5, rank=r, world_size=world, drop_last=drop)
        s.set_epoch(2)
        parts.append(list(s))
        assert len(parts[-1]) == len(s)
    flat = [i for p in parts for i in p]
    if n % world == 0:
        assert sorted(flat) == list(range(n))
    elif drop:
        assert len(set(flat)) == len(flat) == (n // world) * world
    else:
        assert set(flat) == set(range(n)) and len(flat) == -(-n // world) * world
    a = stream.EpochSampler(n, seed=5); a.set_epoch(0)
    b = stream.EpochSampler(n, seed=5); b.set_epoch(1)
    assert list(a) != list(b)
    c = stream.EpochSampler(n, seed=5); c.set_epoch(1, skip=3)
    assert list(c) == list(b)[3:]


def test_corrupt_record_skipped(tmp_path, gen_scenes):
    p = tmp_path / "a.tfrecord"
    write_scenarios(p, gen_scenes[:3])
    ds = stream.SceneStreamDataset(str(p))
    _, rec, off, n = ds.locate(1)
    assert rec == 1
    raw = bytearray(p.read_bytes())
    raw[off + 12 + n // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    ds = stream.SceneStreamDataset(str(p))
    items = [ds[i] for i in range(len(ds))]
    assert items[1] is None and ds.corrupt == 1
    assert len(stream.collate_skip_none(items)) == 2
    with pytest.raises(ValueError, match=r"a.tfrecord: record 1 \(scene 1\) is corrupt"):
        stream.SceneStreamDataset(str(p), on_corrupt="raise")[1]


def test_missing_and_empty_source(tmp_path):
    with pytest.raises(stream.SourceError, match="nope"):
        stream.SceneStreamDataset(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(stream.SourceError, match="empty"):
        stream.SceneStreamDataset(str(tmp_path / "empty"))
    (tmp_path / "z.tfrecord").write_bytes(b"")
    with pytest.raises(stream.SourceError, match="no records"):
        len(stream.SceneStreamDataset(str(tmp_path / "z.tfrecord")))


@pytest.mark.parametrize("n,batch,world", [(10, 2, 2), (7, 3, 2), (5, 2, 3), (6, 3, 1)])
def test_step_sampler_visits_every_scene_once_per_epoch(n, batch, world):
    """Across ranks an epoch is a permutation (none twice, none missing), whatever the remainder."""
    steps = 3 * n  # several epochs, epoch boundaries inside batches
    seen: dict[int, list[int]] = {}
    for r in range(world):
        s = stream.StepSampler(n, batch, seed=4, rank=r, world_size=world, stop=steps)
        for step in s:
            idx, eps = s.batch(step)
            assert len(idx) == batch  # ranks stay in lock-step
            for i, e in zip(idx, eps):
                seen.setdefault(e, []).append(i)
    full = [e for e in seen if e < (steps * batch * world) // n]
    assert full and all(sorted(seen[e]) == list(range(n)) for e in full)
    assert all(len(set(v)) == len(v) for v in seen.values())
    again = stream.StepSampler(n, batch, seed=4, rank=0, world_size=world, start=5, stop=steps)
    assert list(again)[0] == 5 and again.batch(7) == stream.StepSampler(n, batch, seed=4, world_size=world).batch(7)


def test_list_dataset_and_as_dataset(gen_scenes, tmp_path):
    mem = stream.as_dataset(gen_scenes)
    assert mem.in_memory and len(mem) == 6 and mem[2] is gen_scenes[2] and stream.as_dataset(mem) is mem
    save_scenes(tmp_path / "x.scenes.npz", gen_scenes)
    ds = stream.SceneStreamDataset(str(tmp_path))
    assert not ds.in_memory and stream.as_dataset(ds) is ds
    assert [s.scenario_id for s in ds] == [s.scenario_id for s in gen_scenes]
    assert ds.file_starts().tolist() == [0, 6] and ds.record_offsets(0) is None  # per file, nothing per scene


def test_av2_split_root_streams(tmp_path, gen_scenes):
    from drope.data.av2 import write_av2_split

    write_av2_split(gen_scenes[:3], tmp_path / "av2")
    ds = stream.SceneStreamDataset(str(tmp_path / "av2"))
    assert len(ds) == 3 and {k for k, _ in ds.files} == {"av2"}
    assert sorted(s.scenario_id for s in ds) == sorted(s.scenario_id for s in gen_scenes[:3])
    bad = ds.files[1][1]
    next(bad.glob("scenario_*.parquet")).write_bytes(b"not parquet")
    ds = stream.SceneStreamDataset(str(tmp_path / "av2"))
    items = list(ds)
    assert items[1] is None and ds.corrupt == 1 and all(items[i] is not None for i in (0, 2))


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_training_resumes_mid_epoch_exactly(tmp_path, gen_scenes, workers):
    from drope.model import ModelConfig
    from drope.train.data import load_scenes
    from drope.train.trainer import Trainer, TrainConfig

    (tmp_path / "c").mkdir()
    save_scenes(tmp_path / "c" / "x.scenes.npz", gen_scenes[:5])
    ds = load_scenes([str(tmp_path / "c")])
    assert isinstance(ds, stream.SceneStreamDataset)
    # 5 scenes, batch 2: the checkpoint at step 3 is mid-epoch 1
    cfg = dict(steps=6, batch_size=2, warmup_steps=2, val_every=10**6, log_every=2, ckpt_every=3, progress=False)
    mc = ModelConfig(dim=32, num_heads=4, num_blocks=1)
    cfg["num_workers"] = workers
    full = Trainer(TrainConfig(out=str(tmp_path / "full"), **cfg), mc, ds, [])
    full.fit()
    mem = Trainer(TrainConfig(out=str(tmp_path / "mem"), **cfg), mc, gen_scenes[:5], [])
    mem.fit()
    part = Trainer(TrainConfig(out=str(tmp_path / "part"), stop_after=4, **cfg), mc, ds, [])
    part.fit()
    resumed = Trainer(TrainConfig(out=str(tmp_path / "part"), resume="auto", **cfg), mc, ds, [])
    assert resumed.step == 3
    resumed.fit()
    for (k, a), (_, b), (_, c) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(),
                                      mem.model.state_dict().items()):
        assert torch.equal(a, b), k
        assert torch.equal(a, c), k


def _ids(ds):
    return [s.scenario_id for s in ds]


def test_directory_index_replaces_the_scan_and_notices_changes(shards, gen_scenes, monkeypatch, caplog):
    from drope.data import shard_index
    from drope.data.cli import main

    assert main(["index", str(shards)]) == 0
    scanned = _ids(stream.SceneStreamDataset(str(shards)))
    real_scan = shard_index.scan_file

    def no_scan(*a):
        raise AssertionError("a file was read to count its scenes although the index is current")

    monkeypatch.setattr(shard_index, "scan_file", no_scan)
    ds = stream.SceneStreamDataset(str(shards))
    assert _ids(ds) == scanned == [s.scenario_id for s in gen_scenes]  # gzip offsets from the index, too
    assert isinstance(ds.record_offsets(0), __import__("numpy").memmap)
    # a shard rewritten after indexing (fewer records): its entry is stale, the file is scanned again
    monkeypatch.setattr(shard_index, "scan_file", real_scan)
    write_scenarios(shards / "a.tfrecord", gen_scenes[:2])
    with caplog.at_level("WARNING"):
        ds = stream.SceneStreamDataset(str(shards))
        assert len(ds) == 4 and _ids(ds) == [s.scenario_id for s in gen_scenes[:2] + gen_scenes[4:]]
    assert "rerun drope-data index" in caplog.text and "a.tfrecord" in caplog.text


def test_broken_index_and_old_cache_format_are_clear_errors(tmp_path, gen_scenes):
    import json
    import zipfile

    from drope.data.cache import CacheError, read_meta
    from drope.data.shard_index import INDEX_NAME, IndexFileError

    save_scenes(tmp_path / "x.scenes.npz", gen_scenes[:2])
    (tmp_path / INDEX_NAME).write_text("{not json")
    with pytest.raises(IndexFileError, match=f"{INDEX_NAME}.*drope-data index"):
        len(stream.SceneStreamDataset(str(tmp_path)))
    (tmp_path / INDEX_NAME).unlink()
    old = tmp_path / "old.scenes.npz"  # format 1: one member per tensor field
    with zipfile.ZipFile(old, "w") as zf:
        zf.writestr("0/agent_xy.npy", b"")
        zf.writestr("meta.npy", b"")
    with pytest.raises(CacheError, match="old.scenes.npz"):
        len(stream.SceneStreamDataset(str(old)))
    meta = read_meta(tmp_path / "x.scenes.npz")
    assert meta["format"] == 2 and len(meta["scenes"]) == 2 and json.dumps(meta)
    with zipfile.ZipFile(tmp_path / "x.scenes.npz") as zf:  # one member per scene + meta
        assert sorted(zf.namelist()) == ["0", "1", "meta.npy"]
    from drope.data.cache import CacheFile, _json_array, _npy_bytes

    other = tmp_path / "other.scenes.npz"  # a Scene with other fields wrote it: refused, never misread
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("0", _npy_bytes(_json_array({"scenario_id": "a", "fields": ["agent_xy"]})))
    with pytest.raises(CacheError, match="other.scenes.npz: scene 0 holds fields"), CacheFile(other) as f:
        f.scene(0)
