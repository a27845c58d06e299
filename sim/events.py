"""Closed-loop metrics of rollouts: per agent and rollout, then per scenario and per dataset.

All functions are pure and vectorised over rollouts R, agents A and steps T. The four event
metrics are the WOSAC definitions of :mod:`drope.metrics.wosac.features` (one implementation
for the project), evaluated per agent and simulated step:

* **collision**: signed distance of the agent's (rounded-corner) box to the nearest other valid
  box < 0 (``distance_to_nearest_object``).
* **off-road** (all types): signed distance of the box's worst corner to the road edge > 0
  (``distance_to_road_edge``); scenes without road edges have none.
* **red-light violation**: the WOSAC rule (``red_light_violation``): the nearest surface-street lane
  carries a STOP/ARROW_STOP signal and the agent passes the stop point between t-1 and t (both valid).
* **kinematic infeasibility** (vehicles and cyclists): WOSAC has no such rule; this is Waymax's
  ``KinematicsInfeasibilityMetric`` (``waymax/metrics/comfort.py`` with the inverse of its
  ``InvertibleBicycleModel``, ``waymax/dynamics/bicycle_model.compute_inverse``): for each transition
  t−1 → t the acceleration (change of the speed |v|) and the steering curvature (heading at t−1 to
  the direction of v at t, over the distance travelled) exceed 10.4 m/s² or 0.3 1/m (+ 1e-3). The
  velocities are the trajectories' own (the log's recorded ones; the simulated states'), so the
  centimetre jitter of logged positions does not enter.

Each event is evaluated on the rollouts and on the log (same agents and steps, where the log is
valid); summaries report ``X_rate``, ``log_X_rate``, ``excess_X_rate`` (in simulation, not in the
log) and a ``by_type`` breakdown. The old lane-corridor rule survives as :func:`lane_departure_steps`
(not an event metric).

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
from drope.geometry import box_corners, wrap_angle
from drope.sim.rollout import Rollouts
from drope.metrics.wosac import features as WF
from drope.metrics.wosac.scoring import SceneMap, scene_map

Tensor = torch.Tensor
STOP_STATES = (int(SignalState.LANE_STATE_STOP), int(SignalState.LANE_STATE_ARROW_STOP))


@dataclass(frozen=True)
class MetricsConfig:
    lane_half_width: float = 2.2  # m, lane corridor half width of the drivable area
    map_margin: float = 10.0  # m: corners farther than this from every map point are off the map, not off-road
    max_accel: float = 10.4  # m/s², |change of speed| (Waymax KinematicsInfeasibilityMetric)
    max_curvature: float = 0.3  # 1/m, |steering curvature| (Waymax)
    min_steer_speed: float = 0.6  # m/s: below it at either end the curvature is 0 (Waymax _SPEED_LIMIT)
    min_progress_path: float = 5.0  # m, logged paths shorter than this have no progress ratio


def collision_steps(xy: Tensor, heading: Tensor, size: Tensor, valid: Tensor, chunk: int = 8) -> Tensor:
    """``[R, A, T]`` bool: WOSAC collision, the signed distance of the agent's (rounded) box to the
    nearest other valid box is < 0 (:func:`drope.metrics.wosac.features.distance_to_nearest_object`).
    ``chunk`` is kept for callers; unused."""
    R, A, T = valid.shape
    out = torch.zeros(R, A, T, dtype=torch.bool)
    if A < 2:
        return out
    length = size[:, 0].double()[:, None].expand(A, T)
    width = size[:, 1].double()[:, None].expand(A, T)
    for r in range(R):
        d = WF.distance_to_nearest_object(xy[r : r + 1].double(), heading[r : r + 1].double(), length, width, valid[r], A)
        out[r] = (d[0] < 0.0) & valid[r]
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


def lane_departure_steps(scene: Scene, ro: Rollouts, cfg: MetricsConfig, lane_dist: LaneDistance | None = None) -> Tensor:
    """``[R, A, T]`` bool: a vehicle's box corner lies outside every lane corridor (on the mapped area).
    Not the off-road metric (that is :func:`offroad_steps`, the WOSAC road-edge rule)."""
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


def _agent_z(scene: Scene, ro: Rollouts) -> Tensor:
    """``[A, T]`` float64 box-centre elevation: the log's where valid, else the start step's."""
    T = ro.valid.shape[-1]
    z = scene.agent_z[:, :T].double()
    return torch.where(scene.agent_valid[:, :T], z, z[:, ro.start : ro.start + 1])


def offroad_steps(scene: Scene, ro: Rollouts, cfg: MetricsConfig, wmap: SceneMap | None = None) -> Tensor:
    """``[R, A, T]`` bool: WOSAC off-road, signed distance of the box's worst corner to the road
    edge > 0 (:func:`drope.metrics.wosac.features.distance_to_road_edge`); all agent types.
    Scenes without road edges have no off-road events."""
    R, A, T = ro.valid.shape
    out = torch.zeros(R, A, T, dtype=torch.bool)
    wmap = wmap or scene_map(scene)
    if wmap.edges is None or not bool(ro.valid.any()):
        return out
    z = _agent_z(scene, ro)
    size = ro.size.double()
    length, width = size[:, 0, None].expand(A, T), size[:, 1, None].expand(A, T)
    height = (size[:, 2, None] if size.shape[1] > 2 else torch.zeros(A, 1, dtype=torch.float64)).expand(A, T)
    for r in range(R):
        d = WF.distance_to_road_edge(ro.xy[r : r + 1].double(), z[None], ro.heading[r : r + 1].double(), length,
                                     width, height, ro.valid[r], wmap.edges)
        out[r] = (d[0] > 0.0) & ro.valid[r]
    return out


# ---- kinematics -----------------------------------------------------------------------------------
KIM_EPSILON = 1e-3  # Waymax's margin on both bounds


def kinematic_actions(xy: Tensor, heading: Tensor, vel: Tensor, valid: Tensor, dt: float,
                      min_steer_speed: float = 0.6) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse bicycle model of Waymax (``bicycle_model.compute_inverse``, yaw estimated from the
    velocity): acceleration and steering curvature of the transition into each step ``[..., T]``
    (step 0: none), and their validity (both ends valid). ``xy`` is unused by the rule (Waymax reads
    the velocities and headings only) and kept for the shapes."""
    speed = vel.double().norm(dim=-1)  # [..., T]
    h = heading.double()
    accel = torch.zeros_like(speed)
    steer = torch.zeros_like(speed)
    accel[..., 1:] = (speed[..., 1:] - speed[..., :-1]) / dt
    vel_yaw = torch.atan2(vel[..., 1:, 1].double(), vel[..., 1:, 0].double())
    new_yaw = torch.where(speed[..., 1:] <= min_steer_speed, h[..., 1:], vel_yaw)
    dyaw = wrap_angle(new_yaw - h[..., :-1])
    travel = speed[..., :-1] * dt + 0.5 * accel[..., 1:] * dt**2
    moving = (speed[..., :-1] >= min_steer_speed) & (speed[..., 1:] >= min_steer_speed)
    steer[..., 1:] = torch.where(moving, dyaw / torch.where(moving, travel, torch.ones_like(travel)), 0.0)
    ok = torch.zeros_like(valid)
    ok[..., 1:] = valid[..., 1:] & valid[..., :-1]
    return accel, steer, ok


