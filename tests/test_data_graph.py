"""Radius edges and scene graphs against brute-force references (python loops, float64)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from drope.data import scene_from_world
from drope.data.features import FeatureSpec
from drope.data.graph import GraphConfig, radius_edges, scene_to_heterodata
from drope.data.segments import split_polylines
from drope.data.types import MapType, ObjectType
from drope.data.womd import read_scenarios


def brute_force_edges(src, dst, r, loop=True, batch_src=None, batch_dst=None):
    src, dst = src.tolist(), dst.tolist()
    out = []
    for j in range(len(dst)):
        for i in range(len(src)):
            if (not loop and i == j) or (batch_src is not None and int(batch_src[i]) != int(batch_dst[j])):
                continue
            if math.dist(src[i], dst[j]) <= r:
                out.append((i, j))
    return out  # sorted by target, then source


def as_pairs(e):
    return list(map(tuple, e.t().tolist()))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), m=st.integers(1, 30), r=st.floats(0.5, 40), seed=st.integers(0, 10**6),
       chunk=st.one_of(st.none(), st.integers(1, 8)), method=st.sampled_from(["dense", "grid"]),
       batched=st.booleans())
def test_radius_edges_match_brute_force(n, m, r, seed, chunk, method, batched):
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.rand(n, 2, generator=g) * 60, torch.rand(m, 2, generator=g) * 60
    bs = torch.randint(0, 2, (n,), generator=g) if batched else None
    bd = torch.randint(0, 2, (m,), generator=g) if batched else None
    e = radius_edges(src, dst, r, bs, bd, loop=True, chunk_size=chunk, method=method)
    assert as_pairs(e) == brute_force_edges(src, dst, r, True, bs, bd)  # same pairs, same order
    e_self = radius_edges(src, src, r, bs, bs, loop=False, chunk_size=chunk, method=method)
    assert as_pairs(e_self) == brute_force_edges(src, src, r, False, bs, bs)


def test_grid_equals_dense_on_a_large_clustered_set():
    g = torch.Generator().manual_seed(1)
    centres = torch.rand(20, 2, generator=g) * 3000 - 8000
    pts = (centres[torch.randint(0, 20, (4000,), generator=g)] + torch.randn(4000, 2, generator=g) * 40).double()
    batch = torch.randint(0, 3, (4000,), generator=g)
    dense = radius_edges(pts, pts, 25.0, batch, batch, method="dense")
    assert dense.shape[1] > 10_000
    assert torch.equal(radius_edges(pts, pts, 25.0, batch, batch, method="grid"), dense)
    assert torch.equal(radius_edges(pts, pts, 25.0, batch, batch), dense)  # auto picks the grid here


def test_radius_edges_respect_batches_and_reject_bad_input():
    pos = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    batch = torch.tensor([0, 0, 1])
    assert as_pairs(radius_edges(pos, pos, 5.0, batch, batch)) == [(1, 0), (0, 1)]
    assert radius_edges(pos[:0], pos, 5.0).shape == (2, 0)
    with pytest.raises(ValueError, match="both"):
        radius_edges(pos, pos, 5.0, batch_src=batch)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        radius_edges(pos[:, :1], pos, 5.0)
    with pytest.raises(ValueError, match="radius"):
        radius_edges(pos, pos, -1.0)


def test_millimetre_exact_at_world_coordinates():
    # 10.0005 m apart at WOMD-like world coordinates: float64 differences decide at 0.5 mm
    a = torch.tensor([[-7785.9165, -6683.4059]], dtype=torch.float64)
    b = a + torch.tensor([[10.0005, 0.0]], dtype=torch.float64)
    for method in ("dense", "grid"):
        assert radius_edges(a, b, 10.001, loop=True, method=method).shape[1] == 1
        assert radius_edges(a, b, 10.000, loop=True, method=method).shape[1] == 0


def world_scene(seed=0, A=40, origin=(-7785.0, 6683.0)):
    """Agents and lanes scattered over ~120 m at WOMD-scale world coordinates."""
    r = np.random.default_rng(seed)
    T = 3
    xyz = np.zeros((A, T, 3))
    xyz[..., :2] = r.uniform(-60, 60, (A, 1, 2)) + origin
    valid = np.ones((A, T), bool)
    valid[3, 1] = False  # not valid at the current step → not a node
    F = 12
    starts = r.uniform(-60, 60, (F, 2)) + origin
    ends = starts + r.normal(size=(F, 2)) * 25
    pts = np.stack([starts, (starts + ends) / 2, ends], 1).reshape(-1, 2)
    return scene_from_world(
        scenario_id=f"world{seed}", source="unit", timestamps=np.arange(T) * 0.1, current_index=1, sdc_index=0,
        agent_id=np.arange(A), agent_type=np.full(A, ObjectType.TYPE_VEHICLE), agent_xyz=xyz,
        agent_heading=r.uniform(-3, 3, (A, T)), agent_vel=np.zeros((A, T, 2)),
        agent_size=np.tile([4.5, 2.0, 1.5], (A, T, 1)), agent_valid=valid, tracks_to_predict=[1, 2],
        tracks_to_predict_difficulty=[1, 1], objects_of_interest=[], map_id=np.arange(F) + 100,
        map_type=[MapType.lane] * F, map_subtype=[2] * F, map_offsets=np.arange(F + 1) * 3,
        map_points=np.concatenate([pts, np.zeros((3 * F, 1))], -1), lane_speed_limit=[25.0] * F,
        lane_interpolating=[False] * F, lane_links=np.zeros((0, 7)), stop_sign_lanes=np.zeros((0, 2)),
        signal_lane_id=np.full((T, 1), -1), signal_state=np.zeros((T, 1)), signal_stop_point=np.zeros((T, 1, 3)),
        signal_valid=np.zeros((T, 1), bool),
    ).validate()


def test_heterodata_edges_match_brute_force_in_world_coordinates():
    """Edges built from re-centred float32 scene-frame positions equal a float64 world-frame brute force."""
    scene = world_scene()
    spec = FeatureSpec(a2a_radius=30.0, m2a_radius=25.0, m2m_radius=20.0, segment_len=10.0)
    data = scene_to_heterodata(scene, GraphConfig(features=spec))
    assert data["agent"].num_nodes == 39 and 3 not in data["agent"].index.tolist()
    a_world = torch.from_numpy(scene.to_world_xy(data["agent"].pos))  # float64
    m_world = torch.from_numpy(scene.to_world_xy(data["map"].pos))
    seg = split_polylines(scene, 10.0)
    assert data["map"].num_nodes == seg.num_segments and torch.equal(data["map"].pose, seg.pose)
    cases = [
        (("agent", "a2a", "agent"), a_world, a_world, spec.a2a_radius, False),
        (("map", "m2a", "agent"), m_world, a_world, spec.m2a_radius, True),
        (("map", "m2m", "map"), m_world, m_world, spec.m2m_radius, False),
    ]
    for key, src, dst, r, loop in cases:
        got = data[key].edge_index
        ref = brute_force_edges(src, dst, r, loop)
        assert len(ref) > 10, key
        # a pair within 1 mm of the radius may fall either way after float32 re-centring
        d_ref = {p: math.dist(src[p[0]].tolist(), dst[p[1]].tolist()) for p in ref}
        assert {p for p in as_pairs(got) if abs(d_ref.get(p, 0) - r) > 1e-3} == {
            p for p in ref if abs(d_ref[p] - r) > 1e-3
        }, key
        # scene-frame distances agree with world distances to well under a millimetre
        sf = {"agent": data["agent"].pos, "map": data["map"].pos}
        d_scene = (sf[key[0]][got[0]].double() - sf[key[2]][got[1]].double()).norm(dim=-1)
        d_world = (src[got[0]] - dst[got[1]]).norm(dim=-1)
        assert float((d_scene - d_world).abs().max()) < 1e-3, key


def test_heterodata_node_features():
    scene = world_scene(seed=1)
    data = scene_to_heterodata(scene)
    a = data["agent"]
    assert a.pos.shape == (39, 2) and a.pose.shape == (39, 3) and a.size.shape == (39, 3)
    assert a.predict.sum() == 2 and a.is_sdc.tolist().index(True) == 0
    assert torch.allclose(a.pos[0], torch.zeros(2), atol=1e-4)  # scene frame: SDC at the origin
    m = data["map"]
    assert m.points.shape[1:] == (8, 2) and m.type.tolist() == [MapType.lane] * m.num_nodes


def test_heterodata_batching_with_pyg(womd_path):
    (scene,) = list(read_scenarios(womd_path))
    data = scene_to_heterodata(scene, GraphConfig(FeatureSpec(a2a_radius=30.0, m2a_radius=20.0, m2m_radius=15.0)))
    assert data["agent"].num_nodes == 50
    e = data["agent", "a2a", "agent"].edge_index
    small = scene_to_heterodata(world_scene(seed=2))
    batch = Batch.from_data_list([data, small])
    assert batch["agent"].num_nodes == 50 + 39
    be = batch["agent", "a2a", "agent"].edge_index
    n_small = small["agent", "a2a", "agent"].edge_index.shape[1]
    assert be.shape[1] == e.shape[1] + n_small
    assert torch.equal(be[:, e.shape[1]:], small["agent", "a2a", "agent"].edge_index + 50)  # offsets applied
    m2a = batch["map", "m2a", "agent"].edge_index
    assert bool((batch["map"].batch[m2a[0]] == batch["agent"].batch[m2a[1]]).all())  # no cross-scene edges
    loader = DataLoader([data, small, data], batch_size=2)
    assert [b["agent"].num_nodes for b in loader] == [89, 50]


def test_graph_with_one_agent_has_no_agent_edges():
    from tests.builders import make_scene

    data = scene_to_heterodata(make_scene(A=1))
    assert data["agent", "a2a", "agent"].edge_index.shape == (2, 0)
    assert data["map", "m2a", "agent"].edge_index.shape[0] == 2


def test_config_yaml_mirrors_dataclass_and_takes_the_model_radii():
    from pathlib import Path

    import yaml

    from drope.model import ModelConfig

    d = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "graph" / "default.yaml").read_text())
    assert GraphConfig.from_dict(d) == GraphConfig()
    assert d["features"] == {}  # no copy of the feature values that could drift from FeatureSpec
    # the graph connects exactly the pairs the model attends over (they once disagreed: 50/50/30 vs 60/50/40)
    assert GraphConfig().features == ModelConfig().features
    with pytest.raises(ValueError, match="graph.features: unknown key"):
        GraphConfig.from_dict({"features": {"a2a_radus": 3.0}})
