"""Compiled (numba) per-agent loops of the vectorised IDM policy (:mod:`drope.sim.policies.idm_vectorised`).

A step of the policy is a handful of calls here (``project``; ``project_nearest`` and, rarely,
``project_fresh`` for agents without a proof; ``drive``) instead of ~765 small numpy/torch
calls: per-call overhead, not arithmetic, set the numpy version's speed
(docs/experiments/sim_scale.md).

Every formula is the per-agent reference's (:mod:`drope.sim.policies.idm`, ``LaneGraph``) in the
reference's dtype and operation order, so the results are the reference's bits:

* float64 geometry; ``sqrt`` and ``cos``/``sin`` (libm, as numpy's) computed here; ``atan2``
  comes from tables numpy built (numpy's SIMD ``arctan2`` rounds differently from libm);
* Python's ``x ** 2`` and ``x ** delta`` are libm ``pow`` (not ``x * x``, which differs in the
  last bit for 0.1 % of inputs): the exponents come in through ``cfg`` so the compiler cannot
  fold ``pow(x, 2.0)`` into a multiplication;
* the corridor and red-light gaps in float32 (every constant a float32, as torch casts Python
  scalars); their ``cos``/``sin`` and the speeds are libm's float64 rounded to float32, as the
  reference defines them (``cos_sin32``, ``speed32``).

Lane projection (``LaneGraph.project``: least cost over the k = 64 segments with the nearest
midpoints, KD-tree order breaking ties) reuses what is provably the reference's answer:

1. disk proof: with ``U`` the cost of the previous winner at the new pose, every segment that can
   cost ``<= U`` has its midpoint within ``r = U + half_max``; when at most k midpoints lie within
   ``r`` they are all among the k nearest and the answer is the least cost among them. The
   midpoints within ``r`` come from a uniform grid (near the lanes) or, for agents far from them,
   from a per-agent list of every midpoint within ``r + slack`` of where it was filled;
2. candidate proofs on the agent's cached 256 nearest midpoints (at ``centre``, with the 257th
   distance): (a) the first k are still the k nearest (their margin to the next exceeds twice the
   distance moved), (b) no segment outside them can cost ``<= U``, (c) the disk proof over the
   cache, (d) the k nearest selected from the cache when no uncached midpoint can be among them;
3. otherwise the nearest midpoints from the grid (``project_nearest``), or scipy's KD query
   (``project_fresh``, the reference's own candidates) where the k-th and (k+1)-th are equally
   far (which of them the reference takes is the KD tree's business).

Ties of cost resolve as the reference's KD order does: the nearer midpoint first (an exact tie of
both cost and midpoint distance between two segments would take the lower segment index).
Standing agents (same float32 pose as last step) keep their answer.

``@njit(cache=True)`` (:mod:`drope.jit`): compiled code is cached next to this file or, where that is read-only,
in numba's user cache (``NUMBA_CACHE_DIR`` overrides); where no cache location works the
functions compile in each process instead of failing (about 25 s on one busy core; loading the
cache takes 0.3 s).
"""
from __future__ import annotations

import math

import numpy as np
from drope.jit import jit as _jit, wrap as _wrap

# cfg vector layout (IDMPolicyConfig and constants, float64; see ``config_vector``)
C_OFF_LANE, C_LOOKAHEAD, C_DECAY, C_MAX_LAT, C_PREVIEW, C_WINDOW, C_SAMPLES, C_CORRIDOR, C_DT, C_TWO, C_FAR = range(11)
NUM_CFG = 11
K_NEAR = 64  # LaneGraph.candidates
f64 = np.float64  # numba's float() keeps a float32 a float32: widen explicitly
CACHE_K = 256  # KD candidates cached per agent (a superset of the 64 the reference takes)
DISK_K = 256  # segments the far disk cache holds per agent


# ---- lane geometry (LaneGraph.pose_at, IDMReference.along_route, LaneGraph.project's cost) -------------
ARC_BIN = 1.0  # m, the arc-length bins of :func:`build_arc_bins`


def build_arc_bins(s_pt: np.ndarray, offsets: np.ndarray):
    """Per lane, the first point whose arc length exceeds each multiple of :data:`ARC_BIN`:
    ``first [N]``, lane l's bins at ``first[bin_off[l]:bin_off[l + 1]]`` (:func:`_segment_at`)."""
    L = len(offsets) - 1
    counts = np.array([int(s_pt[offsets[l + 1] - 1] / ARC_BIN) + 1 for l in range(L)], np.int64)
    bin_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    first = np.empty(bin_off[-1], np.int64)
    for l in range(L):
        a, b = offsets[l], offsets[l + 1]
        first[bin_off[l] : bin_off[l + 1]] = a + np.searchsorted(s_pt[a:b], np.arange(counts[l]) * ARC_BIN, side="right")
    return bin_off, first


