"""Scoring rollouts of one scene: which agents are simulated/evaluated, feature assembly, metrics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from drope.geometry import world_to_frame
from drope.data.scene import Scene
from drope.data.types import LaneType, MapType, ObjectType
from drope.metrics.wosac import features as F
from drope.metrics.wosac.config import WosacConfig
from drope.metrics.wosac.metametric import WosacFeatures, scenario_metrics

Tensor = torch.Tensor


class RolloutError(ValueError):
    """Rollouts that break the official submission rules (agents, step count, finiteness)."""


def sim_agent_indices(scene: Scene, config: WosacConfig = WosacConfig()) -> Tensor:
    """Agents that must be simulated: valid at the current step, in track order ``[O]``."""
    return scene.agent_valid[:, config.current_index].nonzero()[:, 0].cpu()


def eval_agent_indices(scene: Scene) -> Tensor:
    """Evaluated agents: the SDC and tracks_to_predict, sorted by track id ``[E]``."""
    idx = set(scene.tracks_to_predict.tolist()) | {scene.sdc_index}
    return torch.tensor(sorted(idx, key=lambda a: int(scene.agent_id[a])), dtype=torch.int64)


@dataclass(frozen=True)
class PreparedScene:
    """Everything the metric needs from a scene, computed once for any number of rollout sets."""

    scene: Scene
    objects: Tensor  # [O] agent indices: evaluated first (by id), then the other sim agents (track order)
    num_eval: int
    xy: Tensor  # [O, T, 2] float64 scene frame (log)
    z: Tensor  # [O, T] float64 world
    heading: Tensor  # [O, T] float64 unwrapped scene frame (log)
    length: Tensor  # [O, T] log sizes in history, current size afterwards
    width: Tensor
    height: Tensor
    valid: Tensor  # [O, T] log validity
    object_type: Tensor  # [O]
    edges: F.EdgeSegments
    lanes: F.LaneSegments
    signal_lane: Tensor  # [Z]
    signal_state: Tensor  # [T, Z]
    signal_stop: Tensor  # [T, Z, 2] float64 scene frame


@dataclass(frozen=True)
class SceneMap:
    """A scene's map and signals in the form the WOSAC feature functions take (any number of steps);
    shared by the scorer and the simulator's event metrics."""

    edges: F.EdgeSegments | None  # None: the scene has no road edge of >= 2 points
    lanes: F.LaneSegments  # surface-street lanes, proto order
    signal_lane: Tensor  # [Z] lane ids with a signal at some step
    signal_state: Tensor  # [T, Z] int64, 0 where absent
    signal_stop: Tensor  # [T, Z, 2] float64 scene frame; the world origin where absent
    world_origin: Tensor  # [2] float64: the world origin in scene coordinates


def scene_map(scene: Scene) -> SceneMap:
    pts = scene.map_points.double()
    off = scene.map_offsets.tolist()
    edges, lanes, lane_ids = [], [], []
    for f in range(scene.num_map_features):
        kind = int(scene.map_type[f])
        if kind == MapType.road_edge:
            edges.append(pts[off[f] : off[f + 1]])
        elif kind == MapType.lane and int(scene.map_subtype[f]) == LaneType.TYPE_SURFACE_STREET:
            lanes.append(pts[off[f] : off[f + 1], :2])
            lane_ids.append(int(scene.map_id[f]))
    # signals as per-lane time series; absent states are 0 with the world origin as stop point
    T = scene.num_steps
    sv = scene.signal_valid
    signal_lane = torch.unique(scene.signal_lane_id[sv]) if bool(sv.any()) else torch.zeros(0, dtype=torch.int64)
    Z = int(signal_lane.shape[0])
    origin_in_scene = torch.from_numpy(world_to_frame(np.zeros(2), scene.origin_xy.numpy(), float(scene.origin_heading)))
    state = torch.zeros(T, Z, dtype=torch.int64)
    stop = origin_in_scene.expand(T, Z, 2).clone()
    for t, s in sv.nonzero().tolist():
        z = int(torch.searchsorted(signal_lane, scene.signal_lane_id[t, s]))
        state[t, z] = scene.signal_state[t, s]
        stop[t, z] = scene.signal_stop_point[t, s, :2].double()
    has_edges = any(e.shape[0] >= 2 for e in edges)
    frame = (scene.origin_xy.double(), float(scene.origin_heading))
    return SceneMap(F.EdgeSegments(edges, frame) if has_edges else None, F.LaneSegments(lanes, lane_ids), signal_lane,
                    state, stop, origin_in_scene)


