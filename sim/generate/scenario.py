"""One generated scenario: road network + traffic → :class:`~drope.data.scene.Scene` (WOMD-like).

91 steps at 10 Hz (11 history + 80 future) after a warm-up; the scene is placed at a random
world offset of a few kilometres (like WOMD) and goes through ``scene_from_world``, the same
conversion path as real data. Scenes whose boxes overlap at any step are rejected and redrawn
with the next sub-seed (the count is reported in ``Scene.source``-independent stats).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from drope.data.scene import Scene, scene_from_world
from drope.data.types import LaneLink, MapType, ObjectType
from drope.geometry import box_corners
from drope.sim.generate.roads import RoadNetwork, build_intersection, build_road
from drope.sim.generate.microsim import TrafficConfig, TrafficSim
from drope.geometry import wrap_angle

NUM_STEPS, CURRENT = 91, 10


@dataclass
class ScenarioMix:
    """Relative weights of the layouts."""

    intersection4_signal: float = 0.35
    intersection4_stop: float = 0.15
    t_junction: float = 0.2
    road_straight: float = 0.1
    road_curved: float = 0.1
    road_lane_drop: float = 0.1


@dataclass
class GeneratorConfig:
    mix: ScenarioMix = field(default_factory=ScenarioMix)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    world_offset_m: float = 5000.0
    position_noise_m: float = 0.01
    max_tracks_to_predict: int = 8
    max_attempts: int = 5


def _network(rng: np.random.Generator, mix: ScenarioMix) -> tuple[str, RoadNetwork]:
    names = list(vars(mix))
    w = np.array([getattr(mix, n) for n in names], float)
    kind = names[int(rng.choice(len(names), p=w / w.sum()))]
    lanes = int(rng.integers(1, 3))
    if kind == "intersection4_signal":
        return kind, build_intersection(rng, 4, lanes, signalized=True)
    if kind == "intersection4_stop":
        return kind, build_intersection(rng, 4, 1, signalized=False)
    if kind == "t_junction":
        return kind, build_intersection(rng, 3, lanes, signalized=bool(rng.random() < 0.6))
    if kind == "road_straight":
        return kind, build_road(rng, lanes=int(rng.integers(2, 4)))
    if kind == "road_curved":
        return kind, build_road(rng, lanes=2, curvature=float(rng.choice([-1, 1]) * rng.uniform(0.003, 0.01)))
    return kind, build_road(rng, lanes=int(rng.integers(2, 4)), lane_drop=True)


def boxes_overlap(xy: torch.Tensor, heading: torch.Tensor, length: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``[..., N, N]`` bool: oriented boxes overlap (separating-axis test; touching counts as apart).

    Inputs ``xy [..., N, 2]``, ``heading/length/width [..., N]``; leading dims are batched.
    """
    from drope.metrics.boxes import boxes_overlap as corners_overlap

    c = box_corners(xy, heading, length, width)  # [..., N, 4, 2]
    n = xy.shape[-2]
    pair = corners_overlap(c[..., :, None, :, :], c[..., None, :, :, :])  # [..., N, N] one shared SAT
    return pair & ~torch.eye(n, dtype=torch.bool, device=xy.device)


def _simulate(rng: np.random.Generator, cfg: GeneratorConfig):
    kind, net = _network(rng, cfg.mix)
    sim = TrafficSim(net, rng, cfg.traffic)
    sim.populate()
    for _ in range(cfg.traffic.warmup_steps):
        sim.step()
    signals = []
    for t in range(NUM_STEPS):
        sim.record(t)
        signals.append(sim.lane_signal_states())
        if t + 1 < NUM_STEPS:
            sim.step()
    return kind, net, sim, signals