@_jit
def _segment_at(s_pt, offsets, bin_off, first, lane, s):
    """``LaneGraph.pose_at``'s segment of ``lane`` at arc length ``s``: (first point index, clamped s).
    Its searchsorted(side="right") on the lane's arc lengths, O(1): a forward scan from the first
    point past the lower edge of ``s``'s bin (:func:`build_arc_bins`) reaches the same point."""
    a, b = offsets[lane], offsets[lane + 1]
    sk = min(max(s, 0.0), s_pt[b - 1])
    j = min(int(sk / ARC_BIN), bin_off[lane + 1] - bin_off[lane] - 1)
    while j > 0 and j * ARC_BIN > sk:  # the bin edge as the table computed it must not pass sk
        j -= 1
    lo = first[bin_off[lane] + j]
    while lo < b and s_pt[lo] <= sk:
        lo += 1
    return min(max(lo - 1 - a, 0), b - a - 2) + a, sk


@_jit
def pose_at(points, s_pt, offsets, bin_off, first, pt_h, lane, s):
    """``LaneGraph.pose_at(lane, s)`` for one point: (x, y, heading)."""
    i, sk = _segment_at(s_pt, offsets, bin_off, first, lane, s)
    t = (sk - s_pt[i]) / max(s_pt[i + 1] - s_pt[i], 1e-9)
    return (points[i, 0] + t * (points[i + 1, 0] - points[i, 0]),
            points[i, 1] + t * (points[i + 1, 1] - points[i, 1]), pt_h[i])


@_jit
def _route_lane(lane_len, route, k0, n, s):
    """:func:`along_route`'s lane walk: (lane, arc length on it clamped to its length, beyond its end)."""
    for k in range(k0, n):
        length = lane_len[route[k]]
        if s <= length or k == n - 1:
            return route[k], min(s, length), max(0.0, s - length)
        s -= length
    return route[n - 1], 0.0, 0.0  # unreachable: the last lane always returns


@_jit
def along_route(points, s_pt, offsets, bin_off, first, pt_h, lane_len, route, k0, n, s):
    """``IDMReference.along_route(route[k0:n], s)``: pose at arc length ``s`` along the route,
    extended straight past its end."""
    lane, s_lane, beyond = _route_lane(lane_len, route, k0, n, s)
    x, y, h = pose_at(points, s_pt, offsets, bin_off, first, pt_h, lane, s_lane)
    return x + beyond * math.cos(h), y + beyond * math.sin(h), h


@_jit
def heading_along_route(s_pt, offsets, bin_off, first, pt_h, lane_len, route, k0, n, s):
    """:func:`along_route`'s heading alone (the same segment choice, none of its position arithmetic).
    The walk and the lookup are separate calls: fused in one loop, numba compiled them ~15x slower."""
    lane, s_lane, _ = _route_lane(lane_len, route, k0, n, s)
    return pt_h[_segment_at(s_pt, offsets, bin_off, first, lane, s_lane)[0]]


@_jit
def segment_cost(points, s_pt, pt_h, seg_start, g, x, y, h):
    """``LaneGraph.project``'s cost of segment ``g`` for pose (x, y, h) and the arc length there."""
    st = seg_start[g]
    px, py = points[st, 0], points[st, 1]
    dx, dy = points[st + 1, 0] - px, points[st + 1, 1] - py
    L2 = max(dx * dx + dy * dy, 1e-12)
    rx, ry = x - px, y - py
    t = min(max((rx * dx + ry * dy) / L2, 0.0), 1.0)
    ex, ey = rx - t * dx, ry - t * dy
    cost = math.sqrt(ex * ex + ey * ey) + 4.0 * (1.0 - math.cos(h - pt_h[st]))
    return cost, s_pt[st] + t * math.sqrt(L2)


@_jit
def poses_at(points, s_pt, offsets, bin_off, first, pt_h, lanes, s):
    """:func:`pose_at` over arrays: xy ``[N, 2]``, heading ``[N]``."""
    xy, h = np.empty((len(lanes), 2)), np.empty(len(lanes))
    for i in range(len(lanes)):
        xy[i, 0], xy[i, 1], h[i] = pose_at(points, s_pt, offsets, bin_off, first, pt_h, lanes[i], s[i])
    return xy, h


@_jit
def poses_along_routes(points, s_pt, offsets, bin_off, first, pt_h, lane_len, routes, n, s):
    """:func:`along_route` over routes ``[M, K]`` with ``n [M]`` lanes each."""
    xy, h = np.empty((len(s), 2)), np.empty(len(s))
    for i in range(len(s)):
        xy[i, 0], xy[i, 1], h[i] = along_route(points, s_pt, offsets, bin_off, first, pt_h, lane_len, routes[i], 0, n[i],
                                               s[i])
    return xy, h


