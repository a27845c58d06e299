"""Procedural road networks in a local frame (metres, right-hand traffic).

Two families:

* ``intersection`` — 3 (T) or 4 arms, 1–2 lanes per direction, stop line before a crosswalk on
  every arm, connector lanes through the box for straight, left and right movements (left turns
  from the innermost lane, right turns from the outermost), signalised (4-phase plan:
  straight+right then protected left, per axis) or all-way stop.
* ``road`` — a straight or constant-curvature multi-lane road (both directions), optionally with
  a lane drop (the rightmost lane ends; vehicles must merge left).

Lanes are dense polylines (≈1 m spacing) with successor/predecessor and left/right neighbours.
Conflicts between connectors and crosswalks are precomputed for the traffic model.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from drope.data.types import LaneType, RoadEdgeType, RoadLineType
from drope.geometry import wrap_angle

LANE_WIDTH = 3.6


@dataclass
class Lane:
    id: int
    points: np.ndarray  # [n, 2]
    successors: list[int] = field(default_factory=list)
    predecessors: list[int] = field(default_factory=list)
    left: int | None = None
    right: int | None = None
    connector: bool = False
    arm: int = -1  # arm index for intersection lanes (-1 otherwise)
    inbound: bool = False
    speed_limit_mph: float = 30.0
    lane_type: int = LaneType.TYPE_SURFACE_STREET

    def __post_init__(self) -> None:
        d = np.linalg.norm(np.diff(self.points, axis=0), axis=-1)
        self.s = np.concatenate([[0.0], np.cumsum(d)])  # [n] arc length
        seg = np.diff(self.points, axis=0)
        h = np.arctan2(seg[:, 1], seg[:, 0])
        self.heading = np.concatenate([h, h[-1:]])
        self._heading_unwrapped = np.unwrap(self.heading)
        # curvature-limited speed (lateral acceleration ≤ 2.5 m/s²)
        ds = np.maximum(np.diff(self.s), 1e-6)
        kappa = np.abs(np.diff(self._heading_unwrapped)[:-1]) / ds[:-1] if len(ds) > 1 else np.zeros(1)
        self.max_speed = float(np.sqrt(2.5 / max(float(kappa.max(initial=0.0)), 1e-4)))

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def pose_scalar(self, s: float) -> tuple[float, float, float]:
        """(x, y, heading) at one arc length (clamped); plain floats, for the per-agent inner loop."""
        tab = self.__dict__.get("_table")
        if tab is None:  # python lists: bisect + lerp is ~30x faster than np.interp on scalars
            tab = self._table = (self.s.tolist(), self.points[:, 0].tolist(), self.points[:, 1].tolist(),
                                 self._heading_unwrapped.tolist())
        return interp_scalar(tab, s)

    def pose_at(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[..., 2]`` and headings at arc lengths ``s`` (clamped)."""
        s = min(max(s, 0.0), self.length) if isinstance(s, float) else np.clip(s, 0.0, self.length)
        x = np.interp(s, self.s, self.points[:, 0])
        y = np.interp(s, self.s, self.points[:, 1])
        h = np.interp(s, self.s, self._heading_unwrapped)
        return np.stack([x, y], axis=-1), h


def interp_scalar(tab: tuple[list, list, list, list], s: float) -> tuple[float, float, float]:
    """Linear interpolation of (x, y, heading) tables over arc length ``tab[0]`` at ``s`` (clamped)."""
    ss, xs, ys, hs = tab
    if s <= ss[0]:
        return xs[0], ys[0], hs[0]
    if s >= ss[-1]:
        return xs[-1], ys[-1], hs[-1]
    i = bisect_right(ss, s) - 1
    u = (s - ss[i]) / (ss[i + 1] - ss[i]) if ss[i + 1] > ss[i] else 0.0
    return xs[i] + u * (xs[i + 1] - xs[i]), ys[i] + u * (ys[i + 1] - ys[i]), hs[i] + u * (hs[i + 1] - hs[i])


@dataclass
class Crosswalk:
    polygon: np.ndarray  # [4, 2]
    ends: tuple[np.ndarray, np.ndarray]  # curb points on both sides (pedestrian path)
    arm: int


@dataclass
class RoadNetwork:
    kind: str
    lanes: dict[int, Lane]
    road_lines: list[tuple[np.ndarray, int]]  # (polyline, RoadLineType)
    road_edges: list[tuple[np.ndarray, int]]  # (polyline, RoadEdgeType)
    crosswalks: list[Crosswalk] = field(default_factory=list)
    stop_signs: list[tuple[np.ndarray, list[int]]] = field(default_factory=list)  # (position, lanes)
    signal_groups: list[list[int]] = field(default_factory=list)  # phase -> connector ids allowed to go
    signalized: bool = False
    conflicts: dict[int, set] = field(default_factory=dict)  # connector id -> {connector ids, ("xw", k)}
    sidewalk_paths: list[np.ndarray] = field(default_factory=list)  # pedestrian polylines
    extent: float = 100.0

    def entry_lanes(self) -> list[int]:
        return [i for i, ln in self.lanes.items() if not ln.predecessors and not ln.connector]


