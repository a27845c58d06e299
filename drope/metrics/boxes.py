"""Oriented-box geometry shared by the motion and sim-agents metrics (pure functions of tensors).

Boxes are given by their corners ``[..., 4, 2]`` in counter-clockwise order
(:func:`drope.geometry.box_corners`). Everything broadcasts over leading dimensions.
"""
from __future__ import annotations

import numpy as np
import torch

from drope.metrics import box_kernels as kernels

Tensor = torch.Tensor


def _edges(corners: Tensor) -> tuple[Tensor, Tensor]:
    """Edge start points and edge vectors ``[..., 4, 2]`` (edge i runs from corner i to i+1)."""
    return corners, corners.roll(-1, dims=-2) - corners


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
    Computed pair by pair in float64 on the CPU (:mod:`drope.metrics.box_kernels`; a metric, so no
    autograd). Returns ``[...]`` in the inputs' dtype and device.
    """
    a, b = torch.broadcast_tensors(a, b)
    lead = a.shape[:-2]
    a64 = np.ascontiguousarray(a.detach().cpu().reshape(-1, 4, 2).numpy(), dtype=np.float64)
    b64 = np.ascontiguousarray(b.detach().cpu().reshape(-1, 4, 2).numpy(), dtype=np.float64)
    out = np.empty(a64.shape[0])
    kernels.signed_distances(a64, b64, out)
    return torch.from_numpy(out).reshape(lead).to(dtype=a.dtype, device=a.device)


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
