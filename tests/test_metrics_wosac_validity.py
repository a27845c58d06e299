"""The log-side validity rules of the WOSAC features, pinned on hand-built scenes.

The official code (waymo-open-dataset 1.6.7, ``metric_features.compute_metric_features``) builds the
log "rollout" from the Scenario's states *including the invalid ones* (zeros in the world frame) and
masks only the other object's validity in time to collision, the pair's in distance to the nearest
object, and the object's own in the road-edge distance. Speeds are central differences that never
look at validity, so a speed next to an invalid step is measured against the world origin:
- a leader next to one of its invalid steps moves at thousands of m/s and is never closed in on
  (time to collision 5 s);
- an evaluated object next to one of its invalid steps closes in at thousands of m/s on whatever
  it follows (a time to collision of milliseconds, which the metric then scores).
docs/compare_wosac_official.py checks the same against the official code.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drope.data import scene_from_world
from drope.data.types import MapType, ObjectType
from drope.metrics.wosac import prepare_scene, rollout_features
from drope.metrics.wosac import features as F

T, C, DT = 91, 10, 0.1
OFFSET = np.array([-7785.0, -6683.0])  # WOMD-like world coordinates: the world origin is ~10 km away
V_FOLLOW, V_LEAD, LEAD_START = 15.0, 5.0, 60.0
LENGTH, WIDTH = 4.5, 2.0


def _x(step, start, v):
    return start + v * step * DT


def road_scene(invalid: dict[int, list[int]] | None = None):
    """Agent 0: the SDC, parked in the next lane (2.5 m to the left) where the leader is at step 47,
    so the scene origin lies next to the leader. Agent 1 (evaluated): follower at 15 m/s. Agent 2:
    the leader at 5 m/s, 60 m ahead at step 0 (gap 55.5 − step m, closing at 10 m/s).
    ``invalid``: agent -> steps at which its state is invalid (zeros, as in WOMD)."""
    steps = np.arange(T)
    xy = np.zeros((3, T, 2))
    xy[0, :, 0], xy[0, :, 1] = _x(47, LEAD_START, V_LEAD), 2.5
    xy[1, :, 0] = _x(steps, 0.0, V_FOLLOW)
    xy[2, :, 0] = _x(steps, LEAD_START, V_LEAD)
    xyz = np.concatenate([xy + OFFSET, np.zeros((3, T, 1))], -1)
    vel = np.zeros((3, T, 2))
    vel[1, :, 0], vel[2, :, 0] = V_FOLLOW, V_LEAD
    valid = np.ones((3, T), bool)
    for a, ss in (invalid or {}).items():
        valid[a, ss] = False
    edge_x = np.linspace(-50, 250, 31)
    edges = [np.stack([edge_x, np.full_like(edge_x, y)], -1) for y in (-3.0, 6.0)]
    edges[1] = edges[1][::-1]  # the road lies to the left of both polylines
    pts = np.concatenate(edges) + OFFSET
    return scene_from_world(
        scenario_id="gaps", source="unit", timestamps=steps * DT, current_index=C, sdc_index=0,
        agent_id=np.array([7, 8, 9]), agent_type=np.full(3, ObjectType.TYPE_VEHICLE), agent_xyz=xyz * valid[..., None],
        agent_heading=np.zeros((3, T)), agent_vel=vel * valid[..., None],
        agent_size=np.tile([LENGTH, WIDTH, 1.6], (3, T, 1)) * valid[..., None], agent_valid=valid,
        tracks_to_predict=[1], tracks_to_predict_difficulty=[1], objects_of_interest=[],
        map_id=[1, 2], map_type=[MapType.road_edge, MapType.road_edge], map_subtype=[1, 1],
        map_offsets=[0, len(edge_x), 2 * len(edge_x)], map_points=np.concatenate([pts, np.zeros((len(pts), 1))], -1),
        lane_speed_limit=[0, 0], lane_interpolating=[False, False], lane_links=np.zeros((0, 7)),
        stop_sign_lanes=[], signal_lane_id=np.zeros((T, 0)), signal_state=np.zeros((T, 0)),
        signal_stop_point=np.zeros((T, 0, 3)), signal_valid=np.zeros((T, 0), bool),
    )


def features(scene):
    """Log and rollout features; the single rollout is the fully valid log future."""
    p = prepare_scene(scene)
    full = prepare_scene(road_scene())
    fut = slice(C + 1, None)
    log, sim = rollout_features(p, full.xy[None, :, fut], full.z[None, :, fut], full.heading[None, :, fut])
    assert p.scene.agent_id[p.objects[: p.num_eval]].tolist() == [7, 8]  # SDC, follower
    return log, sim


def ttc_at(feats, step, obj=1):
    return float(feats.time_to_collision[0, obj, step - C - 1])


def expected_ttc(step):
    return (LEAD_START - LENGTH + (V_LEAD - V_FOLLOW) * step * DT) / (V_FOLLOW - V_LEAD)


def test_fully_valid_follower_ttc_is_gap_over_closing_speed():
    log, sim = features(road_scene())
    for step in (29, 30, 45):
        assert ttc_at(log, step) == pytest.approx(expected_ttc(step), abs=1e-5)
        assert ttc_at(sim, step) == pytest.approx(expected_ttc(step), abs=1e-5)
    assert ttc_at(log, 60) == F.MAX_TTC  # the boxes overlap from step 56 on: nobody ahead
    assert float(log.time_to_collision[0, 0].min()) == F.MAX_TTC  # the parked SDC follows nobody


def test_leader_next_to_its_invalid_step_is_not_followed():
    # The leader leaves for one step (48). At 47 and 49 its speed is measured against the world
    # origin (~10 km away): thousands of m/s, so the follower does not close in. Measured against
    # the scene origin (the parked SDC, 2.5 m away) it would move at 12.5 m/s and give a finite
    # time to collision (7.5 m / 2.5 m/s = 3 s at step 47): the rule drope used before.
    log, sim = features(road_scene({2: [48]}))
    assert ttc_at(log, 46) == pytest.approx(expected_ttc(46), abs=1e-5)
    for step in (47, 48, 49):
        assert ttc_at(log, step) == F.MAX_TTC
    assert ttc_at(log, 50) == pytest.approx(expected_ttc(50), abs=1e-5)
    # the rollouts are valid at every future step: their leader is followed throughout
    assert ttc_at(sim, 47) == pytest.approx(expected_ttc(47), abs=1e-5)
    assert bool(log.valid[1].all())  # the follower itself stays scored at every step


def test_evaluated_object_next_to_its_invalid_step_closes_in_at_the_raw_state_speed():
    log, _ = features(road_scene({1: [31]}))
    # step 30: the follower's speed is |world origin − its world position at 29| / 0.2 s
    world_29 = np.array([_x(29, 0.0, V_FOLLOW), 0.0]) + OFFSET
    speed = math.hypot(*world_29) / (2 * DT)
    gap = LEAD_START - LENGTH + (V_LEAD - V_FOLLOW) * 30 * DT
    assert speed > 1e4
    assert ttc_at(log, 30) == pytest.approx(gap / (speed - V_LEAD), rel=1e-6)
    assert ttc_at(log, 30) < 1e-3
    assert ttc_at(log, 32) < 1e-3  # the same from the other side
    assert not bool(log.valid[1, 31 - C - 1])  # the invalid step itself is not scored
    assert bool(log.valid[1, 30 - C - 1]) and bool(log.valid[1, 32 - C - 1])


def test_object_leaving_and_reentering_is_ignored_while_invalid_and_next_to_the_gap():
    gap = list(range(13, 17))
    log, _ = features(road_scene({2: gap}))
    assert ttc_at(log, 11) == pytest.approx(expected_ttc(11), abs=1e-5)
    for step in range(12, 18):  # the gap and one step either side
        assert ttc_at(log, step) == F.MAX_TTC
    assert ttc_at(log, 18) == pytest.approx(expected_ttc(18), abs=1e-5)
    # distance to the nearest object: while the leader is invalid the parked SDC is the nearest
    full, _ = features(road_scene())
    d = log.distance_to_nearest_object[0, 1]
    d_full = full.distance_to_nearest_object[0, 1]
    step = 14 - C - 1
    leader_gap = LEAD_START - LENGTH + (V_LEAD - V_FOLLOW) * 14 * DT
    assert float(d_full[step]) == pytest.approx(leader_gap, abs=1e-4)
    assert float(d[step]) > leader_gap + 5  # the leader's zeroed state is not an obstacle
    other = [s - C - 1 for s in range(C + 1, T) if s not in gap]
    assert torch.allclose(d[other], d_full[other], atol=1e-6)


def test_road_edge_distance_depends_on_the_object_own_step_only():
    log, _ = features(road_scene({1: [31, 50, 51]}))
    full, _ = features(road_scene())
    road, road_full = log.distance_to_road_edge[0, 1], full.distance_to_road_edge[0, 1]
    invalid = [31 - C - 1, 50 - C - 1, 51 - C - 1]
    assert all(float(road[i]) == -F.HUGE for i in invalid)
    keep = torch.ones_like(road, dtype=torch.bool)
    keep[invalid] = False
    assert torch.allclose(road[keep], road_full[keep], atol=1e-9)
    # the follower drives 1 m inside the right edge (its box corners at y = -1)
    assert float(road_full[0]) == pytest.approx(-2.0, abs=1e-4)


def test_road_edge_near_tie_is_decided_in_official_float32_world_coordinates():
    """Two road-edge polylines end at vertices 10 m apart; a point 1e-5 m off their bisector is
    nearer to B's vertex in exact arithmetic, but in the official float32 world coordinates (x ≈ 4 km,
    ulp 2.4e-4 m) it rounds onto the bisector: an exact tie, won by the first polyline in map order
    (A). A says on-road, B off-road, so the sign follows the rule."""
    eps = 1e-5
    a = torch.tensor([[-5.0, 10.0, 0.0], [-5.0, 0.0, 0.0]], dtype=torch.float64)  # on-road to its left (x > -5)
    b = torch.tensor([[5.0, 10.0, 0.0], [5.0, 0.0, 0.0]], dtype=torch.float64)  # off-road to its right (x < 5)
    p = torch.tensor([[eps, -3.0, 0.0]], dtype=torch.float64)
    far = math.hypot(5.0 - eps, 3.0)
    plain = F.signed_distance_to_edges(p, F.EdgeSegments([a, b]))
    assert float(plain) == pytest.approx(far, abs=1e-9)  # exact arithmetic: B's vertex, off-road
    frame = (torch.tensor([4000.0, 0.0], dtype=torch.float64), 0.0)
    p32 = torch.tensor([[4000.0 + eps, -3.0, 0.0]], dtype=torch.float32)
    assert float(p32[0, 0]) == 4000.0  # the official float32 point lies on the bisector
    official = F.signed_distance_to_edges(p, F.EdgeSegments([a, b], frame), points32=p32)
    assert float(official) == pytest.approx(-math.hypot(5.0, 3.0), abs=1e-5)  # A: on-road, float32 distance
    swapped = F.signed_distance_to_edges(p, F.EdgeSegments([b, a], frame), points32=p32)
    assert float(swapped) == pytest.approx(math.hypot(5.0, 3.0), abs=1e-5)  # map order decides the tie


def test_box_corners32_follow_the_official_operation_order():
    """``box_bottom_corners32`` = rotation in float32 of the float32 world pose, then translation (the
    official get_upright_3d_box_corners); checked against float64 corners within float32 rounding."""
    from drope.geometry import box_corners

    frame = (torch.tensor([-7785.9, -6683.4], dtype=torch.float64), -1.5458)
    xy = torch.tensor([[12.3, -4.5], [0.0, 0.0]], dtype=torch.float64)
    h = torch.tensor([0.3, 3.0], dtype=torch.float64)
    one = torch.ones(2, dtype=torch.float64)
    c32 = F.box_bottom_corners32(xy, torch.tensor([1.0, 2.0], dtype=torch.float64), h, 4.5 * one, 2.0 * one, 1.6 * one, frame)
    c64 = box_corners(xy, h, 4.5 * one, 2.0 * one)  # scene frame
    co, si = math.cos(frame[1]), math.sin(frame[1])
    wx = co * c64[..., 0] - si * c64[..., 1] + float(frame[0][0])
    wy = si * c64[..., 0] + co * c64[..., 1] + float(frame[0][1])
    assert torch.allclose(c32[..., 0].double(), wx, atol=2e-3) and torch.allclose(c32[..., 1].double(), wy, atol=2e-3)
    assert c32.dtype == torch.float32 and torch.equal(c32[0, :, 2], (-(torch.tensor(1.6) * 0.5) + torch.tensor(1.0)).expand(4))  # float32: −h/2 + z
