"""AV2 drivable areas as road edges: WOSAC's off-road sign (road on the left) whatever the winding,
the union of abutting/overlapping areas, and generated scenes written as AV2 and read back."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("pyarrow")

from drope.data.av2 import read_av2_scenario, write_av2_scenario  # noqa: E402
from drope.data.drivable_area import (  # noqa: E402
    drivable_areas_from_road_edges,
    points_in_polygon,
    road_edges_from_drivable_areas,
    signed_area,
)
from drope.data.types import MapType  # noqa: E402
from drope.metrics.wosac import features as WF  # noqa: E402
from drope.metrics.wosac.scoring import scene_map  # noqa: E402
from drope.sim.config import MetricsConfig  # noqa: E402
from drope.sim.events import offroad_steps  # noqa: E402
from drope.sim.generate.scenario import generate_scene  # noqa: E402
from drope.sim.rollout import Rollouts  # noqa: E402

# an L-shaped (concave) drivable area, counter-clockwise
L_SHAPE = np.array([[0, 0, 0], [20, 0, 0], [20, 8, 0], [8, 8, 0], [8, 20, 0], [0, 20, 0]], np.float64)


def _signed(edges: list[np.ndarray], q: np.ndarray) -> np.ndarray:
    seg = WF.EdgeSegments([torch.from_numpy(e) for e in edges])
    return WF.signed_distance_to_edges(torch.from_numpy(q), seg).numpy()


def _boundary_distance(q: np.ndarray, ring: np.ndarray) -> np.ndarray:
    a, b = ring[:, :2], np.roll(ring, -1, axis=0)[:, :2]
    ab = b - a
    t = np.clip(((q[:, None, :2] - a) * ab).sum(-1) / (ab**2).sum(-1), 0, 1)
    return np.linalg.norm(q[:, None, :2] - (a + t[..., None] * ab), axis=-1).min(1)


def _grid(lo=-4.0, hi=24.0, n=57) -> np.ndarray:
    x, y = np.meshgrid(np.linspace(lo, hi, n), np.linspace(lo, hi, n) + 0.013)  # off the vertex lines
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], -1)


def test_clockwise_and_counter_clockwise_areas_give_the_same_signed_distances():
    q = _grid()
    ccw = _signed([p for _, p in road_edges_from_drivable_areas([L_SHAPE])], q)
    for variant in (L_SHAPE[::-1], np.roll(L_SHAPE, 2, axis=0), np.roll(L_SHAPE[::-1], 3, axis=0),
                    np.concatenate([L_SHAPE[::-1], L_SHAPE[-1:]])):  # CW, rotated, CW rotated, CW closed
        np.testing.assert_allclose(_signed([p for _, p in road_edges_from_drivable_areas([variant])], q), ccw, atol=1e-12)
    # inside negative, outside positive, magnitude = distance to the boundary (slow reference)
    inside = points_in_polygon(q, L_SHAPE)
    np.testing.assert_allclose(np.abs(ccw), _boundary_distance(q, L_SHAPE), atol=1e-9)
    clear = _boundary_distance(q, L_SHAPE) > 1e-6
    assert (np.sign(ccw[clear]) == np.where(inside[clear], -1.0, 1.0)).all()
    # the areas read as they are: the edge the official code gets is counter-clockwise
    (_, edge), = road_edges_from_drivable_areas([L_SHAPE[::-1]])
    assert signed_area(edge[:-1]) > 0 and np.allclose(edge[0], edge[-1])


def test_hand_made_points_inside_and_outside():
    square = np.array([[0, 0, 0], [0, 10, 0], [10, 10, 0], [10, 0, 0]], np.float64)  # clockwise
    edges = [p for _, p in road_edges_from_drivable_areas([square])]
    q = np.array([[5, 5, 0], [12, 5, 0], [5, -1, 0], [9.5, 9.0, 0], [13, 14, 0]], np.float64)
    np.testing.assert_allclose(_signed(edges, q), [-5.0, 2.0, 1.0, -0.5, 5.0], atol=1e-12)


def test_abutting_and_overlapping_areas_bound_their_union():
    left = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], np.float64)  # CCW
    right = np.array([[20, 0, 0], [20, 10, 0], [10, 10, 0], [10, 0, 0]], np.float64)[::-1]  # CCW written CW
    q = np.array([[10.3, 5, 0], [9.7, 5, 0], [10.0, 5, 0], [25, 5, 0], [15, -2, 0]], np.float64)
    for areas in ([left, right], [left, right[::-1]], [right, left]):
        edges = [p for _, p in road_edges_from_drivable_areas(areas)]
        # the shared side x = 10 is inside the road: distance to the outer boundary, negative
        np.testing.assert_allclose(_signed(edges, q), [-5.0, -5.0, -5.0, 5.0, 2.0], atol=1e-12)
    # staggered: the shared side is only part of each area's side (cut at the other's corners);
    # the union's boundary comes back as one closed ring
    high = np.array([[10, 5, 0], [20, 5, 0], [20, 15, 0], [10, 15, 0]], np.float64)
    for areas in ([left, high], [high[::-1], left]):
        pieces = road_edges_from_drivable_areas(areas)
        assert len(pieces) == 1 and np.allclose(pieces[0][1][0], pieces[0][1][-1])
        q2 = np.array([[10.0, 7.5, 0], [10.5, 2, 0], [9.5, 12, 0], [10, 12.5, 0], [15, 10, 0]], np.float64)
        np.testing.assert_allclose(_signed([pieces[0][1]], q2), [-2.5, 0.5, 0.5, 0.0, -5.0], atol=1e-12)
    # overlapping areas: boundary of the union; a duplicated area adds nothing
    wide = np.array([[5, 2, 0], [25, 2, 0], [25, 8, 0], [5, 8, 0]], np.float64)
    edges = [p for _, p in road_edges_from_drivable_areas([left, wide, left.copy()])]
    np.testing.assert_allclose(_signed(edges, np.array([[8.0, 5, 0], [22, 5, 0], [22, 9, 0], [12, 1, 0]])),
                               [-np.sqrt(13.0), -3.0, 1.0, 1.0], atol=1e-12)  # (8, 5): nearest is the corner (10, 2)
    mids = np.concatenate([(e[1:] + e[:-1]) / 2 for e in edges])
    for area in (left, wide):  # no piece of edge lies strictly inside an area
        assert not (points_in_polygon(mids, area) & (_boundary_distance(mids, area) > 1e-6)).any()


def test_kerbs_of_any_orientation_become_one_counter_clockwise_area():
    # a straight road 7 m wide: one kerb each way, the other reversed: same polygon
    x = np.linspace(0, 50, 11)
    right = np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1)
    left = np.stack([x, np.full_like(x, 7.0), np.zeros_like(x)], -1)
    for kerbs in ([right, left], [right[::-1], left], [left[::-1], right], [left, right[::-1]]):
        (area,) = drivable_areas_from_road_edges(kerbs, extend=5.0)
        assert signed_area(area) == pytest.approx(60 * 7.0)
        assert area[:, 0].min() == pytest.approx(-5.0) and area[:, 0].max() == pytest.approx(55.0)


def _log_offroad(scene) -> torch.Tensor:
    """``[A]`` log off-road flags as drope-sim counts them (``drope.sim.events.offroad_steps``)."""
    size = scene.agent_size[:, scene.current_index].float()
    ro = Rollouts(scenario_id=scene.scenario_id, xy=scene.agent_pos[None].float(), heading=scene.agent_heading[None].float(),
                  vel=scene.agent_vel[None].float(), valid=scene.agent_valid[None].clone(), size=size,
                  type=scene.agent_type.clone(), controlled=torch.ones(scene.num_agents, dtype=torch.bool),
                  start=scene.current_index, dt=scene.dt, seed=0)
    return offroad_steps(scene, ro, MetricsConfig())[0].any(-1)


@pytest.mark.parametrize("index", [1, 6])  # a straight road, a four-way stop intersection
def test_generated_scene_as_av2_keeps_log_offroad(tmp_path, index):
    scene = generate_scene(7, index)[0].validate()
    d = write_av2_scenario(scene, tmp_path)
    back = read_av2_scenario(d)
    areas = json.loads(next(d.glob("log_map_archive_*.json")).read_text())["drivable_areas"]
    assert len(areas) == 1  # one road network, one polygon
    ring = np.array([[p["x"], p["y"]] for p in next(iter(areas.values()))["area_boundary"]])
    assert signed_area(ring) > 0
    av2 = _log_offroad(back)
    # slow reference: off-road = a box corner outside the written drivable area (world frame)
    from drope.geometry import box_corners

    w = back.to_world()
    c = box_corners(torch.from_numpy(w.agent_pos), torch.from_numpy(w.agent_heading),
                    back.agent_size[..., 0].double(), back.agent_size[..., 1].double()).numpy()  # [A, T, 4, 2]
    outside = ~points_in_polygon(c.reshape(-1, 2), ring).reshape(c.shape[:3])
    assert av2.tolist() == torch.from_numpy((outside.any(-1) & back.agent_valid.numpy()).any(-1)).tolist()
    # the generator's own kerbs, each turned to have the road on its left where it is not, give the same flags
    pts, off = scene.map_points.double(), scene.map_offsets.tolist()
    kerbs, reversed_ = [], 0
    for f in np.flatnonzero((scene.map_type == MapType.road_edge).numpy()):
        p = pts[off[f] : off[f + 1]]
        v = p[1:, :2] - p[:-1, :2]
        k = int(v.norm(dim=1).argmax())
        probe = (p[k, :2] + p[k + 1, :2]) / 2 + 0.2 * torch.stack([-v[k, 1], v[k, 0]]) / v[k].norm()
        probe_world = scene.to_world_xy(probe[None].float())
        if not points_in_polygon(np.asarray(probe_world, np.float64), ring)[0]:
            p, reversed_ = p.flip(0), reversed_ + 1
        kerbs.append(p)
    m = scene_map(scene)
    oriented = WF.EdgeSegments(kerbs, m.edges.frame)
    size = scene.agent_size.double()
    dist = WF.distance_to_road_edge(scene.agent_pos[None].double(), scene.agent_z[None].double(),
                                    scene.agent_heading[None].double(), size[..., 0], size[..., 1], size[..., 2],
                                    scene.agent_valid, oriented)[0]
    assert av2.tolist() == ((dist > 0) & scene.agent_valid).any(-1).tolist()
    assert reversed_ == 0  # every generated kerb has the road on its left (WOSAC's sign)...
    assert av2.tolist() == _log_offroad(scene).tolist()  # ...so the AV2 copy flags what the WOMD copy flags
    vehicles = (scene.agent_type == 1) & scene.agent_valid[:, scene.current_index]
    assert not bool(av2[vehicles].any())  # logged vehicles stay on the road


def test_reader_ignores_the_winding_of_the_map_json(tmp_path):
    scene = generate_scene(7, 0)[0]  # a T junction
    d = write_av2_scenario(scene, tmp_path)
    map_path = next(d.glob("log_map_archive_*.json"))
    mp = json.loads(map_path.read_text())
    t = scene.current_index
    ok = scene.agent_valid[:, t : t + 1]
    size = scene.agent_size[:, t : t + 1].double()

    def distances():
        s = read_av2_scenario(d)
        args = [v[:, t : t + 1].double()[None] for v in (s.agent_pos, s.agent_z, s.agent_heading)]
        return WF.distance_to_road_edge(*args, size[..., 0], size[..., 1], size[..., 2], ok, scene_map(s).edges)

    ccw = distances()
    for area in mp["drivable_areas"].values():
        area["area_boundary"] = np.roll(area["area_boundary"][::-1], 5).tolist()  # clockwise, another start
    map_path.write_text(json.dumps(mp))
    torch.testing.assert_close(distances(), ccw, rtol=0, atol=1e-9)
    assert bool((ccw[0][ok] < 0).any()) and bool((ccw[0][ok] > 0).any())  # on the road and on the sidewalk
