"""Argoverse 2 motion-forecasting scenarios ↔ :class:`~drope.data.scene.Scene`.

A scenario directory holds ``scenario_<id>.parquet`` (one row per track and observed step) and
``log_map_archive_<id>.json`` (the local vector map). AV2 runs at 10 Hz with 110 steps (test
split: 50), the current step being index 49 (the last ``observed`` step).

Mapping to Scene:
  * object_type vehicle/bus → VEHICLE, pedestrian → PEDESTRIAN, cyclist/motorcyclist → CYCLIST,
    everything else → OTHER. The original strings (and object_category, city) are kept in
    :class:`Av2Extras` (``read_av2_scenario_with_extras``) since Scene has no field for them.
  * track ``"AV"`` is the SDC; tracks_to_predict = focal track first, then the scored tracks
    (object_category 2) in agent order. objects_of_interest = [focal track id].
  * numeric track ids keep their value; other ids (``"AV"``, uuid-like) get a stable crc32-based id
    in [2**30, 2**31) (an int32, as WOMD track ids are); :func:`av2_track_id` maps ids back.
  * AV2 has no box sizes or z for agents: sizes are typical ones per AV2 object_type (a bus is
    12 × 2.55 m, a car 4.5 × 2 m), z is 0.
  * map: lane centerlines → lanes (is_intersection → lane_interpolating; predecessors/successors/
    neighbours → lane_links), lane boundaries → road lines (shared boundaries once, subtype from the
    mark type), pedestrian crossings → crosswalk polygons (edge1 + reversed edge2), the boundary of
    the union of the drivable areas → road edges, oriented with the road on their left as WOSAC's
    off-road sign expects (:mod:`drope.data.drivable_area`). AV2 has no signals or stop signs.

The writer emits the official schema; since AV2 has no free-standing road lines, the Scene's road
lines are not written: lane boundaries are synthesized 1.75 m either side of each centerline. The
Scene's road edges become the drivable-area polygons they bound (kerbs joined end to end, closed
across each road where the map ends), counter-clockwise.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from drope.data.drivable_area import drivable_areas_from_road_edges, road_edges_from_drivable_areas
from drope.data.frames import wrap_angle
from drope.data.scene import Scene, scene_from_world
from drope.data.types import LaneLink, LaneType, MapType, ObjectType, RoadEdgeType, RoadLineType

__all__ = [
    "REQUIRED_COLUMNS",
    "Av2Extras",
    "Av2FormatError",
    "av2_scenario_paths",
    "av2_track_id",
    "av2_type",
    "is_av2_path",
    "iter_av2_scenarios",
    "read_av2_scenario",
    "read_av2_scenario_with_extras",
    "read_scenes",
    "write_av2_scenario",
]

REQUIRED_COLUMNS = (
    "observed", "track_id", "object_type", "object_category", "timestep", "position_x", "position_y",
    "heading", "velocity_x", "velocity_y", "scenario_id", "start_timestamp", "end_timestamp",
    "num_timestamps", "focal_track_id", "city",
)
AV_TRACK_ID = "AV"
CURRENT_INDEX = 49
_TYPE_MAP = {
    "vehicle": ObjectType.TYPE_VEHICLE,
    "bus": ObjectType.TYPE_VEHICLE,
    "pedestrian": ObjectType.TYPE_PEDESTRIAN,
    "cyclist": ObjectType.TYPE_CYCLIST,
    "motorcyclist": ObjectType.TYPE_CYCLIST,
}
_TYPE_BACK = {
    ObjectType.TYPE_VEHICLE: "vehicle",
    ObjectType.TYPE_PEDESTRIAN: "pedestrian",
    ObjectType.TYPE_CYCLIST: "cyclist",
}
# box length, width, height (m) per AV2 object_type: AV2 carries no sizes, and a bus read as a car
# hides 7 m of it from collision and off-road checks (typical sizes, not measured per track)
_DEFAULT_SIZE = {
    "vehicle": (4.5, 2.0, 1.6),
    "bus": (12.0, 2.55, 3.2),
    "pedestrian": (0.6, 0.6, 1.8),
    "cyclist": (2.0, 0.8, 1.7),
    "motorcyclist": (2.2, 0.9, 1.6),
    "riderless_bicycle": (1.8, 0.6, 1.1),
}
_OTHER_SIZE = (1.0, 1.0, 1.0)
_MARK_MAP = {
    "DASHED_WHITE": RoadLineType.TYPE_BROKEN_SINGLE_WHITE,
    "DOUBLE_DASH_WHITE": RoadLineType.TYPE_BROKEN_SINGLE_WHITE,
    "DASH_SOLID_WHITE": RoadLineType.TYPE_BROKEN_SINGLE_WHITE,
    "SOLID_DASH_WHITE": RoadLineType.TYPE_BROKEN_SINGLE_WHITE,
    "SOLID_WHITE": RoadLineType.TYPE_SOLID_SINGLE_WHITE,
    "DOUBLE_SOLID_WHITE": RoadLineType.TYPE_SOLID_DOUBLE_WHITE,
    "DASHED_YELLOW": RoadLineType.TYPE_BROKEN_SINGLE_YELLOW,
    "DOUBLE_DASH_YELLOW": RoadLineType.TYPE_BROKEN_DOUBLE_YELLOW,
    "SOLID_YELLOW": RoadLineType.TYPE_SOLID_SINGLE_YELLOW,
    "DOUBLE_SOLID_YELLOW": RoadLineType.TYPE_SOLID_DOUBLE_YELLOW,
    "DASH_SOLID_YELLOW": RoadLineType.TYPE_PASSING_DOUBLE_YELLOW,
    "SOLID_DASH_YELLOW": RoadLineType.TYPE_PASSING_DOUBLE_YELLOW,
}
_LANE_TYPE = {"VEHICLE": LaneType.TYPE_SURFACE_STREET, "BUS": LaneType.TYPE_SURFACE_STREET, "BIKE": LaneType.TYPE_BIKE_LANE}
_LANE_TYPE_BACK = {LaneType.TYPE_BIKE_LANE: "BIKE"}


class Av2FormatError(ValueError):
    """An AV2 file that exists but cannot be read as a scenario (not parquet, missing columns, bad map);
    the message names the file."""


def av2_type(name: str) -> ObjectType:
    """AV2 object_type string → ObjectType (vehicle/bus, pedestrian, cyclist/motorcyclist, else OTHER)."""
    return _TYPE_MAP.get(str(name).lower(), ObjectType.TYPE_OTHER)


@dataclass(frozen=True)
class Av2Extras:
    """What an AV2 scenario carries that Scene has no field for (per agent, in Scene agent order)."""

    track_ids: list[str] = field(default_factory=list)
    object_types: list[str] = field(default_factory=list)
    object_categories: list[int] = field(default_factory=list)
    city: str = ""
    focal_track_id: str = ""


# ---------------------------------------------------------------------------------------------
# locating files
# ---------------------------------------------------------------------------------------------
def _scenario_files(path: str | Path) -> tuple[Path, Path]:
    """(parquet, map json) of a scenario directory or parquet file."""
    path = Path(path)
    if path.is_dir():
        parquets = sorted(path.glob("scenario_*.parquet")) or sorted(path.glob("*.parquet"))
        if not parquets:
            raise FileNotFoundError(f"no scenario_<id>.parquet in AV2 scenario directory {path}")
        if len(parquets) > 1:
            raise Av2FormatError(f"AV2 scenario directory {path} holds {len(parquets)} parquet files, expected one")
        parquet = parquets[0]
    elif path.is_file():
        parquet = path
    else:
        raise FileNotFoundError(f"no such AV2 scenario: {path}")
    sid = parquet.stem[len("scenario_"):] if parquet.stem.startswith("scenario_") else parquet.stem
    map_path = parquet.parent / f"log_map_archive_{sid}.json"
    if not map_path.is_file():
        others = sorted(parquet.parent.glob("log_map_archive_*.json"))
        if len(others) == 1:
            map_path = others[0]
        else:
            raise FileNotFoundError(
                f"AV2 scenario {parquet}: map file {map_path.name} not found in {parquet.parent}"
            )
    return parquet, map_path


def _read_table(parquet: Path) -> dict[str, list]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - install problem
        raise ImportError("reading Argoverse 2 needs pyarrow: pip install 'pyarrow>=14'") from e
    try:
        schema = pq.read_schema(parquet)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError flavours for non-parquet files
        raise Av2FormatError(f"{parquet}: not a readable parquet file ({e})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise Av2FormatError(f"{parquet}: AV2 scenario parquet is missing column(s) {', '.join(missing)}")
    try:
        table = pq.read_table(parquet, columns=list(REQUIRED_COLUMNS))
    except Exception as e:
        raise Av2FormatError(f"{parquet}: cannot read parquet ({e})") from None
    return {c: table.column(c).to_pylist() for c in REQUIRED_COLUMNS}


def _hashed_id(s: str) -> int:
    # in [2**30, 2**31): above AV2's numeric track ids, and still an int32 so the scene can be
    # written as a WOMD Scenario (its track ids are int32)
    return (1 << 30) | (zlib.crc32(s.encode()) & ((1 << 30) - 1))


_AV_INT_ID = _hashed_id(AV_TRACK_ID)


def _track_int_id(tid: str, used: set[int]) -> int:
    s = str(tid)
    value = int(s) if s.isdigit() and len(s) < 19 else _hashed_id(s)
    while value in used:
        value += 1
    used.add(value)
    return value


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def read_av2_scenario(path: str | Path, origin: str = "sdc") -> Scene:
    """One AV2 scenario (directory or its parquet file) as a Scene (scene frame at the AV pose)."""
    return read_av2_scenario_with_extras(path, origin=origin)[0]


def read_av2_scenario_with_extras(path: str | Path, origin: str = "sdc") -> tuple[Scene, Av2Extras]:
    if origin not in ("sdc", "world"):
        raise ValueError(f"origin must be 'sdc' or 'world', got {origin!r}")
    parquet, map_path = _scenario_files(path)
    cols = _read_table(parquet)
    n = len(cols["track_id"])
    if n == 0:
        raise Av2FormatError(f"{parquet}: AV2 scenario parquet has no rows")
    T = int(max(cols["num_timestamps"]))
    steps = np.asarray(cols["timestep"], np.int64)
    if T <= 0 or steps.min() < 0 or steps.max() >= T:
        raise Av2FormatError(f"{parquet}: timestep values outside [0, num_timestamps={T})")
    # agents in order of first appearance
    order: dict[str, int] = {}
    for tid in cols["track_id"]:
        order.setdefault(str(tid), len(order))
    A = len(order)
    tids = list(order)
    a_idx = np.fromiter((order[str(t)] for t in cols["track_id"]), np.int64, count=n)
    types = [""] * A
    cats = [0] * A
    for i in range(n):
        a = a_idx[i]
        if not types[a]:
            types[a] = str(cols["object_type"][i])
            cats[a] = int(cols["object_category"][i])
    xyz = np.zeros((A, T, 3), np.float64)
    heading = np.zeros((A, T), np.float64)
    vel = np.zeros((A, T, 2), np.float64)
    valid = np.zeros((A, T), bool)
    xyz[a_idx, steps, 0] = np.asarray(cols["position_x"], np.float64)
    xyz[a_idx, steps, 1] = np.asarray(cols["position_y"], np.float64)
    heading[a_idx, steps] = np.asarray(cols["heading"], np.float64)
    vel[a_idx, steps, 0] = np.asarray(cols["velocity_x"], np.float64)
    vel[a_idx, steps, 1] = np.asarray(cols["velocity_y"], np.float64)
    valid[a_idx, steps] = True
    if not (np.isfinite(xyz).all() and np.isfinite(heading).all() and np.isfinite(vel).all()):
        raise Av2FormatError(f"{parquet}: positions/headings/velocities hold NaN/Inf")
    observed = np.asarray(cols["observed"], bool)
    current = int(steps[observed].max()) if observed.any() else min(CURRENT_INDEX, T - 1)
    agent_type = np.array([av2_type(t) for t in types], np.int64)
    size = np.array([_DEFAULT_SIZE.get(t.lower(), _OTHER_SIZE) for t in types], np.float64).reshape(A, 3)
    agent_size = np.broadcast_to(size[:, None, :], (A, T, 3))
    used: set[int] = set()
    agent_id = np.array([_track_int_id(t, used) for t in tids], np.int64)
    focal = str(cols["focal_track_id"][0]) if cols["focal_track_id"][0] is not None else ""
    sdc = order.get(AV_TRACK_ID, order.get(focal, 0))
    ttp = ([order[focal]] if focal in order else []) + [
        a for a in range(A) if cats[a] == 2 and tids[a] != focal
    ]
    start_ns = int(cols["start_timestamp"][0])
    timestamps = start_ns * 1e-9 + 0.1 * np.arange(T)
    try:
        map_arrays = _read_map(map_path)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, Av2FormatError):
            raise
        raise Av2FormatError(f"{map_path}: malformed AV2 map JSON ({type(e).__name__}: {e})") from None
    origin_kw = dict(origin_xy=np.zeros(2), origin_heading=0.0) if origin == "world" else {}
    scene = scene_from_world(
        scenario_id=str(cols["scenario_id"][0]),
        source="av2",
        timestamps=timestamps,
        dt=0.1,
        current_index=current,
        sdc_index=sdc,
        agent_id=agent_id,
        agent_type=agent_type,
        agent_xyz=xyz,
        agent_heading=wrap_angle(heading),
        agent_vel=vel,
        agent_size=agent_size,
        agent_valid=valid,
        tracks_to_predict=np.array(ttp, np.int64),
        tracks_to_predict_difficulty=np.zeros(len(ttp), np.int64),
        objects_of_interest=agent_id[[order[focal]]] if focal in order else np.zeros(0, np.int64),
        signal_lane_id=np.zeros((T, 0), np.int64),
        signal_state=np.zeros((T, 0), np.int64),
        signal_stop_point=np.zeros((T, 0, 3)),
        signal_valid=np.zeros((T, 0), bool),
        **map_arrays,
        **origin_kw,
    )
    extras = Av2Extras(
        track_ids=tids, object_types=types, object_categories=cats, city=str(cols["city"][0] or ""), focal_track_id=focal
    )
    return scene, extras


def _pts(seq, where: str) -> np.ndarray:
    try:
        return np.array([(float(p["x"]), float(p["y"]), float(p.get("z", 0.0))) for p in seq], np.float64).reshape(-1, 3)
    except (TypeError, KeyError, ValueError) as e:
        raise Av2FormatError(f"{where}: bad point list ({e})") from None


def _read_map(map_path: Path) -> dict[str, np.ndarray]:
    try:
        data = json.loads(map_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Av2FormatError(f"{map_path}: not an AV2 map JSON ({e})") from None
    if not isinstance(data, dict) or "lane_segments" not in data:
        raise Av2FormatError(f"{map_path}: not an AV2 map JSON (no lane_segments)")

    def values(key):
        v = data.get(key) or {}
        return list(v.values()) if isinstance(v, dict) else list(v)

    ids: list[int] = []
    types: list[int] = []
    subtypes: list[int] = []
    polys: list[np.ndarray] = []
    interp: list[bool] = []
    links: list[tuple[int, ...]] = []
    lanes = values("lane_segments")
    crossings = values("pedestrian_crossings")
    areas = values("drivable_areas")
    all_ids = [int(x["id"]) for x in lanes + crossings + areas if "id" in x]
    next_id = max(all_ids, default=0) + 1
    for k, lane in enumerate(lanes):
        lid = int(lane.get("id", next_id + k))
        where = f"{map_path}: lane_segments[{lid}]"
        ids.append(lid)
        types.append(MapType.lane)
        subtypes.append(_LANE_TYPE.get(str(lane.get("lane_type", "")).upper(), LaneType.TYPE_UNDEFINED))
        polys.append(_pts(lane["centerline"], where) if "centerline" in lane else _centerline(lane, where))
        interp.append(bool(lane.get("is_intersection", False)))
        links.extend((lid, int(p), LaneLink.entry, -1, -1, -1, -1) for p in lane.get("predecessors") or [])
        links.extend((lid, int(s), LaneLink.exit, -1, -1, -1, -1) for s in lane.get("successors") or [])
        for kind, key in ((LaneLink.left, "left_neighbor_id"), (LaneLink.right, "right_neighbor_id")):
            if lane.get(key) is not None:
                links.append((lid, int(lane[key]), kind, -1, -1, -1, -1))
    next_id = max([next_id] + [i + 1 for i in ids])
    seen: set[bytes] = set()
    for lane in lanes:
        for side in ("left", "right"):
            pts = lane.get(f"{side}_lane_boundary")
            if not pts:
                continue
            p = _pts(pts, f"{map_path}: lane {lane.get('id')} {side}_lane_boundary")
            key = np.round(p, 2).tobytes()
            if key in seen or np.round(p[::-1], 2).tobytes() in seen:
                continue
            seen.add(key)
            ids.append(next_id)
            next_id += 1
            types.append(MapType.road_line)
            subtypes.append(_MARK_MAP.get(str(lane.get(f"{side}_lane_mark_type", "")).upper(), RoadLineType.TYPE_UNKNOWN))
            polys.append(p)
            interp.append(False)
    for c in crossings:
        e1 = _pts(c["edge1"], f"{map_path}: pedestrian_crossings[{c.get('id')}].edge1")
        e2 = _pts(c["edge2"], f"{map_path}: pedestrian_crossings[{c.get('id')}].edge2")
        ids.append(int(c.get("id", next_id)))
        next_id += 1
        types.append(MapType.crosswalk)
        subtypes.append(0)
        polys.append(np.concatenate([e1, e2[::-1]]))
        interp.append(False)
    # road edges = boundary of the union of the drivable areas, road on the left (WOSAC's sign
    # convention; AV2 fixes no winding): see drope.data.drivable_area
    rings = [_pts(d["area_boundary"], f"{map_path}: drivable_areas[{d.get('id')}].area_boundary") for d in areas]
    first_piece: set[int] = set()
    for k, p in road_edges_from_drivable_areas(rings):
        if k in first_piece or "id" not in areas[k]:
            ids.append(next_id)  # further pieces of an area split by a neighbouring area
            next_id += 1
        else:
            ids.append(int(areas[k]["id"]))
            first_piece.add(k)
        types.append(MapType.road_edge)
        subtypes.append(RoadEdgeType.TYPE_ROAD_EDGE_BOUNDARY)
        polys.append(p)
        interp.append(False)
    keep = [i for i, p in enumerate(polys) if len(p)]
    counts = np.array([len(polys[i]) for i in keep], np.int64)
    F = len(keep)
    return dict(
        map_id=np.array([ids[i] for i in keep], np.int64),
        map_type=np.array([types[i] for i in keep], np.int64),
        map_subtype=np.array([subtypes[i] for i in keep], np.int64),
        map_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        map_points=np.concatenate([polys[i] for i in keep]) if F else np.zeros((0, 3)),
        lane_speed_limit=np.zeros(F, np.float32),
        lane_interpolating=np.array([interp[i] for i in keep], bool),
        lane_links=np.array(links, np.int64).reshape(-1, 7),
        stop_sign_lanes=np.zeros((0, 2), np.int64),
    )


def _centerline(lane: dict, where: str) -> np.ndarray:
    """Mean of the two boundaries, resampled to the shorter one (only when centerline is absent)."""
    left = _pts(lane.get("left_lane_boundary") or [], where)
    right = _pts(lane.get("right_lane_boundary") or [], where)
    if not len(left) or not len(right):
        raise Av2FormatError(f"{where}: lane has neither a centerline nor both boundaries")
    n = max(len(left), len(right), 2)
    s = np.linspace(0, 1, n)
    res = lambda p: np.stack([np.interp(s, np.linspace(0, 1, len(p)), p[:, k]) for k in range(3)], -1)  # noqa: E731
    return (res(left) + res(right)) / 2


# ---------------------------------------------------------------------------------------------
# directories / detection
# ---------------------------------------------------------------------------------------------
def _is_scenario_dir(p: Path) -> bool:
    return p.is_dir() and any(p.glob("scenario_*.parquet"))


def iter_av2_scenarios(root: str | Path, origin: str = "sdc") -> Iterator[Scene]:
    """Scenes of every scenario directory under a split root (sorted by directory name)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such AV2 split directory: {root}")
    for d in av2_scenario_paths(root):
        yield read_av2_scenario(d, origin=origin)