# ---- lane projection -------------------------------------------------------------------------------------
@_jit
def _better(cost, dm, g, best_cost, best_dm, best_g):
    return cost < best_cost or (cost == best_cost and (dm < best_dm or (dm == best_dm and g < best_g)))


@_jit
def _collect(mid, grid, cells, cell_seg, ne_cells, ne_box, x, y, R, out):
    """Segments whose midpoint lies within ``R`` of (x, y), written to ``out``: their number, or
    -1 when there are more than ``len(out)``."""
    x0, y0, size, nx, ny = grid[0], grid[1], grid[2], int(grid[3]), int(grid[4])
    ix0 = int(min(max((x - R - x0) / size, 0.0), nx - 1.0))
    ix1 = int(min(max((x + R - x0) / size, 0.0), nx - 1.0))
    iy0 = int(min(max((y - R - y0) / size, 0.0), ny - 1.0))
    iy1 = int(min(max((y + R - y0) / size, 0.0), ny - 1.0))
    n_y = iy1 - iy0 + 1
    neighbourhood = (ix1 - ix0 + 1) * n_y <= len(ne_cells)
    n_scan = (ix1 - ix0 + 1) * n_y if neighbourhood else len(ne_cells)
    n = 0
    for q in range(n_scan):
        if neighbourhood:
            c = (ix0 + q // n_y) * ny + iy0 + q % n_y
        else:  # far from the map: every occupied cell whose box comes within R
            bx = max(ne_box[q, 0] - x, 0.0, x - ne_box[q, 2])
            by = max(ne_box[q, 1] - y, 0.0, y - ne_box[q, 3])
            if bx * bx + by * by > R * R:
                continue
            c = ne_cells[q]
        for p in range(cells[c], cells[c + 1]):
            g = cell_seg[p]
            dx, dy = mid[g, 0] - x, mid[g, 1] - y
            if math.sqrt(dx * dx + dy * dy) <= R:
                if n == len(out):
                    return -1
                out[n] = g
                n += 1
    return n


@_jit
def _disk_answer(points, s_pt, pt_h, seg_start, mid, half, segs, n, k, x, y, h, r):
    """The disk proof over ``segs[:n]`` (every midpoint within ``r`` of (x, y) is among them): the
    least-cost segment among those within ``r`` when there are at most ``k`` (then they are all
    among the ``k`` nearest), as (segment, s); (-1, 0) when not."""
    best_g, best_cost, best_dm, best_s, count = -1, np.inf, np.inf, 0.0, 0
    for i in range(n):
        g = segs[i]
        dx, dy = mid[g, 0] - x, mid[g, 1] - y
        dm = math.sqrt(dx * dx + dy * dy)
        if dm > r:
            continue
        count += 1
        if count > k:
            return -1, 0.0
        if dm - half[g] > best_cost:  # its cost's lower bound: strictly worse than the best so far
            continue
        cost, s = segment_cost(points, s_pt, pt_h, seg_start, g, x, y, h)
        if _better(cost, dm, g, best_cost, best_dm, best_g):
            best_g, best_cost, best_dm, best_s = g, cost, dm, s
    return best_g, best_s


@_jit
def _cache_proof(points, s_pt, pt_h, seg_start, mid, half, half_max, k, cand, cdist, beyond, centre, last, x, y, h,
                 dm):
    """The reference's answer from the cached KD candidates where provable: (segment, s, column),
    or (-1, 0, 0). ``cand [C]`` are the C >= k nearest midpoints at ``centre`` in KD order,
    ``cdist [C]`` their distances there, ``beyond`` the (C+1)-th (inf: the cache holds every
    segment); ``dm [C]`` is scratch."""
    C = len(cand)
    mx, my = x - centre[0], y - centre[1]
    moved = math.sqrt(mx * mx + my * my)
    dmin, jmin = np.inf, 0
    for j in range(k):
        dx, dy = mid[cand[j], 0] - x, mid[cand[j], 1] - y
        dm[j] = math.sqrt(dx * dx + dy * dy)
        if dm[j] < dmin:
            dmin, jmin = dm[j], j
    U, _ = segment_cost(points, s_pt, pt_h, seg_start, cand[jmin], x, y, h)
    if last < k:
        u1, _ = segment_cost(points, s_pt, pt_h, seg_start, cand[last], x, y, h)
        U = min(U, u1)
    k_next = cdist[k] if C > k else beyond  # the (k+1)-th distance at the centre
    # (a) the first k are still the k nearest, or (b) no segment outside them can cost <= U
    if k_next - cdist[k - 1] > 2 * moved + 1e-6 or U + half_max + 1e-6 < cdist[k - 1] - moved:
        n_set = k
    elif C > k:
        # every uncached midpoint is >= beyond - moved away; all C distances now
        for j in range(k, C):
            dx, dy = mid[cand[j], 0] - x, mid[cand[j], 1] - y
            dm[j] = math.sqrt(dx * dx + dy * dy)
            if dm[j] < dmin:
                dmin, jmin = dm[j], j
        u0, _ = segment_cost(points, s_pt, pt_h, seg_start, cand[jmin], x, y, h)
        U = min(U, u0)
        # (c) the disk proof on the cache: at most k midpoints within U + half_max are all among the k nearest
        r = U + half_max + 1e-6
        n_in = 0
        if r < beyond - moved:
            for j in range(C):
                if dm[j] <= r:
                    n_in += 1
        if 0 < n_in <= k:
            n_set = C
            for j in range(C):
                if dm[j] > r:
                    dm[j] = np.inf
        else:
            # (d) the k nearest now, selected from the cache
            part = np.partition(dm[:C], k)
            d_k, d_next = part[:k].max(), part[k]  # the k-th and (k+1)-th least distance now
            if not (d_k < d_next and d_k + 1e-6 < beyond - moved):
                return -1, 0.0, 0
            n_set = C
            dmin, jmin = np.inf, 0
            for j in range(C):
                if dm[j] <= d_k and dm[j] < dmin:
                    dmin, jmin = dm[j], j
            U, _ = segment_cost(points, s_pt, pt_h, seg_start, cand[jmin], x, y, h)
            for j in range(C):  # outside the k nearest: excluded through the lower bound
                if dm[j] > d_k:
                    dm[j] = np.inf
    else:
        return -1, 0.0, 0
    best_g, best_cost, best_dm, best_s, best_j = -1, np.inf, np.inf, 0.0, 0
    for j in range(n_set):
        g = cand[j]
        if dm[j] - half[g] > min(U, best_cost):  # lower bound of the cost above an attained cost: cannot win
            continue
        cost, s = segment_cost(points, s_pt, pt_h, seg_start, g, x, y, h)
        if _better(cost, dm[j], g, best_cost, best_dm, best_g):
            best_g, best_cost, best_dm, best_s, best_j = g, cost, dm[j], s, j
    return best_g, best_s, best_j


@_jit
def project(points, s_pt, pt_h, seg_start, seg_lane, mid, half, half_max, grid, cells, cell_seg, ne_cells, ne_box,
            pos, heading, valid, drivers, cand, cdist, beyond, centre, last_col, last_seg, last_pose, have, disk,
            disk_n, disk_centre, disk_r, prefer_disk, lane_out, s_out):
    """``LaneGraph.project`` (lane, s) of the valid agents of rollouts with a driver (the ones the
    reference projects) from what is proven without a KD query (see the module docstring);
    returns the flat indices of the agents still to query.

    Per agent: ``cand``/``cdist``/``beyond``/``centre``/``last_col``/``have``: the KD cache;
    ``disk [C']``/``disk_n``/``disk_centre``/``disk_r``: every segment within ``disk_r`` of
    ``disk_centre`` (-1: none), the disk proof's cache for agents far from the lanes;
    ``last_seg``: the last winner, at ``last_pose`` (x, y, heading; float32); ``prefer_disk``:
    which proof held last time (tried first)."""
    B, A = valid.shape
    near = 4 * grid[2]  # disk radius up to which a fresh grid scan beats the caches
    slack = grid[2]  # the far disk cache covers this much more than the proof needs
    k = min(K_NEAR, len(seg_start))
    redo = np.empty(B * A, np.int64)
    n_redo = 0
    dm = np.empty(cand.shape[2])
    near_segs = np.empty(k, np.int64)
    for b in range(B):
        row = False
        for a in range(A):
            row |= drivers[b, a]
        for a in range(A):
            if not (row and valid[b, a]):
                continue
            if (last_seg[b, a] >= 0 and pos[b, a, 0] == last_pose[b, a, 0] and pos[b, a, 1] == last_pose[b, a, 1]
                    and heading[b, a] == last_pose[b, a, 2]):
                continue  # standing still: lane_out and s_out hold the answer
            last_pose[b, a, 0], last_pose[b, a, 1], last_pose[b, a, 2] = pos[b, a, 0], pos[b, a, 1], heading[b, a]
            x, y, h = f64(pos[b, a, 0]), f64(pos[b, a, 1]), f64(heading[b, a])
            g, s, r = -1, 0.0, np.inf
            if last_seg[b, a] >= 0:
                u, _ = segment_cost(points, s_pt, pt_h, seg_start, last_seg[b, a], x, y, h)
                r = u + half_max + 1e-6
                if r < near:
                    n = _collect(mid, grid, cells, cell_seg, ne_cells, ne_box, x, y, r, near_segs)
                    if n > 0:
                        g, s = _disk_answer(points, s_pt, pt_h, seg_start, mid, half, near_segs, n, k, x, y, h, r)
            for attempt in range(2):
                if g >= 0:
                    break
                if (attempt == 0) == prefer_disk[b, a]:
                    if r < near or not np.isfinite(r):
                        continue
                    mx, my = x - disk_centre[b, a, 0], y - disk_centre[b, a, 1]
                    if not r + math.sqrt(mx * mx + my * my) <= disk_r[b, a]:  # refill the far disk cache
                        disk_n[b, a] = _collect(mid, grid, cells, cell_seg, ne_cells, ne_box, x, y, r + slack,
                                                disk[b, a])
                        disk_r[b, a] = r + slack if disk_n[b, a] > 0 else -1.0
                        disk_centre[b, a, 0], disk_centre[b, a, 1] = x, y
                    if disk_r[b, a] > 0:
                        g, s = _disk_answer(points, s_pt, pt_h, seg_start, mid, half, disk[b, a], disk_n[b, a], k,
                                            x, y, h, r)
                        prefer_disk[b, a] = g >= 0
                elif have[b, a]:
                    g, s, j = _cache_proof(points, s_pt, pt_h, seg_start, mid, half, half_max, k, cand[b, a],
                                           cdist[b, a], beyond[b, a], centre[b, a], last_col[b, a], x, y, h, dm)
                    if g >= 0:
                        last_col[b, a] = j
                        prefer_disk[b, a] = False
            if g < 0:
                redo[n_redo] = b * A + a
                n_redo += 1
                continue
            last_seg[b, a] = g
            lane_out[b, a], s_out[b, a] = seg_lane[g], s
    return redo[:n_redo]


@_jit
def project_fresh(points, s_pt, pt_h, seg_start, seg_lane, pos, heading, redo, kd_cand, kd_dist, cand, cdist, beyond,
                  centre, last_col, last_seg, have, lane_out, s_out):
    """``LaneGraph.project`` of agents ``redo`` (flat indices) from a fresh KD query (``kd_cand``,
    ``kd_dist [N, Q]``, Q = the cache size + 1 where the map has that many segments): the
    reference's answer (first least cost over the first k in KD order); the candidates are cached
    for :func:`project`."""
    A = pos.shape[1]
    for i in range(len(redo)):
        b, a = redo[i] // A, redo[i] % A
        _fill(points, s_pt, pt_h, seg_start, seg_lane, b, a, f64(pos[b, a, 0]), f64(pos[b, a, 1]),
              f64(heading[b, a]), kd_cand[i], kd_dist[i], kd_cand.shape[1], cand, cdist, beyond, centre, last_col,
              last_seg, have, lane_out, s_out)


@_jit
def _fill(points, s_pt, pt_h, seg_start, seg_lane, b, a, x, y, h, segs, dist, n, cand, cdist, beyond, centre, last_col,
          last_seg, have, lane_out, s_out):
    """Cache the nearest midpoints ``segs[:n]`` (distances ``dist``, ascending) of agent (b, a) and
    project it: least cost over the first k, earlier first (the reference's KD order)."""
    C = cand.shape[2]
    k = min(K_NEAR, C)
    best_j, best_cost, best_s = 0, np.inf, 0.0
    for j in range(k):
        cost, s = segment_cost(points, s_pt, pt_h, seg_start, segs[j], x, y, h)
        if cost < best_cost:
            best_j, best_cost, best_s = j, cost, s
    cand[b, a, :] = segs[:C]
    cdist[b, a, :] = dist[:C]
    beyond[b, a] = dist[C] if n > C else np.inf
    centre[b, a, 0], centre[b, a, 1] = x, y
    have[b, a] = True
    last_col[b, a] = best_j
    last_seg[b, a] = segs[best_j]
    lane_out[b, a], s_out[b, a] = seg_lane[segs[best_j]], best_s


@_jit
def project_nearest(points, s_pt, pt_h, seg_start, seg_lane, mid, grid, cells, cell_seg, ne_cells, ne_box, pos,
                    heading, redo, cand, cdist, beyond, centre, last_col, last_seg, have, lane_out, s_out):
    """``LaneGraph.project`` of agents ``redo`` (flat indices) from their nearest midpoints found on
    the grid (growing disks until they hold the cache's worth), cached for :func:`project`.
    Returns the agents whose k-th and (k+1)-th nearest midpoints are (nearly) equally far: which
    of them the reference's KD query takes is its own business (:func:`project_fresh` asks it)."""
    A = pos.shape[1]
    C = cand.shape[2]
    G = len(seg_start)
    k = min(K_NEAR, C)
    Q = min(C + 1, G)
    buf = np.empty(max(16 * Q, 4096), np.int64)
    x0, y0 = grid[0], grid[1]
    x1, y1 = x0 + grid[2] * grid[3], y0 + grid[2] * grid[4]
    ask = np.empty(len(redo), np.int64)
    n_ask = 0
    for i in range(len(redo)):
        b, a = redo[i] // A, redo[i] % A
        x, y, h = f64(pos[b, a, 0]), f64(pos[b, a, 1]), f64(heading[b, a])
        ex, ey = max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1)
        R = math.sqrt(ex * ex + ey * ey) + grid[2]
        if have[b, a]:  # the cached nearest moved at most this far: the disk holding them now
            mx, my = x - centre[b, a, 0], y - centre[b, a, 1]
            R = max(R, (cdist[b, a, Q - 1] if Q <= C else beyond[b, a]) + math.sqrt(mx * mx + my * my) + 1e-6)
        fx, fy = max(abs(x - x0), abs(x - x1)), max(abs(y - y0), abs(y - y1))
        R_all = math.sqrt(fx * fx + fy * fy) + grid[2]  # holds every midpoint
        need_kd = True
        while True:
            n = _collect(mid, grid, cells, cell_seg, ne_cells, ne_box, x, y, min(R, R_all), buf)
            if n < 0:
                break  # too many at once: the KD query does it
            if n >= Q or R >= R_all:
                d = np.empty(n)
                for j in range(n):
                    dx, dy = mid[buf[j], 0] - x, mid[buf[j], 1] - y
                    d[j] = math.sqrt(dx * dx + dy * dy)
                m = min(n, Q)
                if n > m:  # sort only the m nearest
                    d_m = np.partition(d, m - 1)[m - 1]
                    keep = np.flatnonzero(d <= d_m)
                else:
                    d_m, keep = np.inf, np.arange(n)
                if n >= Q and d_m > R and R < R_all:
                    R += max(grid[2], R / 8)  # the Q-th nearest collected may not be the Q-th nearest
                    continue
                order = keep[np.argsort(d[keep])][:m]
                segs, dist = buf[:n][order], d[order]
                if not (k < m and dist[k] - dist[k - 1] < 1e-9):  # else a tie at the reference's k-th candidate
                    _fill(points, s_pt, pt_h, seg_start, seg_lane, b, a, x, y, h, segs, dist, m, cand, cdist, beyond,
                          centre, last_col, last_seg, have, lane_out, s_out)
                    need_kd = False
                break
            R += max(grid[2], R / 8)
        if need_kd:
            ask[n_ask] = redo[i]
            n_ask += 1
    return ask[:n_ask]


