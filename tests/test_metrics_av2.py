"""AV2 metrics equal av2's (golden file written by docs/compare_av2_official.py; live when av2 imports),
and the ChallengeSubmission parquet has av2's schema and reads back."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from drope.metrics.av2 import AV2_METRIC_KEYS, av2_metrics, av2_metrics_focal_and_scored, av2_track_metrics
from drope.metrics.av2_submission import (
    SUBMISSION_COLUMNS,
    Av2TrackPrediction,
    read_av2_submission,
    write_av2_submission,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((ROOT / "tests" / "data" / "av2_metrics_golden.json").read_text())


def _compare_script():
    spec = importlib.util.spec_from_file_location("compare_av2_official", ROOT / "docs" / "compare_av2_official.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check_case(case: dict, expected: dict) -> None:
    per = av2_track_metrics(case["pred"], case["prob"], case["gt"], case.get("valid"))
    assert per["counted"].tolist() == expected["counted"], case["name"]
    for k in AV2_METRIC_KEYS:
        want = np.array([np.nan if v is None else v for v in expected["per_track"][k]])
        np.testing.assert_allclose(per[k], want, atol=1e-6, rtol=0, err_msg=f"{case['name']} {k}")
    summary = av2_metrics(case["pred"], case["prob"], case["gt"], case.get("valid"))
    for k, v in expected["summary"].items():
        assert summary[k] == pytest.approx(v, abs=1e-6), (case["name"], k)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[c["name"] for c in GOLDEN["cases"]])
def test_matches_av2_golden(case):
    _check_case(case, case["expected"])


def test_golden_covers_the_edge_cases():
    names = {c["name"] for c in GOLDEN["cases"]}
    assert {"k8_top6_by_probability", "k1_single_prediction", "k3_fewer_than_6", "tied_probabilities", "tied_fde",
            "miss_threshold_edges", "invalid_steps"} <= names
    edges = next(c for c in GOLDEN["cases"] if c["name"] == "miss_threshold_edges")["expected"]["per_track"]
    assert edges["min_fde_k1"][0] == 2.0 and edges["miss_rate_k1"] == [0.0, 1.0, 0.0, 1.0]  # exactly 2 m: no miss
    cut = next(c for c in GOLDEN["cases"] if c["name"] == "k8_top6_by_probability")
    assert cut["expected"]["per_track"]["min_fde_k6"][0] > 0  # the exact answer ranked 8th by probability is cut


def test_live_against_av2_when_installed():
    pytest.importorskip("av2.datasets.motion_forecasting.eval.metrics")
    mod = _compare_script()
    for case in mod.make_cases(seed=1):  # other inputs than the golden file's
        _check_case(case, mod.official_case(case))


def test_k1_is_most_probable_and_top6_cut_by_probability():
    gt = np.zeros((1, 5, 2))
    gt[0, :, 0] = np.arange(5)
    pred = np.repeat(gt[:, None], 8, axis=1) + np.arange(8)[None, :, None, None] * np.array([0.0, 1.0])
    prob = np.array([[0.3, 0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2]])  # exact prediction 0 most likely, 1 least
    m = av2_metrics(pred, prob, gt)
    assert m["min_fde_k1"] == 0.0 and m["brier_min_fde_k6"] == pytest.approx((1 - 0.3) ** 2)
    prob = np.array([[0.05, 0.0, 0.1, 0.1, 0.1, 0.1, 0.3, 0.25]])  # now 0 and 1 fall outside the top 6
    m = av2_metrics(pred, prob, gt)
    assert m["min_fde_k1"] == 6.0 and m["min_fde_k6"] == 2.0 and m["miss_rate_k6"] == 0.0
    assert m["min_ade_k6"] == 2.0  # constant 2 m offset


def test_torch_inputs_focal_and_scored_and_errors():
    case = GOLDEN["cases"][0]
    pred, prob, gt = (np.asarray(case[k]) for k in ("pred", "prob", "gt"))
    a = av2_metrics(pred, prob, gt)
    b = av2_metrics(torch.tensor(pred, dtype=torch.float64), torch.tensor(prob), torch.tensor(gt), torch.ones(gt.shape[:2]))
    assert a == pytest.approx(b)
    focal = np.zeros(len(gt), bool)
    focal[[0, 3]] = True
    split = av2_metrics_focal_and_scored(pred, prob, gt, None, focal)
    assert split["scored"] == pytest.approx(a) and split["focal"]["num_tracks"] == 2
    assert split["focal"] == pytest.approx(av2_metrics(pred[focal], prob[focal], gt[focal]))
    bad = prob.copy()
    bad[2, 1] = 1.5
    with pytest.raises(ValueError, match=r"track 2 prediction 1 .* outside \[0, 1\]"):
        av2_metrics(pred, bad, gt)
    with pytest.raises(ValueError, match="sum to 0"):
        av2_metrics(pred, np.zeros_like(prob), gt)
    with pytest.raises(ValueError, match="shapes do not match"):
        av2_metrics(pred, prob[:, :3], gt)


# ---------------------------------------------------------------------------------------------
# submission
# ---------------------------------------------------------------------------------------------
def _rows(rng, n_scen=3, k=6):
    rows = []
    for s in range(n_scen):
        p = rng.uniform(0.1, 1, k)
        rows.append(Av2TrackPrediction(f"scen-{s}", str(1000 + s), rng.normal(size=(k, 60, 2)) * 10 + 4000.0, p))
    return rows


def test_submission_schema_and_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    rows = _rows(rng)
    path = tmp_path / "sub.parquet"
    assert write_av2_submission(path, rows) == 18
    schema = pq.read_schema(path)
    assert tuple(schema.names) == SUBMISSION_COLUMNS
    assert schema.field("scenario_id").type == pa.string() and schema.field("track_id").type == pa.string()
    assert schema.field("probability").type == pa.float64()
    for c in ("predicted_trajectory_x", "predicted_trajectory_y"):
        assert schema.field(c).type == pa.list_(pa.float64())
    t = pq.read_table(path).to_pydict()
    assert all(len(x) == 60 for x in t["predicted_trajectory_x"])
    got = read_av2_submission(path)
    assert sorted(got) == ["scen-0", "scen-1", "scen-2"]
    for r in rows:
        probs, tracks = got[r.scenario_id]
        order = np.argsort(-r.probabilities, kind="stable")
        assert probs.sum() == pytest.approx(1.0) and (np.diff(probs) <= 0).all()
        np.testing.assert_allclose(probs, (r.probabilities / r.probabilities.sum())[order])
        np.testing.assert_array_equal(tracks[r.track_id], r.trajectories[order])


def test_submission_rejects_bad_rows(tmp_path):
    rng = np.random.default_rng(1)
    (r,) = _rows(rng, 1)
    path = tmp_path / "s.parquet"
    with pytest.raises(ValueError, match=r"scenario scen-0 track 1000: trajectories have shape \(6, 59, 2\)"):
        write_av2_submission(path, [(r.scenario_id, r.track_id, r.trajectories[:, :59], r.probabilities)])
    with pytest.raises(ValueError, match="predicted twice"):
        write_av2_submission(path, [r, r])
    other = Av2TrackPrediction(r.scenario_id, "7", r.trajectories, r.probabilities[::-1])
    with pytest.raises(ValueError, match="one probability vector per scenario"):
        write_av2_submission(path, [r, other])
    with pytest.raises(ValueError, match="not all 0"):
        write_av2_submission(path, [(r.scenario_id, r.track_id, r.trajectories, -r.probabilities)])
    # the writer streams: a scenario's tracks must come together (it keeps only the current scenario)
    later = Av2TrackPrediction("scen-9", "1", r.trajectories, r.probabilities)
    with pytest.raises(ValueError, match="scenario scen-0: its tracks must follow one another"):
        write_av2_submission(path, [r, later, Av2TrackPrediction(r.scenario_id, "7", r.trajectories, r.probabilities)])
    assert not path.exists() and not list(tmp_path.glob("*.partial"))
    # a joint scenario (all tracks share the probabilities) is fine
    same = Av2TrackPrediction(r.scenario_id, "7", r.trajectories + 1, torch.tensor(r.probabilities))
    assert write_av2_submission(path, [r, same]) == 12


def test_submission_reader_names_bad_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(ValueError, match="junk.parquet: not a readable parquet"):
        read_av2_submission(junk)
    miss = tmp_path / "miss.parquet"
    pq.write_table(pa.table({"scenario_id": ["a"], "track_id": ["1"], "probability": [1.0]}), miss)
    with pytest.raises(ValueError, match="miss.parquet: AV2 submission is missing column.*predicted_trajectory_x, "
                                         "predicted_trajectory_y"):
        read_av2_submission(miss)


def test_submission_accepted_by_av2_when_installed(tmp_path):
    sub = pytest.importorskip("av2.datasets.motion_forecasting.eval.submission")
    rows = _rows(np.random.default_rng(2))
    path = tmp_path / "sub.parquet"
    write_av2_submission(path, rows)
    read = sub.ChallengeSubmission.from_parquet(path)
    ours = read_av2_submission(path)
    for sid, (probs, tracks) in ours.items():
        np.testing.assert_allclose(read.predictions[sid][0], probs)
        for tid, traj in tracks.items():
            np.testing.assert_allclose(read.predictions[sid][1][tid], traj)


def test_submission_writer_streams_row_groups(tmp_path):
    """One row group per chunk of tracks: the table is never built whole; the file reads back whole."""
    import pyarrow.parquet as pq

    from drope.metrics.av2_submission import Av2SubmissionWriter

    rows = _rows(np.random.default_rng(2), 5)
    w = Av2SubmissionWriter(tmp_path / "s.parquet", chunk=2)
    for r in rows:
        w.add(r)
    assert not (tmp_path / "s.parquet").exists()  # only the .partial until close
    assert w.close() == sum(len(r.probabilities) for r in rows)
    assert pq.ParquetFile(tmp_path / "s.parquet").num_row_groups == 3
    assert sorted(read_av2_submission(tmp_path / "s.parquet")) == sorted(r.scenario_id for r in rows)
