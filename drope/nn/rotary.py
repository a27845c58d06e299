"""Rotary position math as pure functions.

Pair layout (pinned by ``tests/test_nn_rotary.py``): feature dimension ``D`` of a head holds
``P = D / 2`` pairs, **interleaved**: pair ``i`` is ``(x[..., 2i], x[..., 2i+1])`` and is rotated
by angle ``a[..., i]``::

    y[2i]   = x[2i] cos a_i - x[2i+1] sin a_i
    y[2i+1] = x[2i] sin a_i + x[2i+1] cos a_i

i.e. the complex number ``x[2i] + j x[2i+1]`` is multiplied by ``exp(j a_i)``. Then
``<R(a) q, R(b) k> = Re Σ_i conj(q_i) k_i exp(j (b_i - a_i))``: the score depends only on the
angle *difference*, which is what makes RoPE relative.

Angles are linear in a token's pose ``(x, y, θ, t)``: ``a = W @ (x, y, θ, t)`` with a
coefficient table ``W [H, P, 4]`` (see :func:`pair_coefficients`). Position pairs carry
``ω (cos φ, sin φ, 0, 0)``, DRoPE heading pairs ``(0, 0, k, 0)`` with integer ``k`` (exactly
2π-periodic), time pairs ``(0, 0, 0, ω_t)`` and NoPE pairs zeros.
"""
from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs of ``x [..., 2P]`` by angles given as ``cos, sin [..., P]``.

    Computed in the dtype of ``cos`` (fp32) and cast back to ``x.dtype`` at the end, so half
    precision q/k are rotated with fp32 trigonometry.
    """
    shape = x.shape
    xp = x.to(cos.dtype).reshape(*shape[:-1], shape[-1] // 2, 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    y = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return y.reshape(shape).to(x.dtype)


def geometric_wavelengths(n: int, lambda_min: float, lambda_max: float) -> Tensor:
    """``n`` wavelengths spaced geometrically from ``lambda_min`` to ``lambda_max`` (float64)."""
    if n <= 0:
        return torch.zeros(0, dtype=torch.float64)
    if n == 1:
        return torch.tensor([math.sqrt(lambda_min * lambda_max)], dtype=torch.float64)
    return torch.logspace(math.log10(lambda_min), math.log10(lambda_max), n, dtype=torch.float64)


def metric_frequencies(n: int, lambda_min: float = 0.5, lambda_max: float = 2000.0) -> Tensor:
    """Angular frequencies ``ω = 2π / λ`` (rad per metre) for a metric position schedule."""
    return 2 * math.pi / geometric_wavelengths(n, lambda_min, lambda_max)


def spread_directions(n: int) -> Tensor:
    """``n`` directions spread over [0, π) (isotropic initialisation of RoPE-Mixed)."""
    return torch.arange(n, dtype=torch.float64) * (math.pi / max(n, 1))


def schedule_cos_sum(coeff: Tensor, displacement: Tensor) -> Tensor:
    """``Σ_i cos(W_i · d)`` over all pairs for displacements ``d [n, 4]`` → ``[n]`` (float64).

    The "base bounds context" criterion: a schedule is usable up to a distance
    when this sum stays ≥ 0 there (NoPE pairs contribute +1 each).
    """
    w = coeff.reshape(-1, coeff.shape[-1]).to(torch.float64)
    return torch.cos(displacement.to(torch.float64) @ w.T).sum(-1)


def pose_angles(pose: Tensor, coeff: Tensor) -> Tensor:
    """Angles ``[..., N, H, P]`` for poses ``[..., N, 4]`` (x, y, θ, t) and ``coeff [H, P, 4]``.

    Always computed in at least fp32 (fp64 stays fp64), never in half precision.
    """
    dtype = torch.float64 if pose.dtype == torch.float64 else torch.float32
    # autocast would otherwise run this einsum in bf16/fp16 (radian errors at ±150 m)
    with torch.autocast(pose.device.type, enabled=False):
        return torch.einsum("...nc,hpc->...nhp", pose.to(dtype), coeff.to(dtype))


def head_cos_sin(angles: Tensor) -> tuple[Tensor, Tensor]:
    """``cos, sin [B, H, N, P]`` (fp32) for ``angles [B, N, H, P]``, laid out for :func:`rotate_heads`."""
    a = angles.transpose(-3, -2)  # [B, H, N, P]
    # cos/sin from the angles' own precision (fp64 inputs stay exact), then fp32 for the rotation
    with torch.autocast(a.device.type, enabled=False):
        return torch.cos(a).float(), torch.sin(a).float()


def rotate_heads(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate ``x [B, H, N, D]`` by ``angles [B, N, H, D/2]`` (fp32 math, result in ``x.dtype``)."""
    cos, sin = head_cos_sin(angles)
    with torch.autocast(x.device.type, enabled=False):
        return apply_rotary(x, cos, sin)
