"""Loss, deterministic batching, exact resume, checkpoint checks, padded-batch cache, WOMD overfit."""
from __future__ import annotations

import pytest
import torch

from drope.data.batch import collate_scenes, stack_batches
from drope.model import ModelConfig
from drope.train.augment import AugmentConfig
from drope.train.loss import wta_loss
from drope.train.trainer import Trainer, TrainConfig, load_model, lr_lambda


def test_wta_loss_trains_only_the_best_mode_and_respects_masks():
    gt = torch.zeros(1, 1, 80, 2)
    traj = torch.zeros(1, 1, 3, 80, 3)
    traj[0, 0, 0, :, 0] = -2.0
    traj[0, 0, 1, :, 0] = 5.0
    traj[0, 0, 2, :, 0] = 0.1  # best
    traj.requires_grad_(True)
    scale = torch.ones(1, 1, 3, 80, 2)
    logits = torch.zeros(1, 1, 3, requires_grad=True)
    valid = torch.ones(1, 1, 80, dtype=torch.bool)
    out = wta_loss(traj, scale, logits, gt, torch.zeros(1, 1, 80), valid)
    out["loss"].backward()
    g = traj.grad[0, 0].abs().sum((-1, -2))
    assert g[2] > 0 and g[0] == 0 and g[1] == 0
    assert logits.grad[0, 0, 2] < 0  # pushes the best mode's score up
    none = wta_loss(traj, scale, logits, gt, torch.zeros(1, 1, 80), torch.zeros_like(valid))
    assert float(none["loss"].detach()) == 0.0  # nothing valid: nothing to learn, and no NaN


def test_batch_order_is_a_function_of_step(gen_scenes, tmp_path):
    cfg = TrainConfig(out=str(tmp_path), steps=4, batch_size=4, progress=False)
    a, b = (Trainer(cfg, ModelConfig(dim=32, num_heads=4, num_blocks=1), gen_scenes, []) for _ in range(2))
    for step in range(3):
        x, info = a.cpu_batch(step)
        y, _ = b.cpu_batch(step)
        assert x.scenario_id == y.scenario_id and torch.equal(x.agent_pos, y.agent_pos)
    ids = [sid for s in range(3) for sid in a.cpu_batch(s)[1]["scenario_id"]]
    assert sorted(ids[: len(gen_scenes)]) == sorted(s.scenario_id for s in gen_scenes)  # epoch = permutation


def test_resume_auto_reproduces_uninterrupted_training(gen_scenes, tmp_path):
    cfg = dict(steps=8, batch_size=2, warmup_steps=2, val_every=10**6, log_every=2, ckpt_every=3, progress=False)
    mc = ModelConfig(dim=32, num_heads=4, num_blocks=1)
    full = Trainer(TrainConfig(out=str(tmp_path / "full"), **cfg), mc, gen_scenes, [])
    full.fit()
    # "kill" after 5 steps (last checkpoint at step 3), then resume=auto from that checkpoint
    part = Trainer(TrainConfig(out=str(tmp_path / "part"), stop_after=5, **cfg), mc, gen_scenes, [])
    part.fit()
    assert part.step == 5
    resumed = Trainer(TrainConfig(out=str(tmp_path / "part"), resume="auto", **cfg), mc, gen_scenes, [])
    assert resumed.step == 3
    resumed.fit()
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    model, ckpt = load_model(tmp_path / "part" / "last.ckpt")
    assert ckpt["step"] == 8 and (tmp_path / "part" / "config.yaml").exists()
    steps = [int(r.split(",")[0]) for r in (tmp_path / "part" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4, 6, 8]  # rows after the checkpoint were dropped and written again once


def test_mismatched_checkpoint_is_refused(gen_scenes, tmp_path):
    t = Trainer(TrainConfig(out=str(tmp_path), steps=1, batch_size=1, progress=False), ModelConfig(dim=32, num_heads=4),
                gen_scenes, [])
    t.fit()
    with pytest.raises(ValueError, match="differs"):
        Trainer(TrainConfig(out=str(tmp_path), resume="auto", steps=2, progress=False), ModelConfig(dim=64),
                gen_scenes, [])


def test_stacked_cached_batches_equal_one_collate(gen_scenes):
    a = collate_scenes(gen_scenes[:3])
    b = stack_batches([collate_scenes([s]) for s in gen_scenes[:3]])
    for k, v in a.tensor_items():
        assert torch.equal(v, getattr(b, k)), k
    assert b.scenario_id == a.scenario_id


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_lambda(s, 10, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:])) and lrs[100] == pytest.approx(0.0)


