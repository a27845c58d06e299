"""Radius graphs: the (key, query) pairs that lie within an interaction radius, as ``edge_index``.

The model's graph attention backend (``ModelConfig.attention_backend``) runs its agent–agent,
map–agent and map–map attention over these edges instead of a dense ``[N, N]`` mask; the radii
are the model's :class:`~drope.data.features.FeatureSpec` ones, so a graph connects exactly the
pairs the dense mask allows.

Pure torch (PyG 2.8's ``radius_graph`` needs ``pyg-lib``). Distances come from explicit
differences, never ``torch.cdist``'s matmul mode, whose ``|a|² + |b|² - 2ab`` cancels
catastrophically at WOMD world coordinates (metres of error at ±8 km). The comparison runs in
``compare_dtype``: float64 by default (exact to far below a millimetre at world coordinates);
the model passes float32, which makes the decisions bit for bit those of
:func:`drope.nn.attention.radius_mask`. Small inputs compare all pairs in target chunks; large
ones hash points into cells of side ``r`` and compare only the 3×3 neighbouring cells, so
10k×10k points need neither 10⁸ distances nor 10⁸ booleans of memory.
"""
from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

# Pairs (or grid candidates) evaluated per chunk: bounds peak memory to a few tens of MB.
_PAIR_BUDGET = 1 << 21
# Below this many pairs the all-pairs path beats the cell-hash bookkeeping.
_DENSE_MAX_PAIRS = 1 << 20
# The 3×3 cell neighbourhood (side 3r) of a uniform spread holds 9/π times the pairs within r.
_DISC_SHARE = math.pi / 9.0
_OFFSETS = [(ox, oy) for ox in (-1, 0, 1) for oy in (-1, 0, 1)]


def radius_edges(
    pos_src: Tensor,
    pos_dst: Tensor,
    r: float,
    batch_src: Tensor | None = None,
    batch_dst: Tensor | None = None,
    loop: bool = False,
    chunk_size: int | None = None,
    method: str = "auto",
    compare_dtype: torch.dtype = torch.float64,
) -> Tensor:
    """All pairs with ``|pos_src[i] - pos_dst[j]| <= r`` (same batch entry) as ``edge_index [2, E]``.

    ``pos_src [Ns, 2]``, ``pos_dst [Nd, 2]`` (any float dtype; distances compared in
    ``compare_dtype``), ``batch_src [Ns]`` / ``batch_dst [Nd]`` int graph ids (both or neither).
    Row 0 holds source indices, row 1 target indices (PyG's source→target convention), sorted by
    target then source. ``loop=False`` drops i == j pairs (for self graphs, where src is dst).
    ``method``: ``"dense"`` (all pairs, chunked over targets), ``"grid"`` (cell hashing) or
    ``"auto"``; all give the same edges.
    """
    _check(pos_src, pos_dst, batch_src, batch_dst)
    r = float(r)
    if math.isnan(r) or r < 0:
        raise ValueError(f"radius must be >= 0, got {r}")
    if method not in ("auto", "dense", "grid"):
        raise ValueError(f"method must be 'auto', 'dense' or 'grid', got {method!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ns, nd = pos_src.shape[0], pos_dst.shape[0]
    if ns == 0 or nd == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=pos_src.device)
    src, dst = pos_src.to(compare_dtype), pos_dst.to(compare_dtype)
    if method == "auto":
        method = "grid" if ns * nd > _DENSE_MAX_PAIRS and _grid_pays_off(pos_src, pos_dst, r) else "dense"
    if method == "grid" and (r == 0 or not math.isfinite(r)):
        raise ValueError(f"method='grid' needs a finite radius > 0, got {r}")
    if method == "grid":
        grid = _Grid.build(pos_src, pos_dst, r, batch_src, batch_dst)
        if grid is not None:
            return grid.edges(src, dst, r, loop, chunk_size)
        # far too many cells to key in int64 (tiny r over a huge extent): compare all pairs instead
    return _dense_edges(src, dst, r, batch_src, batch_dst, loop, chunk_size)