# ---- the policy's step for every driver -------------------------------------------------------------------
@_jit
def _curve_speed(s_pt, offsets, bin_off, first, pt_h, lane_len, route, k0, n, s, speed, b_comf, cfg):
    """``IDMReference._curve_speed``: numpy's ``linspace`` preview points, ``wrap_angle`` as floored modulo."""
    window = cfg[C_WINDOW]
    reach = max(window, speed * cfg[C_PREVIEW] + speed * speed / (2 * b_comf))
    n_s = int(cfg[C_SAMPLES])
    step = reach / (n_s - 1)
    best = np.inf
    for i in range(n_s):
        d = reach if i == n_s - 1 else i * step + 0.0
        h0 = heading_along_route(s_pt, offsets, bin_off, first, pt_h, lane_len, route, k0, n, s + d)
        h1 = heading_along_route(s_pt, offsets, bin_off, first, pt_h, lane_len, route, k0, n, s + d + window)
        kappa = abs(_wrap(h1 - h0)) / window
        v_curve2 = cfg[C_MAX_LAT] / max(kappa, 1e-4)
        best = min(best, v_curve2 + 2 * b_comf * d)
    return math.sqrt(best)


@_jit
def drive(points, s_pt, offsets, bin_off, bin_first, pt_h, lane_len, default_route, default_len, cfg,
          pos, heading, vel, size, valid, drivers, lane, s_proj, stops, stop_h, route, route_len, v_des, params,
          target_pos, target_h):
    """Targets ``target_pos [B, A, 2]``, ``target_h [B, A]`` (float32) of every agent: constant
    velocity (``pos + vel·dt`` in float32, as the reference's tensors), then one IDM step of every
    driver (``drivers [B, A]``) over it; routes re-anchored in place. ``lane``/``s_proj`` hold
    :func:`project`'s answer for every valid agent of a rollout with a driver.

    ``stops [S, 2]``: STOP stop points now, ``stop_h [S]`` (float32) their lanes' headings (aligned:
    ``cos(heading - stop_h) > 0.7`` in float32); cos/sin/speeds as :func:`~drope.sim.policies.idm.cos_sin32`
    and :func:`~drope.sim.policies.idm.speed32`; ``params [A, 7]``: a_max, b_comf, b_max, s0,
    time_headway, delta, sqrt(a_max·b_comf)."""
    B, A = valid.shape
    L = len(lane_len)
    S = len(stops)
    far32 = np.float32(cfg[C_FAR])
    margin32 = np.float32(cfg[C_CORRIDOR])
    minus_half32, two32, cos_aligned32 = np.float32(-0.5), np.float32(2.0), np.float32(0.7)
    dt = cfg[C_DT]
    two = cfg[C_TWO]
    s_all = np.zeros(A)
    lat = np.zeros(A)
    lane_all = np.full(A, -1, np.int64)
    count = np.zeros(L + 1, np.int64)
    members = np.empty(A, np.int64)
    hw = np.empty(A, np.float32)
    speed = np.empty(A, np.float32)
    inf32 = np.float32(np.inf)
    dt32 = np.float32(cfg[C_DT])
    for b in range(B):
        for a in range(A):
            target_pos[b, a, 0] = pos[b, a, 0] + vel[b, a, 0] * dt32
            target_pos[b, a, 1] = pos[b, a, 1] + vel[b, a, 1] * dt32
            target_h[b, a] = heading[b, a]
    for b in range(B):
        any_driver = False
        for a in range(A):
            any_driver |= drivers[b, a]
        if not any_driver:
            continue
        lmax = 0.0
        for a in range(A):
            lmax = max(lmax, f64(size[b, a, 0]))
            hw[a] = size[b, a, 1] / two32
            speed[a] = np.float32(math.hypot(f64(vel[b, a, 0]), f64(vel[b, a, 1])))
        # offsets in the lane's frame at the projection; lane_all: -1 off the lane graph
        for a in range(A):
            lane_all[a] = -1
            if not valid[b, a]:
                continue
            fx, fy, fh = pose_at(points, s_pt, offsets, bin_off, bin_first, pt_h, lane[b, a], s_proj[b, a])
            rx, ry = f64(pos[b, a, 0]) - fx, f64(pos[b, a, 1]) - fy
            along = rx * math.cos(fh) + ry * math.sin(fh)
            lat[a] = -rx * math.sin(fh) + ry * math.cos(fh)
            s_all[a] = s_proj[b, a] + max(along, 0.0)
            if abs(lat[a]) < cfg[C_OFF_LANE]:
                lane_all[a] = lane[b, a]
        # agents on the graph by lane, ascending agent index (counting sort)
        count[:] = 0
        for a in range(A):
            if lane_all[a] >= 0:
                count[lane_all[a] + 1] += 1
        for l in range(L):
            count[l + 1] += count[l]
        fill = count[:L].copy()
        for a in range(A):
            if lane_all[a] >= 0:
                members[fill[lane_all[a]]] = a
                fill[lane_all[a]] += 1
        for a in range(A):
            if not drivers[b, a]:
                continue
            # ---- corridor gap (float32): first least gap over all agents (torch's min) ----
            ci, si = np.float32(math.cos(f64(heading[b, a]))), np.float32(math.sin(f64(heading[b, a])))
            pxa, pya, hw_a, len_a = pos[b, a, 0], pos[b, a, 1], hw[a], size[b, a, 0]
            best_gap32, jc = inf32, -1
            for j in range(A):
                rx32, ry32 = pos[b, j, 0] - pxa, pos[b, j, 1] - pya
                x32 = rx32 * ci + ry32 * si
                g32 = far32
                if x32 > 0 and valid[b, j] and j != a:
                    y32 = -rx32 * si + ry32 * ci
                    if abs(y32) < hw_a + hw[j] + margin32:
                        g32 = x32 - (len_a + size[b, j, 0]) / two32
                if g32 < best_gap32:
                    best_gap32, jc = g32, j
            dv32 = (vel[b, a, 0] * ci + vel[b, a, 1] * si) - (vel[b, jc, 0] * ci + vel[b, jc, 1] * si)
            # ---- red lights (float32) ----
            red32 = far32
            for q in range(S):
                rx32, ry32 = stops[q, 0] - pos[b, a, 0], stops[q, 1] - pos[b, a, 1]
                x32 = rx32 * ci + ry32 * si
                y32 = -rx32 * si + ry32 * ci
                g32 = x32 - size[b, a, 0] / two32
                if (g32 > minus_half32 and abs(y32) < two32
                        and np.float32(math.cos(f64(heading[b, a] - stop_h[q]))) > cos_aligned32):
                    red32 = min(red32, g32)
            # ---- route from the projected lane (re-anchored when the agent left its drawn route) ----
            q_lane = lane[b, a]
            p0 = -1
            for k in range(route_len[b, a]):
                if route[b, a, k] == q_lane:
                    p0 = k
                    break
            if p0 < 0:
                route[b, a, :] = default_route[q_lane]
                route_len[b, a] = default_len[q_lane]
                p0 = 0
            rt, n = route[b, a], route_len[b, a]
            spd = f64(speed[a])
            gap, dv = f64(best_gap32), f64(dv32)
            on = lane_all[a] >= 0
            q_s = s_all[a]
            if on:  # ---- LaneGraph.leader along the route ----
                q_half = f64(size[b, a, 0]) / 2
                lead_gap, lead = cfg[C_FAR], -1
                off = 0.0
                for k in range(p0, n):
                    l = rt[k]
                    seen = False
                    for k2 in range(p0, k):
                        seen |= rt[k2] == l
                    if seen:
                        break
                    for m in range(count[l], count[l + 1]):
                        j = members[m]
                        ahead = s_all[j] + off
                        if j == a or (k == p0 and not ahead > q_s):
                            continue
                        gj = ahead - q_s - q_half - f64(size[b, j, 0]) / 2
                        if gj < lead_gap:
                            lead_gap, lead = gj, j
                    nxt_off = off + lane_len[l]
                    if nxt_off - q_s > cfg[C_LOOKAHEAD] or nxt_off - q_s - q_half - lmax / 2 > lead_gap:
                        break
                    off = nxt_off
                if lead >= 0 and lead_gap < gap:
                    gap, dv = lead_gap, f64(speed[a] - speed[lead])
            if f64(red32) < gap:
                gap, dv = f64(red32), spd
            vd = v_des[a]
            if on and vd > 0:
                vd = min(vd, _curve_speed(s_pt, offsets, bin_off, bin_first, pt_h, lane_len, rt, p0, n, q_s, spd, params[a, 1],
                                          cfg))
            # ---- idm_acceleration (the scalar formula) ----
            a_max, b_max, s0, th, delta, sqrt_ab = params[a, 0], params[a, 2], params[a, 3], params[a, 4], \
                params[a, 5], params[a, 6]
            s_star = s0 + max(spd * th + spd * dv / (2.0 * sqrt_ab), 0.0)
            free = 1.0 - (spd / max(vd, 0.1)) ** delta
            acc = a_max * (free - (s_star / max(gap, 0.01)) ** two)
            acc = min(max(acc, -b_max), a_max)
            v_new = max(0.0, spd + acc * dt)
            # ---- target one step ahead ----
            if not on:  # straight along the heading (float32, as the reference's tensors)
                step32 = np.float32(v_new * dt)
                target_pos[b, a, 0] = pos[b, a, 0] + step32 * ci
                target_pos[b, a, 1] = pos[b, a, 1] + step32 * si
                continue
            x, y, hh = along_route(points, s_pt, offsets, bin_off, bin_first, pt_h, lane_len, rt, p0, n, q_s + v_new * dt)
            target_pos[b, a, 0] = np.float32(x + -math.sin(hh) * lat[a] * cfg[C_DECAY])
            target_pos[b, a, 1] = np.float32(y + math.cos(hh) * lat[a] * cfg[C_DECAY])
            target_h[b, a] = np.float32(hh)


