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
    _, off, n = ds.index[1]
    raw = bytearray(p.read_bytes())
    raw[off + 12 + n // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    ds = stream.SceneStreamDataset(str(p))
    items = [ds[i] for i in range(len(ds))]
    assert items[1] is None and ds.corrupt == 1
    assert len(stream.collate_skip_none(items)) == 2


def test_missing_and_empty_source(tmp_path):
    with pytest.raises(stream.SourceError, match="nope"):
        stream.SceneStreamDataset(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(stream.SourceError, match="empty"):
        stream.SceneStreamDataset(str(tmp_path / "empty"))
    (tmp_path / "z.tfrecord").write_bytes(b"")
    with pytest.raises(stream.SourceError, match="no records"):
        len(stream.SceneStreamDataset(str(tmp_path / "z.tfrecord")))


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
