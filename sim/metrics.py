"""Closed-loop metrics of rollouts: per agent and rollout, then per scenario and per dataset.

All functions are pure and vectorised over rollouts R, agents A and steps T.

* **collision**: two valid oriented boxes overlap (separating-axis test over the 4 edge
  normals; touching boxes do not collide).
* **off-road** (vehicles only: pedestrians and cyclists use sidewalks): a box corner is
  off-road when it lies farther than ``lane_half_width`` from every lane centre line, i.e. outside
  the union of lane corridors, on the mapped area: corners beyond the end of a lane without
  successors (or before the start of one without predecessors), or farther than ``map_margin``
  from every map point, are past the map's edge (a crop, where nothing is known about the road)
  and are not counted. Road edges are not used as
  boundaries (their side of the road is not recorded consistently); parking lots without lanes
  therefore count as off-road, in the log too.
* **kinematic infeasibility** (vehicles and cyclists): speed, acceleration, jerk or yaw rate from
  finite differences of the simulated poses exceed the bounds of :class:`MetricsConfig`.
* **red-light violation**: the box centre crosses a signal's stop point, moving along the
  controlled lane (within ``stop_line_half_width`` laterally), while the signal is STOP or ARROW_STOP.
* **progress**: arc length reached along the agent's own logged path (projection of the final
  simulated position), and its ratio to the logged path length (agents moving > 5 m in the log).
* **ADE/FDE**: distance to the logged position over simulated steps where both exist.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from drope.data.scene import Scene
from drope.data.types import MapType, ObjectType, SignalState
from drope.geometry import box_corners
from drope.sim.rollout import Rollouts
from drope.sim.state import wrap

Tensor = torch.Tensor
STOP_STATES = (int(SignalState.LANE_STATE_STOP), int(SignalState.LANE_STATE_ARROW_STOP))


@dataclass(frozen=True)
class MetricsConfig:
    lane_half_width: float = 2.2  # m, lane corridor half width of the drivable area
    map_margin: float = 10.0  # m: corners farther than this from every map point are off the map, not off-road
    max_accel: float = 6.0  # m/s², forward
    max_decel: float = 10.0  # m/s², braking
    max_jerk: float = 30.0  # m/s³
    window: int = 5  # steps over which speed/acceleration/jerk/yaw rate are differenced
    max_yaw_rate: float = 1.5  # rad/s at speeds above min_speed_yaw
    min_speed_yaw: float = 1.0  # m/s, yaw rate is unconstrained when (nearly) standing
    max_speed: float = 45.0  # m/s
    stop_line_half_width: float = 2.0  # m
    min_progress_path: float = 5.0  # m, logged paths shorter than this have no progress ratio


# ---- geometry -----------------------------------------------------------------------------------
# one separating-axis test for the whole project (positive-area overlap of [..., 4, 2] corners)
from drope.metrics.boxes import boxes_overlap  # noqa: E402  (re-exported for sim callers)


def collision_steps(xy: Tensor, heading: Tensor, size: Tensor, valid: Tensor, chunk: int = 8) -> Tensor:
    """``[R, A, T]`` bool: agent overlaps at least one other valid agent at that step.

    Pairs farther apart than the sum of their half diagonals are skipped (exact prefilter);
    steps are processed in chunks to bound memory (pairs × 4 axes × 8 projections).
    """
    R, A, T = valid.shape
    out = torch.zeros(R, A, T, dtype=torch.bool)
    if A < 2:
        return out
    length = size[:, 0].clamp_min(0.1)[None, :, None].expand(R, A, T)
    width = size[:, 1].clamp_min(0.1)[None, :, None].expand(R, A, T)
    corners = box_corners(xy, heading, length, width)  # [R, A, T, 4, 2]
    radius = 0.5 * torch.hypot(size[:, 0], size[:, 1])  # [A]
    eye = torch.eye(A, dtype=torch.bool)
    for t0 in range(0, T, chunk):
        sl = slice(t0, min(T, t0 + chunk))
        p = xy[:, :, sl].permute(0, 2, 1, 3)  # [R, t, A, 2]
        v = valid[:, :, sl].permute(0, 2, 1)  # [R, t, A]
        near = (p[:, :, :, None] - p[:, :, None]).norm(dim=-1) < (radius[:, None] + radius[None])  # [R, t, A, A]
        cand = near & v[..., :, None] & v[..., None, :] & ~eye
        r, tt, i, j = cand.nonzero(as_tuple=True)
        if r.numel() == 0:
            continue
        c = corners[:, :, sl]  # [R, A, t, 4, 2]
        hit = boxes_overlap(c[r, i, tt], c[r, j, tt])
        out[r[hit], i[hit], tt[hit] + t0] = True
    return out


def lane_segments(scene: Scene, max_len: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lane centre-line segments ``(start [G, 2], end [G, 2], dead_end [G], dead_start [G])``,
    float64, split to at most ``max_len``. ``dead_end`` marks the last piece of a lane without
    successors, ``dead_start`` the first piece of one without predecessors (the map's edges)."""
    from drope.sim.traffic import LaneGraph

    pts = scene.map_points[:, :2].double().numpy()
    off = scene.map_offsets.tolist()
    lanes = (scene.map_type == int(MapType.lane)).nonzero(as_tuple=True)[0].tolist()
    if not lanes:
        z = np.zeros((0, 2))
        return z, z, np.zeros(0, bool), np.zeros(0, bool)
    graph = LaneGraph.from_scene(scene)  # same lane order (map order)
    starts, ends, dead_end, dead_start = [], [], [], []
    for li, f in enumerate(lanes):
        p = pts[off[f] : off[f + 1]]
        if len(p) == 1:
            p = np.concatenate([p, p])
        seg_len = np.linalg.norm(np.diff(p, axis=0), axis=1)
        n = np.maximum(1, np.ceil(seg_len / max_len)).astype(int)  # pieces per segment
        k = np.repeat(np.arange(len(p) - 1), n)
        frac0 = np.concatenate([np.arange(m) / m for m in n])
        frac1 = np.concatenate([np.arange(1, m + 1) / m for m in n])
        a, b = p[k], p[k + 1]
        starts.append(a + (b - a) * frac0[:, None])
        ends.append(a + (b - a) * frac1[:, None])
        e, s0 = np.zeros(len(k), bool), np.zeros(len(k), bool)
        e[-1], s0[0] = not graph.successors[li], not graph.predecessors[li]
        dead_end.append(e)
        dead_start.append(s0)
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(dead_end), np.concatenate(dead_start)


