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
def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


@jit
def _sign(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


@jit
def _nearest(p, start, vec, cand, stretch, d3s, rels, d2s):
    """Least z-stretched 3D distance of point ``p [3]`` over segments ``cand``: (column, distance);
    every candidate's distance, projection parameter and 2D distance are left in the scratch arrays."""
    best, best_d3 = 0, np.inf
    for j in range(cand.shape[0]):
        k = cand[j]
        sx, sy, sz = p[0] - start[k, 0], p[1] - start[k, 1], p[2] - start[k, 2]
        vx, vy, vz = vec[k, 0], vec[k, 1], vec[k, 2]
        den = vx * vx + vy * vy
        rel = (sx * vx + sy * vy) / max(den, 1e-300) if den > 0 else 0.0
        t = min(max(rel, 0.0), 1.0)
        dx, dy, dz = sx - vx * t, sy - vy * t, sz - vz * t
        d3 = math.sqrt(dx * dx + dy * dy + (stretch * dz) * (stretch * dz))
        d3s[j], rels[j], d2s[j] = d3, rel, math.sqrt(dx * dx + dy * dy)
        if d3 < best_d3:
            best, best_d3 = j, d3
    return best, best_d3


@jit
def _official_offset(p32, start32, vec32, k):
    """Point minus its nearest point on segment ``k``, x and y, in the official float32 operation order."""
    zero32, one32 = np.float32(0.0), np.float32(1.0)
    sx, sy = p32[0] - start32[k, 0], p32[1] - start32[k, 1]
    vx, vy = vec32[k, 0], vec32[k, 1]
    num = sx * vx + sy * vy
    den = vx * vx + vy * vy
    t = min(max(num / den if den != zero32 else zero32, zero32), one32)
    return sx - vx * t, sy - vy * t, t


@jit
def signed_distances(points, order, group_starts, seg_lo, seg_hi, start, vec, prev_vec, next_vec, has_prev, has_next,
                     stretch, official, points32, start32, vec32, tol, out):
    """Signed distance ``out [Q]`` of ``points [Q, 3]`` to the road-edge segments (positive off-road),
    group by group (``order[group_starts[g]:group_starts[g + 1]]`` are group g's points).

    Per group, segments that cannot be nearest to any of its points are skipped: a segment's
    z-stretched gap to the group's bounding box is a lower bound of its distance, and the nearest of
    16 seed segments bounds every point's least distance from above. Per point: the nearest
    segment by z-stretched distance (first minimum); with ``official``, those within ``tol`` of it
    re-ranked by the official float32 distance (first minimum in map order, as ``tf.argmin``) and
    the official float32 2D distance as the magnitude; then the official sign rule."""
    M = start.shape[0]
    gap = np.empty(M)
    d3s, rels, d2s = np.empty(M), np.empty(M), np.empty(M)
    z32 = np.float32(stretch)
    for g in range(group_starts.shape[0] - 1):
        idx = order[group_starts[g] : group_starts[g + 1]]
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for q in idx:
            for d in range(3):
                lo[d], hi[d] = min(lo[d], points[q, d]), max(hi[d], points[q, d])
        for m in range(M):
            acc = 0.0
            for d in range(3):
                w = (max(seg_lo[m, d] - hi[d], 0.0) + max(lo[d] - seg_hi[m, d], 0.0)) * (stretch if d == 2 else 1.0)
                acc += w * w
            gap[m] = math.sqrt(acc)
        seeds = np.argsort(gap)[: min(16, M)]
        bound = 0.0
        for q in idx:
            _, d3 = _nearest(points[q], start, vec, seeds, stretch, d3s, rels, d2s)
            bound = max(bound, d3)
        cand = np.nonzero(gap <= bound + tol)[0]  # ascending: map order
        for q in idx:
            best, best_d3 = _nearest(points[q], start, vec, cand, stretch, d3s, rels, d2s)
            if official:
                n_near = 0
                for j in range(cand.shape[0]):
                    if d3s[j] <= best_d3 + tol:
                        n_near += 1
                if n_near > 1:
                    best32 = np.float32(np.inf)
                    for j in range(cand.shape[0]):
                        if not d3s[j] <= best_d3 + tol:
                            continue
                        k = cand[j]
                        ex, ey, t32 = _official_offset(points32[q], start32, vec32, k)
                        ez = (points32[q, 2] - start32[k, 2] - vec32[k, 2] * t32) * z32
                        d32 = np.float32(math.sqrt(np.float32(np.float32(ex * ex + ey * ey) + ez * ez)))
                        if d32 < best32:
                            best, best32 = j, d32
            k = cand[best]
            rel = rels[best]
            if official:
                ex, ey, _ = _official_offset(points32[q], start32, vec32, k)
                dist = np.float64(np.float32(math.sqrt(np.float32(ex * ex + ey * ey))))
            else:
                dist = d2s[best]
            # the official sign rule: the segment's side, or at a polyline joint the neighbour's
            px, py = points[q, 0], points[q, 1]
            sx, sy, vx, vy = start[k, 0], start[k, 1], vec[k, 0], vec[k, 1]
            pvx, pvy, nvx, nvy = prev_vec[k, 0], prev_vec[k, 1], next_vec[k, 0], next_vec[k, 1]
            n = _sign(_cross(px - sx, py - sy, vx, vy))
            if rel < 0 and has_prev[k]:
                n_prior = _sign(_cross(px - (sx - pvx), py - (sy - pvy), pvx, pvy))
                n = max(n, n_prior) if _cross(pvx, pvy, vx, vy) > 0 else min(n, n_prior)
            elif rel > 1 and has_next[k]:
                n_next = _sign(_cross(px - (sx + vx), py - (sy + vy), nvx, nvy))
                n = max(n, n_next) if _cross(vx, vy, nvx, nvy) > 0 else min(n, n_next)
            out[q] = n * dist


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
