"""Compiled (numba) nearest-segment searches of :func:`~drope.metrics.wosac.features.signed_distance_to_edges`
and :func:`~drope.metrics.wosac.features.nearest_lane`.

For each point of a group and each candidate segment the torch version materialised ``[G, C]``
tensors of projections and distances (~70 % of WOSAC scoring time); these loops compute the same
float64 arithmetic in the same operation order per pair and keep only the winner, and re-rank
near-ties in the official float32 world-frame arithmetic (first minimum in candidate order, as
``tf.argmin`` over the map-ordered segments). ``tests/test_metrics_wosac_nearest.py`` checks them
against the tensor formulation.
"""
from __future__ import annotations

import math

import numpy as np

from drope.jit import jit


@jit
def nearest_segments(p, start, vec, cand, stretch, official, p32, start32, vec32, tol, best_out, rel_out, d2_out,
                     d3_out):
    """For points ``p [G, 3]`` (float64) and candidate segments ``cand [C]`` of ``start``/``vec``
    ``[M, 3]``: the column of the segment nearest by z-stretched 3D distance (``best_out [G]``),
    the point's projection parameter on it (``rel_out``), its 2D distance (``d2_out``) and the least
    stretched distance (``d3_out``, before any re-ranking). With
    ``official``, segments within ``tol`` of the nearest are re-ranked by the official float32
    distance of ``p32`` to ``start32``/``vec32``."""
    G, C = p.shape[0], cand.shape[0]
    d3s, rels, d2s = np.empty(C), np.empty(C), np.empty(C)
    z32 = np.float32(stretch)
    zero32, one32 = np.float32(0.0), np.float32(1.0)
    for i in range(G):
        best, best_d3 = 0, np.inf
        for j in range(C):
            k = cand[j]
            sx, sy, sz = p[i, 0] - start[k, 0], p[i, 1] - start[k, 1], p[i, 2] - start[k, 2]
            vx, vy, vz = vec[k, 0], vec[k, 1], vec[k, 2]
            den = vx * vx + vy * vy
            rel = (sx * vx + sy * vy) / max(den, 1e-300) if den > 0 else 0.0
            t = min(max(rel, 0.0), 1.0)
            dx, dy, dz = sx - vx * t, sy - vy * t, sz - vz * t
            d3 = math.sqrt(dx * dx + dy * dy + (stretch * dz) * (stretch * dz))
            d3s[j], rels[j], d2s[j] = d3, rel, math.sqrt(dx * dx + dy * dy)
            if d3 < best_d3:
                best, best_d3 = j, d3
        if official:
            n_near = 0
            for j in range(C):
                if d3s[j] <= best_d3 + tol:
                    n_near += 1
            if n_near > 1:
                best32 = np.float32(np.inf)
                for j in range(C):
                    if not d3s[j] <= best_d3 + tol:
                        continue
                    k = cand[j]
                    sx32, sy32, sz32 = p32[i, 0] - start32[k, 0], p32[i, 1] - start32[k, 1], p32[i, 2] - start32[k, 2]
                    vx32, vy32, vz32 = vec32[k, 0], vec32[k, 1], vec32[k, 2]
                    num = sx32 * vx32 + sy32 * vy32
                    den32 = vx32 * vx32 + vy32 * vy32
                    r32 = num / den32 if den32 != zero32 else zero32
                    t32 = min(max(r32, zero32), one32)
                    ex, ey, ez = sx32 - vx32 * t32, sy32 - vy32 * t32, (sz32 - vz32 * t32) * z32
                    d32 = np.float32(math.sqrt(np.float32(np.float32(ex * ex + ey * ey) + ez * ez)))
                    if d32 < best32:
                        best, best32 = j, d32
        best_out[i], rel_out[i], d2_out[i], d3_out[i] = best, rels[best], d2s[best], best_d3


@jit
def nearest_lanes(p, start, vec, cand, best_out, score_out):
    """For points ``p [G, 2]`` and candidate lane segments ``cand [C]`` of ``start``/``vec [L, 2]``:
    the column of the least official lane score |(p − s) + t·v| (first minimum; ``best_out``) and
    that score (``score_out``)."""
    for i in range(p.shape[0]):
        best, best_score = 0, np.inf
        for j in range(cand.shape[0]):
            k = cand[j]
            sx, sy = p[i, 0] - start[k, 0], p[i, 1] - start[k, 1]
            vx, vy = vec[k, 0], vec[k, 1]
            den = vx * vx + vy * vy
            t = (sx * vx + sy * vy) / max(den, 1e-300) if den > 0 else 0.0
            t = min(max(t, 0.0), 1.0)
            ex, ey = sx + vx * t, sy + vy * t
            score = math.sqrt(ex * ex + ey * ey)
            if score < best_score:
                best, best_score = j, score
        best_out[i], score_out[i] = best, best_score
