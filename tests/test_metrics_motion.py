"""WOMD motion metrics on the shared scene with predictions of known answers."""
from __future__ import annotations

import json

import pytest
import torch

from drope.metrics.motion import MotionMetricsConfig, aggregate_motion_metrics, scene_motion_records


@pytest.fixture(scope="module")
def scene(womd_path):
    from drope.data.womd import read_scenarios

    return next(iter(read_scenarios([womd_path])))


def test_perfect_and_shifted_predictions(scene):
    idx = scene.tracks_to_predict
    gt = scene.agent_pos[idx, 11:]  # [R, 80, 2]
    pred = gt[:, None].repeat(1, 6, 1, 1)
    prob = torch.tensor([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1]]).expand(len(idx), -1)
    rec = scene_motion_records(scene, idx, pred, prob)
    ok = ~torch.isnan(rec.min_ade)
    assert ok.any() and torch.allclose(rec.min_ade[ok], torch.zeros_like(rec.min_ade[ok]))
    assert (rec.miss[~torch.isnan(rec.miss)] == 0).all()
    out = aggregate_motion_metrics([rec])
    assert out["TYPE_CYCLIST"] is None
    veh = out["TYPE_VEHICLE"]
    assert set(veh) == {"3s", "5s", "8s"} and veh["8s"]["mean_average_precision"] == pytest.approx(1.0)
    # 4 m lateral shift in each agent's own frame: a miss at 3 s (threshold ≤ 1 m lateral)
    h = scene.agent_heading[idx, 11:]
    left = torch.stack([-torch.sin(h), torch.cos(h)], -1)
    rec = scene_motion_records(scene, idx, (gt + 4 * left)[:, None].repeat(1, 6, 1, 1), prob)
    m = rec.miss[:, 0]
    assert (m[~torch.isnan(m)] == 1).all()
    assert torch.allclose(rec.min_fde[~torch.isnan(rec.min_fde)], torch.full_like(rec.min_fde[~torch.isnan(rec.min_fde)], 4.0), atol=1e-3)
    json.dumps(aggregate_motion_metrics([rec]))  # JSON-serialisable (None, floats)


def test_overlap_with_logged_neighbour(scene):
    # predict an agent to sit on another valid agent's logged position: overlap at every horizon
    idx = scene.tracks_to_predict[:1]
    valid = scene.agent_valid
    other = next(a for a in range(scene.num_agents) if a != int(idx[0]) and bool(valid[a, 10:].all()))
    pred = scene.agent_pos[other, 11:][None, None].repeat(1, 6, 1, 1)
    rec = scene_motion_records(scene, idx, pred, torch.ones(1, 6))
    assert rec.overlap[0].tolist() == [1.0, 1.0, 1.0]


def test_motion_submission_cli(scene, womd_path, tmp_path, capsys):
    from drope.metrics.cli import main
    from drope.metrics.submission import write_motion_submission

    idx = scene.tracks_to_predict
    pred = scene.agent_pos[idx, 11:][:, None].repeat(1, 6, 1, 1)
    path = tmp_path / "motion.bin"
    write_motion_submission(path, [scene], [(idx, pred, torch.rand(len(idx), 6))])
    assert main(["motion", str(path), "--scenarios", str(womd_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["TYPE_VEHICLE"]["3s"]["min_ade"] == pytest.approx(0.0, abs=1e-3)
    write_motion_submission(path, [scene], [(idx[:1], pred[:1], torch.rand(1, 6))])
    assert main(["motion", str(path), "--scenarios", str(womd_path)]) == 2
    assert "missing predictions" in capsys.readouterr().err


def test_config_rejects_bad_steps():
    from drope.metrics.motion import MeasurementStep

    with pytest.raises(ValueError, match="measurement_step"):
        MotionMetricsConfig(step_configurations=(MeasurementStep(16, 1.0, 2.0),))
