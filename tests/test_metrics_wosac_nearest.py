"""Road-edge distance (WOSAC ``distance_to_road_edge``): the compiled nearest-segment search equals
the tensor formulation it replaced (slow reference below), with and without the official float32
re-ranking of near-tied segments, on generated maps and on the WOMD sample's."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drope.metrics.wosac import features as F
from drope.metrics.wosac.scoring import scene_map
from drope.sim.generate.scenario import generate_scene

Z = F.Z_STRETCH


def _reference(points: torch.Tensor, edges: F.EdgeSegments, points32: torch.Tensor | None) -> torch.Tensor:
    """Every point against every segment as [Q, M] tensors: least stretched 3D distance (first
    minimum), near-ties re-ranked by the official float32 distance, then the official sign rule."""
    sp = points[:, None] - edges.start[None]  # [Q, M, 3]
    vec = edges.vec[None]
    den = (vec[..., :2] ** 2).sum(-1)
    rel = torch.where(den > 0, (sp[..., :2] * vec[..., :2]).sum(-1) / den.clamp_min(1e-300), torch.zeros_like(den))
    d = sp - vec * rel.clamp(0, 1)[..., None]
    d3 = torch.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2 + (Z * d[..., 2]) ** 2)
    best = d3.argmin(1)
    dist = torch.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2).gather(1, best[:, None])[:, 0]
    if points32 is not None:
        near = d3 <= d3.gather(1, best[:, None]) + F.EDGE_TIE_TOLERANCE
        # float32, one IEEE operation at a time as TensorFlow's element-wise kernels (numpy ufuncs)
        sp32 = points32.numpy()[:, None] - edges.start32.numpy()[None]
        v32 = edges.vec32.numpy()[None]
        num = sp32[..., 0] * v32[..., 0] + sp32[..., 1] * v32[..., 1]
        den32 = v32[..., 0] * v32[..., 0] + v32[..., 1] * v32[..., 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            r32 = np.where(den32 != 0, num / den32, np.float32(0))
        e = (sp32 - v32 * np.clip(r32, np.float32(0), np.float32(1))[..., None]) * np.array([1, 1, Z], np.float32)
        d32 = np.sqrt((e[..., 0] * e[..., 0] + e[..., 1] * e[..., 1]) + e[..., 2] * e[..., 2])
        best = torch.from_numpy(np.where(near.numpy(), d32, np.float32(math.inf)).argmin(1))
        dist = _official_d2(points32, edges.start32[best], edges.vec32[best]).double()
    return _signed(points, edges, best, rel.gather(1, best[:, None])[:, 0], dist)


def _official_d2(p32, start32, vec32):
    """The official 2D distance in float32, one IEEE operation at a time (numpy ufuncs, as
    TensorFlow's element-wise kernels; torch's fused float32 kernels can differ by an ulp)."""
    sp = p32.numpy() - start32.numpy()
    v = vec32.numpy()
    num = sp[..., 0] * v[..., 0] + sp[..., 1] * v[..., 1]
    den = v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.clip(np.where(den != 0, num / den, np.float32(0)), np.float32(0), np.float32(1))
    dx, dy = sp[..., 0] - v[..., 0] * rel, sp[..., 1] - v[..., 1] * rel
    return torch.from_numpy(np.sqrt(dx * dx + dy * dy))


def _cross(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _signed(p, e, k, rel, d2):
    """The official sign rule for segment ``k`` of each point (the segment's side, or at a polyline
    joint the neighbour's, by convexity)."""
    start, vec = e.start[k, :2], e.vec[k, :2]
    n = torch.sign(_cross(p[:, :2] - start, vec))
    n_prior = torch.sign(_cross(p[:, :2] - (start - e.prev_vec[k]), e.prev_vec[k]))
    n_next = torch.sign(_cross(p[:, :2] - (start + vec), e.next_vec[k]))
    before = torch.where(_cross(e.prev_vec[k], vec) > 0, torch.maximum(n, n_prior), torch.minimum(n, n_prior))
    after = torch.where(_cross(vec, e.next_vec[k]) > 0, torch.maximum(n, n_next), torch.minimum(n, n_next))
    return torch.where((rel < 0) & e.has_prev[k], before, torch.where((rel > 1) & e.has_next[k], after, n)) * d2


def _points(edges: F.EdgeSegments, n: int, seed: int) -> torch.Tensor:
    """Points near the map: around segment vertices (where near-ties live), on segments and scattered."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, len(edges), (n,), generator=g)
    base = edges.start[k] + edges.vec[k] * torch.rand(n, 1, generator=g, dtype=torch.float64).round()  # vertices
    jitter = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 3.0, 0.5], dtype=torch.float64)
    pts = base + jitter * (torch.rand(n, 1, generator=g, dtype=torch.float64) ** 3)  # many very close
    far = edges.start[k] + torch.randn(n, 3, generator=g, dtype=torch.float64) * 40
    return torch.cat([pts, far])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_search_equals_the_tensor_formulation_on_generated_maps(seed):
    scene = generate_scene(11, seed)[0]
    edges = scene_map(scene).edges
    pts = _points(edges, 600, seed)
    pts32 = F._world32(pts, edges.frame)
    got = F.signed_distance_to_edges(pts, edges, points32=pts32)
    want = _reference(pts, edges, pts32)
    assert torch.equal(got, want)
    plain = F.EdgeSegments(_polylines(scene))  # no frame: the float64 choice alone
    torch.testing.assert_close(F.signed_distance_to_edges(pts, plain), _reference(pts, plain, None), rtol=0, atol=1e-12)


def _polylines(scene):
    from drope.data.types import MapType

    return [scene.map_polyline(f).double() for f in range(scene.num_map_features)
            if int(scene.map_type[f]) == int(MapType.road_edge)]


def test_compiled_search_equals_the_tensor_formulation_on_the_womd_map(womd_path):
    from drope.data.womd import read_scenarios

    scene = next(read_scenarios(womd_path))
    edges = scene_map(scene).edges
    pts = _points(edges, 700, 7)
    pts32 = F._world32(pts, edges.frame)
    assert torch.equal(F.signed_distance_to_edges(pts, edges, points32=pts32), _reference(pts, edges, pts32))
    # small groups: the candidate pruning per group changes, the answer does not
    assert torch.equal(F.signed_distance_to_edges(pts, edges, group=64, points32=pts32), _reference(pts, edges, pts32))
    # near-ties are exercised: some points have a second segment within the tolerance
    d3 = np.sort(_stretched(pts, edges), axis=1)
    assert ((d3[:, 1] - d3[:, 0]) <= F.EDGE_TIE_TOLERANCE).sum() > 20


def _stretched(pts, edges):
    sp = pts[:, None] - edges.start[None]
    den = (edges.vec[None, :, :2] ** 2).sum(-1)
    rel = ((sp[..., :2] * edges.vec[None, :, :2]).sum(-1) / den.clamp_min(1e-300)).clamp(0, 1)
    d = sp - edges.vec[None] * rel[..., None]
    return torch.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2 + (Z * d[..., 2]) ** 2).numpy()


def _lane_reference(points: torch.Tensor, lanes: F.LaneSegments) -> torch.Tensor:
    """Every point against every lane segment: least official score |(p − s) + t·v| (first minimum)."""
    sp = points[:, None] - lanes.start[None]
    vec = lanes.vec[None]
    den = (vec**2).sum(-1)
    t = torch.where(den > 0, (sp * vec).sum(-1) / den.clamp_min(1e-300), torch.zeros_like(den)).clamp(0, 1)
    score = torch.sqrt((sp[..., 0] + vec[..., 0] * t) ** 2 + (sp[..., 1] + vec[..., 1] * t) ** 2)
    return lanes.owner[score.argmin(1)]


@pytest.mark.parametrize("source", ["generated", "womd"])
def test_nearest_lane_equals_the_tensor_formulation(source, womd_path):
    if source == "womd":
        from drope.data.womd import read_scenarios

        scene = next(read_scenarios(womd_path))
    else:
        scene = generate_scene(11, 3)[0]
    lanes = scene_map(scene).lanes
    g = torch.Generator().manual_seed(5)
    k = torch.randint(0, len(lanes), (1500,), generator=g)
    pts = lanes.start[k] + torch.randn(1500, 2, generator=g, dtype=torch.float64) * torch.rand(1500, 1, generator=g, dtype=torch.float64) ** 2 * 8
    pts = torch.cat([pts, lanes.start[k[:20]]])  # on a vertex shared by two segments: a tie
    got = F.nearest_lane(pts, lanes)
    assert torch.equal(got, _lane_reference(pts, lanes))
    assert torch.equal(F.nearest_lane(pts, lanes, group=32), got)
