"""Distribution statistics over Scenes (``drope-data stats``), for real and generated data alike.

Pure functions: :func:`dataset_stats` reduces an iterable of Scenes to a JSON-ready dict of
``{mean, p5, p50, p95}`` summaries; :func:`format_stats_table` renders it as text.
Kinematics come from the stored velocities and finite differences over valid step pairs:
speed = |velocity|, acceleration = |Δspeed| / dt, yaw rate = |wrapped Δheading| / dt.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from drope.data.scene import Scene
from drope.data.types import MapType, ObjectType
from drope.geometry import wrap_angle

MAP_KEYS = ["lane", "road_line", "road_edge", "crosswalk", "speed_bump", "driveway", "stop_sign"]
#: Types reported per type (TYPE_UNSET carries no meaning in WOMD).
STAT_TYPES = (ObjectType.TYPE_VEHICLE, ObjectType.TYPE_PEDESTRIAN, ObjectType.TYPE_CYCLIST, ObjectType.TYPE_OTHER)
QUANTILES = ("mean", "p5", "p50", "p95")


def type_counts(scene: Scene) -> list[int]:
    """Agents per ObjectType value (index = enum value); out-of-range types are ignored."""
    t = scene.agent_type[(scene.agent_type >= 0) & (scene.agent_type < len(ObjectType))]
    return torch.bincount(t.cpu(), minlength=len(ObjectType)).tolist()


def map_counts(scene: Scene) -> dict[str, int]:
    counts = torch.bincount(scene.map_type.cpu(), minlength=len(MapType)).tolist()
    return {k: counts[MapType[k]] for k in MAP_KEYS}


def kinematics(scene: Scene) -> dict[str, np.ndarray]:
    """Per valid (agent, step) speed and per valid step pair |acceleration| and |yaw rate|,
    each with the agent type of every sample (keys ``X`` and ``X_type``)."""
    valid = scene.agent_valid.cpu().numpy()
    h = scene.agent_heading.cpu().numpy().astype(np.float64)
    speed = np.linalg.norm(scene.agent_vel.cpu().numpy().astype(np.float64), axis=-1)  # [A, T]
    pair = valid[:, 1:] & valid[:, :-1]  # [A, T-1]
    acc = np.abs(np.diff(speed, axis=1)) / scene.dt
    yaw = np.abs(wrap_angle(np.diff(h, axis=1))) / scene.dt
    types = np.broadcast_to(scene.agent_type.cpu().numpy()[:, None], valid.shape)
    return {
        "speed": speed[valid],
        "speed_type": types[valid],
        "accel": acc[pair],
        "accel_type": types[:, 1:][pair],
        "yaw_rate": yaw[pair],
        "yaw_rate_type": types[:, 1:][pair],
    }


def scene_extent(scene: Scene) -> float:
    """Largest side (m) of the axis-aligned box around all valid agent positions."""
    xy = scene.agent_pos.cpu().numpy()[scene.agent_valid.cpu().numpy()]
    return float(np.ptp(xy, axis=0).max()) if len(xy) else 0.0


def distribution(x: np.ndarray) -> dict[str, float | None]:
    """``{mean, p5, p50, p95}`` of a 1-D sample (None for an empty sample)."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return {q: None for q in QUANTILES}
    p5, p50, p95 = np.percentile(x, [5, 50, 95])
    return {"mean": float(x.mean()), "p5": float(p5), "p50": float(p50), "p95": float(p95)}


def dataset_stats(scenes: Iterable[Scene]) -> dict:
    """Distribution summary over scenes: agents per scene (total and by type), speed,
    acceleration and yaw rate by type, scene extent, map features per scene by kind."""
    n = 0
    agents_total: list[int] = []
    per_type: dict[ObjectType, list[int]] = {t: [] for t in STAT_TYPES}
    kin: dict[str, list[np.ndarray]] = {}
    extents: list[float] = []
    maps: dict[str, list[int]] = {k: [] for k in MAP_KEYS}
    for scene in scenes:
        n += 1
        agents_total.append(scene.num_agents)
        counts = type_counts(scene)
        for t in STAT_TYPES:
            per_type[t].append(counts[t])
        for k, v in kinematics(scene).items():
            kin.setdefault(k, []).append(v)
        extents.append(scene_extent(scene))
        for k, c in map_counts(scene).items():
            maps[k].append(c)
    cat = {k: np.concatenate(v) for k, v in kin.items()} if kin else {}
    empty = np.zeros(0)

    def by_type(key: str, t: ObjectType) -> np.ndarray:
        return cat[key][cat[key + "_type"] == t] if cat else empty

    return {
        "num_scenes": n,
        "agents_per_scene": {"all": distribution(np.asarray(agents_total))}
        | {t.name: distribution(np.asarray(per_type[t])) for t in STAT_TYPES},
        "speed_mps": {t.name: distribution(by_type("speed", t)) for t in STAT_TYPES},
        "accel_mps2": {t.name: distribution(by_type("accel", t)) for t in STAT_TYPES},
        "yaw_rate_radps": {t.name: distribution(by_type("yaw_rate", t)) for t in STAT_TYPES},
        "scene_extent_m": distribution(np.asarray(extents)),
        "map_features_per_scene": {k: distribution(np.asarray(v)) for k, v in maps.items()},
    }


def format_stats_table(stats: dict) -> str:
    """Render :func:`dataset_stats` output as a plain-text table (``-``: no samples)."""
    rows = [f"scenes: {stats['num_scenes']}", f"{'quantity':<38}" + "".join(f"{q:>10}" for q in QUANTILES)]

    def line(name: str, d: dict) -> str:
        return f"{name:<38}" + "".join(f"{d[q]:>10.2f}" if d[q] is not None else f"{'-':>10}" for q in QUANTILES)

    for group in ("agents_per_scene", "speed_mps", "accel_mps2", "yaw_rate_radps", "map_features_per_scene"):
        rows += [line(f"{group}/{key}", d) for key, d in stats[group].items()]
    rows.append(line("scene_extent_m", stats["scene_extent_m"]))
    if "corrupt_records_skipped" in stats:
        rows.append(f"corrupt records skipped: {stats['corrupt_records_skipped']}")
    return "\n".join(rows)
