"""drope-eval on the shared WOMD scene: official motion metrics in metrics.json, the model's
MotionChallengeSubmission, and drope-score motion on that file reproducing the same numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from drope.eval.cli import main as eval_main
from drope.metrics.cli import main as score_main

TYPES = ("TYPE_VEHICLE", "TYPE_PEDESTRIAN", "TYPE_CYCLIST")
OFFICIAL = ("min_ade", "min_fde", "miss_rate", "overlap_rate", "mean_average_precision", "soft_mean_average_precision")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An untrained small model saved as drope-train does (weights random but fixed): the
    submission path does not care how good the predictions are, only that they round-trip."""
    from drope.model import ModelConfig
    from drope.model.transformer import build_model

    cfg = ModelConfig(dim=32, num_blocks=1)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"model_config": cfg.to_dict(), "model": build_model(cfg).state_dict()}, path)
    return path


def test_submission_round_trips_through_drope_score(tiny_ckpt, womd_path, tmp_path, capsys):
    from waymo_open_dataset.protos import motion_submission_pb2

    from drope.data.womd import read_scenarios

    sub = tmp_path / "motion.binproto"
    rc = eval_main(["--ckpt", str(tiny_ckpt), "--data", str(womd_path), "--out", str(tmp_path / "ev"), "--plots", "0",
                    "--submission", str(sub), "--account-name", "me@example.org", "--authors", "A. One", "B. Two"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mAP" in printed and "TYPE_VEHICLE" in printed and str(sub) in printed
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(res) == {"drope", "constant_velocity", "constant_turn_rate"}
    for method in res.values():  # official rows per type, dense rows everywhere
        assert method["TYPE_VEHICLE"]["8s"]["count"] > 0 and "min_ade@6" in method["ALL"]["8s"]
        assert all(method["TYPE_VEHICLE"][h][k] is not None for h in ("3s", "5s", "8s") for k in OFFICIAL)

    # the proto: 6 modes x 16 points, world coordinates, the tracks to predict, probabilities
    scene = next(read_scenarios([womd_path]))
    proto = motion_submission_pb2.MotionChallengeSubmission.FromString(sub.read_bytes())
    assert proto.submission_type == motion_submission_pb2.MotionChallengeSubmission.MOTION_PREDICTION
    assert proto.account_name == "me@example.org" and list(proto.authors) == ["A. One", "B. Two"]
    assert int(proto.num_model_parameters) > 0 and proto.unique_method_name == "drope"
    (sp,) = proto.scenario_predictions
    assert sp.scenario_id == scene.scenario_id
    preds = sp.single_predictions.predictions
    assert sorted(p.object_id for p in preds) == sorted(scene.agent_id[scene.tracks_to_predict].tolist())
    world_now = {int(scene.agent_id[a]): scene.to_world_xy(scene.agent_pos[a, 10]) for a in scene.tracks_to_predict.tolist()}
    for p in preds:
        conf = [t.confidence for t in p.trajectories]
        assert len(conf) == 6 and sum(conf) == pytest.approx(1.0, abs=1e-5) and conf == sorted(conf, reverse=True)
        first = np.array([p.trajectories[0].trajectory.center_x[0], p.trajectories[0].trajectory.center_y[0]])
        assert all(len(t.trajectory.center_x) == 16 == len(t.trajectory.center_y) for t in p.trajectories)
        assert np.linalg.norm(first - world_now[p.object_id]) < 100  # world frame: near the object, not the origin
        assert np.linalg.norm(world_now[p.object_id]) > 1000  # (this scene lies far from the world origin)

    # drope-score motion on the file gives drope-eval's in-process official numbers
    assert score_main(["motion", str(sub), "--scenarios", str(womd_path), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    for t in TYPES:
        if scored[t] is None:
            assert res["drope"][t]["8s"]["count"] == 0 and res["drope"][t]["8s"]["min_ade"] is None
            continue
        for h, row in scored[t].items():
            for k in OFFICIAL:
                # float32 world coordinates in the proto: ~1e-4 m of rounding
                assert res["drope"][t][h][k] == pytest.approx(row[k], abs=2e-3), (t, h, k)


def test_submission_errors(tiny_ckpt, womd_path, tmp_path, capsys):
    base = ["--ckpt", str(tiny_ckpt), "--data", str(womd_path), "--plots", "0", "--out", str(tmp_path / "ev")]
    assert eval_main(base + ["--submission", str(tmp_path / "s.bin"), "--all-agents"]) == 2
    assert "--all-agents" in capsys.readouterr().err
    # one agent per scene: the tracks to predict far from the SDC are dropped, the file would be invalid
    assert eval_main(base + ["--submission", str(tmp_path / "s.bin"), "--max-agents", "1"]) == 2
    assert "scenario 637f20cafde22ff8: tracks to predict" in capsys.readouterr().err
    assert not (tmp_path / "s.bin").exists()
    if not torch.cuda.is_available():  # a GPU that is not there is named before any scene is read
        assert eval_main(base + ["--device", "cuda:0"]) == 2
        assert "--device='cuda:0': no CUDA device is available" in capsys.readouterr().err
        assert not (tmp_path / "ev" / "metrics.json").exists()


def test_generated_scenes_and_help(tiny_ckpt, tmp_path, capsys):
    assert eval_main(["--ckpt", str(tiny_ckpt), "--num-scenes", "2", "--plots", "0", "--out", str(tmp_path / "g"),
                      "--submission", str(tmp_path / "g.bin"), "--device", "cpu"]) == 0
    from drope.metrics.submission import read_motion_submission

    assert len(read_motion_submission(tmp_path / "g.bin")) == 2
    with pytest.raises(SystemExit):
        eval_main(["--help"])
    assert "--submission FILE" in capsys.readouterr().out
