"""Per-step features of the 2025 sim-agents metric, batched over rollouts (torch, float64).

Conventions: N samples (rollouts; 1 for the log), O simulated objects ordered evaluated-first,
E evaluated objects (the first E of O), T steps. Positions are in the scene frame; headings are
*unwrapped* scene-frame values (world heading − scene origin heading) so that raw heading
differences equal the world ones the official code thresholds on.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from drope.geometry import box_corners
from drope.metrics.boxes import box_signed_distance
from drope.metrics.wosac import edge_kernels as kernels
from drope.metrics.wosac import interaction_kernels
from drope.geometry import wrap_angle

Tensor = torch.Tensor

HUGE = 1e10
CORNER_ROUNDING = 0.7
MAX_HEADING_DIFF = math.radians(75.0)
MAX_HEADING_DIFF_SMALL_OVERLAP = math.radians(10.0)
SMALL_OVERLAP = 0.5
MAX_TTC = 5.0
Z_STRETCH = 3.0
CYCLIC_TOLERANCE_M2 = 1.0
# Road-edge segments whose float64 z-stretched distances lie this close to the nearest one are
# re-ranked in the official float32 world-frame arithmetic (float32 world coordinates of up to
# ~10 km carry up to ~1e-3 m of rounding, which is what decides near-ties there).
EDGE_TIE_TOLERANCE = 5e-3


def _central_diff(t: Tensor) -> Tensor:
    """(t[i+1] − t[i−1]) / 2 along the last axis, NaN at both ends."""
    pad = torch.full_like(t[..., :1], float("nan"))
    return torch.cat([pad, (t[..., 2:] - t[..., :-2]) / 2, pad], dim=-1)


_wrap = wrap_angle


def kinematics(xyz: Tensor, heading: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Linear speed, linear acceleration, angular speed, angular acceleration ``[..., T]``.

    Central differences (NaN at the ends: 1 step for speeds, 2 for accelerations); speed is the 3D
    norm; heading steps are wrapped as half of the wrapped double step, as the official code does.
    """
    d = _central_diff(xyz.movedim(-1, 0))  # [3, ..., T]
    speed = d.norm(dim=0) / dt
    accel = _central_diff(speed) / dt
    dh = _wrap(_central_diff(heading) * 2) / 2
    d2h = _wrap(_central_diff(dh) * 2) / 2
    return speed, accel, dh / dt, d2h / dt**2


def kinematic_validity(valid: Tensor) -> tuple[Tensor, Tensor]:
    """Validity of speeds (steps i−1 and i+1 valid) and accelerations (applied twice)."""
    def central_and(v: Tensor) -> Tensor:
        pad = torch.zeros_like(v[..., :1])
        return torch.cat([pad, v[..., 2:] & v[..., :-2], pad], dim=-1)

    speed_valid = central_and(valid)
    return speed_valid, central_and(speed_valid)


def distance_to_nearest_object(
    xy: Tensor, heading: Tensor, length: Tensor, width: Tensor, valid: Tensor, num_eval: int
) -> Tensor:
    """Signed distance ``[N, E, T]`` from each evaluated box to the nearest other box.

    Boxes get rounded corners (shrunk by ``0.7·min(l, w)/2`` and the shrink subtracted again);
    pairs with an invalid member and the object itself count as 1e10.
    ``xy [N, O, T, 2]``, ``heading [N, O, T]``, ``length/width [O, T]``, ``valid [O, T]``.
    """
    N, O, T = heading.shape
    shrink = torch.minimum(length, width) * CORNER_ROUNDING / 2  # [O, T]
    corners = box_corners(xy, heading, (length - 2 * shrink).expand_as(heading), (width - 2 * shrink).expand_as(heading))
    # Only pairs that can be nearest are measured: the rounded box lies inside the circle of
    # radius half-diagonal, and the distance never exceeds the centre distance.
    radius = torch.hypot(length, width) / 2  # [O, T]
    centre = (xy[:, :num_eval, None] - xy[:, None]).norm(dim=-1)  # [N, E, O, T]
    pair_valid = valid[:num_eval, None] & valid[None]  # [E, O, T]
    pair_valid = pair_valid & ~torch.eye(num_eval, O, dtype=torch.bool)[..., None]
    upper = torch.where(pair_valid[None], centre, torch.full_like(centre, HUGE)).amin(dim=2, keepdim=True)
    lower = centre - radius[None, :num_eval, None] - radius[None, None]
    n, e, o, t = (pair_valid[None] & (lower <= upper)).nonzero().unbind(1)
    d = box_signed_distance(corners[n, e, t], corners[n, o, t]) - shrink[e, t] - shrink[o, t]
    out = torch.full((N, num_eval, T), HUGE, dtype=torch.float64)
    return out.index_put_((n, e, t), d, accumulate=False) if d.numel() == 0 else out.view(-1).scatter_reduce(
        0, (n * num_eval + e) * T + t, d, reduce="amin").view(N, num_eval, T)


