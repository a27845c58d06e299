"""Pure geometry helpers shared by metrics, plots and the simulator."""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def rotate_into_frame(xy: Tensor, c: Tensor, s: Tensor) -> Tensor:
    """Rotate ``xy [..., 2]`` by -θ given ``c = cos θ``, ``s = sin θ`` broadcastable to ``[...]``
    (world offsets → the frame of a pose heading θ)."""
    return torch.stack([c * xy[..., 0] + s * xy[..., 1], -s * xy[..., 0] + c * xy[..., 1]], dim=-1)


def box_corners(xy: Tensor, heading: Tensor, length: Tensor, width: Tensor) -> Tensor:
    """Corners of oriented boxes.

    Args: ``xy [..., 2]`` centres, ``heading [...]`` rad, ``length``/``width [...]`` metres.
    Returns ``[..., 4, 2]`` corners in counter-clockwise order starting front-left:
    front-left, rear-left, rear-right, front-right.
    """
    c, s = torch.cos(heading), torch.sin(heading)
    fwd = torch.stack([c, s], dim=-1) * (length / 2)[..., None]  # [..., 2]
    left = torch.stack([-s, c], dim=-1) * (width / 2)[..., None]  # [..., 2]
    corners = torch.stack([fwd + left, -fwd + left, -fwd - left, fwd - left], dim=-2)  # [..., 4, 2]
    return xy[..., None, :] + corners
