"""Waymo Open Motion Dataset Scenario shards ↔ :class:`~drope.data.scene.Scene`, without TensorFlow.

Parsing uses the official protos (``waymo-open-dataset-tf-2-12-0==1.6.7`` installed with
``--no-deps``); TFRecord framing and CRC checks are in :mod:`drope.data.tfrecord`.
"""
from __future__ import annotations

import logging
from itertools import chain
from operator import attrgetter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from drope.data import womd_wire
from drope.geometry import wrap_angle
from drope.data.scene import Scene, scene_from_world
from drope.data.tfrecord import CorruptRecordError, iter_frames, write_records
from drope.data.types import LaneLink, MapType

log = logging.getLogger(__name__)

__all__ = ["CorruptRecordError", "ReadStats", "read_scenarios", "write_scenarios", "scene_from_proto", "scene_to_proto"]

_MAP_KINDS = [m.name for m in MapType]  # oneof field names, in MapType order
_STATE_FIELDS = ("center_x", "center_y", "center_z", "length", "width", "height", "heading", "velocity_x", "velocity_y")
_STATE_GETTER = attrgetter(*_STATE_FIELDS, "valid")
_XYZ = attrgetter("x", "y", "z")
# field number of the polyline/polygon of each map kind (MapPoint records carry it as their tag)
_POINT_FIELD = {"lane": 8, "road_line": 2, "road_edge": 2, "crosswalk": 1, "speed_bump": 1, "driveway": 1}
_LANE_STATE = attrgetter("lane", "state", "stop_point.x", "stop_point.y", "stop_point.z")


def _protos():
    try:
        from waymo_open_dataset.protos import map_pb2, scenario_pb2
    except ImportError as e:  # pragma: no cover - install problem
        raise ImportError(
            "WOMD protos missing: pip install --no-deps waymo-open-dataset-tf-2-12-0==1.6.7 protobuf"
        ) from e
    return scenario_pb2, map_pb2


@dataclass
class ReadStats:
    """Counters filled while streaming (``records`` read OK, ``skipped`` corrupt)."""

    records: int = 0
    skipped: int = 0


def read_scenarios(
    paths: str | Path | Sequence[str | Path],
    on_corrupt: str = "raise",
    stats: ReadStats | None = None,
    origin: str = "sdc",
    source: str = "womd",
) -> Iterator[Scene]:
    """Stream Scenes from Scenario TFRecord shards (plain or gzip), in file and record order.

    ``on_corrupt="raise"`` raises :class:`CorruptRecordError` (file, record index, byte offset);
    ``"skip"`` logs the problem, counts it in ``stats.skipped`` and continues with the next
    record (after a damaged length field, at the next valid header; a truncated file or broken
    gzip stream ends that file).
    ``origin="sdc"`` puts the scene frame at the SDC's current pose; ``"world"`` keeps the world
    origin (only sensible for data already near the origin). ``source`` labels the Scenes
    (Scenario protos do not record whether they are real or generated).
    """
    if on_corrupt not in ("raise", "skip"):
        raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
    if origin not in ("sdc", "world"):
        raise ValueError(f"origin must be 'sdc' or 'world', got {origin!r}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    stats = stats if stats is not None else ReadStats()
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"no such scenario file: {path}")
        for index, offset, data, err in iter_frames(path):
            if err is None:
                try:
                    scene = scene_from_bytes(data, source=source, origin=origin)
                except CorruptRecordError as e:
                    err = CorruptRecordError(path, index, offset, e.reason)
            if err is not None:
                if on_corrupt == "raise":
                    raise err
                stats.skipped += 1
                log.warning("skipping %s", err)
                continue
            stats.records += 1
            yield scene


def scene_from_bytes(data: bytes, source: str = "womd", origin: str = "sdc") -> Scene:
    scenario_pb2, _ = _protos()
    from google.protobuf.message import DecodeError

    proto = scenario_pb2.Scenario()
    try:
        proto.ParseFromString(data)
    except DecodeError as e:
        raise CorruptRecordError("<bytes>", 0, 0, f"not a Scenario proto: {e}") from None
    return scene_from_proto(proto, source=source, origin=origin)


