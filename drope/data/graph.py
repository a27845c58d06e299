"""Scene graphs as torch_geometric ``HeteroData``.

Node types: ``agent`` (agents valid at the current step) and ``map`` (segments of at most
``features.segment_len`` m from :func:`drope.data.segments.split_polylines`). Edge types:
``('agent','a2a','agent')``, ``('map','m2a','agent')``, ``('map','m2m','map')``, each within its
radius of the same :class:`~drope.data.features.FeatureSpec` the model attends with.

Radius edges are built in pure torch (PyG 2.8's ``radius_graph`` needs ``pyg-lib``). Distances
come from explicit float64 differences, never ``torch.cdist``'s matmul mode, whose
``|a|² + |b|² - 2ab`` cancels catastrophically at WOMD world coordinates (metres of error at
±8 km). Small inputs compare all pairs in target chunks; large ones hash points into cells of
side ``r`` and compare only the 3×3 neighbouring cells, so 10k×10k points need neither 10⁸
distances nor 10⁸ booleans of memory.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch_geometric.data import HeteroData

from drope.data.features import FeatureSpec
from drope.data.scene import Scene
from drope.data.segments import split_polylines

Tensor = torch.Tensor

# Pairs evaluated per chunk: bounds peak memory to a few tens of MB whatever the input size.
_PAIR_BUDGET = 1 << 21
# Below this many pairs the all-pairs path beats the cell-hash bookkeeping.
_DENSE_MAX_PAIRS = 1 << 20


@dataclass
class GraphConfig:
    """Mirrored by ``configs/graph/default.yaml``. Radii and map segments are the feature
    contract's (a model's ``cfg.features``), so a graph connects exactly what the model attends to."""

    features: FeatureSpec = field(default_factory=FeatureSpec)
    chunk_size: int | None = None  # targets per chunk in radius_edges (None: from a memory budget)

    @classmethod
    def from_dict(cls, d: dict) -> "GraphConfig":
        d = dict(d)
        return cls(features=FeatureSpec.from_dict(d.pop("features", {}), "graph.features"), **d)


def radius_edges(
    pos_src: Tensor,
    pos_dst: Tensor,
    r: float,
    batch_src: Tensor | None = None,
    batch_dst: Tensor | None = None,
    loop: bool = False,
    chunk_size: int | None = None,
    method: str = "auto",
) -> Tensor:
    """All pairs with ``|pos_src[i] - pos_dst[j]| <= r`` (same batch entry) as ``edge_index [2, E]``.

    ``pos_src [Ns, 2]``, ``pos_dst [Nd, 2]`` (any float dtype; compared in float64),
    ``batch_src [Ns]`` / ``batch_dst [Nd]`` int graph ids (both or neither). Row 0 holds source
    indices, row 1 target indices (PyG's source→target convention), sorted by target then source.
    ``loop=False`` drops i == j pairs (for self graphs, where src is dst). ``method``: ``"dense"``
    (all pairs, chunked over targets), ``"grid"`` (cell hashing) or ``"auto"``; all give the
    same edges.
    """
    if pos_src.dim() != 2 or pos_src.shape[-1] != 2 or pos_dst.dim() != 2 or pos_dst.shape[-1] != 2:
        raise ValueError(f"positions must be [N, 2], got {tuple(pos_src.shape)} and {tuple(pos_dst.shape)}")
    if (batch_src is None) != (batch_dst is None):
        raise ValueError("radius_edges: give both batch_src and batch_dst, or neither")
    if batch_src is not None and (batch_src.shape != pos_src.shape[:1] or batch_dst.shape != pos_dst.shape[:1]):
        raise ValueError(
            f"batch vectors {tuple(batch_src.shape)}/{tuple(batch_dst.shape)} do not match positions "
            f"{tuple(pos_src.shape)}/{tuple(pos_dst.shape)}"
        )
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
    src, dst = pos_src.to(torch.float64), pos_dst.to(torch.float64)
    if method == "auto":
        method = "grid" if ns * nd > _DENSE_MAX_PAIRS and _grid_pays_off(src, dst, r) else "dense"
    if method == "grid" and (r == 0 or not math.isfinite(r)):
        raise ValueError(f"method='grid' needs a finite radius > 0, got {r}")
    if method == "dense":
        return _dense_edges(src, dst, r, batch_src, batch_dst, loop, chunk_size)
    return _grid_edges(src, dst, r, batch_src, batch_dst, loop, chunk_size)


def _grid_pays_off(src: Tensor, dst: Tensor, r: float) -> bool:
    """Cells help when the 3×3 neighbourhood of a point holds a small share of all points."""
    if r == 0 or not math.isfinite(r):
        return False
    pts = torch.cat([src, dst])
    w, h = (pts.max(0).values - pts.min(0).values).tolist()
    return 9.0 * r * r < 0.25 * max(w, r) * max(h, r)


def _within(src: Tensor, dst: Tensor, r2: float) -> Tensor:
    # explicit dx² + dy² in float64: exact to far below a millimetre at world coordinates
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


def _grid_edges(src, dst, r, batch_src, batch_dst, loop, chunk_size) -> Tensor:
    dev = src.device
    ns = src.shape[0]
    lo = torch.minimum(src.min(0).values, dst.min(0).values)
    # cells a hair wider than r: points within r then never land two cells apart, despite rounding
    cell = r * (1.0 + 1e-6)
    cs = torch.floor((src - lo) / cell).long() + 1  # [Ns, 2], +1 leaves room for the -1 neighbour
    cd = torch.floor((dst - lo) / cell).long() + 1  # [Nd, 2]
    nx = int(torch.maximum(cs[:, 0].max(), cd[:, 0].max())) + 2
    ny = int(torch.maximum(cs[:, 1].max(), cd[:, 1].max())) + 2
    bs = batch_src.long() if batch_src is not None else torch.zeros(ns, dtype=torch.long, device=dev)
    bd = batch_dst.long() if batch_dst is not None else torch.zeros(dst.shape[0], dtype=torch.long, device=dev)
    nb = int(torch.maximum(bs.max(), bd.max())) + 1
    if min(int(bs.min()), int(bd.min())) < 0:
        raise ValueError("batch ids must be >= 0")
    if float(nb) * nx * ny >= 2.0**62:
        # far too many cells to key in int64 (tiny r over a huge extent): compare all pairs instead
        return _dense_edges(src, dst, r, batch_src, batch_dst, loop, chunk_size)
    key_src = (bs * nx + cs[:, 0]) * ny + cs[:, 1]  # [Ns]
    order = torch.argsort(key_src)
    cell_key, count = torch.unique_consecutive(key_src[order], return_counts=True)  # [C]
    first = torch.cumsum(count, 0) - count  # [C] position of each cell's first point in `order`
    offsets = torch.tensor([(ox, oy) for ox in (-1, 0, 1) for oy in (-1, 0, 1)], device=dev)  # [9, 2]
    rows = chunk_size or 1 << 15
    out = []
    for start in range(0, dst.shape[0], rows):
        c = cd[start : start + rows]  # [n, 2]
        nkey = (bd[start : start + rows, None] * nx + c[:, None, 0] + offsets[:, 0]) * ny + c[:, None, 1] + offsets[:, 1]
        slot = torch.searchsorted(cell_key, nkey).clamp_(max=cell_key.numel() - 1)  # [n, 9]
        hit = cell_key[slot] == nkey
        n_cand = torch.where(hit, count[slot], 0).reshape(-1)  # [n*9]
        total = int(n_cand.sum())
        if total == 0:
            continue
        j = torch.arange(start, start + c.shape[0], device=dev).repeat_interleave(9).repeat_interleave(n_cand)
        base = first[slot].reshape(-1).repeat_interleave(n_cand)
        within_cell = torch.arange(total, device=dev) - (torch.cumsum(n_cand, 0) - n_cand).repeat_interleave(n_cand)
        i = order[base + within_cell]  # [total] candidate sources
        keep = _within(src[i], dst[j], r * r)
        if not loop:
            keep &= i != j
        out.append(torch.stack([i[keep], j[keep]]))
    if not out:
        return torch.zeros(2, 0, dtype=torch.long, device=dev)
    e = torch.cat(out, dim=1)
    return e[:, torch.argsort(e[1] * ns + e[0])]


def scene_to_heterodata(scene: Scene, cfg: GraphConfig | None = None) -> HeteroData:
    """One scene as a heterogeneous graph at its current step (scene frame, float32).

    ``agent`` nodes (agents valid at the current step, Na): ``index [Na]`` into the scene's
    agents, ``pos [Na, 2]``, ``heading [Na]``, ``pose [Na, 3]``, ``vel [Na, 2]``, ``size [Na, 3]``,
    ``type [Na]``, ``predict [Na]`` (in tracks_to_predict), ``is_sdc [Na]``.
    ``map`` nodes (segments, M): ``pos [M, 2]`` (start point), ``heading [M]``, ``pose [M, 3]``,
    ``points [M, S, 2]``, ``length [M]``, ``type [M]``, ``subtype [M]``, ``signal [M]`` (lane
    signal state at the current step), ``feature_index [M]``.
    Edges (``edge_index [2, E]``, row 0 source): ``a2a`` (no self loops), ``m2a``, ``m2m`` (no
    self loops), each within its radius of ``cfg.features``.
    """
    cfg = cfg or GraphConfig()
    spec = cfg.features
    t = scene.current_index
    agents = scene.agent_valid[:, t].nonzero(as_tuple=True)[0]  # [Na]
    seg = split_polylines(scene, spec.segment_len, spec.segment_points, step=t)
    data = HeteroData()
    data.scenario_id = scene.scenario_id
    a_pos = scene.agent_pos[agents, t]  # [Na, 2]
    a_head = scene.agent_heading[agents, t]  # [Na]
    na = data["agent"]
    na.index = agents
    na.pos = a_pos
    na.heading = a_head
    na.pose = torch.cat([a_pos, a_head[:, None]], dim=-1)
    na.vel = scene.agent_vel[agents, t]
    na.size = scene.agent_size[agents, t]
    na.type = scene.agent_type[agents]
    na.predict = torch.isin(agents, scene.tracks_to_predict)
    na.is_sdc = agents == scene.sdc_index
    na.num_nodes = int(agents.numel())
    nm = data["map"]
    m_pos = seg.pose[:, :2]  # [M, 2]
    nm.pos = m_pos
    nm.heading = seg.pose[:, 2]
    nm.pose = seg.pose
    nm.points = seg.points
    nm.length = seg.length
    nm.type = seg.type
    nm.subtype = seg.subtype
    nm.signal = seg.signal_state
    nm.feature_index = seg.feature_index
    nm.num_nodes = seg.num_segments
    chunk = cfg.chunk_size
    data["agent", "a2a", "agent"].edge_index = radius_edges(a_pos, a_pos, spec.a2a_radius, chunk_size=chunk)
    data["map", "m2a", "agent"].edge_index = radius_edges(m_pos, a_pos, spec.m2a_radius, loop=True, chunk_size=chunk)
    data["map", "m2m", "map"].edge_index = radius_edges(m_pos, m_pos, spec.m2m_radius, chunk_size=chunk)
    data.graph_config = asdict(cfg)
    return data
