"""drope-eval on Argoverse 2 scenario directories written by drope.data.av2: drope-train then drope-eval
end to end, the official AV2 metrics in metrics.json equal av2's functions on the same predictions,
the ChallengeSubmission parquet read back, format mismatches and bad input named."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from drope.data.av2 import av2_track_id, read_av2_scenario, write_av2_scenario
from drope.eval.cli import main as eval_main
from drope.metrics.av2 import AV2_METRIC_KEYS
from drope.metrics.av2_submission import SUBMISSION_COLUMNS, read_av2_submission
from tests.builders import av2_shaped

GROUPS = ("AV2_FOCAL", "AV2_SCORED")
FLAGS = ["--plots", "0", "--num-workers", "0", "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def av2_root(tmp_path_factory, gen_scenes):
    """Four generated scenes in AV2's layout (110 steps, current 49) as scenario directories."""
    root = tmp_path_factory.mktemp("av2") / "val"
    for s in gen_scenes[:4]:
        write_av2_scenario(av2_shaped(s), root)
    return root


@pytest.fixture(scope="module")
def av2_ckpt(av2_root, tmp_path_factory):
    """drope-train's loop, 2 steps of a tiny 50/60-step model on the AV2 split (read by the data layer)."""
    from drope.data.features import FeatureSpec
    from drope.data.sources import load_scenes
    from drope.model import ModelConfig
    from drope.train.trainer import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("run")
    mc = ModelConfig(dim=16, num_heads=2, num_blocks=1, local_map_segments=4, features=FeatureSpec(history=50, future=60))
    torch.manual_seed(0)
    tr = Trainer(TrainConfig(out=str(out), steps=2, batch_size=2, warmup_steps=1, val_every=10**6, log_every=1,
                             ckpt_every=2, progress=False), mc, load_scenes([str(av2_root)]), [])
    tr.fit()
    assert tr.step == 2
    return out / "last.ckpt"


def _av2_reference(pred, prob, gt):
    """av2 0.3.6 ``av2.datasets.motion_forecasting.eval.metrics`` (compute_ade, compute_fde,
    compute_is_missed_prediction, compute_brier_fde with normalize=True) as written there, for one
    track, with the challenge's choice of predictions (descending probability, K=1 the first, K=6
    the first six, miss and Brier at the min-FDE one)."""
    def compute_ade(f, g):
        return np.mean(np.linalg.norm(f - g, axis=2), axis=1)

    def compute_fde(f, g):
        return np.linalg.norm((f - g)[:, -1], axis=-1)

    def compute_brier_fde(f, g, p, normalize=False):
        if np.logical_or(p < 0.0, p > 1.0).any():
            raise ValueError("At least one forecast probability falls outside the range [0, 1].")
        if normalize:
            p = p / np.sum(p)
        return compute_fde(f, g) + np.square(1 - p)

    order = np.argsort(-prob, kind="stable")
    pred, p = pred[order], prob[order]
    ade, fde = compute_ade(pred, gt), compute_fde(pred, gt)
    brier = compute_brier_fde(pred, gt, p, normalize=True)
    best = int(np.argmin(fde[:6]))
    return {"min_ade_k1": ade[0], "min_fde_k1": fde[0], "miss_rate_k1": float(fde[0] > 2.0),
            "min_ade_k6": ade[:6].min(), "min_fde_k6": fde[best], "miss_rate_k6": float(fde[best] > 2.0),
            "brier_min_fde_k6": brier[best]}


def test_train_then_eval_reports_official_av2_metrics_and_writes_the_submission(av2_root, av2_ckpt, tmp_path, capsys):
    from drope.eval.evaluate import predict_scenes
    from drope.model.checkpoint import load_model

    sub = tmp_path / "av2_submission.parquet"
    assert eval_main(["--ckpt", str(av2_ckpt), "--data", str(av2_root), "--out", str(tmp_path / "ev"),
                      "--submission", str(sub), *FLAGS]) == 0
    out = capsys.readouterr().out
    assert "official Argoverse 2 metrics" in out and "brier-minFDE@6" in out and "ChallengeSubmission" in out
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert json.loads((tmp_path / "ev" / "read.json").read_text()) == {"scenes": 4, "corrupt": 0}
    # dense rows end at the 6 s AV2 horizon; no row claims 8 s
    assert list(res["drope"]["ALL"]) == ["3s", "5s", "6s"]

    # the same predictions, scored track by track with av2's own functions
    model, _ = load_model(av2_ckpt)
    scenes = [read_av2_scenario(d) for d in sorted(av2_root.iterdir())]
    ref: dict[str, dict[str, list]] = {"drope": {g: [] for g in GROUPS}, "constant_velocity": {g: [] for g in GROUPS}}
    for p in predict_scenes(model, scenes, batch_size=8):
        s, c = p.scene, p.scene.current_index
        focal_ids = set(s.objects_of_interest.tolist())
        for r, a in enumerate(p.agent_index.tolist()):
            assert a in s.tracks_to_predict.tolist()
            gt = s.agent_pos[a, c + 1 :].double().numpy()
            assert s.agent_valid[a, c + 1 :].all(), "generated tracks to predict are fully observed"
            for method in ref:
                m = _av2_reference(p.xy[method][r].double().numpy(), p.prob[method][r].double().numpy(), gt)
                ref[method]["AV2_SCORED"].append(m)
                if int(s.agent_id[a]) in focal_ids:
                    ref[method]["AV2_FOCAL"].append(m)
    for method, groups in ref.items():
        assert len(groups["AV2_FOCAL"]) == 4 and len(groups["AV2_SCORED"]) > 4
        for g, rows in groups.items():
            got = res[method][g]["6s"]
            assert got["count"] == len(rows)
            for k in AV2_METRIC_KEYS:
                assert got[k] == pytest.approx(np.mean([r[k] for r in rows]), abs=1e-6), (method, g, k)
    # the official AV2 rows replace the WOMD keys: no WOMD metric is claimed for AV2 scenes
    assert "mean_average_precision" not in res["drope"]["TYPE_VEHICLE"]["3s"]

    # the submission: official schema, one focal track per scenario, world coordinates, sum to 1
    schema = pq.read_schema(sub)
    assert schema.names == list(SUBMISSION_COLUMNS)
    assert [str(schema.field(c).type) for c in SUBMISSION_COLUMNS] == [
        "string", "string", "double", "list<element: double>", "list<element: double>"]
    back = read_av2_submission(sub)
    assert sorted(back) == sorted(s.scenario_id for s in scenes)
    by_id = {s.scenario_id: s for s in scenes}
    preds = {p.scene.scenario_id: p for p in predict_scenes(model, scenes, batch_size=8)}
    for sid, (prob, tracks) in back.items():
        s, p = by_id[sid], preds[sid]
        focal = int(s.tracks_to_predict[0])
        assert list(tracks) == [av2_track_id(int(s.agent_id[focal]))]
        assert prob.sum() == pytest.approx(1.0) and len(prob) == p.xy["drope"].shape[1]
        r = p.agent_index.tolist().index(focal)
        np.testing.assert_allclose(tracks[av2_track_id(int(s.agent_id[focal]))], s.to_world_xy(p.xy["drope"][r]),
                                   atol=1e-6)
        np.testing.assert_allclose(prob, p.prob["drope"][r].double().numpy() / p.prob["drope"][r].double().sum().item(),
                                   atol=1e-7)


