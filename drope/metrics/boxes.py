"""Oriented-box geometry shared by the motion and sim-agents metrics (pure torch functions).

Boxes are given by their corners ``[..., 4, 2]`` in counter-clockwise order
(:func:`drope.geometry.box_corners`). Everything broadcasts over leading dimensions.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def _edges(corners: Tensor) -> tuple[Tensor, Tensor]:
    """Edge start points and edge vectors ``[..., 4, 2]`` (edge i runs from corner i to i+1)."""
    return corners, corners.roll(-1, dims=-2) - corners


def _point_segment_distance(p: Tensor, a: Tensor, ab: Tensor) -> Tensor:
    """Distance from points ``p`` to segments ``a → a + ab`` (all ``[..., 2]``)."""
    ap = p - a
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (ap - ab * t[..., None]).norm(dim=-1)


def box_signed_distance(a: Tensor, b: Tensor) -> Tensor:
    """Signed 2D distance between convex quadrilaterals ``a`` and ``b`` (corners ``[..., 4, 2]``, CCW).

    Positive: the gap between the boxes; negative: minus the penetration depth. This is the signed
    distance from the origin to the Minkowski difference ``M = a ⊕ (−b)``, as the official sim-agents
    code computes it from the assembled polygon. No polygon is assembled here:
    - inside, the depth is the smallest support value ``h_M(n) = max n·a − min n·b`` over M's 8
      unit face normals (those of a and of −b), which needs no vertex choice;
    - outside, the distance is the smallest distance to the 32 segments "edge of a minus corner of
      b" and "corner of a minus edge of b". They lie in M and cover its boundary, whichever corners
      are tied, so parallel edges (aligned boxes) leave no gap. Choosing one support corner per
      edge did leave gaps there, and deep overlaps of aligned boxes came out too deep.
    Returns ``[...]``.
    """
    a, b = torch.broadcast_tensors(a, b)
    a_start, a_edge = _edges(a)  # [..., 4, 2]
    b_start, b_edge = _edges(b)
    # outward normals of CCW edges: (ey, -ex); M's faces have those of a and the negated ones of b
    normals = torch.cat([a_edge, -b_edge], dim=-2)
    normals = torch.stack([normals[..., 1], -normals[..., 0]], dim=-1)  # [..., 8, 2]
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    support = (normals[..., :, None, :] * a[..., None, :, :]).sum(-1).amax(-1) - (
        normals[..., :, None, :] * b[..., None, :, :]).sum(-1).amin(-1)  # [..., 8]
    inside = (support >= 0).all(-1)
    lead = a.shape[:-2]
    seg_start = torch.cat([
        (a_start[..., :, None, :] - b[..., None, :, :]).reshape(*lead, 16, 2),
        (a[..., :, None, :] - b_start[..., None, :, :]).reshape(*lead, 16, 2),
    ], dim=-2)  # [..., 32, 2]
    seg_vec = torch.cat([
        a_edge[..., :, None, :].expand(*lead, 4, 4, 2).reshape(*lead, 16, 2),
        -b_edge[..., None, :, :].expand(*lead, 4, 4, 2).reshape(*lead, 16, 2),
    ], dim=-2)
    dist = _point_segment_distance(torch.zeros_like(seg_start), seg_start, seg_vec).amin(-1)
    return torch.where(inside, -support.amin(-1), dist)


def boxes_overlap(a: Tensor, b: Tensor) -> Tensor:
    """True where boxes ``a`` and ``b`` (``[..., 4, 2]``) intersect with positive area (separating axes)."""
    overlap = None
    for poly in (a, b):
        _, edge = _edges(poly)
        axes = torch.stack([-edge[..., 1], edge[..., 0]], dim=-1)[..., :2, :]  # two distinct axes per box
        pa = (axes[..., :, None, :] * a[..., None, :, :]).sum(-1)  # [..., 2, 4]
        pb = (axes[..., :, None, :] * b[..., None, :, :]).sum(-1)
        o = torch.minimum(pa.amax(-1), pb.amax(-1)) - torch.maximum(pa.amin(-1), pb.amin(-1))  # [..., 2]
        o = o.amin(-1)
        overlap = o if overlap is None else torch.minimum(overlap, o)
    return overlap > 0