def test_overfits_the_real_womd_scenario(womd_path):
    """drope_small learns the shared scenario's futures to minADE@6 < 0.3 m (all 50 current agents)."""
    from drope.data.womd import read_scenarios

    (scene,) = list(read_scenarios(womd_path))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        # memorising the log: the closed-loop perturbation (on by default) would move its targets
        t = Trainer(TrainConfig(out=d, steps=300, batch_size=1, lr=3e-3, warmup_steps=10, val_every=10**9,
                                log_every=10**9, ckpt_every=10**9, progress=False, augment=AugmentConfig(perturb_prob=0.0)),
                    ModelConfig(), [scene], [scene])
        t.fit()
        assert t.validate()["min_ade@6"] < 0.3


def test_training_sources_read_shards_and_the_cache_alike(womd_path, tmp_path):
    from drope.data.cache import build_cache
    from drope.train.data import load_scenes

    build_cache([womd_path], tmp_path / "cache", workers=1, progress=False)
    (a,), (b,) = load_scenes([str(womd_path)]), load_scenes([str(tmp_path / "cache")])
    assert a.scenario_id == b.scenario_id and torch.equal(a.agent_pos, b.agent_pos)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_scenes([str(tmp_path / "nope.tfrecord")])


def test_precision_bf16_autocasts_with_a_cpu_warning_and_fp32_positions(gen_scenes, tmp_path, caplog, monkeypatch):
    import drope.train.trainer as tr

    seen = []
    real = tr.compute_loss

    def spy(model, batch, weights):
        seen.append((batch.agent_pos.dtype, torch.get_autocast_dtype("cpu"), torch.is_autocast_enabled("cpu")))
        return real(model, batch, weights)

    monkeypatch.setattr(tr, "compute_loss", spy)
    cfg = dict(steps=2, batch_size=2, warmup_steps=1, val_every=10**6, log_every=1, ckpt_every=10**6, progress=False)
    mc = ModelConfig(dim=32, num_heads=4, num_blocks=1)
    with caplog.at_level("WARNING", logger="drope.train.trainer"):
        t = Trainer(TrainConfig(out=str(tmp_path / "bf16"), precision="bf16", **cfg), mc, gen_scenes, [])
    assert "precision=bf16 on the CPU" in caplog.text
    res = t.fit()
    assert seen == [(torch.float32, torch.bfloat16, True)] * 2  # inputs stay fp32; the ops autocast
    assert torch.isfinite(torch.tensor(res["train"]["loss"]))
    Trainer(TrainConfig(out=str(tmp_path / "fp32"), **cfg), mc, gen_scenes, []).fit()
    assert seen[-1][0] == torch.float32 and seen[-1][2] is False  # fp32: no autocast
    with pytest.raises(ValueError, match="precision='fp16'"):
        Trainer(TrainConfig(out=str(tmp_path / "x"), precision="fp16", **cfg), mc, gen_scenes, [])


def _train_cmd(out, data, *extra):
    import sys

    return [sys.executable, "-m", "drope.train.cli", f"out={out}", "steps=8", "batch_size=2", "warmup_steps=2",
            "model.dim=32", "model.num_heads=4", "model.num_blocks=1", f"data.train=[{data}]", "data.val=[]",
            "data.generate_val=0", "data.num_workers=2", "log_every=1", "ckpt_every=2", "val_every=1000000",
            "progress=false", *extra]


def test_sigkill_mid_epoch_with_two_workers_then_resume_auto_is_bit_identical(tmp_path, gen_scenes):
    """A real kill (SIGKILL to drope-train, its 2 DataLoader workers die with it) right after the step-2
    checkpoint, mid-epoch (5 scenes, 2 per step), then ``resume=auto``: the parameters and every
    metrics.csv value but the timing column equal an uninterrupted run's."""
    import csv
    import os
    import signal
    import subprocess
    import time

    from drope.data.cache import save_scenes

    (tmp_path / "c").mkdir()
    save_scenes(tmp_path / "c" / "x.scenes.npz", gen_scenes[:5])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    full, part = tmp_path / "full", tmp_path / "part"
    subprocess.run(_train_cmd(full, tmp_path / "c"), env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(_train_cmd(part, tmp_path / "c"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not (part / "last.ckpt").exists() and proc.poll() is None:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its workers, wherever they are
        assert proc.wait(timeout=60) == -signal.SIGKILL, "drope-train finished before it could be killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at = torch.load(part / "last.ckpt", weights_only=False)["step"]
    assert 2 <= killed_at < 8
    subprocess.run(_train_cmd(part, tmp_path / "c", "resume=auto"), env=env, check=True, capture_output=True,
                   timeout=300)
    a, b = (torch.load(d / "last.ckpt", weights_only=False) for d in (full, part))
    assert a["step"] == b["step"] == 8
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    rows = [[{k: v for k, v in r.items() if k != "scenes_per_s"} for r in csv.DictReader((d / "metrics.csv").open())]
            for d in (full, part)]
    assert rows[0] == rows[1] and [int(r["step"]) for r in rows[0]] == list(range(1, 9))