def generate_scene(seed: int, index: int, cfg: GeneratorConfig | None = None) -> tuple[Scene, dict]:
    """Scene number ``index`` of the dataset with ``seed`` (independent of worker count)."""
    cfg = cfg or GeneratorConfig()
    info = {"rejected_overlap": 0, "rejected_no_sdc": 0}
    for attempt in range(cfg.max_attempts):
        rng = np.random.default_rng([seed, index, attempt])
        kind, net, sim, signals = _simulate(rng, cfg)
        scene = _to_scene(rng, net, sim, signals, cfg, f"sim-{seed}-{index:07d}", kind)
        if scene is None:
            info["rejected_no_sdc"] += 1
            continue
        if first_overlap(scene) is not None:
            info["rejected_overlap"] += 1
            continue
        info["layout"] = kind
        return scene, info
    raise RuntimeError(f"scene {index} (seed {seed}): no valid scene after {cfg.max_attempts} attempts: {info}")


def first_overlap(scene: Scene, chunk: int = 16) -> tuple[int, int, int] | None:
    """(step, agent i, agent j) of the first overlapping pair of valid agents, or None."""
    v = scene.agent_valid.T  # [T, A]
    pos = scene.agent_pos.transpose(0, 1).double()  # [T, A, 2]
    head = scene.agent_heading.T.double()
    size = scene.agent_size.transpose(0, 1).double()  # [T, A, 3]
    for t0 in range(0, scene.num_steps, chunk):  # steps in chunks bound the [t, A, A, 4, 2] projections
        sl = slice(t0, t0 + chunk)
        ov = boxes_overlap(pos[sl], head[sl], size[sl, :, 0], size[sl, :, 1])  # [t, A, A]
        ov &= v[sl, :, None] & v[sl, None, :]
        hit = ov.nonzero()
        if len(hit):
            t, i, j = hit[0].tolist()
            return t0 + t, i, j
    return None


