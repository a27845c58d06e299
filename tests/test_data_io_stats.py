"""drope.data.stats on scenes with known kinematics (and the same code path as real data)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from drope.data import scene_from_world
from drope.data.stats import dataset_stats, distribution, format_stats_table, kinematics
from drope.data.types import MapType, ObjectType


def scene(speed: float, yaw_rate: float, types=(1, 1, 2), T=11, origin=(5000.0, -3000.0), heading0=0.7):
    A = len(types)
    t = np.arange(T) * 0.1
    h = heading0 + yaw_rate * t  # [T]
    # a car driving at constant speed along a heading that turns at a constant rate
    vel = np.stack([speed * np.cos(h), speed * np.sin(h)], -1)  # [T, 2]
    xy = np.asarray(origin) + np.cumsum(vel, 0) * 0.1
    xyz = np.concatenate([np.repeat(xy[None], A, 0) + np.arange(A)[:, None, None] * 10, np.zeros((A, T, 1))], -1)
    valid = np.ones((A, T), bool)
    valid[-1, :5] = False
    return scene_from_world(
        scenario_id="k", source="unit", timestamps=t, current_index=5, sdc_index=0, agent_id=np.arange(A),
        agent_type=np.asarray(types), agent_xyz=xyz, agent_heading=np.repeat(h[None], A, 0),
        agent_vel=np.repeat(vel[None], A, 0), agent_size=np.ones((A, T, 3)), agent_valid=valid,
        tracks_to_predict=[], tracks_to_predict_difficulty=[], objects_of_interest=[],
        map_id=[1, 2, 3], map_type=[MapType.lane, MapType.lane, MapType.crosswalk], map_subtype=[0, 0, 0],
        map_offsets=[0, 2, 4, 8], map_points=np.zeros((8, 3)) + (*origin, 0), lane_speed_limit=[0, 0, 0],
        lane_interpolating=[False] * 3, lane_links=np.zeros((0, 7)), stop_sign_lanes=np.zeros((0, 2)),
        signal_lane_id=np.zeros((T, 0)), signal_state=np.zeros((T, 0)), signal_stop_point=np.zeros((T, 0, 3)),
        signal_valid=np.zeros((T, 0), bool),
    ).validate()


def test_constant_turn_gives_known_speed_accel_and_yaw_rate():
    k = kinematics(scene(speed=12.0, yaw_rate=0.3))
    assert k["speed"].size == 3 * 11 - 5 and np.allclose(k["speed"], 12.0, atol=1e-4)
    assert k["accel"].size == 2 * 10 + 5 and np.abs(k["accel"]).max() < 1e-2
    assert np.allclose(k["yaw_rate"], 0.3, atol=1e-4)


def test_yaw_rate_across_the_pi_wrap_is_small():
    k = kinematics(scene(speed=5.0, yaw_rate=0.5, heading0=math.pi - 0.2))
    assert np.allclose(k["yaw_rate"], 0.5, atol=1e-4)


def test_dataset_stats_by_type_and_table():
    s = dataset_stats([scene(10.0, 0.0), scene(20.0, 0.0, types=(1, 3, 3))])
    assert s["num_scenes"] == 2
    assert s["agents_per_scene"]["all"]["mean"] == 3
    assert s["agents_per_scene"]["TYPE_VEHICLE"] == {"mean": 1.5, "p5": pytest.approx(1.05), "p50": 1.5,
                                                      "p95": pytest.approx(1.95)}
    assert s["speed_mps"]["TYPE_CYCLIST"]["p50"] == pytest.approx(20.0, abs=1e-4)
    assert s["speed_mps"]["TYPE_OTHER"]["mean"] is None
    assert s["map_features_per_scene"]["lane"]["mean"] == 2 and s["map_features_per_scene"]["crosswalk"]["p95"] == 1
    assert s["scene_extent_m"]["mean"] > 10
    table = format_stats_table(s)
    assert "speed_mps/TYPE_OTHER" in table and table.splitlines()[0] == "scenes: 2"


def test_empty_inputs():
    assert distribution(np.zeros(0)) == {"mean": None, "p5": None, "p50": None, "p95": None}
    s = dataset_stats([])
    assert s["num_scenes"] == 0 and s["speed_mps"]["TYPE_VEHICLE"]["p50"] is None
    assert "scenes: 0" in format_stats_table(s)
    assert ObjectType.TYPE_UNSET.name not in s["speed_mps"]
