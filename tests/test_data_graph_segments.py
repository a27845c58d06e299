"""Map segments: lengths, resampling, poses, polygons, stop signs, lane signals, padding."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from drope.data import scene_from_world
from drope.data.segments import MapSegments, feature_signal_states, segment_signal_states, split_polylines
from drope.data.types import MapType, ObjectType, SignalState
from drope.data.womd import read_scenarios

ORIGIN = np.array([-7785.9165, -6683.4059])  # WOMD-like world coordinates


def map_scene(features, signals=None, T=5, origin_heading=0.3):
    """A one-agent scene whose map is ``features``: list of (id, MapType, [[x, y], ...]) relative to ORIGIN.

    ``signals``: per step, a list of (lane id, SignalState).
    """
    pts = [np.asarray(p, np.float64) + ORIGIN for _, _, p in features]
    off = np.concatenate([[0], np.cumsum([len(p) for p in pts])])
    signals = signals or [[] for _ in range(T)]
    S = max(1, max(len(s) for s in signals))
    lane_id, state, valid = np.full((T, S), -1), np.zeros((T, S)), np.zeros((T, S), bool)
    for t, sig in enumerate(signals):
        for k, (lid, stt) in enumerate(sig):
            lane_id[t, k], state[t, k], valid[t, k] = lid, stt, True
    xyz = np.zeros((1, T, 3))
    xyz[..., :2] = ORIGIN
    return scene_from_world(
        scenario_id="seg", source="unit", timestamps=np.arange(T) * 0.1, current_index=T // 2, sdc_index=0,
        agent_id=[1], agent_type=[ObjectType.TYPE_VEHICLE], agent_xyz=xyz, agent_heading=np.zeros((1, T)),
        agent_vel=np.zeros((1, T, 2)), agent_size=np.tile([4.5, 2.0, 1.5], (1, T, 1)),
        agent_valid=np.ones((1, T), bool), tracks_to_predict=[0], tracks_to_predict_difficulty=[1],
        objects_of_interest=[], map_id=[f[0] for f in features], map_type=[f[1] for f in features],
        map_subtype=[0] * len(features), map_offsets=off,
        map_points=np.concatenate([np.concatenate(pts), np.zeros((off[-1], 1))], -1),
        lane_speed_limit=[0.0] * len(features), lane_interpolating=[False] * len(features),
        lane_links=np.zeros((0, 7)), stop_sign_lanes=np.zeros((0, 2)), signal_lane_id=lane_id,
        signal_state=state, signal_stop_point=np.zeros((T, S, 3)) + [*ORIGIN, 0.0], signal_valid=valid,
        origin_xy=ORIGIN + [3.0, -2.0], origin_heading=origin_heading,
    ).validate()


def test_straight_lane_splits_into_equal_pieces_with_poses():
    s = map_scene([(7, MapType.lane, [[0, 0], [45, 0]])], origin_heading=0.0)
    seg = split_polylines(s, max_len=20.0, num_points=4)
    assert seg.num_segments == 3 and seg.points.shape == (3, 4, 2)
    assert torch.allclose(seg.length, torch.full((3,), 15.0))
    x = seg.points[..., 0] + 3.0  # back from the scene frame (origin shifted by (3, -2))
    assert torch.allclose(x, torch.tensor([[0, 5, 10, 15], [15, 20, 25, 30], [30, 35, 40, 45.0]]), atol=1e-4)
    assert torch.allclose(seg.pose[:, :2], seg.points[:, 0]) and torch.allclose(seg.pose[:, 2], torch.zeros(3))
    assert seg.feature_index.tolist() == [0, 0, 0] and seg.type.tolist() == [MapType.lane] * 3
    assert bool(seg.valid.all())


def test_direction_follows_the_scene_frame_and_curves_are_resampled_by_arc_length():
    # quarter circle of radius 10 (arc 15.7 m): one segment from (10, 0) to (0, 10) heading 135° in world
    a = np.linspace(0, math.pi / 2, 50)
    s = map_scene([(1, MapType.road_edge, np.stack([10 * np.cos(a), 10 * np.sin(a)], -1))], origin_heading=0.3)
    seg = split_polylines(s, max_len=20.0, num_points=5)
    assert seg.num_segments == 1
    assert math.isclose(float(seg.pose[0, 2]), 3 * math.pi / 4 - 0.3, abs_tol=1e-5)
    steps = (seg.points[0, 1:] - seg.points[0, :-1]).norm(dim=-1)
    assert float(steps.max() - steps.min()) < 1e-3  # equal arc spacing → equal chords on a circle


def test_polygons_are_closed_and_stop_signs_are_points():
    square = [[0, 0], [4, 0], [4, 4], [0, 4]]
    s = map_scene([(1, MapType.crosswalk, square), (2, MapType.stop_sign, [[9, 9]])], origin_heading=0.0)
    seg = split_polylines(s, max_len=20.0, num_points=5)
    assert seg.num_segments == 2
    assert math.isclose(float(seg.length[0]), 16.0, rel_tol=1e-6)  # perimeter, closing edge included
    assert torch.allclose(seg.points[0, 0], seg.points[0, -1], atol=1e-4)  # closed loop ends where it starts
    assert torch.allclose(seg.points[0, 2] - seg.points[0, 0], torch.tensor([4.0, 4.0]), atol=1e-4)
    assert float(seg.length[1]) == 0.0 and float(seg.pose[1, 2]) == 0.0
    assert torch.allclose(seg.points[1], torch.tensor([[9.0 - 3, 9.0 + 2]]).expand(5, 2), atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 30), scale=st.floats(0.5, 40.0), max_len=st.floats(1.0, 30.0), seed=st.integers(0, 10**6))
def test_random_polylines_keep_length_and_bound(n, scale, max_len, seed):
    p = np.cumsum(np.random.default_rng(seed).normal(size=(n, 2)) * scale, axis=0)
    s = map_scene([(1, MapType.lane, p)], origin_heading=1.0)
    seg = split_polylines(s, max_len=max_len, num_points=6)
    total = float(np.hypot(*np.diff(p, axis=0).T).sum())
    assert math.isclose(float(seg.length.sum()), total, rel_tol=1e-5, abs_tol=1e-3)
    assert float(seg.length.max()) <= max_len + 1e-4
    chord = (seg.points[:, 1:] - seg.points[:, :-1]).norm(dim=-1).sum(-1)
    assert bool((chord <= seg.length + 1e-3).all())  # chords never longer than the arc they sample
    # consecutive pieces join: the end of one is the start of the next
    assert torch.allclose(seg.points[1:, 0], seg.points[:-1, -1], atol=2e-3)


def test_lane_signal_states_per_step():
    lane = [[0, 0], [30, 0]]
    sig = [[], [(5, SignalState.LANE_STATE_GO)], [(5, SignalState.LANE_STATE_STOP), (99, 6)], [(6, 4)], []]
    s = map_scene([(5, MapType.lane, lane), (6, MapType.road_line, lane)], signals=sig)
    seg = split_polylines(s)  # current step 2
    assert seg.signal_state.tolist() == [SignalState.LANE_STATE_STOP] * 2 + [0, 0]  # road lines carry none
    assert split_polylines(s, step=1).signal_state.tolist() == [SignalState.LANE_STATE_GO] * 2 + [0, 0]
    table = segment_signal_states(s, seg)
    assert table.shape == (5, 4) and table[:, 0].tolist() == [0, 6, 4, 0, 0] and int(table[:, 2:].abs().sum()) == 0
    assert feature_signal_states(s, [2]).tolist() == [[4, 0]]  # lane id 99 is not on the map: ignored
    with pytest.raises(ValueError, match="step 7"):
        split_polylines(s, step=7)


def test_select_and_pad():
    s = map_scene([(5, MapType.lane, [[0, 0], [50, 0]])])
    seg = split_polylines(s)
    padded = seg.select(torch.tensor([2, 0])).pad(4)
    assert isinstance(padded, MapSegments) and padded.points.shape == (4, 8, 2)
    assert padded.valid.tolist() == [True, True, False, False]
    assert padded.feature_index.tolist() == [0, 0, -1, -1]
    assert torch.equal(padded.pose[0], seg.pose[2]) and int(padded.points[2:].abs().sum()) == 0
    assert segment_signal_states(s, padded).shape == (5, 4)
    with pytest.raises(ValueError, match="pad"):
        seg.pad(1)


def test_bad_input_names_the_problem():
    s = map_scene([(5, MapType.lane, [[0, 0], [50, 0]])])
    with pytest.raises(ValueError, match="max_len"):
        split_polylines(s, max_len=0.0)
    import dataclasses

    broken = dataclasses.replace(s, map_offsets=torch.tensor([0, 0]), map_points=s.map_points[:0])
    with pytest.raises(ValueError, match="feature 0 .id 5. has no points"):
        split_polylines(broken)


def test_womd_segments_cover_the_map(womd_path):
    (scene,) = list(read_scenarios(womd_path))
    seg = split_polylines(scene, max_len=20.0, num_points=8)
    assert seg.points.shape == (seg.num_segments, 8, 2) and seg.pose.shape == (seg.num_segments, 3)
    assert float(seg.length.max()) <= 20.0 + 1e-3
    assert set(seg.feature_index.tolist()) == set(range(scene.num_map_features))
    assert torch.allclose(seg.pose[:, :2], seg.points[:, 0])
    stop = seg.type == MapType.stop_sign
    assert bool(stop.any()) and float(seg.length[stop].abs().max()) == 0.0
    assert bool((seg.signal_state > 0).any())  # the sample has signalled lanes at the current step
    assert bool((seg.signal_state[seg.type != MapType.lane] == 0).all())