def time_to_collision(
    xy: Tensor, heading: Tensor, length: Tensor, width: Tensor, valid: Tensor, num_eval: int, dt: float
) -> Tensor:
    """Seconds ``[N, E, T]`` until each evaluated object reaches the object it follows at constant
    speeds (capped at 5 s; 5 s when it follows none)."""
    speed = _central_diff(xy.movedim(-1, 0)).norm(dim=0) / dt  # [N, O, T] 2D speed
    N, O, T = heading.shape
    out = np.empty((N, num_eval, T))
    c64 = lambda x: np.ascontiguousarray(x.numpy(), dtype=np.float64)  # noqa: E731
    interaction_kernels.time_to_collision(
        c64(xy), c64(heading), c64(speed), c64(length.expand(O, T)), c64(width.expand(O, T)),
        np.ascontiguousarray(valid.expand(O, T).numpy()), num_eval, MAX_HEADING_DIFF, MAX_HEADING_DIFF_SMALL_OVERLAP,
        SMALL_OVERLAP, HUGE, MAX_TTC, out)
    return torch.from_numpy(out)


# ---- road edges ------------------------------------------------------------------------------


class EdgeSegments:
    """Road-edge polylines flattened into segments with the neighbour data the sign rule needs.

    Reproduces the official padding semantics: a polyline's first/last segment sees its cyclic
    neighbour only when the polyline is cyclic (ends < 1 m apart in 3D) *and* as long as the
    longest polyline; otherwise the segment's own side decides.

    ``frame``: the world pose ``(origin_xy [2], origin_heading)`` of the polylines' frame. With it
    the segments are also kept as the official code holds them (float32 world coordinates), so
    that near-tied nearest segments are chosen as the official code chooses them
    (:func:`signed_distance_to_edges`).
    """

    def __init__(self, polylines: list[Tensor], frame: tuple[Tensor, float] | None = None):
        polylines = [p.to(torch.float64) for p in polylines if p.shape[0] >= 2]
        if not polylines:
            raise ValueError("the scene has no road edges (needed for distance to road edge / off-road)")
        max_len = max(p.shape[0] for p in polylines)
        start, vec, prev_vec, next_vec, has_prev, has_next = [], [], [], [], [], []
        for p in polylines:
            n = p.shape[0] - 1
            seg = p[1:, :2] - p[:-1, :2]  # [n, 2]
            cyclic = bool(((p[0] - p[-1]) ** 2).sum() < CYCLIC_TOLERANCE_M2)
            full = p.shape[0] == max_len
            prev = torch.cat([seg[-1:] if (cyclic and full) else seg[:1], seg[:-1]])
            nxt = torch.cat([seg[1:], seg[:1] if (cyclic and full) else seg[-1:]])
            hp = torch.ones(n, dtype=torch.bool)
            hn = torch.ones(n, dtype=torch.bool)
            if not full:  # neighbours of the ends are padding (invalid) in the official tensor
                hp[0] = not cyclic
                hn[-1] = False
            start.append(p[:-1, :3])
            vec.append(p[1:, :3] - p[:-1, :3])
            prev_vec.append(prev)
            next_vec.append(nxt)
            has_prev.append(hp)
            has_next.append(hn)
        self.start = torch.cat(start)  # [M, 3]
        self.vec = torch.cat(vec)  # [M, 3]
        self.prev_vec = torch.cat(prev_vec)  # [M, 2]
        self.next_vec = torch.cat(next_vec)  # [M, 2]
        self.has_prev = torch.cat(has_prev)  # [M]
        self.has_next = torch.cat(has_next)  # [M]
        self.frame = frame
        if frame is not None:
            self.start32 = _world32(self.start, frame)  # [M, 3] float32 world
            self.vec32 = _world32(self.start + self.vec, frame) - self.start32  # end32 − start32, as official

    def __len__(self) -> int:
        return int(self.start.shape[0])