def infeasible_steps(ro: Rollouts, cfg: MetricsConfig) -> Tensor:
    """``[R, A, T]`` bool: the transition into step t is kinematically infeasible (vehicles and
    cyclists; a bicycle model does not describe pedestrians): |acceleration| > ``max_accel`` or
    |steering curvature| > ``max_curvature`` (each + 1e-3), on :func:`kinematic_actions`."""
    accel, steer, ok = kinematic_actions(ro.xy, ro.heading, ro.vel, ro.valid, ro.dt, cfg.min_steer_speed)
    bad = ok & ((accel.abs() > cfg.max_accel + KIM_EPSILON) | (steer.abs() > cfg.max_curvature + KIM_EPSILON))
    kinds = torch.tensor([int(ObjectType.TYPE_VEHICLE), int(ObjectType.TYPE_CYCLIST)])
    return bad & torch.isin(ro.type, kinds)[None, :, None]


# ---- traffic lights ---------------------------------------------------------------------------------
def red_light_steps(scene: Scene, ro: Rollouts, cfg: MetricsConfig, wmap: SceneMap | None = None) -> Tensor:
    """``[R, A, T]`` bool: WOSAC red-light violation (:func:`drope.metrics.wosac.features.red_light_violation`):
    the agent's nearest surface-street lane has a STOP/ARROW_STOP signal and its projection passes the stop point."""
    R, A, T = ro.valid.shape
    out = torch.zeros(R, A, T, dtype=torch.bool)
    wmap = wmap or scene_map(scene)
    Ts = min(T, scene.num_steps)
    if wmap.signal_lane.numel() == 0 or len(wmap.lanes) == 0 or Ts < 2:
        return out
    for r in range(R):
        out[r, :, :Ts] = WF.red_light_violation(ro.xy[r : r + 1, :, :Ts].double(), ro.valid[r, :, :Ts], wmap.lanes,
                                                wmap.signal_lane, wmap.signal_state[:Ts], wmap.signal_stop[:Ts],
                                                STOP_STATES)[0]
    # a crossing needs a valid previous state (positions at invalid steps are arbitrary)
    out[:, :, 1:] &= ro.valid[:, :, :-1]
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
TYPE_NAMES = {int(ObjectType.TYPE_VEHICLE): "TYPE_VEHICLE", int(ObjectType.TYPE_PEDESTRIAN): "TYPE_PEDESTRIAN",
              int(ObjectType.TYPE_CYCLIST): "TYPE_CYCLIST"}