def test_submission_file_name_must_match_the_scenes_dataset(av2_root, av2_ckpt, gen_scenes, tmp_path, capsys):
    # AV2 scenes asked for a WOMD binproto
    assert eval_main(["--ckpt", str(av2_ckpt), "--data", str(av2_root), "--out", str(tmp_path / "a"),
                      "--submission", str(tmp_path / "motion.binproto"), *FLAGS]) == 2
    err = capsys.readouterr().err
    assert "motion.binproto" in err and "av2" in err and ".parquet" in err
    assert not list(tmp_path.glob("motion.binproto*"))
    # WOMD-format (generated) scenes asked for a parquet
    from drope.data.features import FeatureSpec
    from drope.model import ModelConfig
    from drope.model.transformer import build_model

    cfg = ModelConfig(dim=16, num_heads=2, num_blocks=1, local_map_segments=4, features=FeatureSpec())
    ckpt = tmp_path / "womd.ckpt"
    torch.save({"model_config": cfg.to_dict(), "model": build_model(cfg).state_dict()}, ckpt)
    assert eval_main(["--ckpt", str(ckpt), "--num-scenes", "1", "--out", str(tmp_path / "b"),
                      "--submission", str(tmp_path / "s.parquet"), *FLAGS]) == 2
    err = capsys.readouterr().err
    assert "s.parquet" in err and "MotionChallengeSubmission" in err
    assert not list(tmp_path.glob("s.parquet*"))


def test_bad_av2_scenarios_are_named_or_skipped_and_counted(av2_root, av2_ckpt, tmp_path, capsys):
    import shutil

    root = tmp_path / "split"
    shutil.copytree(av2_root, root)
    dirs = sorted(root.iterdir())
    no_map = next(dirs[0].glob("log_map_archive_*.json"))
    no_map.unlink()
    cut = next(dirs[1].glob("scenario_*.parquet"))
    pq.write_table(pq.read_table(cut).drop(["heading", "velocity_x"]), cut)
    junk = next(dirs[2].glob("scenario_*.parquet"))
    junk.write_bytes(b"this is not parquet")

    assert eval_main(["--ckpt", str(av2_ckpt), "--data", str(root), "--out", str(tmp_path / "skip"), *FLAGS]) == 0
    assert json.loads((tmp_path / "skip" / "read.json").read_text()) == {"scenes": 1, "corrupt": 3}
    res = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert res["drope"]["AV2_FOCAL"]["6s"]["count"] == 1

    for bad, what in ((dirs[0], no_map.name), (dirs[1], "heading, velocity_x"), (dirs[2], "not a readable parquet")):
        assert eval_main(["--ckpt", str(av2_ckpt), "--data", str(bad), "--out", str(tmp_path / "raise"),
                          "--on-corrupt", "raise", *FLAGS]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and what in err, err


def test_test_split_without_future_gets_a_submission_and_no_metrics(av2_root, av2_ckpt, tmp_path):
    """AV2's test split has 50 steps (no future): the submission is what it is for; nothing is scored."""
    import dataclasses

    from drope.data.scene import Scene

    s = read_av2_scenario(sorted(av2_root.iterdir())[0])
    cut = {f.name: getattr(s, f.name).narrow(f.metadata["shape"].index("T"), 0, 50)
           for f in Scene.tensor_fields() if "T" in f.metadata["shape"]}
    d = write_av2_scenario(dataclasses.replace(s, **cut).validate(), tmp_path / "test")
    sub = tmp_path / "test.parquet"
    assert eval_main(["--ckpt", str(av2_ckpt), "--data", str(d), "--out", str(tmp_path / "ev"),
                      "--submission", str(sub), *FLAGS]) == 0
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert res["drope"]["AV2_FOCAL"]["6s"] == {**{k: None for k in AV2_METRIC_KEYS}, "count": 0}
    probs, tracks = read_av2_submission(sub)[s.scenario_id]
    assert list(tracks) == [av2_track_id(int(s.agent_id[s.tracks_to_predict[0]]))]
    assert tracks[next(iter(tracks))].shape == (len(probs), 60, 2)