def _world32(p: Tensor, frame: tuple[Tensor, float]) -> Tensor:
    """Scene-frame points ``[..., 3]`` (z is world already) as float32 world coordinates."""
    origin, h = frame
    c, s = math.cos(h), math.sin(h)
    x = c * p[..., 0] - s * p[..., 1] + float(origin[0])
    y = s * p[..., 0] + c * p[..., 1] + float(origin[1])
    return torch.stack([x, y, p[..., 2]], dim=-1).to(torch.float32)


def box_bottom_corners32(xy: Tensor, z: Tensor, heading: Tensor, length: Tensor, width: Tensor, height: Tensor,
                         frame: tuple[Tensor, float]) -> Tensor:
    """Bottom corners ``[..., 4, 3]`` float32 in the world frame, computed as the official
    ``box_utils.get_upright_3d_box_corners`` does from float32 world states (float32 rotation and
    sums); bit-equal to it for ~99.85 % of random boxes (the rest differ by one ulp). Scene-frame
    float64 inputs ``xy [..., 2]``, ``z/heading/sizes [...]``."""
    centre = _world32(torch.cat([xy, z[..., None]], dim=-1), frame)  # [..., 3]
    yaw = wrap_angle(heading + frame[1]).to(torch.float32)
    co, si = torch.cos(yaw.double()).float(), torch.sin(yaw.double()).float()
    l2, w2, h2 = (length.to(torch.float32) * 0.5), (width.to(torch.float32) * 0.5), (height.to(torch.float32) * 0.5)
    sx = torch.tensor([1.0, -1.0, -1.0, 1.0])
    sy = torch.tensor([1.0, 1.0, -1.0, -1.0])
    lx, ly = l2[..., None] * sx, w2[..., None] * sy  # [..., 4]
    cx = (co[..., None] * lx + (-1.0 * si)[..., None] * ly) + centre[..., 0:1]
    cy = (si[..., None] * lx + co[..., None] * ly) + centre[..., 1:2]
    cz = (-h2 + centre[..., 2])[..., None].expand_as(cx)
    return torch.stack([cx, cy, cz], dim=-1)


def signed_distance_to_edges(points: Tensor, edges: EdgeSegments, group: int = 2048,
                             points32: Tensor | None = None) -> Tensor:
    """Signed 2D distance ``[Q]`` of ``points [Q, 3]`` to the road-edge boundary (positive off-road).

    The segment is chosen by the z-stretched 3D distance. Candidate segments are pruned per group of
    nearby points: a segment can win only if its z-stretched gap to the group's bounding box is below
    the worst best-distance against a small seed set (exact: the pruning never drops the winner).
    The search runs as compiled loops (:func:`edge_kernels.signed_distances`).

    Near-ties (segments within :data:`EDGE_TIE_TOLERANCE` of the nearest) are decided as the
    official code decides them when ``points32 [Q, 3]`` (the official float32 world points, see
    :func:`box_bottom_corners32`) and ``edges.frame`` are given: by the float32 world-frame distance,
    the first segment in map order on equal values. Such ties are common where two road-edge
    polylines meet (both end segments are equally near to the shared vertex) and on symmetric
    roads; the two choices can have opposite signs.
    """
    groups = _spatial_groups(points * torch.tensor([1.0, 1.0, Z_STRETCH], dtype=torch.float64), group)
    order = torch.cat(groups).numpy() if groups else np.zeros(0, np.int64)
    group_starts = np.cumsum([0] + [len(g) for g in groups]).astype(np.int64)
    official = points32 is not None and edges.frame is not None
    empty32 = np.zeros((0, 3), np.float32)
    c64 = lambda t: np.ascontiguousarray(t.numpy(), dtype=np.float64)  # noqa: E731
    out = np.empty(points.shape[0])
    end = edges.start + edges.vec
    kernels.signed_distances(
        c64(points), order, group_starts, c64(torch.minimum(edges.start, end)), c64(torch.maximum(edges.start, end)),
        c64(edges.start), c64(edges.vec), c64(edges.prev_vec), c64(edges.next_vec), edges.has_prev.numpy(),
        edges.has_next.numpy(), Z_STRETCH, official,
        np.ascontiguousarray(points32.numpy(), dtype=np.float32) if official else empty32,
        np.ascontiguousarray(edges.start32.numpy()) if official else empty32,
        np.ascontiguousarray(edges.vec32.numpy()) if official else empty32, EDGE_TIE_TOLERANCE, out)
    return torch.from_numpy(out)


