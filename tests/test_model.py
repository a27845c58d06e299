"""Model contract, loss, training determinism/resume, WOMD overfit, eval metrics."""
from __future__ import annotations

import math

import pytest
import torch

from drope.data.batch import collate_scenes
from drope.eval.baselines import constant_turn_rate, constant_velocity
from drope.eval.metrics import displacement_metrics, summarize
from drope.model import ModelConfig, build_model, to_scene_frame
from drope.nn import EncodingConfig
from drope.train.loss import targets_in_agent_frame, wta_loss
from drope.train.trainer import Trainer, TrainConfig, batch_indices, load_model
from sim.generate.scenario import generate_scene


@pytest.fixture(scope="module")
def gen_scenes():
    return [generate_scene(11, i)[0] for i in range(6)]


def tiny(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(dim=32, num_heads=4, num_blocks=1, **kw)).eval()


@pytest.mark.parametrize("enc", ["none", "absolute", "rpe", "rope2d", "drope", "drope_rope"])
def test_forward_shapes_for_every_encoding(gen_scenes, enc):
    m = tiny(encoding=EncodingConfig(name=enc))
    b = collate_scenes(gen_scenes[:2], max_map=64)
    traj, scale, logits = m(**b.model_inputs())
    B, A = b.agent_mask.shape
    assert traj.shape == (B, A, 6, 80, 3) and scale.shape == (B, A, 6, 80, 2) and logits.shape == (B, A, 6)
    assert torch.isfinite(traj).all() and bool((scale > 0).all())


def test_padding_and_batching_do_not_change_predictions(gen_scenes):
    m = tiny()
    with torch.no_grad():
        solo = m(**collate_scenes(gen_scenes[:1]).model_inputs())[0]
        both = m(**collate_scenes(gen_scenes[:2]).model_inputs())[0]
    n = solo.shape[1]
    assert (both[0, :n] - solo[0]).abs().max() < 1e-4


def test_translation_of_the_scene_frame_changes_nothing(gen_scenes):
    """Everything is relative (agent frames, RoPE): shifting all inputs leaves agent-frame outputs equal."""
    m = tiny()
    b = collate_scenes(gen_scenes[:1])
    inp = b.model_inputs()
    shifted = dict(inp, agent_pos=inp["agent_pos"] + torch.tensor([37.0, -12.0]),
                   map_points=inp["map_points"] + torch.tensor([37.0, -12.0]))
    with torch.no_grad():
        a, b2 = m(**inp)[0], m(**shifted)[0]
    assert (a - b2).abs().max() < 2e-3


def test_to_scene_frame_inverts_targets_in_agent_frame():
    g = torch.Generator().manual_seed(0)
    fut = torch.randn(2, 3, 80, 2, generator=g) * 30
    fh = (torch.rand(2, 3, 80, generator=g) * 2 - 1) * math.pi
    pos, h = torch.randn(2, 3, 2, generator=g) * 50, (torch.rand(2, 3, generator=g) * 2 - 1) * math.pi
    xy, dh = targets_in_agent_frame(fut, fh, pos, h)
    back = to_scene_frame(torch.cat([xy, dh[..., None]], -1)[:, :, None], pos, h)[:, :, 0]
    assert torch.allclose(back[..., :2], fut, atol=1e-4)
    assert torch.allclose(torch.cos(back[..., 2] - fh), torch.ones_like(fh), atol=1e-5)


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
    assert float(none["loss"]) == 0.0  # nothing valid: nothing to learn, and no NaN


def test_batch_order_is_a_function_of_step():
    a = [batch_indices(s, 10, 4, 0) for s in range(6)]
    assert a == [batch_indices(s, 10, 4, 0) for s in range(6)]
    assert sorted(a[0] + a[1] + batch_indices(2, 10, 4, 0)[:2]) == list(range(10))  # epoch = permutation


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
    assert (tmp_path / "part" / "metrics.csv").read_text().count("train") >= 4


def test_mismatched_checkpoint_is_refused(gen_scenes, tmp_path):
    t = Trainer(TrainConfig(out=str(tmp_path), steps=1, batch_size=1, progress=False), ModelConfig(dim=32, num_heads=4),
                gen_scenes, [])
    t.fit()
    with pytest.raises(ValueError, match="differs"):
        Trainer(TrainConfig(out=str(tmp_path), resume="auto", steps=2, progress=False), ModelConfig(dim=64),
                gen_scenes, [])


def test_overfits_the_real_womd_scenario(womd_path):
    """drope_small learns the shared scenario's futures to minADE@6 < 0.3 m (all 50 current agents)."""
    from drope.data.womd import read_scenarios

    torch.set_num_threads(2)
    (scene,) = list(read_scenarios(womd_path))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        t = Trainer(TrainConfig(out=d, steps=300, batch_size=1, lr=3e-3, warmup_steps=10, val_every=10**9,
                                log_every=10**9, ckpt_every=10**9, progress=False), ModelConfig(), [scene], [scene])
        t.fit()
        assert t.validate()["min_ade@6"] < 0.3


def test_metrics_against_hand_computed_values():
    gt = torch.zeros(1, 80, 2)
    gt[0, :, 0] = torch.arange(1, 81) * 0.1
    pred = torch.stack([gt[0] + torch.tensor([0.0, 3.0]), gt[0] + torch.tensor([0.0, 1.0])])[None]  # [1, 2, 80, 2]
    prob = torch.tensor([[0.7, 0.3]])
    valid = torch.ones(1, 80, dtype=torch.bool)
    m1 = displacement_metrics(pred, prob, gt, valid, k=1, horizon=80)
    m2 = displacement_metrics(pred, prob, gt, valid, k=2, horizon=80)
    assert float(m1["min_ade"]) == pytest.approx(3.0) and float(m1["miss_rate"]) == 1.0
    assert float(m2["min_fde"]) == pytest.approx(1.0) and float(m2["miss_rate"]) == 0.0
    assert float(m2["brier_min_fde"]) == pytest.approx(1.0 + 0.7**2)
    valid[0, 40:] = False  # FDE at the last valid step
    assert float(displacement_metrics(pred, prob, gt, valid, 2, 80)["min_fde"]) == pytest.approx(1.0)
    s = summarize(pred, prob, gt, valid, torch.tensor([1]))
    assert s["TYPE_VEHICLE"]["8s"]["min_ade@6"] == pytest.approx(1.0) and s["TYPE_PEDESTRIAN"]["3s"]["min_ade@6"] is None


def test_constant_velocity_is_exact_for_constant_velocity_motion(gen_scenes):
    b = collate_scenes(gen_scenes[:1])
    b2 = b.__class__(**{**{k: v for k, v in vars(b).items()},
                        "agent_vel": torch.tensor([2.0, 1.0]).expand_as(b.agent_vel).clone()})
    cv = constant_velocity(b2)[0, 0, 0]
    assert torch.allclose(cv[-1] - b2.agent_pos[0, 0, -1], torch.tensor([16.0, 8.0]), atol=1e-4)
    ctr = constant_turn_rate(b)
    assert ctr.shape == (1, b.agent_pos.shape[1], 1, 80, 2) and torch.isfinite(ctr).all()
