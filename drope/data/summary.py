"""Per-scene summaries (``drope-data info``) and distribution statistics (``drope-data stats``).

Pure functions over Scenes; the CLI only formats their output.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch

from drope.data.scene import Scene
from drope.data.types import MapType, ObjectType

MAP_KEYS = ["lane", "road_line", "road_edge", "crosswalk", "speed_bump", "driveway", "stop_sign"]


def scene_info(scene: Scene) -> dict:
    """The ``drope-data info --json`` record of one scene (key names are a contract)."""
    types = torch.bincount(scene.agent_type, minlength=len(ObjectType)).tolist()
    counts = torch.bincount(scene.map_type, minlength=len(MapType)).tolist()
    sdc, cur = scene.sdc_index, scene.current_index
    xy = scene.to_world_xy(scene.agent_pos[sdc, cur])
    heading = float(scene.to_world_heading(scene.agent_heading[sdc, cur]))
    return {
        "scenario_id": scene.scenario_id,
        "source": scene.source,
        "num_agents": scene.num_agents,
        "agent_types": {ObjectType(i).name: c for i, c in enumerate(types) if c},
        "num_steps": scene.num_steps,
        "current_index": cur,
        "sdc_index": sdc,
        "sdc_track_id": int(scene.agent_id[sdc]) if scene.num_agents else None,
        "sdc_world_pose": [float(xy[0]), float(xy[1]), heading],
        "map_feature_counts": {k: counts[MapType[k]] for k in MAP_KEYS},
        "tracks_to_predict": scene.tracks_to_predict.tolist(),
        "num_valid_at_current": int(scene.agent_valid[:, cur].sum()),
    }


def _kinematics(scene: Scene) -> dict[str, np.ndarray]:
    """Per valid (agent, step) speed, |acceleration| and |yaw rate| from finite differences."""
    valid = scene.agent_valid.numpy()
    h = scene.agent_heading.numpy().astype(np.float64)
    speed = np.linalg.norm(scene.agent_vel.numpy(), axis=-1)
    pair = valid[:, 1:] & valid[:, :-1]
    acc = np.abs(np.diff(speed, axis=1)) / scene.dt
    yaw = np.abs((np.diff(h, axis=1) + math.pi) % (2 * math.pi) - math.pi) / scene.dt
    types = np.broadcast_to(scene.agent_type.numpy()[:, None], valid.shape)
    return {
        "speed": speed[valid],
        "speed_type": types[valid],
        "accel": acc[pair],
        "accel_type": types[:, 1:][pair],
        "yaw_rate": yaw[pair],
        "yaw_rate_type": types[:, 1:][pair],
    }


def _dist(x: np.ndarray) -> dict[str, float | None]:
    if x.size == 0:
        return {"mean": None, "p5": None, "p50": None, "p95": None}
    p5, p50, p95 = np.percentile(x, [5, 50, 95])
    return {"mean": float(x.mean()), "p5": float(p5), "p50": float(p50), "p95": float(p95)}


def dataset_stats(scenes: Iterable[Scene]) -> dict:
    """Distribution summary over scenes: agents per scene by type, kinematics by type, extent, map."""
    per_type_counts: dict[str, list[int]] = {t.name: [] for t in ObjectType}
    kin: dict[str, list[np.ndarray]] = {}
    extents, map_counts, n = [], {k: [] for k in MAP_KEYS}, 0
    for scene in scenes:
        n += 1
        types = torch.bincount(scene.agent_type, minlength=len(ObjectType)).tolist()
        for t in ObjectType:
            per_type_counts[t.name].append(types[t])
        for k, v in _kinematics(scene).items():
            kin.setdefault(k, []).append(v)
        valid = scene.agent_valid.numpy()
        xy = scene.agent_pos.numpy()[valid]
        extents.append(float(np.ptp(xy, axis=0).max()) if len(xy) else 0.0)
        counts = torch.bincount(scene.map_type, minlength=len(MapType)).tolist()
        for k in MAP_KEYS:
            map_counts[k].append(counts[MapType[k]])
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in kin.items()}
    out: dict = {"num_scenes": n, "agents_per_scene": {}, "speed_mps": {}, "accel_mps2": {}, "yaw_rate_radps": {}}
    for t in (ObjectType.TYPE_VEHICLE, ObjectType.TYPE_PEDESTRIAN, ObjectType.TYPE_CYCLIST):
        out["agents_per_scene"][t.name] = _dist(np.asarray(per_type_counts[t.name], float))
        out["speed_mps"][t.name] = _dist(cat["speed"][cat["speed_type"] == t])
        out["accel_mps2"][t.name] = _dist(cat["accel"][cat["accel_type"] == t])
        out["yaw_rate_radps"][t.name] = _dist(cat["yaw_rate"][cat["yaw_rate_type"] == t])
    out["scene_extent_m"] = _dist(np.asarray(extents))
    out["map_features_per_scene"] = {k: _dist(np.asarray(v, float)) for k, v in map_counts.items()}
    return out


def format_stats_table(stats: dict) -> str:
    """Render :func:`dataset_stats` output as a plain-text table."""
    rows = [f"scenes: {stats['num_scenes']}", f"{'quantity':<38}{'mean':>10}{'p5':>10}{'p50':>10}{'p95':>10}"]

    def fmt(v):
        return f"{v:>10.2f}" if v is not None else f"{'-':>10}"

    for group in ("agents_per_scene", "speed_mps", "accel_mps2", "yaw_rate_radps", "map_features_per_scene"):
        for key, d in stats[group].items():
            rows.append(f"{group + '/' + key:<38}" + "".join(fmt(d[q]) for q in ("mean", "p5", "p50", "p95")))
    d = stats["scene_extent_m"]
    rows.append(f"{'scene_extent_m':<38}" + "".join(fmt(d[q]) for q in ("mean", "p5", "p50", "p95")))
    return "\n".join(rows)
