"""Forecast metrics against hand-computed values and the kinematic baselines."""
from __future__ import annotations

import pytest
import torch

from drope.data.batch import collate_scenes
from drope.eval.baselines import constant_turn_rate, constant_velocity
from drope.eval.metrics import displacement_metrics, speed_scale, summarize
from sim.generate.scenario import generate_scene


@pytest.fixture(scope="module")
def gen_scenes():
    return [generate_scene(11, i)[0] for i in range(6)]


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


def test_womd_miss_rate_uses_speed_scaled_box_in_the_ground_truth_frame():
    gt = torch.zeros(1, 80, 2)
    gt[0, :, 1] = torch.arange(1, 81) * 0.1  # moving along +y: longitudinal = y, lateral = x
    head = torch.full((1, 80), torch.pi / 2)
    valid = torch.ones(1, 80, dtype=torch.bool)
    fast, slow = torch.tensor([20.0]), torch.tensor([0.0])
    along = (gt + torch.tensor([0.0, 5.0]))[:, None]  # 5 m longitudinal error at 8 s (threshold 6 m)
    across = (gt + torch.tensor([2.0, 0.0]))[:, None]  # 2 m lateral error (threshold 3 m)
    prob = torch.ones(1, 1)
    kw = dict(k=1, horizon=80, gt_heading=head)
    assert float(displacement_metrics(along, prob, gt, valid, speed=fast, **kw)["womd_miss_rate"]) == 0.0
    assert float(displacement_metrics(across, prob, gt, valid, speed=fast, **kw)["womd_miss_rate"]) == 0.0
    assert float(displacement_metrics(along, prob, gt, valid, speed=slow, **kw)["womd_miss_rate"]) == 1.0  # 3 m box
    assert float(displacement_metrics(along, prob, gt, valid, **kw | {"gt_heading": None})["miss_rate"]) == 1.0
    assert speed_scale(torch.tensor([0.0, 6.2, 30.0])).tolist() == pytest.approx([0.5, 0.75, 1.0])
