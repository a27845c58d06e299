"""Kinematic baselines through the same metrics: constant velocity and constant turn rate."""
from __future__ import annotations

import torch

from drope.data.batch import SceneBatch
from drope.geometry import wrap_angle_smooth

Tensor = torch.Tensor


def constant_velocity(batch: SceneBatch, future: int = 80, dt: float = 0.1) -> Tensor:
    """``[B, A, 1, F, 2]`` scene-frame positions continuing the current velocity."""
    v = batch.agent_vel[:, :, -1]  # [B, A, 2]
    t = torch.arange(1, future + 1, dtype=v.dtype) * dt
    return (batch.agent_pos[:, :, -1, None] + v[:, :, None] * t[:, None])[:, :, None]


def constant_turn_rate(batch: SceneBatch, future: int = 80, dt: float = 0.1) -> Tensor:
    """``[B, A, 1, F, 2]``: current speed and yaw rate (from the last second of history) held."""
    h = batch.agent_heading
    valid = batch.agent_valid
    lag = min(10, h.shape[2] - 1)
    ok = valid[:, :, -1] & valid[:, :, -1 - lag]
    dh = wrap_angle_smooth(h[:, :, -1] - h[:, :, -1 - lag])
    omega = torch.where(ok, dh / (lag * dt), torch.zeros_like(dh)).clamp(-1.0, 1.0)  # [B, A]
    speed = batch.agent_vel[:, :, -1].norm(dim=-1)
    t = torch.arange(1, future + 1, dtype=h.dtype) * dt
    theta = h[:, :, -1, None] + omega[..., None] * t  # [B, A, F]
    step = torch.stack([torch.cos(theta), torch.sin(theta)], -1) * (speed[..., None, None] * dt)
    return (batch.agent_pos[:, :, -1, None] + torch.cumsum(step, dim=2))[:, :, None]