def scene_from_proto(proto, source: str = "womd", origin: str = "sdc") -> Scene:
    """Convert a parsed ``scenario_pb2.Scenario`` into a Scene (scene frame at the SDC pose)."""

    def bad(reason: str) -> CorruptRecordError:
        return CorruptRecordError("<proto>", 0, 0, f"scenario {proto.scenario_id!r}: {reason}")

    T = len(proto.timestamps_seconds)
    if not proto.scenario_id or T == 0:
        raise bad("not a Scenario record (missing scenario_id or timestamps_seconds)")
    timestamps = np.asarray(proto.timestamps_seconds, np.float64)
    steps = np.diff(timestamps)
    if not np.isfinite(timestamps).all() or (steps <= 0).any():
        raise bad("timestamps_seconds must be finite and strictly increasing")
    # WOMD timestamps are measured (steps of 0.09999 s and the like): keep the nominal rate at ms
    # resolution, so kinematics downstream use 0.1 s, not a jittered value
    dt = float(np.median(steps)) if T > 1 else 0.1
    dt = round(dt, 3) or dt
    if len(proto.dynamic_map_states) > T:
        raise bad(f"dynamic_map_states has {len(proto.dynamic_map_states)} entries, more than the {T} timestamps")
    A = len(proto.tracks)
    agent_id = np.zeros(A, np.int64)
    agent_type = np.zeros(A, np.int64)
    for a, track in enumerate(proto.tracks):
        if len(track.states) != T:
            raise bad(f"tracks[{a}] (id {track.id}) has {len(track.states)} states, expected {T} (timestamps)")
        agent_id[a], agent_type[a] = track.id, track.object_type
    fast = womd_wire.track_states(proto.tracks, T)
    if fast is not None:
        states, valid = fast
    else:  # unusual state layout: attrgetter + chain keeps the per-state work in C at least
        rows = chain.from_iterable(map(_STATE_GETTER, t.states) for t in proto.tracks)
        flat = np.fromiter(chain.from_iterable(rows), np.float64, count=A * T * (len(_STATE_FIELDS) + 1))
        flat = flat.reshape(A, T, len(_STATE_FIELDS) + 1)
        states, valid = flat[..., :-1] * (flat[..., -1:] > 0), flat[..., -1] > 0
    if not np.isfinite(states[valid]).all():
        a, t = np.argwhere(valid & ~np.isfinite(states).all(-1))[0]
        raise bad(f"tracks[{a}].states[{t}] holds NaN/Inf")
    if A and not 0 <= proto.sdc_track_index < A:
        raise bad(f"sdc_track_index {proto.sdc_track_index} outside [0, {A})")
    if not 0 <= proto.current_time_index < T:
        raise bad(f"current_time_index {proto.current_time_index} outside [0, {T})")

    map_arrays = _map_from_proto(proto, bad)
    sig = _signals_from_proto(proto, T)
    ttp = [(r.track_index, r.difficulty) for r in proto.tracks_to_predict]
    for i, _ in ttp:
        if not 0 <= i < A:
            raise bad(f"tracks_to_predict index {i} outside [0, {A})")
    if origin == "world":
        origin_kw = dict(origin_xy=np.zeros(2), origin_heading=0.0)
    else:
        origin_kw = {}
    return scene_from_world(
        scenario_id=proto.scenario_id,
        source=source,
        timestamps=timestamps,
        dt=dt,
        current_index=proto.current_time_index,
        sdc_index=proto.sdc_track_index,
        agent_id=agent_id,
        agent_type=agent_type,
        agent_xyz=states[..., 0:3],
        agent_heading=wrap_angle(states[..., 6]),
        agent_vel=states[..., 7:9],
        agent_size=states[..., 3:6],
        agent_valid=valid,
        tracks_to_predict=np.array([i for i, _ in ttp], np.int64),
        tracks_to_predict_difficulty=np.array([d for _, d in ttp], np.int64),
        objects_of_interest=np.asarray(list(proto.objects_of_interest), np.int64),
        **map_arrays,
        **sig,
        **origin_kw,
    )


