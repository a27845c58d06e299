"""Hand-built scenes for tests (a helper module, not a test module: tests import it, not each other)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from drope.data import Scene, scene_from_world
from drope.data.batch import pad_history
from drope.data.types import MapType, ObjectType


def make_scene(A=3, T=11, origin=(-7785.0, -6683.0), seed=0) -> Scene:
    r = np.random.default_rng(seed)
    xyz = np.concatenate([r.normal(size=(A, T, 2)) * 20 + origin, np.zeros((A, T, 1))], -1)
    return scene_from_world(
        scenario_id="test", source="unit", timestamps=np.arange(T) * 0.1, current_index=T // 2, sdc_index=0,
        agent_id=np.arange(A) + 10, agent_type=np.full(A, ObjectType.TYPE_VEHICLE), agent_xyz=xyz,
        agent_heading=r.uniform(-math.pi, math.pi, (A, T)), agent_vel=r.normal(size=(A, T, 2)),
        agent_size=np.tile([4.5, 2.0, 1.6], (A, T, 1)), agent_valid=np.ones((A, T), bool),
        tracks_to_predict=[1], tracks_to_predict_difficulty=[1], objects_of_interest=[],
        map_id=[1, 2], map_type=[MapType.lane, MapType.stop_sign], map_subtype=[2, 0], map_offsets=[0, 3, 4],
        map_points=np.concatenate([r.normal(size=(4, 2)) * 10 + origin, np.zeros((4, 1))], -1),
        lane_speed_limit=[25, 0], lane_interpolating=[False, False], lane_links=np.zeros((0, 7)),
        stop_sign_lanes=[[2, 1]], signal_lane_id=np.ones((T, 1)), signal_state=np.full((T, 1), 4),
        signal_stop_point=np.tile([*origin, 0.0], (T, 1, 1)), signal_valid=np.ones((T, 1), bool),
    )


def av2_shaped(scene: Scene) -> Scene:
    """A generated scene (91 steps, current 10) in AV2's layout: 39 unobserved steps in front and cut
    to 110 steps, so the current step is 49 and 60 steps follow it."""
    padded = pad_history(scene, 50)
    cut = {f.name: getattr(padded, f.name).narrow(f.metadata["shape"].index("T"), 0, 110)
           for f in Scene.tensor_fields() if "T" in f.metadata["shape"]}
    return dataclasses.replace(padded, **cut, source="av2").validate()
