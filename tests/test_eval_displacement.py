"""Forecast metrics against hand-computed values and the kinematic baselines."""
from __future__ import annotations

import pytest
import torch

from drope.data.batch import collate_scenes
from drope.eval.baselines import constant_turn_rate, constant_velocity
from drope.eval.displacement import OFFICIAL_KEYS, displacement_metrics, summarize


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


def test_perfect_predictions_score_zero_error_and_full_precision(gen_scenes):
    """Predictions equal to the log: dense and official errors are zero, nothing is missed and the
    official mAP is 1 for every type present; official keys exist per type only, not in ALL."""
    from drope.eval.evaluate import ScenePredictions, score_predictions

    preds = []
    for scene in gen_scenes[:3]:
        idx = scene.tracks_to_predict
        gt = scene.agent_pos[idx, 11:]
        xy = gt[:, None].repeat(1, 6, 1, 1) + torch.arange(6.0)[None, :, None, None] * 3.0  # mode 0 exact
        prob = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1]).expand(len(idx), 6)
        preds.append(ScenePredictions(scene=scene, agent_index=idx, xy={k: xy for k in ("drope", "constant_velocity", "constant_turn_rate")},
                                      prob={k: prob for k in ("drope", "constant_velocity", "constant_turn_rate")},
                                      gt=gt, gt_valid=scene.agent_valid[idx, 11:], agent_type=scene.agent_type[idx]))
    res = score_predictions(preds)["drope"]
    present = [t for t in ("TYPE_VEHICLE", "TYPE_PEDESTRIAN", "TYPE_CYCLIST") if res[t]["8s"]["count"]]
    assert present
    for t in present:
        for h in ("3s", "5s", "8s"):
            row = res[t][h]
            assert row["min_ade"] == pytest.approx(0.0, abs=1e-5) and row["min_ade@6"] == pytest.approx(0.0, abs=1e-5)
            assert row["miss_rate"] == 0.0 and row["mean_average_precision"] == pytest.approx(1.0)
            assert row["brier_min_fde@6"] == pytest.approx(0.25, abs=1e-5)
    assert set(OFFICIAL_KEYS).isdisjoint(res["ALL"]["8s"])
    absent = [t for t in ("TYPE_VEHICLE", "TYPE_PEDESTRIAN", "TYPE_CYCLIST") if t not in present]
    for t in absent:
        assert all(res[t]["8s"][k] is None for k in OFFICIAL_KEYS)