def _spatial_groups(pts: Tensor, max_size: int, cell: float = 16.0) -> list[Tensor]:
    """Indices of ``pts [Q, D]`` grouped by cubic cells (groups split at ``max_size``), so each
    group's bounding box stays small and the candidate pruning stays tight."""
    if pts.shape[0] == 0:
        return []
    key = torch.floor(pts / cell).to(torch.int64)
    key = key - key.amin(0)
    flat = torch.zeros(pts.shape[0], dtype=torch.int64)
    for d in range(pts.shape[1]):
        flat = flat * (int(key[:, d].max()) + 1) + key[:, d]
    order = torch.argsort(flat, stable=True)
    _, counts = torch.unique_consecutive(flat[order], return_counts=True)
    groups = []
    for chunk in torch.split(order, counts.tolist()):
        groups.extend(torch.split(chunk, max_size))
    return groups


def distance_to_road_edge(
    xy: Tensor, z: Tensor, heading: Tensor, length: Tensor, width: Tensor, height: Tensor,
    valid: Tensor, edges: EdgeSegments,
) -> Tensor:
    """Signed distance ``[N, E, T]`` of the evaluated boxes' worst corner to the road edge.

    ``xy [N, E, T, 2]``, ``z/heading [N, E, T]``, sizes/valid ``[E, T]``. Invalid → −1e10.
    With ``edges.frame`` near-tied segments are chosen as the official code does (float32 world).
    """
    corners = box_corners(xy, heading, length.expand_as(heading), width.expand_as(heading))  # [N, E, T, 4, 2]
    cz = (z - height / 2)[..., None].expand(corners.shape[:-1])  # bottom corners
    pts = torch.cat([corners, cz[..., None]], dim=-1)  # [N, E, T, 4, 3]
    keep = valid[None].expand(heading.shape)  # invalid states are −1e10 anyway: skip them
    pts32 = None
    if edges.frame is not None:
        pts32 = box_bottom_corners32(xy[keep], z[keep], heading[keep], length.expand_as(heading)[keep],
                                     width.expand_as(heading)[keep], height.expand_as(heading)[keep],
                                     edges.frame).reshape(-1, 3)
    d = torch.full(heading.shape + (4,), -HUGE, dtype=torch.float64)
    d[keep] = signed_distance_to_edges(pts[keep].reshape(-1, 3), edges, points32=pts32).reshape(-1, 4)
    return d.amax(-1)


# ---- traffic lights ----------------------------------------------------------------------------


class LaneSegments:
    """Surface-street lane polylines flattened into segments, with their lane ids."""

    def __init__(self, polylines: list[Tensor], lane_ids: list[int]):
        keep = [(p.to(torch.float64)[:, :2], i) for p, i in zip(polylines, lane_ids) if p.shape[0] >= 2]
        self.lane_ids = torch.tensor([i for _, i in keep], dtype=torch.int64)  # [L]
        self.polylines = [p for p, _ in keep]
        self.start = torch.cat([p[:-1] for p in self.polylines]) if keep else torch.zeros(0, 2, dtype=torch.float64)
        self.vec = torch.cat([p[1:] - p[:-1] for p in self.polylines]) if keep else torch.zeros(0, 2, dtype=torch.float64)
        self.owner = torch.cat([torch.full((p.shape[0] - 1,), j) for j, (p, _) in enumerate(keep)]) if keep else torch.zeros(0, dtype=torch.int64)

    def __len__(self) -> int:
        return int(self.start.shape[0])


