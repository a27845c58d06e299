"""Compiled (numba) loop of :func:`~drope.metrics.wosac.features.time_to_collision`.

The tensor formulation built ~30 ``[N, E, O, T]`` intermediates (every evaluated object against
every object at every step); this loop evaluates the same formulas per (rollout, evaluated object,
step) over the other objects in float64. ``tests/test_metrics_wosac_ttc.py`` checks it against the
tensor formulation.
"""
from __future__ import annotations

import math

import numpy as np

from drope.jit import jit


@jit
def time_to_collision(xy, heading, speed, length, width, valid, num_eval, max_heading, max_heading_small,
                      small_overlap, huge, max_ttc, out):
    """``out [N, E, T]``: seconds until evaluated object e reaches the object it follows (the one of
    least longitudinal gap among those ahead, heading within ``max_heading`` and laterally
    overlapping), at constant speeds, capped at ``max_ttc``. ``xy [N, O, T, 2]``, ``heading``/
    ``speed [N, O, T]``, ``length``/``width``/``valid [O, T]``."""
    N, O, T = heading.shape
    for n in range(N):
        for e in range(num_eval):
            for t in range(T):
                he = heading[n, e, t]
                ch, sh = math.cos(he), math.sin(he)
                ex, ey = xy[n, e, t, 0], xy[n, e, t, 1]
                half_le, half_we = length[e, t] / 2, width[e, t] / 2
                best, best_o = np.inf, 0
                for o in range(O):
                    yaw = abs(heading[n, o, t] - he)  # raw, not wrapped (as the official code)
                    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
                    hl, hw = length[o, t] / 2, width[o, t] / 2
                    other_long = hl * c + hw * s
                    other_lat = hl * s + hw * c
                    rx, ry = xy[n, o, t, 0] - ex, xy[n, o, t, 1] - ey
                    long_dist = (ch * rx + sh * ry) - half_le - other_long
                    lat_overlap = abs(-sh * rx + ch * ry) - half_we - other_lat
                    ok = (long_dist > 0 and yaw <= max_heading and lat_overlap < 0
                          and (lat_overlap < -small_overlap or yaw <= max_heading_small) and valid[o, t])
                    masked = long_dist + (0.0 if ok else huge)
                    if masked < best:
                        best, best_o = masked, o
                rel_speed = speed[n, e, t] - speed[n, best_o, t]
                out[n, e, t] = min(best / rel_speed, max_ttc) if rel_speed > 0 else max_ttc