def _map_from_proto(proto, bad) -> dict[str, np.ndarray]:
    F = len(proto.map_features)
    map_id = np.zeros(F, np.int64)
    map_type = np.zeros(F, np.int64)
    subtype = np.zeros(F, np.int64)
    speed = np.zeros(F, np.float32)
    interp = np.zeros(F, bool)
    counts = np.zeros(F, np.int64)
    lines: list[tuple[int, object, object]] = []  # (feature, body, repeated MapPoint) of polylines/polygons
    signs: list[tuple[int, object]] = []  # (feature, position) of stop signs
    links: list[tuple[int, ...]] = []
    stop_lanes: list[tuple[int, int]] = []
    for f, feat in enumerate(proto.map_features):
        kind = feat.WhichOneof("feature_data")
        if kind is None:
            raise bad(f"map_features[{f}] (id {feat.id}) has no feature data")
        map_id[f] = feat.id
        map_type[f] = MapType[kind]
        body = getattr(feat, kind)
        if kind == "stop_sign":
            signs.append((f, body.position))
            stop_lanes.extend((feat.id, lane) for lane in body.lane)
            counts[f] = 1
            continue
        pts = body.polygon if kind in ("crosswalk", "speed_bump", "driveway") else body.polyline
        if not pts:
            raise bad(f"map_features[{f}] (id {feat.id}, {kind}) has no points")
        counts[f] = len(pts)
        lines.append((f, body, pts))
        if kind in ("lane", "road_line", "road_edge"):
            subtype[f] = body.type
        if kind == "lane":
            speed[f] = body.speed_limit_mph
            interp[f] = body.interpolating
            links.extend((feat.id, e, LaneLink.entry, -1, -1, -1, -1) for e in body.entry_lanes)
            links.extend((feat.id, e, LaneLink.exit, -1, -1, -1, -1) for e in body.exit_lanes)
            for kind_, nbrs in ((LaneLink.left, body.left_neighbors), (LaneLink.right, body.right_neighbors)):
                links.extend(
                    (feat.id, n.feature_id, kind_, n.self_start_index, n.self_end_index,
                     n.neighbor_start_index, n.neighbor_end_index)
                    for n in nbrs
                )
    offsets = np.concatenate([[0], np.cumsum(counts)])
    points = np.zeros((int(offsets[-1]), 3), np.float64)
    line_idx = np.array([f for f, _, _ in lines], np.int64)
    line_pts, ok = womd_wire.polyline_points([b for _, b, _ in lines], counts[line_idx])
    points[np.repeat(np.isin(np.arange(F), line_idx), counts)] = line_pts
    for i in np.flatnonzero(~ok):  # unusual point layout: attribute access for this feature only
        f, _, pts = lines[i]
        n = int(counts[f])
        points[offsets[f] : offsets[f + 1]] = np.fromiter(
            chain.from_iterable(map(_XYZ, pts)), np.float64, count=3 * n
        ).reshape(n, 3)
    for f, p in signs:
        points[offsets[f]] = (p.x, p.y, p.z)
    if not np.isfinite(points).all():
        raise bad("map points hold NaN/Inf")
    return dict(
        map_id=map_id,
        map_type=map_type,
        map_subtype=subtype,
        map_offsets=offsets,
        map_points=points,
        lane_speed_limit=speed,
        lane_interpolating=interp,
        lane_links=np.array(links, np.int64).reshape(-1, 7),
        stop_sign_lanes=np.array(stop_lanes, np.int64).reshape(-1, 2),
    )