def _nearest_by_lane_score(p: Tensor, start: Tensor, vec: Tensor, cand: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """For points ``p [Q, 2]``: the segment (index into ``cand``, default all of ``start``/``vec``
    ``[L, 2]``) of least official lane score |(p − s) + t·(e − s)| (t the clipped projection; first
    minimum) and that score.

    Note the *plus*: this is not the point-segment distance, but it is what the official
    traffic-light feature ranks lanes by, so it is reproduced as is.
    """
    cand = torch.arange(start.shape[0]) if cand is None else cand
    best, score = np.empty(p.shape[0], np.int64), np.empty(p.shape[0])
    kernels.nearest_lanes(np.ascontiguousarray(p.numpy(), dtype=np.float64), np.ascontiguousarray(start.numpy()),
                          np.ascontiguousarray(vec.numpy()), np.ascontiguousarray(cand.numpy()), best, score)
    return torch.from_numpy(best), torch.from_numpy(score)


def nearest_lane(points: Tensor, lanes: LaneSegments, group: int = 2048) -> Tensor:
    """Index into ``lanes.lane_ids`` of the lane ranked nearest to each of ``points [Q, 2]``.

    Pruned per group like :func:`signed_distance_to_edges`, with the lower bound
    score ≥ |p − s| − |e − s| (triangle inequality), so the winner is never dropped.
    """
    out = torch.empty(points.shape[0], dtype=torch.int64)
    seg_len = lanes.vec.norm(dim=-1)
    for gi in _spatial_groups(points[:, :2], group):
        p = points[gi]
        lo, hi = p.amin(0), p.amax(0)
        gap = (torch.clamp(lanes.start - hi, min=0) ** 2 + torch.clamp(lo - lanes.start, min=0) ** 2).sum(-1).sqrt()
        lower = gap - seg_len
        seeds = lower.topk(min(16, len(lanes)), largest=False).indices
        _, score = _nearest_by_lane_score(p, lanes.start, lanes.vec, seeds)
        cand = (lower <= float(score.max())).nonzero()[:, 0]  # flat order kept: ties resolve to the lowest index
        best, _ = _nearest_by_lane_score(p, lanes.start, lanes.vec, cand)
        out[gi] = lanes.owner[cand[best]]
    return out


def red_light_violation(
    xy: Tensor, valid: Tensor, lanes: LaneSegments, signal_lane: Tensor, signal_state: Tensor, signal_stop: Tensor,
    stop_states: tuple[int, ...] = (1, 4),
) -> Tensor:
    """Per-step red-light violations ``[N, E, T]`` (step 0 never).

    An object violates at step t when its nearest lane (official ranking) carries a signal in a stop
    state (STOP or ARROW_STOP; flashing stop is not) at t, and between t−1 and t its projection on
    the signal's stop segment passes the stop point. ``xy [N, E, T, 2]``, ``valid [E, T]``;
    ``signal_lane [Z]`` lane ids, ``signal_state [T, Z]`` (0 where the lane has no state),
    ``signal_stop [T, Z, 2]`` (where absent: the world origin in scene coordinates, as the
    official tensors hold zeros there).
    """
    N, E, T, _ = xy.shape
    if len(lanes) == 0 or signal_lane.numel() == 0:
        return torch.zeros(N, E, T, dtype=torch.bool)
    keep = valid[None].expand(N, E, T)  # invalid states never violate: skip their lane search
    current_lane = torch.full((N, E, T), -1, dtype=torch.int64)
    current_lane[keep] = lanes.lane_ids[nearest_lane(xy[keep], lanes)]
    Z = signal_lane.shape[0]
    match = lanes.lane_ids[None, :] == signal_lane[:, None]  # [Z, L]
    lane_valid = match.any(1)  # [Z]
    lane_index = match.to(torch.int64).argmax(1)  # [Z]
    seg_a = torch.zeros(T, Z, 2, dtype=torch.float64)
    seg_b = torch.zeros(T, Z, 2, dtype=torch.float64)
    for z in range(Z):
        poly = lanes.polylines[int(lane_index[z])]  # [P, 2]
        s, v = poly[:-1], poly[1:] - poly[:-1]
        k, _ = _nearest_by_lane_score(signal_stop[:, z], s, v)  # [T]
        seg_a[:, z], seg_b[:, z] = s[k], s[k] + v[k]
    seg = seg_b - seg_a  # [T, Z, 2]
    den = (seg**2).sum(-1)
    def proj(q: Tensor) -> Tensor:
        num = ((q - seg_a) * seg).sum(-1)
        return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))

    stop_t = proj(signal_stop)  # [T, Z]
    obj_t = proj(xy[..., None, :])  # [N, E, T, Z]
    behind = obj_t < stop_t
    ahead = obj_t > stop_t
    crossed = torch.zeros_like(behind)
    crossed[:, :, 1:] = behind[:, :, :-1] & ahead[:, :, 1:]
    is_stop = torch.zeros_like(signal_state, dtype=torch.bool)
    for st in stop_states:
        is_stop |= signal_state == st
    hit = (current_lane[..., None] == signal_lane) & is_stop & lane_valid & crossed & valid[None, :, :, None]
    return hit.any(-1)
