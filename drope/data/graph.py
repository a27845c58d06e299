"""Scene graphs as torch_geometric ``HeteroData``.

Node types: ``agent`` (agents valid at the current step) and ``map`` (segments ≤ ~20 m from
:func:`drope.data.segments.split_polylines`). Edge types: ``('agent','a2a','agent')``,
``('map','m2a','agent')``, ``('map','m2m','map')``, each within its own radius.

Radius edges are built in pure torch (PyG 2.8's ``radius_graph`` needs ``pyg-lib``): squared
distances from explicit differences in float64, chunked over targets so memory stays bounded.
``torch.cdist``'s matmul mode is avoided on purpose (~3 m error at WOMD world coordinates).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch_geometric.data import HeteroData

from drope.data.scene import Scene
from drope.data.segments import split_polylines

Tensor = torch.Tensor


@dataclass
class GraphConfig:
    """Radii in metres; mirrored by ``configs/graph/default.yaml``."""

    a2a_radius: float = 50.0
    m2a_radius: float = 50.0
    m2m_radius: float = 30.0
    max_segment_len: float = 20.0
    segment_points: int = 8
    chunk_size: int = 4096  # targets per chunk when building radius edges


def radius_edges(
    pos_src: Tensor,
    pos_dst: Tensor,
    r: float,
    batch_src: Tensor | None = None,
    batch_dst: Tensor | None = None,
    loop: bool = False,
    chunk_size: int = 4096,
) -> Tensor:
    """All pairs with ``|pos_src[i] - pos_dst[j]| <= r`` (same batch entry) as ``edge_index [2, E]``.

    Row 0 holds source indices, row 1 target indices (PyG's source→target convention), sorted
    by target then source. ``loop=False`` drops i == j pairs (for self graphs, where src is dst).
    """
    if pos_src.shape[-1] != 2 or pos_dst.shape[-1] != 2:
        raise ValueError(f"positions must be [N, 2], got {tuple(pos_src.shape)} and {tuple(pos_dst.shape)}")
    src = pos_src.to(torch.float64)
    r2 = float(r) ** 2
    out = []
    for start in range(0, pos_dst.shape[0], chunk_size):
        dst = pos_dst[start : start + chunk_size].to(torch.float64)
        d2 = ((dst[:, None, :] - src[None, :, :]) ** 2).sum(-1)  # [n_dst, N_src]
        keep = d2 <= r2
        if batch_src is not None and batch_dst is not None:
            keep &= batch_dst[start : start + chunk_size, None] == batch_src[None, :]
        if not loop:
            rows = torch.arange(start, start + dst.shape[0], device=keep.device)
            cols = torch.arange(src.shape[0], device=keep.device)
            keep &= rows[:, None] != cols[None, :]
        j, i = keep.nonzero(as_tuple=True)
        out.append(torch.stack([i, j + start]))
    if not out:
        return torch.zeros(2, 0, dtype=torch.long, device=pos_src.device)
    return torch.cat(out, dim=1)


def scene_to_heterodata(scene: Scene, cfg: GraphConfig | None = None) -> HeteroData:
    """One scene as a heterogeneous graph at its current step (scene frame)."""
    cfg = cfg or GraphConfig()
    t = scene.current_index
    agents = scene.agent_valid[:, t].nonzero(as_tuple=True)[0]
    seg = split_polylines(scene, cfg.max_segment_len, cfg.segment_points)
    data = HeteroData()
    data.scenario_id = scene.scenario_id
    a_pos = scene.agent_pos[agents, t]  # [Na, 2]
    data["agent"].index = agents
    data["agent"].pos = a_pos
    data["agent"].heading = scene.agent_heading[agents, t]
    data["agent"].vel = scene.agent_vel[agents, t]
    data["agent"].size = scene.agent_size[agents, t]
    data["agent"].type = scene.agent_type[agents]
    data["agent"].num_nodes = int(agents.numel())
    data["map"].pos = seg.pose[:, :2]
    data["map"].heading = seg.pose[:, 2]
    data["map"].points = seg.points
    data["map"].type = seg.type
    data["map"].subtype = seg.subtype
    data["map"].signal = seg.signal_state
    data["map"].num_nodes = seg.num_segments
    m_pos = seg.pose[:, :2]
    data["agent", "a2a", "agent"].edge_index = radius_edges(a_pos, a_pos, cfg.a2a_radius, chunk_size=cfg.chunk_size)
    data["map", "m2a", "agent"].edge_index = radius_edges(
        m_pos, a_pos, cfg.m2a_radius, loop=True, chunk_size=cfg.chunk_size
    )
    data["map", "m2m", "map"].edge_index = radius_edges(m_pos, m_pos, cfg.m2m_radius, chunk_size=cfg.chunk_size)
    data.graph_config = asdict(cfg)
    return data