def prepare_scene(scene: Scene, config: WosacConfig = WosacConfig()) -> PreparedScene:
    c = config
    T = c.current_index + 1 + c.num_future_steps
    if scene.num_steps != T:
        raise RolloutError(f"scene {scene.scenario_id!r}: has {scene.num_steps} steps, WOSAC needs {T}")
    sim = sim_agent_indices(scene, c)
    ev = eval_agent_indices(scene)
    missing = [int(scene.agent_id[a]) for a in ev if not bool(scene.agent_valid[a, c.current_index])]
    if missing:
        raise RolloutError(f"scene {scene.scenario_id!r}: evaluated objects {missing} are not valid at the current step")
    rest = [int(a) for a in sim if int(a) not in set(ev.tolist())]
    objects = torch.cat([ev, torch.tensor(rest, dtype=torch.int64)])
    origin_h = float(scene.origin_heading)
    heading = torch.from_numpy(scene.to_world_heading(scene.agent_heading[objects])) - origin_h
    size = scene.agent_size[objects].double()  # [O, T, 3]
    size[:, c.current_index + 1 :] = size[:, c.current_index : c.current_index + 1]
    m = scene_map(scene)
    if m.edges is None:
        raise ValueError(f"scene {scene.scenario_id!r}: has no road edges (needed for distance to road edge / off-road)")
    valid = scene.agent_valid[objects]
    # Invalid log states are what the Scenario proto stores there: zeros in the *world* frame. The
    # official features never mask a neighbour step, so these positions enter the central
    # differences: the speed of an object at a valid step next to an invalid one (the
    # time-to-collision of a follower, or of the object followed) and the red-light crossing test.
    xy = torch.where(valid[..., None], scene.agent_pos[objects].double(), m.world_origin)
    heading = torch.where(valid, heading, -origin_h)
    return PreparedScene(
        scene=scene,
        objects=objects,
        num_eval=int(ev.shape[0]),
        xy=xy,
        z=scene.agent_z[objects].double(),
        heading=heading,
        length=size[..., 0],
        width=size[..., 1],
        height=size[..., 2],
        valid=valid,
        object_type=scene.agent_type[objects],
        edges=m.edges,
        lanes=m.lanes,
        signal_lane=m.signal_lane,
        signal_state=m.signal_state,
        signal_stop=m.signal_stop,
    )


def compute_features(
    p: PreparedScene, xy: Tensor, z: Tensor, heading: Tensor, valid: Tensor, config: WosacConfig
) -> WosacFeatures:
    """Features of full trajectories ``xy [N, O, T, 2]``, ``z/heading [N, O, T]``, ``valid [O, T]``."""
    c, E = config, p.num_eval
    fut = slice(c.current_index + 1, None)
    xyz = torch.cat([xy, z[..., None]], dim=-1)[:, :E]
    speed, accel, dh, d2h = F.kinematics(xyz, heading[:, :E], c.step_seconds)
    ade_err = (xyz - torch.cat([p.xy, p.z[..., None]], dim=-1)[None, :E]).norm(dim=-1)  # [N, E, T]
    log_valid = p.valid[:E]
    ade = (ade_err * log_valid).sum(-1) / log_valid.sum(-1).clamp_min(1)
    v_f = valid[:, fut]
    dist = F.distance_to_nearest_object(xy[:, :, fut], heading[:, :, fut], p.length[:, fut], p.width[:, fut], v_f, E)
    ttc = F.time_to_collision(xy, heading, p.length, p.width, valid, E, c.step_seconds)[:, :, fut]
    road = F.distance_to_road_edge(xy[:, :E, fut], z[:, :E, fut], heading[:, :E, fut], p.length[:E, fut],
                                   p.width[:E, fut], p.height[:E, fut], v_f[:E], p.edges)
    tl_from = c.current_index
    red = F.red_light_violation(xy[:, :E, tl_from:], valid[:E, tl_from:], p.lanes, p.signal_lane,
                                p.signal_state[tl_from:], p.signal_stop[tl_from:])[:, :, 1:]
    return WosacFeatures(
        object_type=p.object_type[:E],
        valid=valid[:E, fut],
        ade=ade,
        linear_speed=speed[..., fut],
        linear_acceleration=accel[..., fut],
        angular_speed=dh[..., fut],
        angular_acceleration=d2h[..., fut],
        distance_to_nearest_object=dist,
        collision=dist < 0.0,
        time_to_collision=ttc,
        distance_to_road_edge=road,
        offroad=road > 0.0,
        traffic_light_violation=red,
    )