def _to_scene(rng, net: RoadNetwork, sim: TrafficSim, signals, cfg: GeneratorConfig, scenario_id: str,
              kind: str) -> Scene | None:
    ids = sorted({i for step in sim.log.values() for i in step})
    by_id = {a.id: a for a in sim.agents}
    A, T = len(ids), NUM_STEPS
    pose = np.zeros((A, T, 4))
    valid = np.zeros((A, T), bool)
    for t in range(T):
        for i, aid in enumerate(ids):
            rec = sim.log[t].get(aid)
            if rec is not None:
                pose[i, t], valid[i, t] = rec, True
    # SDC: a vehicle valid at every step, nearest the network centre at the current step
    full = [i for i in range(A) if valid[i].all() and by_id[ids[i]].type == ObjectType.TYPE_VEHICLE]
    if not full:
        return None
    sdc = min(full, key=lambda i: float(np.hypot(*pose[i, CURRENT, :2])))
    noise = rng.normal(0, cfg.position_noise_m, (A, T, 2))
    xy = pose[..., :2] + noise * valid[..., None]
    # velocities from finite differences of the recorded positions (central where possible)
    vel = np.zeros((A, T, 2))
    for i in range(A):
        v_idx = np.flatnonzero(valid[i])
        if len(v_idx) >= 2:
            runs = np.split(v_idx, np.flatnonzero(np.diff(v_idx) > 1) + 1)
            for r in runs:
                if len(r) >= 2:
                    vel[i, r] = np.gradient(xy[i, r], 0.1, axis=0)
    heading = pose[..., 2]
    # world placement
    theta = rng.uniform(-math.pi, math.pi)
    off = rng.uniform(-cfg.world_offset_m, cfg.world_offset_m, 2)
    c, s = math.cos(theta), math.sin(theta)
    R = np.array([[c, -s], [s, c]])

    def w(p):
        return np.asarray(p) @ R.T + off

    sizes = np.array([by_id[i].size for i in ids], float)
    agent_xyz = np.concatenate([w(xy), np.broadcast_to(sizes[:, None, 2:3] / 2, (A, T, 1))], -1) * valid[..., None]
    # map
    feats = []  # (id, MapType, subtype, points[n,2], speed, interp)
    for lane in net.lanes.values():
        feats.append((lane.id, MapType.lane, lane.lane_type, lane.points, lane.speed_limit_mph, lane.connector))
    nid = 1000
    for pts, sub in net.road_lines:
        nid += 1
        feats.append((nid, MapType.road_line, sub, pts, 0.0, False))
    for pts, sub in net.road_edges:
        nid += 1
        feats.append((nid, MapType.road_edge, sub, pts, 0.0, False))
    for cw in net.crosswalks:
        nid += 1
        feats.append((nid, MapType.crosswalk, 0, cw.polygon, 0.0, False))
    stop_lanes = []
    for pos, lanes in net.stop_signs:
        nid += 1
        feats.append((nid, MapType.stop_sign, 0, pos[None], 0.0, False))
        stop_lanes += [(nid, l) for l in lanes]
    links = []
    for lane in net.lanes.values():
        links += [(lane.id, p, LaneLink.entry, -1, -1, -1, -1) for p in lane.predecessors]
        links += [(lane.id, q, LaneLink.exit, -1, -1, -1, -1) for q in lane.successors]
        for nb, kind_ in ((lane.left, LaneLink.left), (lane.right, LaneLink.right)):
            if nb is not None:
                m = min(len(lane.points), len(net.lanes[nb].points)) - 1
                links.append((lane.id, nb, kind_, 0, m, 0, m))
    counts = [len(f[3]) for f in feats]
    pts = np.concatenate([f[3] for f in feats])
    S = max((len(x) for x in signals), default=0)
    sig_lane = -np.ones((T, S), np.int64)
    sig_state = np.zeros((T, S), np.int64)
    sig_stop = np.zeros((T, S, 3))
    sig_valid = np.zeros((T, S), bool)
    for t, row in enumerate(signals):
        for k, (lid, st, p) in enumerate(row):
            sig_lane[t, k], sig_state[t, k], sig_valid[t, k] = lid, st, True
            sig_stop[t, k, :2] = w(p)
    ttp, diff = _pick_tracks(pose, valid, sdc, [by_id[i].type for i in ids], cfg.max_tracks_to_predict, rng)
    return scene_from_world(
        scenario_id=scenario_id, source=f"drope-sim/{kind}", timestamps=np.arange(T) * 0.1, current_index=CURRENT,
        sdc_index=sdc, agent_id=np.array(ids), agent_type=np.array([by_id[i].type for i in ids]),
        agent_xyz=agent_xyz, agent_heading=(heading + theta) * valid, agent_vel=(vel @ R.T) * valid[..., None],
        agent_size=np.broadcast_to(sizes[:, None, :], (A, T, 3)) * valid[..., None], agent_valid=valid,
        tracks_to_predict=ttp, tracks_to_predict_difficulty=diff, objects_of_interest=np.zeros(0),
        map_id=np.array([f[0] for f in feats]), map_type=np.array([int(f[1]) for f in feats]),
        map_subtype=np.array([int(f[2]) for f in feats]), map_offsets=np.concatenate([[0], np.cumsum(counts)]),
        map_points=np.concatenate([w(pts), np.zeros((len(pts), 1))], -1),
        lane_speed_limit=np.array([f[4] for f in feats]), lane_interpolating=np.array([f[5] for f in feats]),
        lane_links=np.array(links, np.int64).reshape(-1, 7), stop_sign_lanes=np.array(stop_lanes, np.int64).reshape(-1, 2),
        signal_lane_id=sig_lane, signal_state=sig_state, signal_stop_point=sig_stop, signal_valid=sig_valid,
    )


def _pick_tracks(pose, valid, sdc, types, k_max, rng):
    """WOMD-like: agents valid now and over most of the future, preferring moving/turning ones."""
    scores = []
    for i in range(len(types)):
        if i == sdc or not valid[i, CURRENT] or valid[i, CURRENT:].mean() < 0.8:
            continue
        fut = np.flatnonzero(valid[i, CURRENT:]) + CURRENT
        disp = float(np.linalg.norm(pose[i, fut[-1], :2] - pose[i, CURRENT, :2]))
        if disp < 2.0:
            continue
        turn = abs(wrap_angle(pose[i, fut[-1], 2] - pose[i, CURRENT, 2]))
        scores.append((disp / 10 + 3 * turn + (1 if types[i] != ObjectType.TYPE_VEHICLE else 0) + rng.random(), i, turn))
    scores.sort(reverse=True)
    picked = scores[:k_max]
    return (np.array([i for _, i, _ in picked], np.int64),
            np.array([2 if t > 0.5 else 1 for _, _, t in picked], np.int64))
