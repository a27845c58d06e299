"""How much a pose attention layer's output changes under rigid transforms of the scene.

What each encoding guarantees differs: rotary position RoPE is translation
invariant but sees world-frame offsets, so rotating the whole scene changes its scores; DRoPE
depends on heading differences only; the QCNet-style ``rpe`` is SE(2) invariant at O(N²) cost;
``absolute`` guarantees nothing. These functions measure the gaps instead of assuming them.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from drope.nn.attention import PoseAttention

Tensor = torch.Tensor


def shift(pose: Tensor, dx: float, dy: float) -> Tensor:
    """Translate positions of ``pose [..., 3|4]`` by (dx, dy) metres; headings unchanged."""
    offset = torch.zeros(pose.shape[-1], dtype=pose.dtype)
    offset[0], offset[1] = dx, dy
    return pose + offset


def turn_headings(pose: Tensor, angle: float) -> Tensor:
    """Add ``angle`` to every heading; positions unchanged."""
    offset = torch.zeros(pose.shape[-1], dtype=pose.dtype)
    offset[2] = angle
    return pose + offset


def rotate_scene(pose: Tensor, angle: float) -> Tensor:
    """Rotate the whole scene about the frame origin: positions and headings."""
    c, s = math.cos(angle), math.sin(angle)
    x, y = pose[..., 0], pose[..., 1]
    out = pose.clone()
    out[..., 0], out[..., 1] = c * x - s * y, s * x + c * y
    out[..., 2] = pose[..., 2] + angle
    return out


TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "shift 50 m": lambda p: shift(p, 30.0, -40.0),
    "headings + 2π": lambda p: turn_headings(p, 2 * math.pi),
    "headings + 0.7 rad": lambda p: turn_headings(p, 0.7),
    "rotate scene 0.7 rad": lambda p: rotate_scene(p, 0.7),
}


def invariance_gaps(att: PoseAttention, x: Tensor, pose: Tensor) -> dict[str, float]:
    """Relative output change ``max|y(T pose) − y(pose)| / max|y(pose)|`` per transform (float64).

    ``x [B, N, D]``, ``pose [B, N, 3|4]``. A float64 copy of the layer runs (the rotation itself
    stays fp32 by design, ~1e-7), so the numbers show the encoding's structure, not rounding.
    """
    att64 = copy.deepcopy(att).double().eval()
    x64, pose64 = x.double(), pose.double()
    with torch.no_grad():
        ref = att64(x64, pose64)
        scale = float(ref.abs().max())
        return {name: float((att64(x64, t(pose64)) - ref).abs().max()) / scale for name, t in TRANSFORMS.items()}
