"""Generated road edges have the road on their left (WOSAC's sign), so logged traffic is on-road.

WOSAC's signed distance to a road-edge polyline is negative on its left (port side) and positive on
its right; a kerb drawn the other way round counts everything on its road side as off-road.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from drope.data.drivable_area import drivable_areas_from_road_edges
from drope.data.types import ObjectType
from drope.metrics.wosac import features as WF
from drope.metrics.wosac.scoring import scene_map
from drope.sim.generate.roads import build_intersection, build_road
from drope.sim.generate.scenario import CURRENT, generate_scene

PROBE_M = 0.2  # either side of a kerb; kerbs of one network are >= 3.6 m apart


def _signed(edges: WF.EdgeSegments, xy: np.ndarray) -> np.ndarray:
    pts = torch.from_numpy(np.concatenate([xy, np.zeros((len(xy), 1))], 1))
    return WF.signed_distance_to_edges(pts, edges).numpy()


def _on_road(net, xy: np.ndarray) -> np.ndarray:
    """Inside the drivable area the kerbs bound, whatever their orientation (the AV2 writer's rule)."""
    from shapely import contains_xy
    from shapely.geometry import Polygon

    areas = drivable_areas_from_road_edges([np.concatenate([p, np.zeros((len(p), 1))], 1) for p, _ in net.road_edges])
    return np.any([contains_xy(Polygon(a[:, :2]), xy[:, 0], xy[:, 1]) for a in areas], axis=0)


def _networks():
    for k in range(8):
        rng = np.random.default_rng(k)
        for arms in (3, 4):
            for lanes in (1, 2):
                yield f"intersection arms={arms} lanes={lanes} rng={k}", build_intersection(rng, arms=arms, lanes=lanes)
        for lanes in (1, 2, 3):
            curvature = float(rng.choice([0.0, 1.0, -1.0])) * rng.uniform(0.003, 0.012)
            drop = bool(rng.integers(2))
            yield (f"road lanes={lanes} curvature={curvature:.4f} lane_drop={drop} rng={k}",
                   build_road(rng, lanes=lanes, curvature=curvature, lane_drop=drop))


def test_every_road_edge_has_the_road_on_its_left():
    for name, net in _networks():
        edges = WF.EdgeSegments([torch.from_numpy(np.concatenate([p, np.zeros((len(p), 1))], 1)) for p, _ in net.road_edges])
        mid, left, which = [], [], []
        for e, (p, _) in enumerate(net.road_edges):
            t = np.diff(p, axis=0)
            t /= np.linalg.norm(t, axis=1, keepdims=True)
            left.append(np.stack([-t[:, 1], t[:, 0]], 1))
            mid.append((p[1:] + p[:-1]) / 2)
            which.append(np.full(len(t), e))
        mid, left, which = np.concatenate(mid), np.concatenate(left), np.concatenate(which)
        on_road = _on_road(net, np.concatenate([mid + PROBE_M * left, mid - PROBE_M * left])).reshape(2, -1)
        wrong = sorted(set(which[~on_road[0] | on_road[1]].tolist()))
        assert not wrong, f"{name}: road edges {wrong} (of {len(net.road_edges)}) do not have the road on their left only"
        # every lane outside the junction box lies on the road, half a lane from the kerb or more
        lanes = np.concatenate([ln.points for ln in net.lanes.values() if not ln.connector])
        assert _signed(edges, lanes).max() <= -1.6, name


@pytest.fixture(scope="module")
def log_offroad():
    """Per type: (agents off-road at some logged step after the current one, agents valid at it), the
    drope-sim log replay rule (worst box corner, all agent types)."""
    counts: dict[int, list[int]] = {}
    layouts = set()
    for i in range(16):
        s, info = generate_scene(11, i)
        layouts.add(info["layout"])
        size = s.agent_size.double()
        d = WF.distance_to_road_edge(s.agent_pos[None].double(), s.agent_z[None].double(),
                                     s.agent_heading[None].double(), size[..., 0], size[..., 1], size[..., 2],
                                     s.agent_valid, scene_map(s).edges)[0]
        off = ((d > 0) & s.agent_valid)[:, CURRENT + 1 :].any(-1)
        for a in s.agent_valid[:, CURRENT].nonzero()[:, 0].tolist():
            c = counts.setdefault(int(s.agent_type[a]), [0, 0])
            c[0] += int(off[a])
            c[1] += 1
    return counts, layouts


def test_logged_vehicles_are_on_the_road_and_pedestrians_on_the_sidewalk(log_offroad):
    counts, layouts = log_offroad
    assert len(layouts) >= 4, layouts
    veh_off, veh_n = counts[ObjectType.TYPE_VEHICLE]
    # the remaining few cut a kerb corner on a right turn (the turn connectors leave the corner fillet)
    assert veh_n > 100 and veh_off / veh_n < 0.05, counts
    ped_off, ped_n = counts[ObjectType.TYPE_PEDESTRIAN]
    # sidewalks lie outside the road edges: off-road as WOSAC defines it (crossing at a crosswalk is on-road)
    assert ped_n > 30 and ped_off / ped_n > 0.8, counts