class LaneDistance:
    """Distance from points to the nearest lane centre line (exact segment distance over the
    ``k`` segments nearest by midpoint; segments are ≤ 1 m, so the nearest one is always among them)."""

    def __init__(self, scene: Scene, k: int = 32) -> None:
        from scipy.spatial import cKDTree

        self.a, self.b, self.dead_end, self.dead_start = lane_segments(scene)
        self.k = min(k, len(self.a))
        self.tree = cKDTree((self.a + self.b) / 2) if len(self.a) else None
        pts = scene.map_points[:, :2].double().numpy()
        self.map_tree = cKDTree(pts) if len(pts) else None

    def to_map(self, xy: np.ndarray) -> np.ndarray:
        """Distance from points ``[N, 2]`` to the nearest map point of any feature type."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        if self.map_tree is None:
            return np.full(len(xy), np.inf)
        return self.map_tree.query(xy)[0]

    def query(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(distance [N], past_map_edge [N])``: the nearest lane piece is a dead end (start) and the
        point lies beyond its end (before its start), i.e. where the map's lanes stop."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        if self.tree is None:
            return np.full(len(xy), np.inf), np.zeros(len(xy), bool)
        _, idx = self.tree.query(xy, k=self.k)
        idx = np.asarray(idx).reshape(len(xy), self.k)
        a, d = self.a[idx], self.b[idx] - self.a[idx]  # [N, k, 2]
        rel = xy[:, None] - a
        t_raw = (rel * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-12)
        t = np.clip(t_raw, 0.0, 1.0)
        dist = np.linalg.norm(rel - t[..., None] * d, axis=-1)  # [N, k]
        j = dist.argmin(1)
        n = np.arange(len(xy))
        g, tj = idx[n, j], t_raw[n, j]
        past = (self.dead_end[g] & (tj > 1.0)) | (self.dead_start[g] & (tj < 0.0))
        return dist[n, j], past

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        return self.query(xy)[0]


def offroad_steps(scene: Scene, ro: Rollouts, cfg: MetricsConfig, lane_dist: LaneDistance | None = None) -> Tensor:
    """``[R, A, T]`` bool: a vehicle's box corner lies outside every lane corridor (on the mapped area)."""
    R, A, T = ro.valid.shape
    out = torch.zeros(R, A, T, dtype=torch.bool)
    veh = (ro.type == int(ObjectType.TYPE_VEHICLE))[None, :, None] & ro.valid  # [R, A, T]
    if not bool(veh.any()):
        return out
    lane_dist = lane_dist or LaneDistance(scene)
    r, a, t = veh.nonzero(as_tuple=True)
    c = box_corners(ro.xy[r, a, t], ro.heading[r, a, t], ro.size[a, 0], ro.size[a, 1])  # [N, 4, 2]
    pts = c.reshape(-1, 2).double().numpy()
    dist, past_edge = lane_dist.query(pts)
    off = (dist > cfg.lane_half_width) & ~past_edge & (lane_dist.to_map(pts) <= cfg.map_margin)
    out[r, a, t] = torch.from_numpy(off.reshape(-1, 4).any(1))
    return out


