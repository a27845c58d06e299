"""Segments and radius graphs against brute-force references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from drope.data.graph import GraphConfig, radius_edges, scene_to_heterodata
from drope.data.segments import split_polylines
from drope.data.womd import read_scenarios


def brute_force_edges(src, dst, r, loop):
    out = set()
    for j in range(len(dst)):
        for i in range(len(src)):
            if not loop and i == j:
                continue
            if math.dist(src[i].tolist(), dst[j].tolist()) <= r:
                out.add((i, j))
    return out


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 25), m=st.integers(1, 25), r=st.floats(0.5, 40), seed=st.integers(0, 1000),
       chunk=st.integers(1, 8))
def test_radius_edges_match_brute_force(n, m, r, seed, chunk):
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.rand(n, 2, generator=g) * 60, torch.rand(m, 2, generator=g) * 60
    e = radius_edges(src, dst, r, loop=True, chunk_size=chunk)
    assert set(map(tuple, e.t().tolist())) == brute_force_edges(src, dst, r, loop=True)
    e_self = radius_edges(src, src, r, loop=False, chunk_size=chunk)
    assert set(map(tuple, e_self.t().tolist())) == brute_force_edges(src, src, r, loop=False)


def test_radius_edges_respect_batches():
    pos = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    batch = torch.tensor([0, 0, 1])
    e = radius_edges(pos, pos, 5.0, batch, batch)
    assert set(map(tuple, e.t().tolist())) == {(0, 1), (1, 0)}


def test_millimetre_exact_at_world_coordinates():
    # two points 10.0005 m apart at WOMD-like world coordinates: float64 differences decide exactly
    a = torch.tensor([[-7785.9165, -6683.4059]], dtype=torch.float64)
    b = a + torch.tensor([[10.0005, 0.0]], dtype=torch.float64)
    assert radius_edges(a, b, 10.001, loop=True).shape[1] == 1
    assert radius_edges(a, b, 10.000, loop=True).shape[1] == 0


def test_segments_are_short_and_cover_the_map(womd_path):
    (scene,) = list(read_scenarios(womd_path))
    seg = split_polylines(scene, max_len=20.0, num_points=8)
    assert seg.points.shape[1:] == (8, 2) and seg.pose.shape == (seg.num_segments, 3)
    step = (seg.points[:, 1:] - seg.points[:, :-1]).norm(dim=-1).sum(-1)
    assert float(step.max()) <= 20.0 + 1e-3
    assert set(seg.feature_index.tolist()) == set(range(scene.num_map_features))
    # total length preserved for open polylines (resampling is along the arc, so chords ≤ arc)
    assert torch.allclose(seg.pose[:, :2], seg.points[:, 0])
    assert bool((seg.signal_state > 0).any())  # the sample has signalled lanes at the current step


def test_heterodata_edges_and_batching(womd_path):
    (scene,) = list(read_scenarios(womd_path))
    cfg = GraphConfig(a2a_radius=30.0, m2a_radius=20.0, m2m_radius=15.0)
    data = scene_to_heterodata(scene, cfg)
    assert data["agent"].num_nodes == 50
    a = data["agent"].pos.double()
    e = data["agent", "a2a", "agent"].edge_index
    d = (a[e[0]] - a[e[1]]).norm(dim=-1)
    assert bool((d <= 30.0).all()) and bool((e[0] != e[1]).all())
    n_ref = int(((torch.cdist(a, a, compute_mode="donot_use_mm_for_euclid_dist") <= 30.0).sum()) - a.shape[0])
    assert e.shape[1] == n_ref
    m2a = data["map", "m2a", "agent"].edge_index
    assert int(m2a[0].max()) < data["map"].num_nodes and int(m2a[1].max()) < 50
    batch = Batch.from_data_list([data, data])
    assert batch["agent"].num_nodes == 100
    assert batch["agent", "a2a", "agent"].edge_index.shape[1] == 2 * e.shape[1]
    loader = DataLoader([data, data, data], batch_size=2)
    assert [b["agent"].num_nodes for b in loader] == [100, 50]


def test_empty_scene_graph():
    from tests.test_data_scene import make_scene

    s = make_scene(A=1)
    data = scene_to_heterodata(s)
    assert data["agent", "a2a", "agent"].edge_index.shape == (2, 0)
