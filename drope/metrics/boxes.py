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
    distance from the origin to the Minkowski difference ``a ⊕ (−b)``. That polygon's 8 edges are
    the edges of ``a`` shifted by the support vertex of ``−b`` and the reversed edges of ``b``
    shifted by the support vertex of ``a``, so no polygon has to be assembled: the origin's distance
    is the smallest distance to those 8 segments, negative when it lies inside all 8 edge lines.
    Returns ``[...]``.
    """
    a, b = torch.broadcast_tensors(a, b)
    a_start, a_edge = _edges(a)  # [..., 4, 2]
    b_start, b_edge = _edges(b)
    # outward normals of CCW edges: (ey, -ex)
    a_normal = torch.stack([a_edge[..., 1], -a_edge[..., 0]], dim=-1)  # [..., 4, 2]
    b_normal = torch.stack([b_edge[..., 1], -b_edge[..., 0]], dim=-1)
    # support of −b along a's normals: the corner of b minimising n·b
    proj_b = (a_normal[..., :, None, :] * b[..., None, :, :]).sum(-1)  # [..., 4 (a edges), 4 (b corners)]
    b_sup = torch.gather(b, -2, proj_b.argmin(-1)[..., None].expand(*proj_b.shape[:-1], 2))  # [..., 4, 2]
    proj_a = (b_normal[..., :, None, :] * a[..., None, :, :]).sum(-1)  # [..., 4 (b edges), 4 (a corners)]
    a_sup = torch.gather(a, -2, proj_a.argmin(-1)[..., None].expand(*proj_a.shape[:-1], 2))
    # segments of the Minkowski difference a − b
    seg_start = torch.cat([a_start - b_sup, a_sup - b_start], dim=-2)  # [..., 8, 2]
    seg_vec = torch.cat([a_edge, -b_edge], dim=-2)  # [..., 8, 2]
    normals = torch.cat([a_normal, -b_normal], dim=-2)
    origin = torch.zeros_like(seg_start)
    dist = _point_segment_distance(origin, seg_start, seg_vec).amin(-1)  # [...]
    # origin inside iff it lies on the inner side of every edge line: n·(0 − start) <= 0
    side = -(normals * seg_start).sum(-1)  # [..., 8]
    inside = (side <= 0).all(-1)
    return torch.where(inside, -dist, dist)


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