def _signals_from_proto(proto, T: int) -> dict[str, np.ndarray]:
    dms = proto.dynamic_map_states
    per_step = np.fromiter(map(len, (d.lane_states for d in dms)), np.int64, count=len(dms))  # [T'] signals
    S = int(per_step.max(initial=0))
    lane = -np.ones((T, S), np.int64)
    state = np.zeros((T, S), np.int64)
    stop = np.zeros((T, S, 3), np.float64)
    valid = np.zeros((T, S), bool)
    n = int(per_step.sum())
    if n:
        rows = chain.from_iterable(map(_LANE_STATE, d.lane_states) for d in dms)
        flat = np.fromiter(chain.from_iterable(rows), np.float64, count=5 * n).reshape(n, 5)
        t = np.repeat(np.arange(len(dms)), per_step)  # [n] step of each signal
        s = np.arange(n) - np.repeat(np.cumsum(per_step) - per_step, per_step)  # [n] slot within the step
        lane[t, s], state[t, s], stop[t, s], valid[t, s] = flat[:, 0], flat[:, 1], flat[:, 2:], True
    return dict(signal_lane_id=lane, signal_state=state, signal_stop_point=stop, signal_valid=valid)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def scene_to_proto(scene: Scene):
    """Scene → ``scenario_pb2.Scenario`` in world coordinates (fields Scene does not carry are absent)."""
    scenario_pb2, map_pb2 = _protos()
    scene = scene.to("cpu")
    w = scene.to_world()
    proto = scenario_pb2.Scenario()
    proto.scenario_id = scene.scenario_id
    proto.timestamps_seconds.extend(scene.timestamps.tolist())
    proto.current_time_index = scene.current_index
    proto.sdc_track_index = scene.sdc_index
    proto.objects_of_interest.extend(scene.objects_of_interest.tolist())
    valid = scene.agent_valid.numpy()
    values = np.concatenate(  # [A, T, 9] world frame, zero where invalid
        [w.agent_pos, scene.agent_z.numpy()[..., None], scene.agent_size.numpy(), w.agent_heading[..., None],
         w.agent_vel], axis=-1,
    ) * valid[..., None]
    for a, states in enumerate(womd_wire.encode_track_states(values, valid)):
        track = proto.tracks.add()
        track.id = int(scene.agent_id[a])
        track.object_type = int(scene.agent_type[a])
        track.MergeFromString(states)  # appends the repeated states in one C call
    for i, d in zip(scene.tracks_to_predict.tolist(), scene.tracks_to_predict_difficulty.tolist()):
        r = proto.tracks_to_predict.add()
        r.track_index, r.difficulty = i, d

    links = scene.lane_links.numpy()
    by_lane: dict[int, list[list[int]]] = {}
    for row in links.tolist():
        by_lane.setdefault(row[0], []).append(row)
    stop_lanes: dict[int, list[int]] = {}
    for sid, lane in scene.stop_sign_lanes.tolist():
        stop_lanes.setdefault(sid, []).append(lane)
    off = scene.map_offsets.tolist()
    kinds = [MapType(k).name for k in scene.map_type.tolist()]
    point_field = [_POINT_FIELD.get(k, 0) for k in kinds]
    tags = np.repeat([womd_wire.POINT_FIELD_TAG.get(n, 0) for n in point_field], np.diff(off))
    world = np.concatenate([w.map_xy, scene.map_points[:, 2:].numpy().astype(np.float64)], axis=-1)  # [P, 3]
    point_bytes = womd_wire.encode_points(world, tags)
    subtype, speed = scene.map_subtype.tolist(), scene.lane_speed_limit.tolist()
    interp = scene.lane_interpolating.tolist()
    for f, (fid, kind) in enumerate(zip(scene.map_id.tolist(), kinds)):
        feat = proto.map_features.add()
        feat.id = fid
        body = getattr(feat, kind)
        if kind == "stop_sign":
            body.position.x, body.position.y, body.position.z = world[off[f]].tolist()
            body.lane.extend(stop_lanes.get(fid, []))
            continue
        body.MergeFromString(point_bytes[29 * off[f] : 29 * off[f + 1]])
        if kind in ("lane", "road_line", "road_edge"):
            body.type = subtype[f]
        if kind == "lane":
            body.speed_limit_mph = speed[f]
            body.interpolating = interp[f]
            for row in by_lane.get(fid, []):
                k = row[2]
                if k == LaneLink.entry:
                    body.entry_lanes.append(row[1])
                elif k == LaneLink.exit:
                    body.exit_lanes.append(row[1])
                else:
                    n = (body.left_neighbors if k == LaneLink.left else body.right_neighbors).add()
                    n.feature_id = row[1]
                    n.self_start_index, n.self_end_index, n.neighbor_start_index, n.neighbor_end_index = row[3:7]
    sig_valid = scene.signal_valid.numpy()
    stop_xy = w.signal_stop_xy
    stop_z = scene.signal_stop_point[..., 2].numpy().astype(np.float64)
    sig_lane, sig_state = scene.signal_lane_id.numpy(), scene.signal_state.numpy()
    for t in range(scene.num_steps):  # WOMD stores one (possibly empty) entry per step
        d = proto.dynamic_map_states.add()
        for s in np.flatnonzero(sig_valid[t]).tolist():
            ls = d.lane_states.add()
            ls.lane, ls.state = int(sig_lane[t, s]), int(sig_state[t, s])
            ls.stop_point.x, ls.stop_point.y, ls.stop_point.z = (
                float(stop_xy[t, s, 0]), float(stop_xy[t, s, 1]), float(stop_z[t, s]))
    return proto


def write_scenarios(path: str | Path, scenes: Iterable[Scene], compress: bool | None = None) -> int:
    """Write Scenes as a Scenario TFRecord shard (gzip if the name ends in .gz). Returns the count."""
    return write_records(path, (scene_to_proto(s).SerializeToString() for s in scenes), compress=compress)