def is_av2_path(path: str | Path) -> bool:
    """True for an AV2 scenario directory, a split root holding them, or an AV2 scenario parquet."""
    p = Path(path)
    if p.is_file():
        return p.suffix == ".parquet"
    if p.is_dir():
        return _is_scenario_dir(p) or next(p.glob("*/scenario_*.parquet"), None) is not None or next(
            p.glob("*/*/scenario_*.parquet"), None) is not None
    return False


def av2_scenario_paths(path: str | Path) -> list[Path]:
    """The scenarios under ``path``: itself for a scenario directory or parquet file, else every
    scenario directory below a split root (sorted)."""
    p = Path(path)
    if p.is_file() or _is_scenario_dir(p):
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"no such AV2 scenario or split directory: {p}")
    dirs = sorted({q.parent for q in p.rglob("scenario_*.parquet")})
    if not dirs:
        raise FileNotFoundError(f"no AV2 scenario directories (scenario_*.parquet) under {p}")
    return dirs


def read_scenes(paths: str | Path | Sequence[str | Path], on_corrupt: str = "raise", stats=None) -> Iterator[Scene]:
    """Scenes from any supported path (see :func:`drope.data.formats.read_scenes`; kept here for callers)."""
    from drope.data.formats import read_scenes as _read

    return _read(paths, on_corrupt=on_corrupt, stats=stats)