@dataclass(frozen=True)
class AgentMetrics:
    """Per rollout and agent ``[R, A]``; ``evaluated [A]`` marks the agents aggregated.
    ``log_<event> [A]``: the same event on the logged trajectory (same steps, where the log is valid)."""

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
    log_collision: Tensor | None = None  # [A] bool
    log_offroad: Tensor | None = None
    log_kinematic_infeasibility: Tensor | None = None
    log_red_light_violation: Tensor | None = None
    agent_type: Tensor | None = None  # [A] int64 ObjectType


def event_steps(scene: Scene, ro: Rollouts, cfg: MetricsConfig, wmap: SceneMap | None = None) -> dict[str, Tensor]:
    """Per-step ``[R, A, T]`` WOSAC events at simulated steps (t > ``ro.start``), keyed by :data:`EVENT_METRICS`."""
    wmap = wmap or scene_map(scene)
    sim = torch.zeros(ro.valid.shape[-1], dtype=torch.bool)
    sim[ro.start + 1 :] = True  # events count only at simulated steps
    return {"collision": collision_steps(ro.xy, ro.heading, ro.size, ro.valid) & sim,
            "offroad": offroad_steps(scene, ro, cfg, wmap) & sim,
            "kinematic_infeasibility": infeasible_steps(ro, cfg) & sim,
            "red_light_violation": red_light_steps(scene, ro, cfg, wmap) & sim}


def log_rollouts(scene: Scene, ro: Rollouts) -> Rollouts:
    """The logged trajectory over the rollouts' steps as one rollout (the rollouts' sizes and types)."""
    from dataclasses import replace

    T = ro.valid.shape[-1]
    return replace(ro, xy=scene.agent_pos[None, :, :T].to(ro.xy.dtype), heading=scene.agent_heading[None, :, :T].to(ro.heading.dtype),
                   vel=scene.agent_vel[None, :, :T].to(ro.vel.dtype), valid=scene.agent_valid[None, :, :T].clone())


def agent_metrics(scene: Scene, ro: Rollouts, cfg: MetricsConfig = MetricsConfig(),
                  wmap: SceneMap | None = None) -> AgentMetrics:
    wmap = wmap or scene_map(scene)
    ev = event_steps(scene, ro, cfg, wmap)
    lg = event_steps(scene, log_rollouts(scene, ro), cfg, wmap)
    ade, fde = displacement(scene, ro)
    prog, ratio = progress(scene, ro, cfg)
    return AgentMetrics(**{k: v.any(-1) for k, v in ev.items()}, ade=ade, fde=fde, progress=prog, progress_ratio=ratio,
                        evaluated=ro.controlled & scene.agent_valid[:, ro.start], collision_steps=ev["collision"],
                        offroad_steps=ev["offroad"], **{f"log_{k}": v.any(-1)[0] for k, v in lg.items()},
                        agent_type=ro.type)