# ---- kinematics -----------------------------------------------------------------------------------
def _full_windows(v: Tensor, w: int) -> Tensor:
    """``[..., T]`` bool: steps t-w..t are all valid (False for t < w)."""
    cs = torch.cumsum(v.to(torch.int32), dim=-1)
    out = torch.zeros_like(v)
    prev = torch.cat([torch.zeros_like(cs[..., :1]), cs[..., : -w - 1]], dim=-1) if v.shape[-1] > w else None
    if prev is not None:
        out[..., w:] = (cs[..., w:] - prev) == w + 1
    return out


def _diff(x: Tensor, w: int, dt: float) -> Tensor:
    """Backward difference over ``w`` steps along the last axis (zero-padded on the left to keep T)."""
    d = torch.zeros_like(x)
    d[..., w:] = (x[..., w:] - x[..., :-w]) / (w * dt)
    return d


def infeasible_steps(ro: Rollouts, cfg: MetricsConfig) -> Tensor:
    """``[R, A, T]`` bool: a kinematic bound is exceeded (vehicles and cyclists).

    Speeds, accelerations and jerks are differences over ``cfg.window`` steps (only windows in
    which every step is valid): logged positions jitter by centimetres, which one-step differences
    at 10 Hz turn into 10-30 m/s² "accelerations" even for parked cars (measured on the WOMD sample).
    """
    xy, h, v, dt, w = ro.xy, ro.heading, ro.valid, ro.dt, cfg.window
    R, A, T = v.shape
    if T <= w:
        return torch.zeros(R, A, T, dtype=torch.bool)
    ok1, ok2, ok3 = _full_windows(v, w), _full_windows(v, 2 * w), _full_windows(v, 3 * w)
    speed = torch.zeros(R, A, T)
    speed[..., w:] = (xy[..., w:, :] - xy[..., :-w, :]).norm(dim=-1) / (w * dt)  # [R, A, T]
    unwrapped = torch.cumsum(torch.cat([torch.zeros(R, A, 1), wrap(h[..., 1:] - h[..., :-1])], -1), -1)
    yaw = _diff(unwrapped, w, dt)
    acc = _diff(speed, w, dt)
    jerk = _diff(acc, w, dt)
    bad = ok1 & ((speed > cfg.max_speed) | ((yaw.abs() > cfg.max_yaw_rate) & (speed > cfg.min_speed_yaw)))
    bad |= ok2 & ((acc > cfg.max_accel) | (acc < -cfg.max_decel))
    bad |= ok3 & (jerk.abs() > cfg.max_jerk)
    kinds = torch.tensor([int(ObjectType.TYPE_VEHICLE), int(ObjectType.TYPE_CYCLIST)])
    return bad & torch.isin(ro.type, kinds)[None, :, None]  # pedestrian headings are too noisy to bound