def padded_radius_edges(pos_q: Tensor, pos_k: Tensor, r: float, key_mask: Tensor | None = None) -> Tensor:
    """The pairs a dense ``radius_mask(pos_q, pos_k, r) & key_mask`` allows, as ``edge_index [2, E]``.

    Padded batches: ``pos_q [B, Nq, ≥2]``, ``pos_k [B, Nk, ≥2]`` (x, y first), ``key_mask [B, Nk]``
    (True = valid key). Row 0 indexes the flattened keys (``b * Nk + j``), row 1 the flattened
    queries (``b * Nq + i``); every query is a target, padded ones included (the dense path
    computes them too). Compared in float32 like :func:`drope.nn.attention.radius_mask`, so the
    decisions are the same bit for bit.
    """
    B, Nq, Nk = pos_q.shape[0], pos_q.shape[1], pos_k.shape[1]
    xy_q, xy_k = pos_q[..., :2].float().reshape(B * Nq, 2), pos_k[..., :2].float().reshape(B * Nk, 2)
    bq = torch.arange(B, device=pos_q.device).repeat_interleave(Nq)
    bk = torch.arange(B, device=pos_q.device).repeat_interleave(Nk)
    keys = key_mask.reshape(-1).nonzero(as_tuple=True)[0] if key_mask is not None else None
    if keys is not None:
        xy_k, bk = xy_k[keys], bk[keys]
    e = radius_edges(xy_k, xy_q, r, bk, bq, loop=True, compare_dtype=torch.float32)
    if keys is not None:
        e = torch.stack([keys[e[0]], e[1]])
    return e


def expected_pair_share(pos_q: Tensor, pos_k: Tensor, r: float, key_mask: Tensor | None = None) -> float:
    """Estimated share of the ``B·Nq·Nk`` (valid-key) pairs that lie within ``r``, in O(N log N).

    Counts the candidates in each query's 3×3 cells of side ``r`` (an upper bound on its
    neighbours) and scales by the disc's share of that square, π/9 (exact for a uniform spread).
    Same layout as :func:`padded_radius_edges`. Points packed into a few cells read as ≥ π/9 (every
    pair a candidate), which is all a backend choice needs to know.
    """
    B, Nq, Nk = pos_q.shape[0], pos_q.shape[1], pos_k.shape[1]
    xy_q, xy_k = pos_q[..., :2].double().reshape(B * Nq, 2), pos_k[..., :2].double().reshape(B * Nk, 2)
    bq = torch.arange(B, device=pos_q.device).repeat_interleave(Nq)
    bk = torch.arange(B, device=pos_q.device).repeat_interleave(Nk)
    if key_mask is not None:
        keys = key_mask.reshape(-1)
        xy_k, bk = xy_k[keys], bk[keys]
    pairs = Nq * xy_k.shape[0]  # every query against every valid key of its scene, summed over B
    if pairs == 0:
        return 0.0
    if r == 0 or not math.isfinite(r):
        return 1.0
    grid = _Grid.build(xy_k, xy_q, r, bk, bq)
    if grid is None:
        return 1.0
    return min(1.0, float(grid.candidates.sum()) * _DISC_SHARE / pairs)


def _check(pos_src, pos_dst, batch_src, batch_dst) -> None:
    if pos_src.dim() != 2 or pos_src.shape[-1] != 2 or pos_dst.dim() != 2 or pos_dst.shape[-1] != 2:
        raise ValueError(f"positions must be [N, 2], got {tuple(pos_src.shape)} and {tuple(pos_dst.shape)}")
    if (batch_src is None) != (batch_dst is None):
        raise ValueError("radius_edges: give both batch_src and batch_dst, or neither")
    if batch_src is not None and (batch_src.shape != pos_src.shape[:1] or batch_dst.shape != pos_dst.shape[:1]):
        raise ValueError(
            f"batch vectors {tuple(batch_src.shape)}/{tuple(batch_dst.shape)} do not match positions "
            f"{tuple(pos_src.shape)}/{tuple(pos_dst.shape)}"
        )


def _grid_pays_off(src: Tensor, dst: Tensor, r: float) -> bool:
    """Cells help when the 3×3 neighbourhood of a point holds a small share of all points."""
    if r == 0 or not math.isfinite(r):
        return False
    pts = torch.cat([src, dst]).double()
    w, h = (pts.max(0).values - pts.min(0).values).tolist()
    return 9.0 * r * r < 0.25 * max(w, r) * max(h, r)


def _within(src: Tensor, dst: Tensor, r2: float) -> Tensor:
    # explicit dx² + dy² (dst - src, as radius_mask computes query - key)
    dx = dst[..., 0] - src[..., 0]
    dy = dst[..., 1] - src[..., 1]
    return dx * dx + dy * dy <= r2


