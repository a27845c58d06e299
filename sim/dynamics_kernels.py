"""Compiled (numba) per-agent loops of the kinematic bicycle (:class:`~drope.sim.dynamics.BicycleDynamics`).

One simulator step of 128 agents is ~40 tiny tensor operations in torch (~300 µs of dispatch on
one thread, a quarter of a vectorised IDM step); these loops do the same arithmetic in a few
µs. Arithmetic is float64 inside, float32 at the boundary (the state's dtype); headings leave
wrapped to [-π, π) *after* rounding to float32. ``cfg`` is ``BicycleDynamics.cfg_vector``.
"""
from __future__ import annotations

import math

import numpy as np

from drope.jit import jit, wrap as _wrap

# cfg vector layout (BicycleConfig and the tracking weight, float64)
MAX_ACCEL, MAX_DECEL, MAX_CURVATURE, MAX_SPEED, MAX_REVERSE, MIN_TRAVEL, POSITION_WEIGHT = range(7)
NUM_CFG = 7
_PI32 = np.float32(math.pi)


@jit
def _heading32(a):
    """``a`` wrapped and rounded to float32, inside [-π32, π32) (rounding can reach +π32)."""
    h = np.float32(_wrap(a))
    return -_PI32 if h >= _PI32 else h


@jit
def _clip(x, lo, hi):
    return min(max(x, lo), hi)


@jit
def forward(pos, heading, vel, ctrl, dt, cfg, out_pos, out_heading, out_vel):
    """One semi-implicit bicycle step of every agent ``[B, A]`` (controls: acceleration, curvature)."""
    B, A = heading.shape
    for b in range(B):
        for i in range(A):
            h = np.float64(heading[b, i])
            a = _clip(np.float64(ctrl[b, i, 0]), -cfg[MAX_DECEL], cfg[MAX_ACCEL])
            k = _clip(np.float64(ctrl[b, i, 1]), -cfg[MAX_CURVATURE], cfg[MAX_CURVATURE])
            v0 = np.float64(vel[b, i, 0]) * math.cos(h) + np.float64(vel[b, i, 1]) * math.sin(h)
            v = _clip(v0 + a * dt, -cfg[MAX_REVERSE], cfg[MAX_SPEED])
            dist = v * dt
            h1 = h + k * dist
            mid = h + 0.5 * k * dist
            out_pos[b, i, 0] = np.float64(pos[b, i, 0]) + math.cos(mid) * dist
            out_pos[b, i, 1] = np.float64(pos[b, i, 1]) + math.sin(mid) * dist
            out_heading[b, i] = _heading32(h1)
            out_vel[b, i, 0] = math.cos(h1) * v
            out_vel[b, i, 1] = math.sin(h1) * v


@jit
def track(pos, heading, vel, target_pos, target_heading, dt, cfg, out):
    """Controls ``out [B, A, 2]`` from each agent's pose to its target pose in one step
    (:meth:`BicycleDynamics.track`)."""
    B, A = heading.shape
    w, min_travel = cfg[POSITION_WEIGHT], cfg[MIN_TRAVEL]
    for b in range(B):
        for i in range(A):
            h = np.float64(heading[b, i])
            ch, sh = math.cos(h), math.sin(h)
            dx = np.float64(target_pos[b, i, 0]) - np.float64(pos[b, i, 0])
            dy = np.float64(target_pos[b, i, 1]) - np.float64(pos[b, i, 1])
            dh = _wrap(np.float64(target_heading[b, i]) - h)  # reaches the target heading
            if math.hypot(dx, dy) > min_travel:  # blend with the mean heading that reaches the position
                aim = math.atan2(dy, dx) + (math.pi if dx * ch + dy * sh < 0 else 0.0)  # reversing aims backwards
                dh = dh + w * (2 * _wrap(aim - h) - dh)
            mid = h + 0.5 * dh
            dist = dx * math.cos(mid) + dy * math.sin(mid)  # signed travel along the mean heading
            v0 = np.float64(vel[b, i, 0]) * ch + np.float64(vel[b, i, 1]) * sh
            accel = (dist / dt - v0) / dt
            k = dh / dist if abs(dist) > min_travel else 0.0
            out[b, i, 0] = _clip(accel, -cfg[MAX_DECEL], cfg[MAX_ACCEL])
            out[b, i, 1] = _clip(k, -cfg[MAX_CURVATURE], cfg[MAX_CURVATURE])