# ---- traffic lights ---------------------------------------------------------------------------------
def _lane_direction_at(scene: Scene, lane_id: int, point: np.ndarray) -> np.ndarray | None:
    f = (scene.map_id == lane_id).nonzero(as_tuple=True)[0]
    if f.numel() == 0:
        return None
    p = scene.map_polyline(int(f[0]))[:, :2].double().numpy()
    if len(p) < 2:
        return None
    i = int(np.linalg.norm((p[:-1] + p[1:]) / 2 - point, axis=1).argmin())
    d = p[i + 1] - p[i]
    n = np.linalg.norm(d)
    return d / n if n > 0 else None


def red_light_steps(scene: Scene, ro: Rollouts, cfg: MetricsConfig) -> Tensor:
    """``[R, A, T]`` bool: the agent's centre crossed a STOP signal's stop line between t-1 and t."""
    R, A, T = ro.valid.shape
    out = torch.zeros(R, A, T, dtype=torch.bool)
    T = min(T, scene.num_steps)
    slots = (scene.signal_valid[:T] & torch.isin(scene.signal_state[:T], torch.tensor(STOP_STATES))).nonzero()
    if slots.numel() == 0 or T < 2:
        return out
    directions: dict[tuple, np.ndarray | None] = {}
    for t, s in slots.tolist():
        if t == 0:
            continue
        lane = int(scene.signal_lane_id[t, s])
        stop = scene.signal_stop_point[t, s, :2].double().numpy()
        key = (lane, round(float(stop[0]), 2), round(float(stop[1]), 2))
        if key not in directions:
            directions[key] = _lane_direction_at(scene, lane, stop)
        d = directions[key]
        if d is None:
            continue
        dirv = torch.tensor(d, dtype=torch.float32)
        rel0 = ro.xy[:, :, t - 1] - torch.tensor(stop, dtype=torch.float32)  # [R, A, 2]
        rel1 = ro.xy[:, :, t] - torch.tensor(stop, dtype=torch.float32)
        a0, a1 = rel0 @ dirv, rel1 @ dirv
        lat = (rel1[..., 0] * dirv[1] - rel1[..., 1] * dirv[0]).abs()
        crossed = (a0 < 0) & (a1 >= 0) & (lat < cfg.stop_line_half_width) & ro.valid[:, :, t] & ro.valid[:, :, t - 1]
        out[:, :, t] |= crossed
    return out


# ---- log comparison --------------------------------------------------------------------------------
def displacement(scene: Scene, ro: Rollouts) -> tuple[Tensor, Tensor]:
    """ADE and FDE ``[R, A]`` to the log over simulated steps (NaN where never both valid)."""
    T = ro.xy.shape[2]
    sim = slice(ro.start + 1, T)
    both = ro.valid[:, :, sim] & scene.agent_valid[None, :, sim]  # [R, A, T']
    d = (ro.xy[:, :, sim] - scene.agent_pos[None, :, sim]).norm(dim=-1)
    n = both.sum(-1)
    ade = torch.where(n > 0, (d * both).sum(-1) / n.clamp_min(1), torch.nan)
    last = torch.where(both, torch.arange(both.shape[-1]), -1).amax(-1)  # [R, A]
    fde = torch.where(last >= 0, d.gather(-1, last.clamp_min(0)[..., None])[..., 0], torch.nan)
    return ade, fde


def progress(scene: Scene, ro: Rollouts, cfg: MetricsConfig) -> tuple[Tensor, Tensor]:
    """Arc length reached along the logged path from the start step ``[R, A]`` (m) and its ratio to the
    logged path length (NaN for paths shorter than ``min_progress_path``)."""
    R, A, T = ro.valid.shape
    prog = torch.full((R, A), torch.nan)
    ratio = torch.full((R, A), torch.nan)
    last_sim = torch.where(ro.valid, torch.arange(T), -1).amax(-1)  # [R, A]
    for a in range(A):
        steps = scene.agent_valid[a, ro.start : T].nonzero(as_tuple=True)[0] + ro.start
        if steps.numel() < 2 or not bool(scene.agent_valid[a, ro.start]):
            continue
        path = scene.agent_pos[a, steps].double()  # [n, 2]
        seg = path[1:] - path[:-1]
        L = seg.norm(dim=-1)
        s0 = torch.cat([torch.zeros(1, dtype=torch.float64), L.cumsum(0)])  # [n]
        for r in range(R):
            if last_sim[r, a] < 0:
                continue
            q = ro.xy[r, a, last_sim[r, a]].double()
            t = (((q - path[:-1]) * seg).sum(-1) / (L * L).clamp_min(1e-12)).clamp(0, 1)
            dist = (path[:-1] + t[:, None] * seg - q).norm(dim=-1)
            j = int(dist.argmin())
            prog[r, a] = float(s0[j] + t[j] * L[j])
            if float(s0[-1]) >= cfg.min_progress_path:
                ratio[r, a] = prog[r, a] / float(s0[-1])
    return prog, ratio