def _dense_edges(src, dst, r, batch_src, batch_dst, loop, chunk_size) -> Tensor:
    ns, nd = src.shape[0], dst.shape[0]
    rows = chunk_size or max(1, _PAIR_BUDGET // ns)
    cols = torch.arange(ns, device=src.device)
    out = []
    for start in range(0, nd, rows):
        d = dst[start : start + rows]
        keep = _within(src[None, :, :], d[:, None, :], r * r)  # [n, Ns]
        if batch_src is not None:
            keep &= batch_dst[start : start + rows, None] == batch_src[None, :]
        if not loop:
            keep &= torch.arange(start, start + d.shape[0], device=src.device)[:, None] != cols[None, :]
        j, i = keep.nonzero(as_tuple=True)  # row-major: sorted by target, then source
        out.append(torch.stack([i, j + start]))
    return torch.cat(out, dim=1)


class _Grid:
    """Sources hashed into cells of side ~r; per target, the 3×3 cells around it."""

    def __init__(self, order, first, count, slot, hit, candidates) -> None:
        self.order = order  # [Ns] sources sorted by cell key
        self.first, self.count = first, count  # [C] each cell's first position in `order`, its size
        self.slot, self.hit = slot, hit  # [Nd, 9] cell slot of each neighbour cell, whether it exists
        self.candidates = candidates  # [Nd, 9] sources in each neighbour cell

    @classmethod
    def build(cls, pos_src, pos_dst, r, batch_src, batch_dst) -> "_Grid | None":
        """``None`` when the cells cannot be keyed in int64 (tiny r over a huge extent)."""
        dev = pos_src.device
        # cell keys from float64 positions whatever the comparison dtype: a hair wider than r,
        # cells never put a pair within r (even after float32 rounding) two cells apart
        src, dst = pos_src.double(), pos_dst.double()
        lo = torch.minimum(src.min(0).values, dst.min(0).values)
        cell = r * (1.0 + 1e-6)
        cs = torch.floor((src - lo) / cell).long() + 1  # [Ns, 2], +1 leaves room for the -1 neighbour
        cd = torch.floor((dst - lo) / cell).long() + 1  # [Nd, 2]
        nx = int(torch.maximum(cs[:, 0].max(), cd[:, 0].max())) + 2
        ny = int(torch.maximum(cs[:, 1].max(), cd[:, 1].max())) + 2
        bs = batch_src.long() if batch_src is not None else torch.zeros(src.shape[0], dtype=torch.long, device=dev)
        bd = batch_dst.long() if batch_dst is not None else torch.zeros(dst.shape[0], dtype=torch.long, device=dev)
        if min(int(bs.min()), int(bd.min())) < 0:
            raise ValueError("batch ids must be >= 0")
        nb = int(torch.maximum(bs.max(), bd.max())) + 1
        if float(nb) * nx * ny >= 2.0**62:
            return None
        key_src = (bs * nx + cs[:, 0]) * ny + cs[:, 1]  # [Ns]
        order = torch.argsort(key_src)
        cell_key, count = torch.unique_consecutive(key_src[order], return_counts=True)  # [C]
        first = torch.cumsum(count, 0) - count
        off = torch.tensor(_OFFSETS, device=dev)  # [9, 2]
        nkey = (bd[:, None] * nx + cd[:, None, 0] + off[:, 0]) * ny + cd[:, None, 1] + off[:, 1]  # [Nd, 9]
        slot = torch.searchsorted(cell_key, nkey).clamp_(max=cell_key.numel() - 1)
        hit = cell_key[slot] == nkey
        return cls(order, first, count, slot, hit, torch.where(hit, count[slot], 0))

    def edges(self, src, dst, r, loop, chunk_size) -> Tensor:
        dev, ns = src.device, src.shape[0]
        per_dst = self.candidates.sum(1)  # [Nd]
        # chunks of targets with about _PAIR_BUDGET candidates each (or chunk_size targets)
        if chunk_size:
            bounds = list(range(0, dst.shape[0], chunk_size)) + [dst.shape[0]]
        else:
            cum = torch.cumsum(per_dst, 0)
            marks = torch.arange(1, int(cum[-1]) // _PAIR_BUDGET + 1, device=dev) * _PAIR_BUDGET
            cuts = torch.searchsorted(cum, marks)
            bounds = sorted({0, dst.shape[0], *(int(c) + 1 for c in cuts if int(c) + 1 < dst.shape[0])})
        out = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            n_cand = self.candidates[start:stop].reshape(-1)  # [n*9]
            total = int(n_cand.sum())
            if total == 0:
                continue
            j = torch.arange(start, stop, device=dev).repeat_interleave(9).repeat_interleave(n_cand)
            base = self.first[self.slot[start:stop]].reshape(-1).repeat_interleave(n_cand)
            within_cell = torch.arange(total, device=dev) - (torch.cumsum(n_cand, 0) - n_cand).repeat_interleave(n_cand)
            i = self.order[base + within_cell]  # [total] candidate sources
            keep = _within(src[i], dst[j], r * r)
            if not loop:
                keep &= i != j
            out.append(torch.stack([i[keep], j[keep]]))
        if not out:
            return torch.zeros(2, 0, dtype=torch.long, device=dev)
        e = torch.cat(out, dim=1)
        return e[:, torch.argsort(e[1] * ns + e[0])]
