"""Drivable-area polygons (Argoverse 2) ↔ road-edge polylines (WOMD convention).

WOMD road edges are polylines with the road on their *left* (port side): the official WOSAC
``distance_to_road_edge`` (``map_metric_features._compute_signed_distance_to_polylines``) is
negative on the port side and positive (off-road) on the starboard side of the nearest segment,
"a.k.a. counterclockwise winding order". An AV2 ``DrivableArea`` is a polygon (vertices listed
once, av2 closes the ring on reading) whose winding is not specified, and a log map may hold
several drivable areas that abut or overlap. So the road edges of an AV2 map are:

    the boundary of the union of its drivable areas, each ring counter-clockwise.

:func:`road_edges_from_drivable_areas` implements that rule (reader);
:func:`drivable_areas_from_road_edges` builds the polygons an AV2 file would hold from a scene's
road-edge polylines (writer), whatever their orientation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "drivable_areas_from_road_edges",
    "points_in_polygon",
    "road_edges_from_drivable_areas",
    "signed_area",
]

# vertices closer than this are one vertex; segments closer than this (midpoint to segment) coincide
_EPS = 1e-3


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a ring ``[N, 2+]`` (first vertex not repeated): > 0 counter-clockwise."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def points_in_polygon(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """``[Q]`` bool: strictly-inside test (even-odd crossing rule) of ``points [Q, 2+]`` for a ring
    ``[N, 2+]`` (first vertex not repeated). Points on the boundary may go either way."""
    px, py = points[:, None, 0], points[:, None, 1]
    x0, y0 = ring[None, :, 0], ring[None, :, 1]
    x1, y1 = np.roll(ring[:, 0], -1)[None], np.roll(ring[:, 1], -1)[None]
    straddle = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    return (straddle & (px < x_at)).sum(-1) % 2 == 1


def _clean_ring(points: np.ndarray) -> np.ndarray:
    """Ring without the repeated closing vertex and without consecutive duplicate vertices."""
    p = np.asarray(points, np.float64)
    keep = np.ones(len(p), bool)
    keep[1:] = np.linalg.norm(np.diff(p[:, :2], axis=0), axis=1) > _EPS
    p = p[keep]
    while len(p) > 1 and np.linalg.norm(p[0, :2] - p[-1, :2]) <= _EPS:
        p = p[:-1]
    return p


def _ccw(ring: np.ndarray) -> np.ndarray:
    return ring if signed_area(ring) > 0 else ring[::-1].copy()


def _distance_to_segments(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[Q, S]`` 2D distances of points ``q [Q, 2]`` to segments ``a→b [S, 2]``."""
    ab = b - a
    den = np.maximum((ab**2).sum(-1), 1e-300)
    t = np.clip(((q[:, None] - a[None]) * ab[None]).sum(-1) / den[None], 0.0, 1.0)
    return np.linalg.norm(q[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1)


def _straightest_start(ring: np.ndarray) -> np.ndarray:
    """The ring rotated to start at its straightest vertex.

    The official code treats a closed polyline's first and last segments as neighbours only for the
    longest polyline of the map (a padding artefact); elsewhere a point nearest to the start vertex
    takes the sign of the first segment alone. At a vertex where the boundary runs straight on,
    that sign is the right one.
    """
    d_in = ring[:, :2] - np.roll(ring[:, :2], 1, axis=0)
    d_out = np.roll(ring[:, :2], -1, axis=0) - ring[:, :2]
    cos = (d_in * d_out).sum(-1) / np.maximum(np.linalg.norm(d_in, axis=1) * np.linalg.norm(d_out, axis=1), 1e-300)
    return np.roll(ring, -int(np.argmax(cos)), axis=0)


def _split_points(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``[S, So]`` parameters t along segments ``a→b [S, 2]`` where segments ``c→d [So, 2]`` cross
    them or touch them with their start vertex (NaN elsewhere): cut there, each piece lies wholly
    inside, outside or on the other ring."""
    ab, cd = b - a, d - c
    L = np.linalg.norm(ab, axis=1)
    lo = (_EPS / np.maximum(L, 1e-300))[:, None]
    ac = c[None] - a[:, None]  # [S, So, 2]
    den = ab[:, None, 0] * cd[None, :, 1] - ab[:, None, 1] * cd[None, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ac[..., 0] * cd[None, :, 1] - ac[..., 1] * cd[None, :, 0]) / den
        u = (ac[..., 0] * ab[:, None, 1] - ac[..., 1] * ab[:, None, 0]) / den
    cross = (np.abs(den) > 1e-12) & (t > lo) & (t < 1 - lo) & (u >= -1e-9) & (u <= 1 + 1e-9)
    # start vertices of the other ring on the segment (collinear overlaps, T-junctions)
    tv = (ac * ab[:, None]).sum(-1) / np.maximum(L**2, 1e-300)[:, None]
    off = np.abs(ac[..., 0] * ab[:, None, 1] - ac[..., 1] * ab[:, None, 0]) / np.maximum(L, 1e-300)[:, None]
    touch = (off <= _EPS) & (tv > lo) & (tv < 1 - lo)
    return np.concatenate([np.where(cross, t, np.nan), np.where(touch, tv, np.nan)], axis=1)


def _near_box(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``[S]`` bool: segments ``a→b`` whose bounding box meets the box ``[lo, hi]`` (widened by eps)."""
    return (np.minimum(a, b) <= hi + _EPS).all(1) & (np.maximum(a, b) >= lo - _EPS).all(1)


def _refine(r: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """Ring ``r`` with vertices added where other rings' boundaries cross or touch it."""
    a, b = r[:, :2], np.roll(r, -1, axis=0)[:, :2]
    splits: list[list[float]] = [[] for _ in range(len(r))]
    for o in others:
        c, d = o[:, :2], np.roll(o, -1, axis=0)[:, :2]
        mine = np.flatnonzero(_near_box(a, b, c.min(0), c.max(0)))
        theirs = np.flatnonzero(_near_box(c, d, a.min(0), a.max(0)))
        if not len(mine) or not len(theirs):
            continue
        t = _split_points(a[mine], b[mine], c[theirs], d[theirs])
        for k, row in zip(mine, t):
            splits[k].extend(row[~np.isnan(row)].tolist())
    if not any(splits):
        return r
    nxt = np.roll(r, -1, axis=0)
    pts = []
    for k in range(len(r)):
        pts.append(r[k][None])
        ts = np.unique(np.round(np.asarray(splits[k], np.float64), 12))
        if len(ts):
            pts.append(r[k][None] + ts[:, None] * (nxt[k] - r[k])[None])
    return _clean_ring(np.concatenate(pts))


def road_edges_from_drivable_areas(areas: Sequence[np.ndarray]) -> list[tuple[int, np.ndarray]]:
    """Road-edge polylines ``[n, 3]`` (road on the left) of drivable-area polygons ``[N, 3]``, each
    with the index of the area it comes from.

    Each ring is made counter-clockwise and cut where another area's boundary crosses or touches
    it. A piece inside another drivable area, or lying on another area's boundary in the opposite
    direction (two areas that abut), is interior to the drivable surface and dropped; of pieces
    shared in the same direction (a duplicated boundary) the first area's copy is kept. A ring left
    whole is returned closed (first vertex repeated, starting at its straightest vertex); the
    remaining runs of the others are joined head to tail across areas (closed where they come
    round). Rings with fewer than three distinct vertices or no area bound nothing and are skipped.
    """
    rings, source = [], []
    for n, a in enumerate(areas):
        r = _clean_ring(a)
        if len(r) >= 3 and abs(signed_area(r)) > _EPS**2:
            rings.append(_ccw(r))
            source.append(n)
    out: list[tuple[int, np.ndarray]] = []
    pieces: list[tuple[int, np.ndarray]] = []
    for i, r0 in enumerate(rings):
        others = rings[:i] + rings[i + 1 :]
        r = _refine(r0, others)
        a, b = r, np.roll(r, -1, axis=0)
        mid = (a[:, :2] + b[:, :2]) / 2
        keep = np.ones(len(r), bool)
        for j, o in enumerate(rings):
            if j == i:
                continue
            lo, hi = o[:, :2].min(0) - _EPS, o[:, :2].max(0) + _EPS
            q = np.flatnonzero(((mid >= lo) & (mid <= hi)).all(1))  # only these can be inside or on o
            if not len(q):
                continue
            oa, ob = o[:, :2], np.roll(o, -1, axis=0)[:, :2]
            d = _distance_to_segments(mid[q], oa, ob)  # [Q, So]
            near = d.min(1) <= _EPS
            k = d.argmin(1)
            same_dir = ((b[q, :2] - a[q, :2]) * (ob[k] - oa[k])).sum(-1) > 0
            on_boundary_dropped = near & (~same_dir | (j < i))
            inside = ~near & points_in_polygon(mid[q], o)
            keep[q] &= ~(on_boundary_dropped | inside)
        if keep.all():
            s = _straightest_start(r0)  # nothing cut away: the area's own vertices
            out.append((source[i], np.concatenate([s, s[:1]])))
            continue
        if not keep.any():
            continue
        # runs of kept pieces, starting after a dropped one so that no run wraps around
        start = int(np.argmin(keep))
        order = np.roll(np.arange(len(r)), -start)
        run: list[int] = []
        for s in list(order) + [None]:
            if s is not None and keep[s]:
                run.append(s)
                continue
            if run:
                idx = run + [(run[-1] + 1) % len(r)]
                pieces.append((source[i], r[idx]))
                run = []
    return out + _join_pieces(pieces)


def _join_pieces(pieces: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
    """Pieces of the union's boundary joined head to tail (same orientation), so that where the
    pieces of two areas meet the official sign rule sees both segments (it gives a polyline's end
    segment no neighbour); a chain that comes back to its start is a closed ring."""
    free = list(range(len(pieces)))
    out = []
    while free:
        src, chain = pieces[free.pop(0)]
        while np.linalg.norm(chain[-1, :2] - chain[0, :2]) > _EPS:
            nxt = next((k for k in free if np.linalg.norm(pieces[k][1][0, :2] - chain[-1, :2]) <= _EPS), None)
            if nxt is None:
                break
            free.remove(nxt)
            chain = np.concatenate([chain, pieces[nxt][1][1:]])
        if len(chain) > 3 and np.linalg.norm(chain[-1, :2] - chain[0, :2]) <= _EPS:
            ring = _straightest_start(chain[:-1])
            chain = np.concatenate([ring, ring[:1]])
        out.append((src, chain))
    return out


def _chains(polylines: Sequence[np.ndarray], tol: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Join polylines end to end (either direction) where endpoints are within ``tol``: (closed
    rings without the repeated vertex, open chains)."""
    pool = [np.asarray(p, np.float64) for p in polylines if len(p) >= 2]
    used = [False] * len(pool)
    rings, chains = [], []

    def take(end: np.ndarray) -> np.ndarray | None:
        for k, p in enumerate(pool):
            if used[k]:
                continue
            if np.linalg.norm(p[0, :2] - end[:2]) <= tol:
                used[k] = True
                return p
            if np.linalg.norm(p[-1, :2] - end[:2]) <= tol:
                used[k] = True
                return p[::-1]
        return None

    for k, p in enumerate(pool):
        if used[k]:
            continue
        used[k] = True
        chain = p
        for _ in range(2):  # grow the tail, then (reversed) the other end
            while np.linalg.norm(chain[0, :2] - chain[-1, :2]) > tol and (nxt := take(chain[-1])) is not None:
                chain = np.concatenate([chain, nxt[1:]])
            chain = chain[::-1]
        if len(chain) >= 3 and np.linalg.norm(chain[0, :2] - chain[-1, :2]) <= tol:
            rings.append(chain[:-1])
        else:
            chains.append(chain)
    return rings, chains


def _extend(chain: np.ndarray, d: float) -> np.ndarray:
    """``chain`` with ``d`` metres added at both ends, straight on along its end segments."""
    if d <= 0:
        return chain
    ends = []
    for p, q in ((chain[0], chain[1]), (chain[-1], chain[-2])):
        u = p - q
        u[2] = 0.0
        ends.append(p + d * u / max(float(np.linalg.norm(u[:2])), 1e-12))
    return np.concatenate([ends[0][None], chain, ends[1][None]])


def drivable_areas_from_road_edges(polylines: Sequence[np.ndarray], join_tol: float = 0.5,
                                   extend: float = 0.0) -> list[np.ndarray]:
    """Counter-clockwise drivable-area polygons ``[N, 3]`` (first vertex not repeated) bounded by
    road-edge polylines ``[n, 3]`` of any orientation.

    Polylines that meet end to end (within ``join_tol`` m) are joined; a closed chain is a polygon.
    Open chains end where the map ends (a road leaving the map): from a chain's last vertex the
    polygon continues to the nearest free chain end — across the road to the opposite kerb — until
    it comes back to its own first vertex. For the generator's roads and intersections this gives
    one polygon per road network, closed across each road where the map ends. ``extend`` (m)
    lengthens each open chain straight on at both ends first, so the closing line lies that far
    beyond the kerbs' ends.
    """
    rings, chains = _chains(polylines, join_tol)
    chains = [_extend(c, extend) for c in chains]
    free = list(range(len(chains)))
    while free:
        ring = chains[free.pop(0)]
        while free:
            tail = ring[-1, :2]
            home = np.linalg.norm(ring[0, :2] - tail)
            d = [(np.linalg.norm(chains[k][e, :2] - tail), k, e) for k in free for e in (0, -1)]
            dist, k, e = min(d)
            if home <= dist:
                break
            free.remove(k)
            ring = np.concatenate([ring, chains[k] if e == 0 else chains[k][::-1]])
        rings.append(ring)
    out = []
    for r in rings:
        r = _clean_ring(r)
        if len(r) >= 3 and abs(signed_area(r)) > _EPS**2:
            out.append(_ccw(r))
    return out
