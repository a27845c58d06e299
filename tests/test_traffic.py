"""Reusable traffic models: LaneGraph on generated and real WOMD scenes, MOBIL, pedestrians."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drope.data.types import LaneLink, MapType, ObjectType
from drope.data.womd import read_scenarios
from drope.sim.generate.scenario import GeneratorConfig, ScenarioMix, generate_scene
from drope.sim.traffic import (FAR, IDMParams, LaneGraph, PedestrianParams, mobil_decision,
                         social_force_acceleration)

ROAD_ONLY = GeneratorConfig(mix=ScenarioMix(0, 0, 0, 1, 0, 0))
JUNCTION_ONLY = GeneratorConfig(mix=ScenarioMix(1, 0, 0, 0, 0, 0))


@pytest.fixture(scope="module")
def road_graph():
    return LaneGraph.from_scene(generate_scene(11, 0, ROAD_ONLY)[0])


@pytest.fixture(scope="module")
def junction():
    scene = generate_scene(11, 1, JUNCTION_ONLY)[0]
    return scene, LaneGraph.from_scene(scene)


def test_graph_mirrors_the_scene_links(junction):
    scene, g = junction
    assert g.num_lanes == int((scene.map_type == MapType.lane).sum())
    idx = {int(i): k for k, i in enumerate(g.lane_ids)}
    for a, b, kind, *_ in scene.lane_links.tolist():
        if kind == LaneLink.exit:
            assert idx[b] in g.successors[idx[a]] and idx[a] in g.predecessors[idx[b]]
        if kind == LaneLink.left:
            assert idx[b] in g.left[idx[a]]
    assert sum(map(len, g.successors)) > 0
    # arc lengths restart at 0 on every lane and end at the lane length
    assert np.allclose(g.s[g.offsets[:-1]], 0) and np.allclose(g.s[g.offsets[1:] - 1], g.length)


def test_generated_vehicles_project_onto_their_lanes(junction):
    scene, g = junction
    m = scene.agent_valid & (scene.agent_type == ObjectType.TYPE_VEHICLE)[:, None]
    lane, s, lat = g.project(scene.agent_pos[m].numpy(), scene.agent_heading[m].numpy())
    assert float(np.abs(lat).max()) < 2.2  # mid lane change at most half a lane plus noise
    assert ((s >= 0) & (s <= g.length[lane] + 1e-9)).all()


@settings(max_examples=25, deadline=None)
@given(u=st.floats(0.0, 1.0), off=st.floats(-1.5, 1.5), lane_pick=st.integers(0, 10_000))
def test_project_inverts_pose_at(road_graph, u, off, lane_pick):
    g = road_graph
    lane = lane_pick % g.num_lanes
    s = u * g.length[lane]
    xy, h = g.pose_at(lane, s)
    normal = np.stack([-np.sin(h), np.cos(h)], -1)
    l2, s2, lat2 = g.project(xy + off * normal, h)
    # lanes of a straight road are 3.6 m apart: a point within 1.5 m of a centre line belongs to it
    assert int(l2[0]) == lane
    assert abs(float(s2[0]) - s) < 1e-6 and abs(float(lat2[0]) - off) < 1e-6


def test_leader_follows_successors_and_routes(junction):
    _, g = junction
    a = next(l for l in range(g.num_lanes) if len(g.successors[l]) >= 2)
    b, c = g.successors[a][:2]
    lane = np.array([a, b, a, c])
    s = np.array([g.length[a] - 6.0, 3.0, 1.0, 20.0])
    length = np.full(4, 4.5)
    gap, who = g.leader(lane, s, length, 0)  # nearest ahead through either successor
    assert who == 1 and gap == pytest.approx(6.0 + 3.0 - 4.5)
    gap, who = g.leader(lane, s, length, 0, route=[a, c])  # only along the chosen route
    assert who == 3 and gap == pytest.approx(6.0 + 20.0 - 4.5)
    gap, who = g.leader(lane, s, length, 1, horizon=10.0)  # nothing within 10 m ahead of agent 1
    assert (gap, who) == (FAR, -1)
    assert g.leader(lane, s, length, 2)[1] == 0  # the agent behind on the same lane sees agent 0


def test_lane_graph_on_the_womd_sample(womd_path):
    scene = next(iter(read_scenarios(womd_path)))
    g = LaneGraph.from_scene(scene)
    assert g.num_lanes > 50 and sum(map(len, g.successors)) > 50
    # moving vehicles drive on lanes (parked ones in lots may not): most lie within 2 m of one
    m = scene.agent_valid & (scene.agent_type == ObjectType.TYPE_VEHICLE)[:, None] & (scene.agent_vel.norm(dim=-1) > 2)
    lane, s, lat = g.project(scene.agent_pos[m].numpy(), scene.agent_heading[m].numpy())
    assert m.sum() > 100 and float((np.abs(lat) < 2.0).mean()) > 0.9
    xy, _ = g.pose_at(lane, s)  # the foot point lies |lateral| from the agent
    assert np.allclose(np.linalg.norm(xy - scene.agent_pos[m].numpy(), axis=-1), np.abs(lat), atol=1e-6)


def test_mobil_decision_is_elementwise_and_respects_safety():
    p = IDMParams()
    gain = mobil_decision(np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.1]), np.zeros(3),
                          np.array([-1.0, -5.0, 0.0]), np.zeros(3), np.zeros(3), p)
    # worth it and safe / unsafe new follower (brakes beyond b_safe) / gain below the threshold
    assert gain.tolist() == [True, False, False]
    t = mobil_decision(torch.tensor([0.0]), torch.tensor([1.0]), torch.zeros(1), torch.zeros(1), torch.zeros(1),
                       torch.zeros(1), p)
    assert t.tolist() == [True]


def test_pedestrians_reach_goals_without_walking_through_each_other():
    p = PedestrianParams()
    pos = np.array([[0.0, 0.0], [10.0, 0.1]])
    goal = pos[::-1].copy()
    vel = np.zeros((2, 2))
    closest = np.inf
    for _ in range(300):
        acc = social_force_acceleration(pos, vel, goal, np.array([1.3, 1.3]), obstacles=np.array([[5.0, 3.0]]), p=p)
        assert float(np.linalg.norm(acc, axis=-1).max()) <= p.a_max + 1e-9
        vel = vel + acc * 0.1
        pos = pos + vel * 0.1
        closest = min(closest, float(np.linalg.norm(pos[0] - pos[1])))
    assert closest > 2 * p.radius
    assert np.linalg.norm(pos - goal, axis=-1).max() < 0.5