def rollout_features(
    p: PreparedScene, sim_xy: Tensor, sim_z: Tensor, sim_heading: Tensor, config: WosacConfig = WosacConfig()
) -> tuple[WosacFeatures, WosacFeatures]:
    """Log features (N = 1) and rollout features (N rollouts) of the evaluated objects, as the
    official ``compute_scenario_rollouts_features`` returns them (the rollouts' ``valid`` is the
    log's, which is what the metrics filter with). Arguments as :func:`score_prepared`."""
    c = config
    sid = p.scene.scenario_id
    O, Fn = int(p.objects.shape[0]), c.num_future_steps
    if sim_xy.dim() != 4 or tuple(sim_xy.shape[1:]) != (O, Fn, 2):
        raise RolloutError(f"scenario {sid}: rollouts have shape {tuple(sim_xy.shape)}, expected [N, {O}, {Fn}, 2]")
    for name, t in (("xy", sim_xy), ("z", sim_z), ("heading", sim_heading)):
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            n, o = bad.reshape(t.shape[0], O, -1).any(-1).nonzero()[0].tolist()
            raise RolloutError(f"scenario {sid}: object {int(p.scene.agent_id[p.objects[o]])} in rollout {n} "
                               f"has NaN/Inf {name}")
    N = sim_xy.shape[0]
    hist = slice(0, c.current_index + 1)
    log = compute_features(p, p.xy[None], p.z[None], p.heading[None], p.valid, c)
    sim_valid = p.valid.clone()
    sim_valid[:, c.current_index + 1 :] = True
    full_xy = torch.cat([p.xy[None, :, hist].expand(N, -1, -1, -1), sim_xy.double()], dim=2)
    full_z = torch.cat([p.z[None, :, hist].expand(N, -1, -1), sim_z.double()], dim=2)
    full_h = torch.cat([p.heading[None, :, hist].expand(N, -1, -1), sim_heading.double()], dim=2)
    sim = compute_features(p, full_xy, full_z, full_h, sim_valid, c)
    return log, _with_log_validity(sim, log.valid)


def score_prepared(
    p: PreparedScene, sim_xy: Tensor, sim_z: Tensor, sim_heading: Tensor, config: WosacConfig = WosacConfig()
) -> dict:
    """Official metrics of rollouts for ``p.objects`` (same order).

    ``sim_xy [N, O, F, 2]`` scene frame, ``sim_z [N, O, F]`` world metres, ``sim_heading [N, O, F]``
    scene frame (world heading − origin heading, not wrapped), F = ``config.num_future_steps``.
    """
    log, sim = rollout_features(p, sim_xy, sim_z, sim_heading, config)
    return scenario_metrics(p.scene.scenario_id, log, sim, config)


def _with_log_validity(sim: WosacFeatures, log_valid: Tensor) -> WosacFeatures:
    """Sim features keep their own values; metrics filter with the log's validity."""
    from dataclasses import replace

    return replace(sim, valid=log_valid)


def score_scene_rollouts(
    scene: Scene, xy: Tensor, z: Tensor, heading: Tensor, agent_index: Tensor, config: WosacConfig = WosacConfig()
) -> dict:
    """Score rollouts given in scene terms: ``xy [N, A', F, 2]`` scene frame, ``z [N, A', F]`` world,
    ``heading [N, A', F]`` scene frame, for agents ``agent_index [A']`` (must be exactly the sim agents)."""
    p = prepare_scene(scene, config)
    agent_index = torch.as_tensor(agent_index, dtype=torch.int64)
    pos = {int(a): i for i, a in enumerate(agent_index.tolist())}
    need = {int(a) for a in p.objects}
    if set(pos) != need:
        extra = sorted(int(scene.agent_id[a]) for a in set(pos) - need)
        missing = sorted(int(scene.agent_id[a]) for a in need - set(pos))
        raise RolloutError(f"scenario {scene.scenario_id}: wrong agents (missing {missing}, not sim agents {extra})")
    order = torch.tensor([pos[int(a)] for a in p.objects])
    return score_prepared(p, xy[:, order], z[:, order], heading[:, order], config)
