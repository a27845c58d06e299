"""Argoverse 2 motion-forecasting reader/writer: round trip, type mapping, test split, bad input, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from drope.data.av2 import (  # noqa: E402
    REQUIRED_COLUMNS,
    av2_type,
    iter_av2_scenarios,
    read_av2_scenario,
    read_av2_scenario_with_extras,
    read_scenes,
    write_av2_scenario,
)
from drope.data.types import MapType, ObjectType  # noqa: E402
from drope.sim.generate.scenario import generate_scene  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    return generate_scene(7, 0)[0].validate()


def _hand_scenario(tmp_path, T=110, types=("vehicle", "bus", "pedestrian", "cyclist", "motorcyclist", "static", "riderless_bicycle")):
    """A hand-built AV2 scenario: track AV plus one track per type; the pedestrian is focal."""
    sid = "hand-0001"
    d = tmp_path / sid
    d.mkdir()
    tracks = ["AV"] + [str(100 + i) for i in range(len(types))]
    ttypes = ["vehicle"] + list(types)
    cats = [1, 2, 1, 3, 2, 0, 1, 1][: len(tracks)]  # track "101"(bus) scored, "102"(pedestrian) focal, "103" scored
    rows = {c: [] for c in REQUIRED_COLUMNS}
    for k, (tid, ty, cat) in enumerate(zip(tracks, ttypes, cats)):
        for t in range(T):
            rows["observed"].append(t < 50)
            rows["track_id"].append(tid)
            rows["object_type"].append(ty)
            rows["object_category"].append(cat)
            rows["timestep"].append(t)
            rows["position_x"].append(5000.0 + k * 3 + 0.5 * t)
            rows["position_y"].append(-2000.0 + k)
            rows["heading"].append(0.1 * k)
            rows["velocity_x"].append(5.0)
            rows["velocity_y"].append(0.0)
            rows["scenario_id"].append(sid)
            rows["start_timestamp"].append(315_967_000_000_000_000)
            rows["end_timestamp"].append(315_967_000_000_000_000 + (T - 1) * 100_000_000)
            rows["num_timestamps"].append(T)
            rows["focal_track_id"].append("102")
            rows["city"].append("PIT")
    pq.write_table(pa.table(rows), d / f"scenario_{sid}.parquet")
    line = lambda x0, y: [{"x": x0 + i, "y": y, "z": 1.0} for i in range(5)]  # noqa: E731
    mp = {
        "lane_segments": {
            "7": {"id": 7, "centerline": line(5000, -2000), "left_lane_boundary": line(5000, -1998.25),
                  "right_lane_boundary": line(5000, -2001.75), "left_lane_mark_type": "SOLID_YELLOW",
                  "right_lane_mark_type": "DASHED_WHITE", "lane_type": "VEHICLE", "is_intersection": False,
                  "predecessors": [], "successors": [8], "left_neighbor_id": None, "right_neighbor_id": 8},
            "8": {"id": 8, "centerline": line(5000, -2003.5), "left_lane_boundary": line(5000, -2001.75),
                  "right_lane_boundary": line(5000, -2005.25), "left_lane_mark_type": "DASHED_WHITE",
                  "right_lane_mark_type": "SOLID_WHITE", "lane_type": "BIKE", "is_intersection": True,
                  "predecessors": [7], "successors": [], "left_neighbor_id": 7, "right_neighbor_id": None},
        },
        "pedestrian_crossings": {"20": {"id": 20, "edge1": line(5010, -1995)[:2], "edge2": line(5010, -1990)[:2]}},
        "drivable_areas": {"30": {"id": 30, "area_boundary": [{"x": 4990, "y": -2010, "z": 0}, {"x": 5020, "y": -2010, "z": 0},
                                                               {"x": 5020, "y": -1990, "z": 0}]}},
    }
    (d / f"log_map_archive_{sid}.json").write_text(json.dumps(mp))
    return d


def test_round_trip_generated_scene(tmp_path, scene):
    d = write_av2_scenario(scene, tmp_path)
    assert (d / f"scenario_{scene.scenario_id}.parquet").is_file()
    assert (d / f"log_map_archive_{scene.scenario_id}.json").is_file()
    assert set(pq.read_schema(d / f"scenario_{scene.scenario_id}.parquet").names) == set(REQUIRED_COLUMNS)
    r = read_av2_scenario(d).validate()
    assert r.source == "av2" and r.scenario_id == scene.scenario_id
    assert r.num_agents == scene.num_agents and r.num_steps == scene.num_steps
    assert r.current_index == scene.current_index and r.sdc_index == scene.sdc_index
    assert bool((r.agent_valid == scene.agent_valid).all())
    assert r.agent_type.tolist() == scene.agent_type.tolist()
    v = scene.agent_valid.numpy()
    wr, ws = r.to_world(), scene.to_world()
    np.testing.assert_allclose(wr.agent_pos[v], ws.agent_pos[v], atol=1e-4)
    np.testing.assert_allclose(wr.agent_vel[v], ws.agent_vel[v], atol=1e-4)
    dh = np.angle(np.exp(1j * (wr.agent_heading[v] - ws.agent_heading[v])))
    assert np.abs(dh).max() < 1e-4
    np.testing.assert_allclose(r.timestamps.numpy(), scene.timestamps.numpy(), atol=1e-6)
    # AV2 semantics: focal first, then the scored tracks in agent order
    ttp = scene.tracks_to_predict.tolist()
    assert r.tracks_to_predict.tolist() == [ttp[0]] + sorted(ttp[1:])
    # lanes and crosswalks survive; lane links too; road edges come back as the boundary of the
    # drivable area they were written as (tests/test_data_av2_edges.py)
    for kind in (MapType.lane, MapType.crosswalk):
        assert int((r.map_type == kind).sum()) == int((scene.map_type == kind).sum())
    assert int((r.map_type == MapType.road_edge).sum()) >= 1
    lanes_s = scene.map_type == MapType.lane
    lanes_r = r.map_type == MapType.lane
    assert r.map_id[lanes_r].tolist() == scene.map_id[lanes_s].tolist()
    np.testing.assert_allclose(
        r.to_world_xy(r.map_points[r.map_feature_index() == int(np.flatnonzero(lanes_r.numpy())[0])][:, :2]),
        scene.to_world_xy(scene.map_points[scene.map_feature_index() == int(np.flatnonzero(lanes_s.numpy())[0])][:, :2]),
        atol=1e-3,
    )
    exits = lambda s: sorted(map(tuple, s.lane_links[s.lane_links[:, 2] == 1][:, :2].tolist()))  # noqa: E731
    assert exits(r) == exits(scene)


def test_type_mapping_and_hand_scenario(tmp_path):
    assert av2_type("vehicle") == av2_type("bus") == ObjectType.TYPE_VEHICLE
    assert av2_type("pedestrian") == ObjectType.TYPE_PEDESTRIAN
    assert av2_type("cyclist") == av2_type("motorcyclist") == ObjectType.TYPE_CYCLIST
    for other in ("static", "background", "construction", "riderless_bicycle", "unknown"):
        assert av2_type(other) == ObjectType.TYPE_OTHER
    d = _hand_scenario(tmp_path)
    s, extras = read_av2_scenario_with_extras(d)
    s.validate()
    assert s.agent_type.tolist() == [1, 1, 1, 2, 3, 3, 4, 4]
    assert extras.object_types == ["vehicle", "vehicle", "bus", "pedestrian", "cyclist", "motorcyclist", "static",
                                   "riderless_bicycle"]
    assert extras.city == "PIT" and extras.focal_track_id == "102"
    # no sizes in AV2: typical ones per AV2 object_type, a bus as long as a bus
    assert s.agent_size[..., 0].amax(dim=1).tolist() == pytest.approx([4.5, 4.5, 12.0, 0.6, 2.0, 2.2, 1.0, 1.8])
    assert s.sdc_index == 0 and extras.track_ids[0] == "AV"
    assert s.tracks_to_predict.tolist() == [3, 1, 4]  # focal "102", then scored "100", "103"
    assert s.agent_id[1:].tolist() == [100, 101, 102, 103, 104, 105, 106]
    assert s.num_steps == 110 and s.current_index == 49
    # SDC pose at the current step is the frame origin
    np.testing.assert_allclose(s.origin_xy.numpy(), [5000.0 + 0.5 * 49, -2000.0])
    counts = {k.name: int((s.map_type == k).sum()) for k in MapType}
    # 2 lanes, 3 distinct boundaries (the shared one once), 1 crosswalk, 1 road edge
    assert counts["lane"] == 2 and counts["road_line"] == 3 and counts["crosswalk"] == 1 and counts["road_edge"] == 1
    assert s.lane_interpolating.tolist()[:2] == [False, True]
    assert len(s.map_polyline(int(np.flatnonzero((s.map_type == MapType.crosswalk).numpy())[0]))) == 4


def test_test_split_with_50_steps(tmp_path):
    d = _hand_scenario(tmp_path, T=50)
    s = read_av2_scenario(d).validate()
    assert s.num_steps == 50 and s.current_index == 49
    assert bool(s.agent_valid[:, 49].all())


def test_split_root_iteration_and_detector(tmp_path):
    for i in range(3):
        sc, _ = generate_scene(3, i)
        write_av2_scenario(sc, tmp_path / "val")
    ids = [s.scenario_id for s in iter_av2_scenarios(tmp_path / "val")]
    assert ids == sorted(ids) and len(ids) == 3
    assert [s.scenario_id for s in read_scenes(tmp_path / "val")] == ids
    one = sorted((tmp_path / "val").iterdir())[0]
    assert [s.source for s in read_scenes([one])] == ["av2"]


def test_bad_input_errors(tmp_path, scene):
    d = write_av2_scenario(scene, tmp_path / "ok")
    # directory without map JSON
    nomap = tmp_path / "nomap"
    nomap.mkdir()
    pq_path = d / f"scenario_{scene.scenario_id}.parquet"
    (nomap / pq_path.name).write_bytes(pq_path.read_bytes())
    with pytest.raises(FileNotFoundError, match="log_map_archive"):
        read_av2_scenario(nomap)
    # parquet missing columns
    miss = tmp_path / "miss"
    miss.mkdir()
    table = pq.read_table(pq_path).drop(["heading", "city"])
    pq.write_table(table, miss / pq_path.name)
    (miss / f"log_map_archive_{scene.scenario_id}.json").write_text("{\"lane_segments\": {}}")
    with pytest.raises(ValueError, match=r"missing column\(s\) heading, city") as e:
        read_av2_scenario(miss)
    assert pq_path.name in str(e.value)
    # non-parquet file
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / pq_path.name).write_text("not parquet at all")
    (junk / f"log_map_archive_{scene.scenario_id}.json").write_text("{\"lane_segments\": {}}")
    with pytest.raises(ValueError, match="not a readable parquet") as e:
        read_av2_scenario(junk / pq_path.name)
    assert str(junk / pq_path.name) in str(e.value)
    # empty directory, missing path
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        read_av2_scenario(empty)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_av2_scenario(tmp_path / "nowhere")


def test_cli_info_json_on_av2_directory(tmp_path, scene, capsys):
    from drope.data.cli import main

    d = write_av2_scenario(scene, tmp_path)
    assert main(["info", str(d), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    for key in ("scenario_id", "num_agents", "num_steps", "current_index", "sdc_index", "sdc_world_pose",
                "tracks_to_predict", "agent_types", "map_feature_counts", "num_valid_at_current", "source"):
        assert key in rec, key
    assert rec["source"] == "av2" and rec["scenario_id"] == scene.scenario_id
    assert rec["num_steps"] == scene.num_steps and rec["sdc_index"] == scene.sdc_index
    w = scene.to_world()
    np.testing.assert_allclose(rec["sdc_world_pose"][:2], w.agent_pos[scene.sdc_index, scene.current_index], atol=1e-4)


def test_cli_info_still_reads_womd(tmp_path, scene, capsys):
    from drope.data.cli import main
    from drope.data.womd import write_scenarios

    shard = tmp_path / "s.tfrecord"
    write_scenarios(shard, [scene])
    assert main(["info", str(shard), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip())
    assert rec["scenario_id"] == scene.scenario_id and rec["source"] == "womd"


def test_cli_info_names_a_bad_av2_file(tmp_path, scene, capsys):
    from drope.data.cli import main

    d = write_av2_scenario(scene, tmp_path)
    pq_path = d / f"scenario_{scene.scenario_id}.parquet"
    pq.write_table(pq.read_table(pq_path).drop(["velocity_x"]), pq_path)
    assert main(["info", str(d), "--json"]) == 2
    err = capsys.readouterr().err
    assert "velocity_x" in err and pq_path.name in err
