"""Per-scene summary records (``drope-data info``); the key names are a contract other tools use.

Distribution statistics live in :mod:`drope.data.stats` (re-exported here for older callers).
"""
from __future__ import annotations

from drope.data.scene import Scene
from drope.data.stats import MAP_KEYS, dataset_stats, format_stats_table, map_counts, type_counts
from drope.data.types import ObjectType

__all__ = ["scene_info", "dataset_stats", "format_stats_table", "MAP_KEYS"]


def scene_info(scene: Scene) -> dict:
    """The ``drope-data info --json`` record of one scene.

    ``sdc_world_pose`` is ``[x, y, heading]`` in world coordinates (float64 via the scene origin),
    or None when the scene has no SDC state at the current step.
    """
    sdc, cur = scene.sdc_index, scene.current_index
    has_sdc = 0 <= sdc < scene.num_agents and bool(scene.agent_valid[sdc, cur])
    pose = None
    if has_sdc:
        xy = scene.to_world_xy(scene.agent_pos[sdc, cur])
        pose = [float(xy[0]), float(xy[1]), float(scene.to_world_heading(scene.agent_heading[sdc, cur]))]
    return {
        "scenario_id": scene.scenario_id,
        "source": scene.source,
        "num_agents": scene.num_agents,
        "agent_types": {ObjectType(i).name: c for i, c in enumerate(type_counts(scene)) if c},
        "num_steps": scene.num_steps,
        "current_index": cur,
        "sdc_index": sdc,
        "sdc_track_id": int(scene.agent_id[sdc]) if 0 <= sdc < scene.num_agents else None,
        "sdc_world_pose": pose,
        "map_feature_counts": map_counts(scene),
        "tracks_to_predict": scene.tracks_to_predict.tolist(),
        "num_valid_at_current": int(scene.agent_valid[:, cur].sum()),
        "num_steps_with_signals": int(scene.signal_valid.any(dim=1).sum()),
    }
