"""WOMD motion metrics on the shared scene with predictions of known answers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from drope.data import scene_from_world
from drope.geometry import world_to_frame
from drope.data.types import MapType, ObjectType
from drope.metrics.motion import (
    TRAJECTORY_TYPES,
    MotionMetricsConfig,
    MotionRecords,
    aggregate_motion_metrics,
    classify_trajectory,
    motion_records_2hz,
    scene_motion_records,
)


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


# ---------------------------------------------------------------- mAP / soft mAP, hand-derived
# Expected values follow the op's definition (docs/wosac_verification.md): per trajectory-type
# bucket, samples sorted by confidence (false before true positives at equal confidence),
# float32 precision/recall, area under the precision envelope; mean over non-empty buckets.

_S = 3  # measurement steps of the default config


def _records(rows) -> MotionRecords:
    """Records of objects ``(type name, confidences, true positives, measured)``; the same
    samples at every horizon, all vehicles."""
    R, K = len(rows), len(rows[0][1])
    tt = torch.tensor([TRAJECTORY_TYPES.index(t) if t else -1 for t, _, _, _ in rows])
    tp = torch.tensor([tps for _, _, tps, _ in rows], dtype=torch.bool)[:, None].expand(R, _S, K)
    meas = torch.tensor([m for _, _, _, m in rows], dtype=torch.bool)[:, None, None].expand(R, _S, K)
    zeros = torch.zeros(R, _S, dtype=torch.float64)
    return MotionRecords(
        scenario_id="hand", object_id=torch.arange(R), object_type=torch.full((R,), int(ObjectType.TYPE_VEHICLE)),
        min_ade=zeros, min_fde=zeros, miss=zeros, overlap=zeros, trajectory_type=tt,
        confidence=torch.tensor([c for _, c, _, _ in rows], dtype=torch.float64), is_tp=tp, measured=meas,
    )


def _map_pair(rows) -> tuple[float, float]:
    m = aggregate_motion_metrics([_records(rows)])["TYPE_VEHICLE"]["8s"]
    return m["mean_average_precision"], m["soft_mean_average_precision"]


def test_map_duplicate_true_positive_is_false_positive_but_soft_ignores_it():
    # A: 0.9 TP, 0.8 TP (duplicate); B: 0.7 TP, 0.1 FP; 2 objects in one bucket.
    # mAP samples 0.9T 0.8F 0.7T 0.1F: precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1
    #   envelope area = 1 * 1/2 + 2/3 * 1/2 = 5/6.  soft: 0.9T 0.7T 0.1F -> area 1.
    mAP, soft = _map_pair([("STRAIGHT", [0.9, 0.8], [True, True], True), ("STRAIGHT", [0.7, 0.1], [True, False], True)])
    assert mAP == pytest.approx(5 / 6, abs=1e-7) and soft == pytest.approx(1.0, abs=1e-7)


def test_map_only_first_true_positive_in_confidence_order_counts():
    # A: FP 0.9, TP 0.5, TP 0.2 (duplicate); B: TP 0.8, FP 0.6, FP 0.1; one bucket, 2 objects.
    # sorted 0.9F 0.8T 0.6F 0.5T 0.2F 0.1F: the envelope is 1/2 over recall [0, 1] -> 0.5
    mAP, soft = _map_pair([("STRAIGHT", [0.9, 0.5, 0.2], [False, True, True], True),
                           ("STRAIGHT", [0.8, 0.6, 0.1], [True, False, False], True)])
    assert mAP == pytest.approx(0.5, abs=1e-7) and soft == pytest.approx(0.5, abs=1e-7)


def test_map_buckets_and_unmeasured_objects():
    # STRAIGHT: one object, its top prediction a TP -> AP 1. LEFT_TURN: one object, no TP -> AP 0.
    # An unclassifiable object and one without a valid ground truth at the step add nothing
    # (counting the latter in STRAIGHT would halve its recall). mAP = mean(1, 0) = 0.5.
    rows = [("STRAIGHT", [0.6, 0.4], [True, False], True), ("LEFT_TURN", [0.6, 0.4], [False, False], True),
            (None, [0.9, 0.1], [True, True], True), ("STRAIGHT", [0.9, 0.1], [False, False], False)]
    assert _map_pair(rows) == (pytest.approx(0.5, abs=1e-7), pytest.approx(0.5, abs=1e-7))
    # no bucket received samples: no measurement, None (the op reports 0.0)
    assert _map_pair([("STRAIGHT", [0.5, 0.5], [True, True], False)]) == (None, None)


def test_map_ties_false_positive_first_and_submission_order_inside_an_object():
    # equal confidences: the first in submission order is the object's TP, the second a
    # duplicate; across samples at equal confidence the FP sorts first: precision 0 then 1/2 at
    # recall 1 -> AP 0.5; soft drops the duplicate -> AP 1.
    assert _map_pair([("STRAIGHT", [0.5, 0.5], [True, True], True)]) == (pytest.approx(0.5), pytest.approx(1.0))
    # a true positive that ties with a false positive of another object also comes second
    rows = [("STRAIGHT", [0.5, 0.1], [True, False], True), ("STRAIGHT", [0.5, 0.2], [False, True], True)]
    # sorted 0.5F 0.5T 0.2T 0.1F: precision 0, 1/2, 2/3, 1/2 at recall 0, 1/2, 1, 1 -> 2/3
    assert _map_pair(rows)[0] == pytest.approx(2 / 3, abs=1e-7)


@pytest.mark.parametrize(
    "end_xy,end_heading,speed,expected",
    [
        ((2.9, 0.0), 0.0, 1.9, "STATIONARY"),  # < 3 m and < 2 m/s
        ((3.1, 0.0), 0.0, 1.9, "STRAIGHT"),  # 3.1 m: no longer stationary
        ((40.0, 2.4), 0.2, 10.0, "STRAIGHT"),  # lateral < 2.5 m, heading change < 30°
        ((40.0, 2.6), 0.2, 10.0, "STRAIGHT_LEFT"),
        ((40.0, -2.6), -0.2, 10.0, "STRAIGHT_RIGHT"),
        ((20.0, 20.0), math.pi / 2, 10.0, "LEFT_TURN"),
        ((20.0, -20.0), -math.pi / 2, 10.0, "RIGHT_TURN"),
        ((20.0, -1.0), 1.0, 10.0, "RIGHT_TURN"),  # the side of the offset decides, not the turn's sign
        ((-1.0, 10.0), math.pi, 10.0, "LEFT_U_TURN"),  # ends behind the start
        ((-1.0, -10.0), -math.pi, 10.0, "RIGHT_U_TURN"),
        ((1.0, 10.0), 3.0, 10.0, "LEFT_TURN"),  # ahead of the start: a turn, not a U-turn
    ],
)
def test_classify_trajectory_branches(end_xy, end_heading, speed, expected):
    # start at (100, 50) heading 0.3 (world); the end given in the start frame
    h0, c, s = 0.3, math.cos(0.3), math.sin(0.3)
    end = np.array([100 + c * end_xy[0] - s * end_xy[1], 50 + s * end_xy[0] + c * end_xy[1]])
    v = np.array([speed, 0.0])
    got = classify_trajectory(np.array([100.0, 50.0]), h0, v, end, h0 + end_heading, v)
    assert got == expected


def test_classify_trajectory_wraps_the_heading_change():
    # start 3.1 rad, end -3.1 rad (0.08 rad apart through ±π) along a straight line: STRAIGHT
    start, d = np.array([0.0, 0.0]), np.array([math.cos(3.1), math.sin(3.1)])
    v = 10 * d
    assert classify_trajectory(start, 3.1, v, start + 60 * d, -3.1, v) == "STRAIGHT"


# ---------------------------------------------------------------- hand-built scene, end to end
T = 91


def _scene(xy, heading, vel, size, types, sdc=0, valid=None):
    """A Scene from world arrays ``xy [A, T, 2]``, ``heading [A, T]``, ``vel [A, T, 2]``."""
    A = xy.shape[0]
    origin = xy[sdc, 10]
    return scene_from_world(
        scenario_id="hand", source="unit", timestamps=np.arange(T) * 0.1, current_index=10, sdc_index=sdc,
        agent_id=np.arange(A) + 100, agent_type=np.asarray(types), agent_xyz=np.concatenate([xy, np.zeros((A, T, 1))], -1),
        agent_heading=heading, agent_vel=vel, agent_size=np.tile(np.r_[size, 1.5], (A, T, 1)) if np.ndim(size) == 1
        else np.concatenate([np.repeat(np.asarray(size, float)[:, None], T, 1), np.full((A, T, 1), 1.5)], -1),
        agent_valid=np.ones((A, T), bool) if valid is None else valid, tracks_to_predict=np.arange(A),
        tracks_to_predict_difficulty=np.ones(A), objects_of_interest=[], map_id=[1], map_type=[MapType.lane],
        map_subtype=[2], map_offsets=[0, 2], map_points=np.array([[*origin, 0.0], [origin[0] + 10, origin[1], 0.0]]),
        lane_speed_limit=[25], lane_interpolating=[False], lane_links=np.zeros((0, 7)), stop_sign_lanes=np.zeros((0, 2)),
        signal_lane_id=np.zeros((T, 0)), signal_state=np.zeros((T, 0)), signal_stop_point=np.zeros((T, 0, 3)),
        signal_valid=np.zeros((T, 0), bool),
    )


def test_hand_scene_map_with_wrapped_heading_and_duplicates():
    """Two vehicles driving straight at 10 m/s in world direction 3.1 rad, 20 m apart; the second's
    logged end heading is -3.083 rad (3.2 wrapped): still STRAIGHT, so both share a bucket.

    Object 0 predictions: exact (0.2), 5 m left (0.5), 5 m left (0.3) -> 0.5F 0.3F 0.2T.
    Object 1: exact (0.6), exact (0.4, duplicate), 5 m left (0.1) -> 0.6T 0.4F 0.1F.
    mAP: 0.6T 0.5F 0.4F 0.3F 0.2T 0.1F -> precision 1, 1/2, 1/3, 1/4, 2/5, 1/3 at recall
    1/2, 1/2, 1/2, 1/2, 1, 1; the envelope is 2/5 on (1/2, 1] and 1 on [0, 1/2]: 0.2 + 0.5 = 0.7.
    soft (duplicate dropped): 0.6T 0.5F 0.3F 0.2T 0.1F -> 1/2 on (1/2, 1], 1 on [0, 1/2]: 0.75.
    The official op gives 0.7 and (duplicate demoted, see docs/wosac_verification.md) 0.75 for
    this scene; with the raw, unwrapped heading change object 1 would be a turn and mAP would be
    mean(1/3, 1) = 0.667.
    """
    th = 3.1
    d, n = np.array([math.cos(th), math.sin(th)]), np.array([-math.sin(th), math.cos(th)])
    t = (np.arange(T) - 10) * 0.1
    base = np.array([5000.0, -3000.0])
    xy = np.stack([base + 10 * t[:, None] * d, base + 20 * n + 10 * t[:, None] * d])  # [2, T, 2]
    heading = np.full((2, T), th)
    heading[1, -1] = th + 0.1 - 2 * math.pi
    vel = np.broadcast_to(10 * d, (2, T, 2)).copy()
    scene = _scene(xy, heading, vel, [4.5, 2.0], [ObjectType.TYPE_VEHICLE] * 2)
    steps = np.array([(p + 1) * 5 + 10 for p in range(16)])
    exact = xy[:, steps]  # [2, 16, 2] world
    left = exact + 5 * n
    world = np.stack([np.stack([exact[0], left[0], left[0]]), np.stack([exact[1], exact[1], left[1]])])
    pred = torch.from_numpy(world_to_frame(world, scene.origin_xy.numpy(), float(scene.origin_heading)))
    prob = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.4, 0.1]])
    rec = motion_records_2hz(scene, torch.arange(2), pred, prob)
    assert [TRAJECTORY_TYPES[i] for i in rec.trajectory_type.tolist()] == ["STRAIGHT", "STRAIGHT"]
    out = aggregate_motion_metrics([rec])["TYPE_VEHICLE"]
    for h in ("3s", "5s", "8s"):
        assert out[h]["min_ade"] == pytest.approx(0.0, abs=1e-3) and out[h]["miss_rate"] == 0.0
        assert out[h]["mean_average_precision"] == pytest.approx(0.7, abs=1e-6)
        assert out[h]["soft_mean_average_precision"] == pytest.approx(0.75, abs=1e-6)


def test_stationary_prediction_box_keeps_the_world_orientation():
    """A prediction that does not move has zero-length segments; the op (world frame) gives them
    heading 0, i.e. a box along world x. The SDC faces world +y, so in the scene frame that box is
    along -y: drope must still orient it along world x. A 2x2 m object 3 m east of the predicted
    4.5x2 m box overlaps it only with that orientation (the op: overlap 1 here, 0 when the whole
    world is rotated by 90°)."""
    xy = np.zeros((2, T, 2))
    xy[0] = [100.0, 200.0]
    xy[1] = [103.0, 200.0]
    heading = np.full((2, T), math.pi / 2)
    scene = _scene(xy, heading, np.zeros((2, T, 2)), np.array([[4.5, 2.0], [2.0, 2.0]]),
                   [ObjectType.TYPE_VEHICLE] * 2)
    still = world_to_frame(np.broadcast_to(xy[0, :16][None, None], (1, 1, 16, 2)).copy(),
                           scene.origin_xy.numpy(), float(scene.origin_heading))
    rec = motion_records_2hz(scene, torch.tensor([0]), torch.from_numpy(still), torch.ones(1, 1))
    assert rec.overlap[0].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "conf,expected",
    [
        ([0.0, 0.0], 1.0),  # zero sum: 1/K each, the first prediction (the overlapping one) wins
        ([0.1, 0.9], 0.0),  # the far-away prediction is the most confident
        ([-0.1, -0.9], 0.0),  # negative sum: normalising flips the order (-0.9/-1 is the largest)
        ([0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 9.0], 1.0),  # only the first 6 compete for the argmax
    ],
)
def test_overlap_uses_the_ops_normalised_argmax(conf, expected):
    """Prediction 0 sits on the predicted object's own (stationary) box, which overlaps a neighbour
    3 m east; prediction 1 and the others are 100 m away."""
    xy = np.zeros((2, T, 2))
    xy[0] = [100.0, 200.0]
    xy[1] = [103.0, 200.0]
    scene = _scene(xy, np.zeros((2, T)), np.zeros((2, T, 2)), np.array([[4.5, 2.0], [2.0, 2.0]]),
                   [ObjectType.TYPE_VEHICLE] * 2)
    K = len(conf)
    world = np.broadcast_to(xy[0, :16][None, None], (1, K, 16, 2)).copy()
    world[0, 1:] += np.array([0.0, 100.0])
    pred = world_to_frame(world, scene.origin_xy.numpy(), float(scene.origin_heading))
    rec = motion_records_2hz(scene, torch.tensor([0]), torch.from_numpy(pred), torch.tensor([conf]))
    assert rec.overlap[0].tolist() == [expected] * 3
