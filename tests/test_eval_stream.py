"""drope-eval streams: bounded memory over cache dirs (live Scene objects and traced Python memory
do not grow with N), streamed metrics equal the one-shot in-memory ones, corrupt records counted."""
from __future__ import annotations

import dataclasses
import json
import tracemalloc
import weakref

import pytest
import torch

from drope.data import stream
from drope.data.cache import save_scenes
from drope.eval.evaluate import ReadStats, evaluate, predict_scenes
from drope.eval.displacement import add_official_metrics, summarize
from drope.metrics.motion import aggregate_motion_metrics, scene_motion_records
from tests.builders import make_scene


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops: a second intra-op thread only adds barrier waits (7x slower on a loaded 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model():
    from drope.model import ModelConfig
    from drope.model.transformer import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(dim=32, num_heads=4, num_blocks=1)).eval()


def _small_scenes(n: int) -> list:
    """4 agents, 2 map features, 91 steps, current step 10: WOMD-shaped, fast to evaluate."""
    base = [dataclasses.replace(make_scene(A=4, T=91, seed=i), current_index=10, source="womd") for i in range(4)]
    return [dataclasses.replace(base[i % 4], scenario_id=f"s{i:05d}") for i in range(n)]


class _Tracked(stream.SceneStreamDataset):
    """Counts the Scene objects alive at once (weakref finalizers: no reference kept here)."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.live = self.peak = 0

    def _dead(self) -> None:
        self.live -= 1

    def __getitem__(self, i):
        s = super().__getitem__(i)
        if s is not None and "_tracked" not in vars(s):  # the dataset's one-item memo returns it again
            object.__setattr__(s, "_tracked", True)
            self.live += 1
            self.peak = max(self.peak, self.live)
            weakref.finalize(s, self._dead)
        return s


def test_memory_does_not_grow_with_the_number_of_scenes(tmp_path, tiny_model):
    peaks, live = {}, {}
    for n in (24, 192):
        d = tmp_path / str(n)
        d.mkdir()
        scenes = _small_scenes(n)
        for k in range(0, n, 24):  # several cache files, as drope-data cache writes them
            save_scenes(d / f"part{k:04d}.scenes.npz", scenes[k : k + 24])
        del scenes
        ds = _Tracked(str(d), open_members=36)  # ~1.5 files open
        stats = ReadStats()
        tracemalloc.start()
        res = evaluate(tiny_model, ds, batch_size=4, stats=stats)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        live[n] = ds.peak
        assert stats.scenes == n and res["drope"]["ALL"]["8s"]["count"] == n  # one track to predict each
        assert res["drope"]["TYPE_VEHICLE"]["8s"]["min_ade"] is not None  # official records were pooled
    # two batches (the loader fetches the next while the last is scored) + the dataset's one-item memo
    assert live[24] == live[192] <= 2 * 4 + 1, live
    # what grows is the official metrics' per-object records (mAP needs every object's confidences),
    # measured 4-6 KB per extra scene; keeping the scenes would cost at least their tensors (17 KB each)
    probe = _small_scenes(1)[0]
    one_scene = sum(getattr(probe, f.name).numel() * getattr(probe, f.name).element_size() for f in probe.tensor_fields())
    assert (peaks[192] - peaks[24]) / (192 - 24) < 0.5 * one_scene, (peaks, one_scene)


def test_streamed_metrics_equal_the_in_memory_ones(tmp_path, gen_scenes, tiny_model):
    """Cache dir, batches of 2, 2 workers == the pre-streaming computation: one summarize over all
    agents and one aggregate over all per-scene records (in-memory scenes, one batch)."""
    save_scenes(tmp_path / "a.scenes.npz", gen_scenes)
    streamed = evaluate(tiny_model, stream.SceneStreamDataset(str(tmp_path)), batch_size=2, num_workers=2)
    preds = predict_scenes(tiny_model, gen_scenes, batch_size=8)
    ref = {}
    for k in ("drope", "constant_velocity", "constant_turn_rate"):
        dense = summarize(*(torch.cat([getattr(p, f)[k] if f in ("xy", "prob") else getattr(p, f) for p in preds])
                            for f in ("xy", "prob", "gt", "gt_valid", "agent_type")))
        recs = [scene_motion_records(p.scene, p.agent_index, p.xy[k], p.prob[k]) for p in preds]
        ref[k] = add_official_metrics(dense, aggregate_motion_metrics(recs))
    assert streamed.keys() == ref.keys()
    n_values = 0
    for k in ref:
        for t, hs in ref[k].items():
            for h, row in hs.items():
                assert streamed[k][t][h].keys() == row.keys()
                for key, v in row.items():
                    got = streamed[k][t][h][key]
                    assert (got is None) == (v is None), (k, t, h, key)
                    if v is not None:
                        assert got == pytest.approx(v, rel=1e-5, abs=1e-6), (k, t, h, key)
                        n_values += 1
    assert n_values > 100


def test_eval_cli_counts_corrupt_records(tmp_path, capsys):
    from drope.data.womd import write_scenarios
    from drope.eval.cli import main as eval_main
    from drope.model import ModelConfig
    from drope.model.transformer import build_model

    cfg = ModelConfig(dim=32, num_heads=4, num_blocks=1)
    ckpt = tmp_path / "m.ckpt"
    torch.save({"model_config": cfg.to_dict(), "model": build_model(cfg).state_dict()}, ckpt)
    shard = tmp_path / "a.tfrecord"
    write_scenarios(shard, _small_scenes(5))
    _, _, off, n = stream.SceneStreamDataset(str(shard)).locate(2)
    raw = bytearray(shard.read_bytes())
    raw[off + 12 + n // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    rc = eval_main(["--ckpt", str(ckpt), "--data", str(shard), "--out", str(tmp_path / "ev"), "--plots", "0",
                    "--batch-size", "2", "--num-workers", "2", "--submission", str(tmp_path / "sub.bin")])
    assert rc == 0
    assert json.loads((tmp_path / "ev" / "read.json").read_text()) == {"scenes": 4, "corrupt": 1}
    assert "4 scenes evaluated, 1 corrupt records skipped" in capsys.readouterr().out
    from drope.metrics.submission import read_motion_submission

    assert sorted(read_motion_submission(tmp_path / "sub.bin")) == ["s00000", "s00001", "s00003", "s00004"]