# ---- aggregation --------------------------------------------------------------------------------
EVENT_METRICS = ("collision", "offroad", "kinematic_infeasibility", "red_light_violation")


@dataclass(frozen=True)
class AgentMetrics:
    """Per rollout and agent ``[R, A]``; ``evaluated [A]`` marks the agents aggregated."""

    collision: Tensor  # bool, any simulated step in collision
    offroad: Tensor  # bool
    kinematic_infeasibility: Tensor  # bool
    red_light_violation: Tensor  # bool
    ade: Tensor  # float m (NaN: no overlap with the log)
    fde: Tensor
    progress: Tensor  # float m along the logged path
    progress_ratio: Tensor  # float
    evaluated: Tensor  # [A] bool
    collision_steps: Tensor  # [R, A, T] bool (for animations)
    offroad_steps: Tensor  # [R, A, T] bool


def agent_metrics(scene: Scene, ro: Rollouts, cfg: MetricsConfig = MetricsConfig(),
                  lane_dist: LaneDistance | None = None) -> AgentMetrics:
    sim = torch.zeros(ro.valid.shape[-1], dtype=torch.bool)
    sim[ro.start + 1 :] = True  # events count only at simulated steps
    col = collision_steps(ro.xy, ro.heading, ro.size, ro.valid) & sim
    off = offroad_steps(scene, ro, cfg, lane_dist) & sim
    kin = infeasible_steps(ro, cfg) & sim
    red = red_light_steps(scene, ro, cfg) & sim
    ade, fde = displacement(scene, ro)
    prog, ratio = progress(scene, ro, cfg)
    return AgentMetrics(collision=col.any(-1), offroad=off.any(-1), kinematic_infeasibility=kin.any(-1),
                        red_light_violation=red.any(-1), ade=ade, fde=fde, progress=prog, progress_ratio=ratio,
                        evaluated=ro.controlled & scene.agent_valid[:, ro.start], collision_steps=col, offroad_steps=off)


def _nanmean(x: Tensor) -> float | None:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else None


def scenario_summary(m: AgentMetrics, scenario_id: str = "") -> dict:
    """Means over rollouts × evaluated agents; sums kept so datasets pool exactly."""
    e = m.evaluated
    out: dict = {"scenario_id": scenario_id, "num_rollouts": int(m.ade.shape[0]), "num_agents": int(e.sum())}
    n = int(e.sum()) * int(m.ade.shape[0])
    for k in EVENT_METRICS:
        count = int(getattr(m, k)[:, e].sum())
        out[f"{k}_count"] = count
        out[f"{k}_rate"] = count / n if n else None
    for k in ("ade", "fde", "progress", "progress_ratio"):
        v = getattr(m, k)[:, e].flatten()
        ok = ~torch.isnan(v)
        out[f"{k}_sum"], out[f"{k}_n"] = float(v[ok].sum()), int(ok.sum())
        out[k] = _nanmean(v)
    return out


def aggregate(entries: list[dict]) -> dict:
    """Dataset aggregate pooled over all (rollout, evaluated agent) pairs of all scenarios."""
    n = sum(e["num_agents"] * e["num_rollouts"] for e in entries)
    out: dict = {"num_scenarios": len(entries), "num_rollouts": sum(e["num_rollouts"] for e in entries),
                 "num_agent_rollouts": n}
    for k in EVENT_METRICS:
        out[f"{k}_rate"] = sum(e[f"{k}_count"] for e in entries) / n if n else None
    for k in ("ade", "fde", "progress", "progress_ratio"):
        cnt = sum(e[f"{k}_n"] for e in entries)
        out[k] = sum(e[f"{k}_sum"] for e in entries) / cnt if cnt else None
    return out


def config_dict(cfg: MetricsConfig) -> dict:
    return asdict(cfg)
