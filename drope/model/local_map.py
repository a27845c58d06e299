"""Each agent's nearest map segments in its own frame: the lane geometry relative to the agent.

Why: position RoPE scores see the *world-frame* offset between an agent and a map token, and the
agent's token content is expressed in its own frame (it does not know its world heading). No
attention head can therefore express "the lane centre is 0.8 m to my left and bends right 20 m
ahead" — which is what keeps a vehicle on a curved road once its simulated state has drifted
from the log. A PointNet over the ``k`` nearest segments' points, transformed into the agent's
frame, gives that, SE(2)-invariant and at O(A·k·S) memory (no pairwise embeddings: only the
``[B, A, M]`` point distances that pick the segments).
"""
from __future__ import annotations

import torch
from torch import nn

from drope.data.types import MapType, SignalState
from drope.geometry import rotate_into_frame

Tensor = torch.Tensor

# a masked segment's distance: larger than any real one, finite (TopK and ONNX stay NaN-free)
_FAR = 1e12
# agent × segment distances held at once in eager mode: large scenes take agents in chunks, so
# the [B, A, M] distance matrix never dominates the memory the radius-graph attention saves
_PAIR_CHUNK = 1 << 22


def _pad_segments(x: Tensor, k: int) -> Tensor:
    """``x [B, M, ...]`` with ``k`` zero segments appended: TopK's k ≤ M whatever M is at run time
    (a dynamic axis), and every index it returns can be gathered."""
    return torch.cat([x, x.new_zeros(x.shape[0], k, *x.shape[2:])], 1)


def nearest_segments(agent_pos: Tensor, map_points: Tensor, map_mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Indices ``[B, A, k]`` of the ``k`` segments nearest each agent, and their validity ``[B, A, k]``.

    ``agent_pos [B, A, 2]`` and ``map_points [B, M, S, 2]`` share a frame; a segment's distance
    is that of its centroid (its mean point). ``map_mask [B, M]`` False segments are never valid;
    with fewer than ``k`` valid segments the rest of the slots are invalid. ``M`` may be smaller
    than ``k``.
    """
    B, A, M = agent_pos.shape[0], agent_pos.shape[1], map_points.shape[1]
    step = max(1, _PAIR_CHUNK // max(B * (M + k), 1))
    if A > step and not (torch.compiler.is_exporting() or torch.jit.is_tracing()):
        parts = [nearest_segments(agent_pos[:, s : s + step], map_points, map_mask, k) for s in range(0, A, step)]
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)
    # centroids, not nearest points: connected segments share end points, so nearest-point
    # distances tie exactly and TopK implementations (torch vs ONNX Runtime) break ties differently
    centre = _pad_segments(map_points.mean(2), k)  # [B, M+k, 2]; the padding is always masked
    mask = _pad_segments(map_mask, k)
    dx = centre[:, None, :, 0] - agent_pos[:, :, None, 0]  # [B, A, M+k]
    dy = centre[:, None, :, 1] - agent_pos[:, :, None, 1]
    d2 = torch.where(mask[:, None, :], dx * dx + dy * dy, torch.full_like(dx, _FAR))
    top = torch.topk(d2, k, dim=-1, largest=False)
    return top.indices, top.values < _FAR


def gather_segments(x: Tensor, idx: Tensor) -> Tensor:
    """``x [B, M, ...]`` gathered at ``idx [B, A, k]`` → ``[B, A, k, ...]`` (pad ``x`` with
    :func:`_pad_segments` so that the indices of invalid slots exist)."""
    B, A, k = idx.shape
    flat = idx.reshape(B, A * k)
    tail = x.shape[2:]
    view = flat.reshape(B, A * k, *([1] * len(tail))).expand(B, A * k, *tail)
    return torch.gather(x, 1, view).reshape(B, A, k, *tail)


def local_map_points(agent_pos: Tensor, agent_heading: Tensor, map_points: Tensor, idx: Tensor) -> Tensor:
    """Point features ``[B, A, k, S, 4]`` of the segments ``idx``: (x, y) in the agent frame and the
    unit direction to the next point (the last point repeats its predecessor's), agent frame.

    ``agent_pos [B, A, 2]``, ``agent_heading [B, A]`` (current step), ``map_points [B, M, S, 2]``.
    """
    seg = gather_segments(_pad_segments(map_points, idx.shape[-1]), idx) - agent_pos[:, :, None, None]  # [B,A,k,S,2]
    c, s = torch.cos(agent_heading)[:, :, None, None], torch.sin(agent_heading)[:, :, None, None]
    local = rotate_into_frame(seg, c, s)
    step = local[:, :, :, 1:] - local[:, :, :, :-1]
    step = torch.cat([step, step[:, :, :, -1:]], 3)
    direction = step / step.norm(dim=-1, keepdim=True).clamp_min(1e-3)
    return torch.cat([local, direction], -1)


class LocalMapEncoder(nn.Module):
    """PointNet over the ``k`` nearest segments in each agent's frame → ``[B, A, D]`` (0 without any)."""

    def __init__(self, dim: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.point = nn.Linear(4, dim)
        self.map_type = nn.Embedding(len(MapType), dim)
        self.map_signal = nn.Embedding(len(SignalState), dim)
        self.norm = nn.LayerNorm(dim)
        self.act = nn.GELU()
        self.out = nn.Linear(dim, dim)

    def forward(self, agent_pos, agent_heading, map_points, map_type, map_signal, map_mask) -> Tensor:
        idx, valid = nearest_segments(agent_pos, map_points, map_mask, self.k)
        feats = local_map_points(agent_pos, agent_heading, map_points, idx)  # [B, A, k, S, 4]
        kind = gather_segments(_pad_segments(map_type, self.k), idx)  # [B, A, k]
        signal = gather_segments(_pad_segments(map_signal, self.k), idx)
        h = self.point(feats) + (self.map_type(kind) + self.map_signal(signal))[:, :, :, None]
        h = self.out(self.act(self.norm(h)))  # [B, A, k, S, D]
        # a finite floor instead of -inf: an agent with no segment pools to 0, not NaN
        h = torch.where(valid[..., None, None], h, torch.full_like(h, -1e4))
        pooled = h.amax(dim=(2, 3))
        return torch.where(valid.any(-1, keepdim=True), pooled, torch.zeros_like(pooled))
