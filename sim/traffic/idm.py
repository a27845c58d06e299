"""Intelligent Driver Model (Treiber et al. 2000) and MOBIL lane-change gain, as pure functions.

Works elementwise on numpy arrays or torch tensors (only arithmetic and ``sqrt``/``maximum``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drope.data.types import ObjectType


@dataclass(frozen=True)
class IDMParams:
    a_max: float = 1.5  # maximum acceleration, m/s²
    b_comf: float = 2.0  # comfortable deceleration, m/s²
    b_max: float = 8.0  # physical braking limit, m/s²
    s0: float = 2.0  # jam distance (bumper to bumper), m
    time_headway: float = 1.2  # s
    delta: float = 4.0
    politeness: float = 0.3  # MOBIL p
    lc_threshold: float = 0.2  # MOBIL Δa_th, m/s²
    b_safe: float = 3.0  # MOBIL: the new follower may brake at most this hard, m/s²


PARAMS_BY_TYPE = {
    ObjectType.TYPE_VEHICLE: IDMParams(),
    ObjectType.TYPE_CYCLIST: IDMParams(a_max=1.0, b_comf=1.5, s0=1.5, time_headway=1.0),
    ObjectType.TYPE_PEDESTRIAN: IDMParams(a_max=0.8, b_comf=1.0, b_max=3.0, s0=0.6, time_headway=0.5),
}


def idm_acceleration(v, v_desired, gap, dv, p: IDMParams = IDMParams()):
    """IDM acceleration. ``gap``: bumper-to-bumper distance to the leader (use a large value for
    none), ``dv = v - v_leader`` (approach rate). Result clipped to ``[-b_max, a_max]``."""
    if isinstance(v, float) and isinstance(gap, float):  # scalar fast path (the generator's inner loop)
        s_star = p.s0 + max(v * p.time_headway + v * dv / (2.0 * (p.a_max * p.b_comf) ** 0.5), 0.0)
        free = 1.0 - (v / max(v_desired, 0.1)) ** p.delta
        a = p.a_max * (free - (s_star / max(gap, 0.01)) ** 2)
        return min(max(a, -p.b_max), p.a_max)
    xp = np if isinstance(v, (np.ndarray, float, int)) else __import__("torch")
    s_star = p.s0 + xp.maximum(v * p.time_headway + v * dv / (2.0 * (p.a_max * p.b_comf) ** 0.5), 0.0 * v)
    free = 1.0 - (v / xp.maximum(v_desired, 0.1 + 0.0 * v_desired)) ** p.delta
    gap = xp.maximum(gap, 0.01 + 0.0 * gap)
    a = p.a_max * (free - (s_star / gap) ** 2)
    return xp.clip(a, -p.b_max, p.a_max) if xp is np else a.clamp(-p.b_max, p.a_max)


def mobil_gain(a_self_old, a_self_new, a_newfollower_old, a_newfollower_new, a_oldfollower_old,
               a_oldfollower_new, p: IDMParams = IDMParams()):
    """MOBIL incentive minus threshold (> 0: change lanes) and the safety flag.

    Returns ``(gain, safe)``: ``safe`` is False when the new follower would brake harder than ``b_safe``.
    """
    gain = (a_self_new - a_self_old) + p.politeness * (
        (a_newfollower_new - a_newfollower_old) + (a_oldfollower_new - a_oldfollower_old)
    ) - p.lc_threshold
    return gain, a_newfollower_new > -p.b_safe


def mobil_decision(a_self_old, a_self_new, a_newfollower_old, a_newfollower_new, a_oldfollower_old,
                   a_oldfollower_new, p: IDMParams = IDMParams()):
    """True where MOBIL says change lanes: positive incentive and a safe new follower (elementwise)."""
    gain, safe = mobil_gain(a_self_old, a_self_new, a_newfollower_old, a_newfollower_new, a_oldfollower_old,
                            a_oldfollower_new, p)
    return (gain > 0) & safe
