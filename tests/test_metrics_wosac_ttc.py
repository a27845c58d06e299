"""Time to collision (WOSAC ``interaction_features``): the compiled loop equals the tensor
formulation it replaced (slow reference below) on platoons, crossing traffic, invalid objects and
NaN speeds at the trajectory ends."""
from __future__ import annotations

import math

import pytest
import torch

from drope.metrics.wosac import features as F

D64 = torch.float64


def _reference(xy, heading, length, width, valid, num_eval, dt):
    speed = F._central_diff(xy.movedim(-1, 0)).norm(dim=0) / dt
    ego_xy, ego_h, ego_v = xy[:, :num_eval], heading[:, :num_eval], speed[:, :num_eval]
    yaw = (heading[:, None] - ego_h[:, :, None]).abs()
    c, s = yaw.cos().abs(), yaw.sin().abs()
    hl, hw = (length / 2)[None, None], (width / 2)[None, None]
    other_long, other_lat = hl * c + hw * s, hl * s + hw * c
    rel = xy[:, None] - ego_xy[:, :, None]
    ch, sh = ego_h.cos()[:, :, None], ego_h.sin()[:, :, None]
    rel_x, rel_y = ch * rel[..., 0] + sh * rel[..., 1], -sh * rel[..., 0] + ch * rel[..., 1]
    long_dist = rel_x - (length[:num_eval] / 2)[None, :, None] - other_long
    lat = rel_y.abs() - (width[:num_eval] / 2)[None, :, None] - other_lat
    following = ((long_dist > 0) & (yaw <= F.MAX_HEADING_DIFF) & (lat < 0)
                 & ((lat < -F.SMALL_OVERLAP) | (yaw <= F.MAX_HEADING_DIFF_SMALL_OVERLAP)))
    masked = long_dist + (~(following & valid[None, None])).double() * F.HUGE
    dist, idx = masked.min(dim=2)
    rel_speed = ego_v - speed[:, None].expand_as(masked).gather(2, idx[:, :, None])[:, :, 0]
    ttc = torch.minimum(dist / rel_speed, torch.full_like(dist, F.MAX_TTC))
    return torch.where(rel_speed > 0, ttc, torch.full_like(dist, F.MAX_TTC))


def _traffic(N: int, O: int, T: int, seed: int):
    """Objects on a few parallel lanes (platoons with closing speeds) plus crossing ones; some invalid."""
    g = torch.Generator().manual_seed(seed)
    lane = torch.randint(0, 3, (O,), generator=g).double() * 3.5
    x0 = torch.rand(O, generator=g, dtype=D64) * 80
    v = 3 + torch.rand(N, O, 1, generator=g, dtype=D64) * 12
    h = torch.zeros(N, O, T, dtype=D64) + torch.randn(N, O, 1, generator=g, dtype=D64) * 0.05
    cross = torch.rand(O, generator=g) < 0.2
    h[:, cross] += math.pi / 2
    t = torch.arange(T, dtype=D64) * 0.1
    xy = torch.stack([x0[None, :, None] + v * t * torch.cos(h), lane[None, :, None] + v * t * torch.sin(h)], -1)
    xy += torch.randn(N, O, T, 2, generator=g, dtype=D64) * 0.05
    length = (4 + torch.rand(O, 1, generator=g, dtype=D64)).expand(O, T)
    width = (1.8 + 0.3 * torch.rand(O, 1, generator=g, dtype=D64)).expand(O, T)
    valid = torch.rand(O, T, generator=g) > 0.1
    return xy, h, length, width, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_ttc_equals_the_tensor_formulation(seed):
    xy, h, length, width, valid = _traffic(4, 24, 30, seed)
    got = F.time_to_collision(xy, h, length, width, valid, 10, 0.1)
    want = _reference(xy, h, length, width, valid, 10, 0.1)
    assert got.shape == (4, 10, 30) and got.dtype == D64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert bool(((got < F.MAX_TTC) & (got > 0)).any())  # some objects do follow and close in
    assert bool((got[..., 0] == F.MAX_TTC).all() and (got[..., -1] == F.MAX_TTC).all())  # NaN speeds at the ends