def av2_track_id(agent_id: int) -> str:
    """The AV2 ``track_id`` string of a Scene agent id read by this module: ``"AV"`` for the ego track,
    the number for numeric ids (all focal and scored tracks in AV2 releases). Non-numeric ids other
    than ``"AV"`` were hashed on reading and do not come back."""
    return AV_TRACK_ID if int(agent_id) == _AV_INT_ID else str(int(agent_id))


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _offset_line(pts: np.ndarray, d: float) -> np.ndarray:
    """Polyline shifted ``d`` metres to its left (x/y only)."""
    if len(pts) < 2:
        return pts.copy()
    tang = np.gradient(pts[:, :2], axis=0)
    norm = np.linalg.norm(tang, axis=1, keepdims=True)
    tang = tang / np.where(norm > 1e-9, norm, 1.0)
    left = np.stack([-tang[:, 1], tang[:, 0]], -1)
    out = pts.copy()
    out[:, :2] += d * left
    return out


def _plist(p: np.ndarray) -> list[dict]:
    return [{"x": float(x), "y": float(y), "z": float(z)} for x, y, z in p.tolist()]


def write_av2_scenario(
    scene: Scene,
    out_dir: str | Path,
    object_types: Sequence[str] | None = None,
    city: str = "drope",
    lane_half_width: float = 1.75,
    road_end_margin: float = 10.0,
) -> Path:
    """Write ``scene`` as an AV2 scenario directory ``out_dir/<scenario_id>/`` (parquet + map JSON).

    The SDC is written as track ``"AV"``; tracks_to_predict[0] as the focal track (category 3), the
    other tracks to predict as scored (2), everyone else unscored (1). ``observed`` marks steps up to
    and including the current index. Returns the scenario directory.

    The road edges are written as the drivable-area polygons they bound
    (:func:`drope.data.drivable_area.drivable_areas_from_road_edges`). Where a road leaves the map
    the polygon is closed across it ``road_end_margin`` metres beyond the kerbs' ends: a real AV2
    map reaches past the tracks of its scenario, while a generated scene's kerbs stop where its
    lanes stop, which is where its tracks enter and leave (closed at the kerb ends, 39 of 94
    vehicles of 8 generated scenes would touch the closing line).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    scene = scene.to("cpu")
    w = scene.to_world()
    sid = scene.scenario_id
    d = Path(out_dir) / sid
    d.mkdir(parents=True, exist_ok=True)
    A, T = scene.num_agents, scene.num_steps
    ttp = scene.tracks_to_predict.tolist()
    tids = [AV_TRACK_ID if a == scene.sdc_index else str(int(scene.agent_id[a])) for a in range(A)]
    focal_idx = ttp[0] if ttp else scene.sdc_index
    focal = tids[focal_idx] if A else ""
    cat = [1] * A
    for a in ttp[1:]:
        cat[a] = 2
    if A:
        cat[focal_idx] = 3
    types = list(object_types) if object_types is not None else [
        _TYPE_BACK.get(ObjectType(int(t)), "unknown") for t in scene.agent_type.tolist()
    ]
    valid = scene.agent_valid.numpy()
    a_idx, t_idx = np.nonzero(valid)
    start_ns = int(round(float(scene.timestamps[0]) * 1e9)) if T else 0
    n = len(a_idx)
    table = pa.table({
        "observed": pa.array(t_idx <= scene.current_index, pa.bool_()),
        "track_id": pa.array([tids[a] for a in a_idx], pa.string()),
        "object_type": pa.array([types[a] for a in a_idx], pa.string()),
        "object_category": pa.array([cat[a] for a in a_idx], pa.int64()),
        "timestep": pa.array(t_idx, pa.int64()),
        "position_x": pa.array(w.agent_pos[a_idx, t_idx, 0], pa.float64()),
        "position_y": pa.array(w.agent_pos[a_idx, t_idx, 1], pa.float64()),
        "heading": pa.array(w.agent_heading[a_idx, t_idx], pa.float64()),
        "velocity_x": pa.array(w.agent_vel[a_idx, t_idx, 0], pa.float64()),
        "velocity_y": pa.array(w.agent_vel[a_idx, t_idx, 1], pa.float64()),
        "scenario_id": pa.array([sid] * n, pa.string()),
        "start_timestamp": pa.array([start_ns] * n, pa.int64()),
        "end_timestamp": pa.array([start_ns + int(round((T - 1) * scene.dt * 1e9))] * n, pa.int64()),
        "num_timestamps": pa.array([T] * n, pa.int64()),
        "focal_track_id": pa.array([focal] * n, pa.string()),
        "city": pa.array([city] * n, pa.string()),
    })
    pq.write_table(table, d / f"scenario_{sid}.parquet")

    world = np.concatenate([w.map_xy, scene.map_points[:, 2:].numpy().astype(np.float64)], axis=-1)
    off = scene.map_offsets.tolist()
    links: dict[int, dict[int, list[int]]] = {}
    for lid, other, kind, *_ in scene.lane_links.tolist():
        links.setdefault(lid, {}).setdefault(kind, []).append(other)
    lanes, crossings, areas = {}, {}, {}
    edges: list[np.ndarray] = []
    for f, (fid, kind, sub) in enumerate(zip(scene.map_id.tolist(), scene.map_type.tolist(), scene.map_subtype.tolist())):
        pts = world[off[f] : off[f + 1]]
        if kind == MapType.lane:
            lk = links.get(fid, {})
            lanes[str(fid)] = {
                "id": fid,
                "is_intersection": bool(scene.lane_interpolating[f]),
                "lane_type": _LANE_TYPE_BACK.get(sub, "VEHICLE"),
                "left_lane_boundary": _plist(_offset_line(pts, lane_half_width)),
                "right_lane_boundary": _plist(_offset_line(pts, -lane_half_width)),
                "left_lane_mark_type": "UNKNOWN",
                "right_lane_mark_type": "UNKNOWN",
                "left_neighbor_id": (lk.get(LaneLink.left) or [None])[0],
                "right_neighbor_id": (lk.get(LaneLink.right) or [None])[0],
                "predecessors": lk.get(LaneLink.entry, []),
                "successors": lk.get(LaneLink.exit, []),
                "centerline": _plist(pts),
            }
        elif kind == MapType.crosswalk and len(pts) >= 4:
            crossings[str(fid)] = {"id": fid, "edge1": _plist(pts[[0, 1]]), "edge2": _plist(pts[[3, 2]])}
        elif kind == MapType.road_edge:
            edges.append(pts)
    # AV2 stores drivable areas, not kerbs: the polygons the road edges bound (new ids: an area
    # is made of several edges)
    next_id = max(scene.map_id.tolist(), default=0) + 1
    for k, ring in enumerate(drivable_areas_from_road_edges(edges, extend=road_end_margin)):
        areas[str(next_id + k)] = {"id": next_id + k, "area_boundary": _plist(ring)}
    (d / f"log_map_archive_{sid}.json").write_text(
        json.dumps({"pedestrian_crossings": crossings, "lane_segments": lanes, "drivable_areas": areas})
    )
    return d


def write_av2_split(scenes: Iterable[Scene], root: str | Path) -> list[Path]:
    """Write each scene as a scenario directory under ``root``."""
    return [write_av2_scenario(s, root) for s in scenes]