def build_grid(mid: np.ndarray, cell: float):
    """Uniform grid over segment midpoints ``mid [G, 2]``: ``grid`` (x0, y0, cell, nx, ny),
    ``cells [nx*ny + 1]`` (cell c holds ``cell_seg[cells[c]:cells[c + 1]]``), ``cell_seg [G]``,
    the occupied cells ``[E]`` and their midpoints' bounding boxes ``[E, 4]`` (x0, y0, x1, y1)."""
    lo = mid.min(0) if len(mid) else np.zeros(2)
    n_xy = (np.floor((mid.max(0) - lo) / cell).astype(np.int64) + 1) if len(mid) else np.ones(2, np.int64)
    ix = np.minimum(np.floor((mid - lo) / cell).astype(np.int64), n_xy - 1)
    cid = ix[:, 0] * n_xy[1] + ix[:, 1]
    order = np.argsort(cid, kind="stable")
    cells = np.zeros(n_xy[0] * n_xy[1] + 1, np.int64)
    np.add.at(cells, cid + 1, 1)
    cells = np.cumsum(cells)
    ne = np.unique(cid)
    box = np.empty((len(ne), 4))
    for k, c in enumerate(ne):
        pts = mid[order[cells[c] : cells[c + 1]]]
        box[k] = (*pts.min(0), *pts.max(0))
    grid = np.array([lo[0], lo[1], cell, n_xy[0], n_xy[1]], np.float64)
    return grid, cells, order.astype(np.int64), ne.astype(np.int64), box
