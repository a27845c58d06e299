"""``box_signed_distance`` (compiled, pair by pair) equals its tensor formulation (the slow reference
below) on random, aligned, touching, nested and identical boxes; shapely checks live in
tests/test_metrics_wosac.py."""
from __future__ import annotations

import math

import pytest
import torch

from drope.geometry import box_corners
from drope.metrics.boxes import box_signed_distance

D64 = torch.float64


def _reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = torch.broadcast_tensors(a, b)
    a_edge, b_edge = a.roll(-1, dims=-2) - a, b.roll(-1, dims=-2) - b
    normals = torch.cat([a_edge, -b_edge], dim=-2)
    normals = torch.stack([normals[..., 1], -normals[..., 0]], dim=-1)
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    support = (normals[..., :, None, :] * a[..., None, :, :]).sum(-1).amax(-1) - (
        normals[..., :, None, :] * b[..., None, :, :]).sum(-1).amin(-1)
    lead = a.shape[:-2]
    start = torch.cat([(a[..., :, None, :] - b[..., None, :, :]).reshape(*lead, 16, 2),
                       (a[..., :, None, :] - b[..., None, :, :]).reshape(*lead, 16, 2)], dim=-2)
    vec = torch.cat([a_edge[..., :, None, :].expand(*lead, 4, 4, 2).reshape(*lead, 16, 2),
                     -b_edge[..., None, :, :].expand(*lead, 4, 4, 2).reshape(*lead, 16, 2)], dim=-2)
    ap = -start
    t = ((ap * vec).sum(-1) / (vec * vec).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    dist = (ap - vec * t[..., None]).norm(dim=-1).amin(-1)
    return torch.where((support >= 0).all(-1), -support.amin(-1), dist)


def _boxes(n: int, seed: int, angle: float | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    heading = torch.full((n, 2), angle, dtype=D64) if angle is not None else torch.rand(n, 2, generator=g, dtype=D64) * 6.3
    return box_corners(torch.randn(n, 2, 2, generator=g, dtype=D64) * 3, heading,
                       torch.rand(n, 2, generator=g, dtype=D64) * 4 + 0.5, torch.rand(n, 2, generator=g, dtype=D64) * 2 + 0.5)


@pytest.mark.parametrize("angle", [None, 0.0, math.pi / 2, 0.3])
def test_compiled_pairs_equal_the_tensor_formulation(angle):
    c = _boxes(3000, 0 if angle is None else 1, angle)
    a, b = c[:, 0], c[:, 1]
    a = torch.cat([a, a[:50], a[:50]])  # identical boxes and touching ones (b shifted by a's edge)
    b = torch.cat([b, a[:50], a[:50] + (a[:50, 1] - a[:50, 0])[:, None]])
    got, want = box_signed_distance(a, b), _reference(a, b)
    assert got.dtype == D64 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert bool((got < 0).any() and (got > 0).any())


def test_broadcasting_dtype_and_empty_input():
    c = _boxes(12, 3).reshape(3, 4, 2, 4, 2)
    d = box_signed_distance(c[:, :, :1], c[:1, :, 1:])  # [3, 4, 1] with [1, 4, 1] -> [3, 4, 1]
    assert d.shape == (3, 4, 1)
    torch.testing.assert_close(d, _reference(c[:, :, :1], c[:1, :, 1:]), rtol=0, atol=1e-12)
    assert box_signed_distance(c[..., 0, :, :].float(), c[..., 1, :, :].float()).dtype == torch.float32
    assert box_signed_distance(torch.zeros(0, 4, 2, dtype=D64), torch.zeros(0, 4, 2, dtype=D64)).shape == (0,)