def _nanmean(x: Tensor) -> float | None:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else None


def _event_counts(m: AgentMetrics, e: Tensor) -> dict:
    """Counts over rollouts × agents ``e`` (sim, excess) and over agents ``e`` (log), with rates."""
    R, n_log = int(m.ade.shape[0]), int(e.sum())
    n = R * n_log
    out: dict = {}
    for k in EVENT_METRICS:
        sim = getattr(m, k)[:, e]
        log = getattr(m, f"log_{k}")
        log = torch.zeros(sim.shape[1], dtype=torch.bool) if log is None else log[e]
        out[f"{k}_count"] = int(sim.sum())
        out[f"log_{k}_count"] = int(log.sum())
        out[f"excess_{k}_count"] = int((sim & ~log[None]).sum())
        out[f"{k}_rate"] = out[f"{k}_count"] / n if n else None
        out[f"log_{k}_rate"] = out[f"log_{k}_count"] / n_log if n_log else None
        out[f"excess_{k}_rate"] = out[f"excess_{k}_count"] / n if n else None
    return out


def scenario_summary(m: AgentMetrics, scenario_id: str = "") -> dict:
    """Means over rollouts × evaluated agents; sums kept so datasets pool exactly. Event rates:
    ``X_rate`` (simulation), ``log_X_rate`` (the log, per evaluated agent), ``excess_X_rate``
    (event in simulation but not in the log), and the same per agent type under ``by_type``."""
    e = m.evaluated
    out: dict = {"scenario_id": scenario_id, "num_rollouts": int(m.ade.shape[0]), "num_agents": int(e.sum())}
    out.update(_event_counts(m, e))
    types = m.agent_type if m.agent_type is not None else torch.full(e.shape, -1)
    out["by_type"] = {name: {"num_agents": int((e & (types == t)).sum()), **_event_counts(m, e & (types == t))}
                      for t, name in TYPE_NAMES.items()}
    for k in ("ade", "fde", "progress", "progress_ratio"):
        v = getattr(m, k)[:, e].flatten()
        ok = ~torch.isnan(v)
        out[f"{k}_sum"], out[f"{k}_n"] = float(v[ok].sum()), int(ok.sum())
        out[k] = _nanmean(v)
    return out


def _pool_events(entries: list[dict]) -> dict:
    n_log = sum(e["num_agents"] for e in entries)
    n = sum(e["num_agents"] * e["num_rollouts"] for e in entries)
    out: dict = {}
    for k in EVENT_METRICS:
        for pre, den in (("", n), ("log_", n_log), ("excess_", n)):
            cnt = sum(e.get(f"{pre}{k}_count", 0) for e in entries)
            out[f"{pre}{k}_count"] = cnt
            out[f"{pre}{k}_rate"] = cnt / den if den else None
    return out


def aggregate(entries: list[dict]) -> dict:
    """Dataset aggregate pooled over all (rollout, evaluated agent) pairs of all scenarios
    (log rates over all evaluated agents)."""
    n = sum(e["num_agents"] * e["num_rollouts"] for e in entries)
    out: dict = {"num_scenarios": len(entries), "num_rollouts": sum(e["num_rollouts"] for e in entries),
                 "num_agent_rollouts": n, "num_agents": sum(e["num_agents"] for e in entries)}
    out.update(_pool_events(entries))
    out["by_type"] = {}
    for name in TYPE_NAMES.values():
        sub = [{**e["by_type"][name], "num_rollouts": e["num_rollouts"]} for e in entries if name in e.get("by_type", {})]
        out["by_type"][name] = {"num_agents": sum(x["num_agents"] for x in sub), **_pool_events(sub)}
    for k in ("ade", "fde", "progress", "progress_ratio"):
        cnt = sum(e[f"{k}_n"] for e in entries)
        out[k] = sum(e[f"{k}_sum"] for e in entries) / cnt if cnt else None
    return out


def config_dict(cfg: MetricsConfig) -> dict:
    return asdict(cfg)
