"""The one geometry module: frames, rotations and angle wrapping for data, model, metrics and simulator.

A *frame* is an origin ``(x0, y0)`` and a heading ``h0``; frame coordinates are
``R(-h0) @ (p_world - origin)``. World coordinates in WOMD reach ~±8 km, so the frame functions
are meant to be called in float64 and cast afterwards.
"""
from __future__ import annotations

import math

import numpy as np
import torch

Tensor = torch.Tensor

_PI32 = np.float32(math.pi)


def wrap_angle(a: torch.Tensor | np.ndarray):
    """Wrap angles to [-π, π). Works for numpy arrays and tensors of any float dtype."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def wrap_angle_smooth(a: Tensor) -> Tensor:
    """Wrap tensor angles to (-π, π] as ``atan2(sin a, cos a)``: differentiable everywhere and exported
    to ONNX as plain trig ops, which is why the model, the loss and the baselines use it rather
    than the modulo of :func:`wrap_angle` (that one maps π to -π; they agree elsewhere)."""
    return torch.atan2(torch.sin(a), torch.cos(a))


def wrap_angle_f32(a: np.ndarray) -> np.ndarray:
    """Wrap (in float64) and cast to float32 so the result is in [-π32, π32) *after* rounding.

    ``float32(π - ε)`` can round up to ``float32(π)``; such values are mapped to ``-float32(π)``,
    the same direction.
    """
    out = np.asarray(wrap_angle(np.asarray(a, dtype=np.float64)), dtype=np.float32)
    out[out >= _PI32] = -_PI32
    return out


def rot2(xy: np.ndarray, angle: float) -> np.ndarray:
    """Rotate ``xy [..., 2]`` counter-clockwise by ``angle`` (rad)."""
    c, s = math.cos(angle), math.sin(angle)
    x, y = xy[..., 0], xy[..., 1]
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)


def world_to_frame(xy: np.ndarray, origin_xy: np.ndarray, origin_heading: float) -> np.ndarray:
    """World points ``[..., 2]`` → frame points, computed in float64."""
    xy = np.asarray(xy, dtype=np.float64)
    return rot2(xy - np.asarray(origin_xy, dtype=np.float64), -float(origin_heading))


def frame_to_world(xy: np.ndarray, origin_xy: np.ndarray, origin_heading: float) -> np.ndarray:
    """Frame points ``[..., 2]`` → world points in float64 (inverse of :func:`world_to_frame`)."""
    xy = np.asarray(xy, dtype=np.float64)
    return rot2(xy, float(origin_heading)) + np.asarray(origin_xy, dtype=np.float64)



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