def _line(a: np.ndarray, b: np.ndarray, step: float = 1.0) -> np.ndarray:
    n = max(2, int(math.ceil(np.linalg.norm(b - a) / step)) + 1)
    return a + (b - a) * np.linspace(0, 1, n)[:, None]


def _bezier(p0, h0, p1, h1, step: float = 1.0) -> np.ndarray:
    d = np.linalg.norm(p1 - p0)
    c0 = p0 + np.array([math.cos(h0), math.sin(h0)]) * d * 0.4
    c1 = p1 - np.array([math.cos(h1), math.sin(h1)]) * d * 0.4
    n = max(3, int(math.ceil(d * 1.3 / step)) + 1)
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c0 + 3 * (1 - t) * t**2 * c1 + t**3 * p1


def _rot(v: np.ndarray, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _offset(poly: np.ndarray, d: float) -> np.ndarray:
    """Offset a polyline by ``d`` to its left (negative: right)."""
    t = np.gradient(poly, axis=0)
    t /= np.linalg.norm(t, axis=-1, keepdims=True) + 1e-12
    return poly + d * np.stack([-t[:, 1], t[:, 0]], axis=-1)


def _poly_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min())


def build_intersection(rng: np.random.Generator, arms: int = 4, lanes: int = 1, length: float = 70.0,
                       signalized: bool = True, speed_limit_mph: float = 25.0) -> RoadNetwork:
    w = LANE_WIDTH
    half_road = lanes * w
    box = half_road + 2.0  # half-size of the conflict box
    cw_in, cw_out = box + 0.5, box + 4.5  # crosswalk band
    stop_r = box + 6.0  # stop line / connector ends
    base = rng.uniform(0, 2 * math.pi)
    angles = [base + k * math.pi / 2 for k in range(4)][:arms] if arms == 4 else [base, base + math.pi / 2, base + math.pi]
    lanes_d: dict[int, Lane] = {}
    nid = [100]

    def new_id() -> int:
        nid[0] += 1
        return nid[0]

    inbound: dict[tuple[int, int], int] = {}
    outbound: dict[tuple[int, int], int] = {}
    road_lines, road_edges, crosswalks, paths = [], [], [], []
    for a, ang in enumerate(angles):
        u = np.array([math.cos(ang), math.sin(ang)])
        n = np.array([-u[1], u[0]])
        for i in range(lanes):
            off = w / 2 + i * w
            pin = _line(u * length + n * off, u * stop_r + n * off)
            lid = new_id()
            lanes_d[lid] = Lane(lid, pin, arm=a, inbound=True, speed_limit_mph=speed_limit_mph)
            inbound[a, i] = lid
            pout = _line(u * stop_r - n * off, u * length - n * off)
            oid = new_id()
            lanes_d[oid] = Lane(oid, pout, arm=a, speed_limit_mph=speed_limit_mph)
            outbound[a, i] = oid
        for i in range(lanes - 1):  # same-direction neighbours: i+1 is to the right of i (driver view)
            lanes_d[inbound[a, i]].right, lanes_d[inbound[a, i + 1]].left = inbound[a, i + 1], inbound[a, i]
            lanes_d[outbound[a, i]].right, lanes_d[outbound[a, i + 1]].left = outbound[a, i + 1], outbound[a, i]
        road_lines.append((_line(u * length, u * box), RoadLineType.TYPE_SOLID_DOUBLE_YELLOW))
        for i in range(1, lanes):
            road_lines.append((_line(u * length + n * i * w, u * stop_r + n * i * w), RoadLineType.TYPE_BROKEN_SINGLE_WHITE))
            road_lines.append((_line(u * stop_r - n * i * w, u * length - n * i * w), RoadLineType.TYPE_BROKEN_SINGLE_WHITE))
        road_lines.append((_line(u * stop_r, u * stop_r + n * half_road), RoadLineType.TYPE_SOLID_SINGLE_WHITE))
        # kerbs run with the road on their left (WOSAC's signed road-edge distance is negative on a
        # polyline's left): the +n kerb runs in towards the box, the -n kerb out from it
        road_edges.append((_line(u * length + n * half_road, u * box + n * half_road), RoadEdgeType.TYPE_ROAD_EDGE_BOUNDARY))
        road_edges.append((_line(u * box - n * half_road, u * length - n * half_road), RoadEdgeType.TYPE_ROAD_EDGE_BOUNDARY))
        poly = np.array([u * cw_in + n * (half_road + 0.5), u * cw_out + n * (half_road + 0.5),
                         u * cw_out - n * (half_road + 0.5), u * cw_in - n * (half_road + 0.5)])
        mid = (cw_in + cw_out) / 2
        ends = (u * mid + n * (half_road + 1.5), u * mid - n * (half_road + 1.5))
        crosswalks.append(Crosswalk(poly, ends, a))
        # pedestrian paths: along the sidewalk to the curb, across, and away along the other side
        for s0, s1 in ((1, -1), (-1, 1)):
            keep_right = -0.6 * s0  # opposite walking directions keep 1.2 m apart
            far0 = u * (length - 5) + n * s0 * (half_road + 2.5)
            far1 = u * (length - 5) + n * s1 * (half_road + 2.5)
            c0 = u * (mid + keep_right) + n * s0 * (half_road + 2.5)
            c1 = u * (mid + keep_right) + n * s1 * (half_road + 2.5)
            paths.append(np.concatenate([_line(far0, c0), _line(c0, c1)[1:], _line(c1, far1)[1:]]))
    # corner road edges between adjacent arms (outer kerbs), road on their left like the arms' kerbs:
    # each runs from arm a's +n kerb end to arm b's -n kerb start, so the kerbs chain end to end
    order = list(range(arms))
    for k in order:
        a, b = k, (k + 1) % len(angles)
        if arms == 3 and k == 2:
            # T junction: the far side is a straight kerb across the missing arm
            ua = np.array([math.cos(angles[2]), math.sin(angles[2])])
            ub = np.array([math.cos(angles[0]), math.sin(angles[0])])
            na, nb = np.array([-ua[1], ua[0]]), np.array([-ub[1], ub[0]])
            road_edges.append((_line(ua * box + na * half_road, ub * box - nb * half_road), RoadEdgeType.TYPE_ROAD_EDGE_BOUNDARY))
            continue
        ua = np.array([math.cos(angles[a]), math.sin(angles[a])])
        ub = np.array([math.cos(angles[b]), math.sin(angles[b])])
        na, nb = np.array([-ua[1], ua[0]]), np.array([-ub[1], ub[0]])
        p0, p1 = ua * box + na * half_road, ub * box - nb * half_road
        road_edges.append((_bezier(p0, angles[a] + math.pi, p1, angles[b]), RoadEdgeType.TYPE_ROAD_EDGE_BOUNDARY))
    # connectors
    conn_arms: dict[int, tuple[int, int]] = {}
    for a, ang in enumerate(angles):
        for b, bng in enumerate(angles):
            if a == b:
                continue
            turn = wrap_angle(bng - (ang + math.pi))  # heading change
            if abs(turn) < 0.3:
                pairs = [(i, i) for i in range(lanes)]
            elif turn > 0:  # left
                pairs = [(0, 0)]
            else:  # right
                pairs = [(lanes - 1, lanes - 1)]
            for i, j in pairs:
                src, dst = lanes_d[inbound[a, i]], lanes_d[outbound[b, j]]
                pts = _bezier(src.points[-1], ang + math.pi, dst.points[0], bng)
                cid = new_id()
                lanes_d[cid] = Lane(cid, pts, connector=True, arm=a, speed_limit_mph=speed_limit_mph)
                lanes_d[cid].predecessors.append(src.id)
                lanes_d[cid].successors.append(dst.id)
                src.successors.append(cid)
                dst.predecessors.append(cid)
                conn_arms[cid] = (a, b)
    # conflicts: connectors whose paths come close (different connectors), and crosswalks they cross
    conns = [c for c in lanes_d.values() if c.connector]
    conflicts: dict[int, set] = {c.id: set() for c in conns}
    for x in range(len(conns)):
        for y in range(x + 1, len(conns)):
            if _poly_distance(conns[x].points, conns[y].points) < 3.0 or conns[x].successors == conns[y].successors:
                conflicts[conns[x].id].add(conns[y].id)
                conflicts[conns[y].id].add(conns[x].id)
    for c in conns:
        a, b = conn_arms[c.id]
        conflicts[c.id].add(("xw", a))
        conflicts[c.id].add(("xw", b))
    stop_signs, groups = [], []
    if signalized:
        # phases per axis: straight+right movements, then protected lefts (connector ids per phase)
        for k in (0, 1):
            ax = [a for a in range(len(angles)) if a % 2 == k]
            moves = [c.id for c in conns if conn_arms[c.id][0] in ax]
            groups.append([c for c in moves if _turn_kind(lanes_d, c, angles, conn_arms) != "left"])
            groups.append([c for c in moves if _turn_kind(lanes_d, c, angles, conn_arms) == "left"])
    else:
        for a, ang in enumerate(angles):
            u = np.array([math.cos(ang), math.sin(ang)])
            n = np.array([-u[1], u[0]])
            stop_signs.append((u * stop_r + n * (half_road + 1.0), [inbound[a, i] for i in range(lanes)]))
    return RoadNetwork(
        kind="intersection", lanes=lanes_d, road_lines=road_lines, road_edges=road_edges, crosswalks=crosswalks,
        stop_signs=stop_signs, signal_groups=groups, signalized=signalized, conflicts=conflicts,
        sidewalk_paths=paths, extent=length,
    )


