"""Radius edges against brute-force references (python loops, float64) and the dense radius mask."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from drope.data.graph import expected_pair_share, padded_radius_edges, radius_edges
from drope.nn import radius_mask


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


def padded_positions(seed, B=3, N=40, spread=150.0, origin=0.0):
    g = torch.Generator().manual_seed(seed)
    pos = (torch.rand(B, N, 2, generator=g) - 0.5) * 2 * spread + origin
    mask = torch.rand(B, N, generator=g) < 0.8
    mask[:, 0] = True
    return pos, mask


@pytest.mark.parametrize("spread,origin", [(150.0, 0.0), (3000.0, 0.0), (40.0, 5000.0)])
def test_padded_edges_are_exactly_the_dense_radius_mask(spread, origin):
    """Float32 decisions bit for bit those of radius_mask (& key padding), grid or all-pairs alike."""
    pos_q, _ = padded_positions(0, N=37, spread=spread, origin=origin)
    pos_k, mask = padded_positions(1, N=300, spread=spread, origin=origin)
    # pairs within float32 rounding of the radius: both sides must still agree exactly
    pos_k[0, 1] = pos_q[0, 0] + torch.tensor([60.0, 0.0])
    pos_k[0, 2] = pos_q[0, 0] + torch.tensor([36.0, 48.0])
    dense = radius_mask(pos_q, pos_k, 60.0) & mask[:, None, :]  # [B, Nq, Nk]
    b, i, j = dense.nonzero(as_tuple=True)
    want = sorted(zip((b * 300 + j).tolist(), (b * 37 + i).tolist()))
    e = padded_radius_edges(pos_q, pos_k, 60.0, mask)
    assert sorted(map(tuple, e.t().tolist())) == want and len(want) > 5


def test_padded_edges_of_a_large_sparse_scene_take_the_grid_and_agree():
    pos, mask = padded_positions(2, B=1, N=3000, spread=4000.0)
    e = padded_radius_edges(pos, pos, 60.0, mask)
    dense = radius_mask(pos, pos, 60.0) & mask[:, None, :]
    assert e.shape[1] == int(dense.sum()) and bool(dense[0, e[1], e[0]].all())


def test_expected_pair_share_tracks_the_true_share():
    for spread, lo, hi in [(150.0, 0.05, 0.3), (2000.0, 1e-4, 3e-3)]:
        pos, mask = padded_positions(3, B=2, N=2000, spread=spread)
        true = float((radius_mask(pos, pos, 60.0) & mask[:, None, :]).sum()) / (2000 * int(mask.sum()))
        est = expected_pair_share(pos, pos, 60.0, mask)
        assert lo < true < hi and 0.7 * true < est < 1.5 * true, (spread, true, est)
    pos, mask = padded_positions(4, N=50, spread=10.0)
    assert expected_pair_share(pos, pos, 60.0, mask) >= math.pi / 9  # all in a few cells: no sparsity claimed
    assert expected_pair_share(pos, pos, 60.0, torch.zeros_like(mask)) == 0.0