def _turn_kind(lanes_d, cid, angles, conn_arms) -> str:
    a, b = conn_arms[cid]
    turn = wrap_angle(angles[b] - (angles[a] + math.pi))
    return "straight" if abs(turn) < 0.3 else ("left" if turn > 0 else "right")


def build_road(rng: np.random.Generator, lanes: int = 2, length: float = 220.0, curvature: float = 0.0,
               lane_drop: bool = False, speed_limit_mph: float = 45.0) -> RoadNetwork:
    """A two-way road along an arc of curvature ``curvature`` (1/m); optional right-lane drop."""
    w = LANE_WIDTH
    s = np.linspace(-length / 2, length / 2, int(length) + 1)
    if abs(curvature) < 1e-6:
        centre = np.stack([s, np.zeros_like(s)], -1)
    else:
        r = 1.0 / curvature
        th = s / r
        centre = np.stack([r * np.sin(th), r * (1 - np.cos(th))], -1)
    rot = rng.uniform(0, 2 * math.pi)
    c, sn = math.cos(rot), math.sin(rot)
    centre = centre @ np.array([[c, sn], [-sn, c]])
    lanes_d: dict[int, Lane] = {}
    lid = 200
    fwd, bwd = [], []
    drop_at = int(len(s) * 0.6)
    for i in range(lanes):
        off = -(w / 2 + i * w)  # forward direction drives on the right of the centre line
        pts = _offset(centre, off)
        if lane_drop and i == lanes - 1 and lanes > 1:
            lid += 1
            lanes_d[lid] = Lane(lid, pts[:drop_at], speed_limit_mph=speed_limit_mph)
        else:
            lid += 1
            lanes_d[lid] = Lane(lid, pts, speed_limit_mph=speed_limit_mph)
        fwd.append(lid)
        lid += 1
        lanes_d[lid] = Lane(lid, _offset(centre, w / 2 + i * w)[::-1].copy(), speed_limit_mph=speed_limit_mph)
        bwd.append(lid)
    for group in (fwd, bwd):
        for i in range(lanes - 1):
            lanes_d[group[i]].right, lanes_d[group[i + 1]].left = group[i + 1], group[i]
    road_lines = [(centre.copy(), RoadLineType.TYPE_SOLID_DOUBLE_YELLOW)]
    for i in range(1, lanes):
        end = drop_at if (lane_drop and i == lanes - 1) else len(s)
        road_lines.append((_offset(centre, -i * w)[:end], RoadLineType.TYPE_BROKEN_SINGLE_WHITE))
        road_lines.append((_offset(centre, i * w), RoadLineType.TYPE_BROKEN_SINGLE_WHITE))
    right_edge = _offset(centre, -lanes * w)
    if lane_drop and lanes > 1:  # kerb tapers in over 10 m where the right lane ends
        right_edge = np.concatenate([right_edge[:drop_at], _offset(centre, -(lanes - 1) * w)[drop_at + 10 :]])
    # road on each kerb's left (WOSAC's sign): the right kerb runs forward, the left kerb backward
    road_edges = [(right_edge, RoadEdgeType.TYPE_ROAD_EDGE_BOUNDARY),
                  (_offset(centre, lanes * w)[::-1].copy(), RoadEdgeType.TYPE_ROAD_EDGE_BOUNDARY)]
    # opposite directions on one sidewalk keep apart by 1.2 m
    paths = [_offset(centre, lanes * w + 3.1), _offset(centre, lanes * w + 1.9)[::-1].copy(),
             _offset(centre, -(lanes * w + 3.1))[::-1].copy(), _offset(centre, -(lanes * w + 1.9))]
    return RoadNetwork(kind="road", lanes=lanes_d, road_lines=road_lines, road_edges=road_edges,
                       sidewalk_paths=paths, extent=length / 2)
