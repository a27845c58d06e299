"""WOMD reader/writer against the official protos and the shared sample's published facts."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drope.data.summary import scene_info
from drope.data.tfrecord import CorruptRecordError, encode_record, iter_records
from drope.data.womd import ReadStats, read_scenarios, scene_to_proto, write_scenarios


@pytest.fixture(scope="module")
def raw(womd_path) -> bytes:
    ((_, _, data),) = list(iter_records(womd_path))
    return data


@pytest.fixture(scope="module")
def proto(raw):
    from waymo_open_dataset.protos import scenario_pb2

    return scenario_pb2.Scenario.FromString(raw)


@pytest.fixture(scope="module")
def scene(womd_path):
    (s,) = list(read_scenarios(womd_path))
    return s.validate()


def test_sample_facts(scene, proto):
    info = scene_info(scene)
    assert info["scenario_id"] == proto.scenario_id == "637f20cafde22ff8"
    assert info["num_agents"] == len(proto.tracks) == 83
    assert info["agent_types"] == {"TYPE_VEHICLE": 70, "TYPE_PEDESTRIAN": 10, "TYPE_CYCLIST": 3}
    assert (info["num_steps"], info["current_index"], info["sdc_index"]) == (91, 10, 82)
    assert info["sdc_track_id"] == 2406 and info["num_valid_at_current"] == 50
    assert info["tracks_to_predict"] == [72, 43, 42] == [r.track_index for r in proto.tracks_to_predict]
    assert info["map_feature_counts"] == {
        "lane": 199, "road_line": 59, "road_edge": 28, "crosswalk": 4, "speed_bump": 3, "driveway": 0, "stop_sign": 8
    }
    assert len(proto.dynamic_map_states) == 91 == info["num_steps_with_signals"]
    x, y, h = info["sdc_world_pose"]
    assert x == pytest.approx(-7785.9165, abs=1e-3) and y == pytest.approx(-6683.4059, abs=1e-3)
    assert h == pytest.approx(-1.54576, abs=1e-5)
    assert scene.dt == 0.1 and scene.source == "womd"


def test_world_coordinates_within_a_millimetre(scene, proto):
    w = scene.to_world()
    valid = scene.agent_valid.numpy()
    assert (valid == np.array([[s.valid for s in t.states] for t in proto.tracks])).all()
    ref = np.array([[(s.center_x, s.center_y) for s in t.states] for t in proto.tracks])
    assert np.abs(w.agent_pos[valid] - ref[valid]).max() < 1e-3
    ref_h = np.array([[s.heading for s in t.states] for t in proto.tracks])
    dh = (w.agent_heading - ref_h + math.pi) % (2 * math.pi) - math.pi
    assert np.abs(dh[valid]).max() < 1e-5
    pts = []
    for f in proto.map_features:
        kind = f.WhichOneof("feature_data")
        body = getattr(f, kind)
        poly = [body.position] if kind == "stop_sign" else (
            body.polygon if kind in ("crosswalk", "speed_bump", "driveway") else body.polyline)
        pts += [(p.x, p.y) for p in poly]
    assert np.abs(w.map_xy - np.array(pts)).max() < 1e-3
    # the scene frame is re-centred on the SDC, facing +x
    assert float(scene.agent_pos[82, 10].abs().max()) < 1e-4 and abs(float(scene.agent_heading[82, 10])) < 1e-6


@pytest.mark.parametrize("suffix", [".tfrecord", ".tfrecord.gz"])
def test_read_write_read_round_trip(scene, tmp_path, suffix):
    out = tmp_path / ("rt" + suffix)
    assert write_scenarios(out, [scene, scene]) == 2
    again = list(read_scenarios(out))
    assert len(again) == 2 and again[1].scenario_id == scene.scenario_id and again[0].dt == scene.dt
    for f in type(scene).tensor_fields():
        a, b = getattr(scene, f.name), getattr(again[0], f.name)
        assert a.shape == b.shape and a.dtype == b.dtype, f.name
        if f.name == "agent_heading":
            d = torch.remainder(a.double() - b.double() + math.pi, 2 * math.pi) - math.pi
            assert d.abs().max() < 1e-6
        elif a.is_floating_point():
            assert torch.allclose(a, b, atol=1e-5, rtol=0), f.name
        else:
            assert torch.equal(a, b), f.name


def test_written_proto_matches_the_original(scene, proto):
    from waymo_open_dataset.protos import scenario_pb2

    out = scenario_pb2.Scenario.FromString(scene_to_proto(scene).SerializeToString())
    assert out.scenario_id == proto.scenario_id
    assert [t.id for t in out.tracks] == [t.id for t in proto.tracks]
    assert [t.object_type for t in out.tracks] == [t.object_type for t in proto.tracks]
    assert [f.id for f in out.map_features] == [f.id for f in proto.map_features]
    assert [f.WhichOneof("feature_data") for f in out.map_features] == [
        f.WhichOneof("feature_data") for f in proto.map_features
    ]
    assert list(out.objects_of_interest) == list(proto.objects_of_interest)
    lane_in = next(f.lane for f in proto.map_features if f.WhichOneof("feature_data") == "lane")
    lane_out = next(f.lane for f in out.map_features if f.WhichOneof("feature_data") == "lane")
    assert list(lane_in.entry_lanes) == list(lane_out.entry_lanes) and lane_in.type == lane_out.type
    # invalid states: valid=False and zeros
    a, t = map(int, (~scene.agent_valid).nonzero()[0])
    s = out.tracks[a].states[t]
    assert not s.valid and s.center_x == 0.0 and s.velocity_y == 0.0
    assert sum(len(d.lane_states) for d in out.dynamic_map_states) == sum(
        len(d.lane_states) for d in proto.dynamic_map_states
    )


def test_writer_is_deterministic(scene, tmp_path):
    write_scenarios(tmp_path / "a.tfrecord.gz", [scene])
    write_scenarios(tmp_path / "b.tfrecord.gz", [scene])
    assert (tmp_path / "a.tfrecord.gz").read_bytes() == (tmp_path / "b.tfrecord.gz").read_bytes()


def _shard(tmp_path, raw, middle: bytes):
    path = tmp_path / "mixed.tfrecord"
    path.write_bytes(encode_record(raw) + middle + encode_record(raw))
    return path, len(encode_record(raw))


def _broken_scenario(proto, what: str) -> bytes:
    from waymo_open_dataset.protos import map_pb2, scenario_pb2

    if what == "map feature bytes":  # parses as a Scenario (unknown fields) but is none
        return map_pb2.MapFeature(id=7).SerializeToString()
    p = scenario_pb2.Scenario()
    p.CopyFrom(proto)
    if what == "track states":
        del p.tracks[5].states[-1]
    elif what == "timestamps":
        p.timestamps_seconds[3] = p.timestamps_seconds[2]
    elif what == "sdc index":
        p.sdc_track_index = 500
    return p.SerializeToString()


@pytest.mark.parametrize(
    "middle,match",
    [
        (lambda raw, proto: encode_record(b"\x08\x96\x01 not a scenario \xff\xff"), "not a Scenario"),
        (lambda raw, proto: encode_record(raw[: len(raw) // 2]), "not a Scenario"),
        (lambda raw, proto: encode_record(_broken_scenario(proto, "map feature bytes")), "not a Scenario"),
        (lambda raw, proto: encode_record(_broken_scenario(proto, "track states")), r"tracks\[5\].*90 states"),
        (lambda raw, proto: encode_record(_broken_scenario(proto, "timestamps")), "timestamps_seconds"),
        (lambda raw, proto: encode_record(_broken_scenario(proto, "sdc index")), "sdc_track_index"),
        (lambda raw, proto: encode_record(raw)[:-1] + b"\x00", "data CRC"),
        (lambda raw, proto: encode_record(raw)[:9] + b"\x00" + encode_record(raw)[10:], "length CRC"),
    ],
    ids=["garbage", "cut-proto", "other-proto", "track-states", "timestamps", "sdc-index", "data-crc", "length-crc"],
)
def test_corrupt_record_raises_or_is_skipped(raw, proto, tmp_path, middle, match):
    path, first_len = _shard(tmp_path, raw, middle(raw, proto))
    with pytest.raises(CorruptRecordError, match=match) as e:
        list(read_scenarios(path))
    assert (e.value.path, e.value.record_index, e.value.offset) == (str(path), 1, first_len)
    assert f"{path}: record 1 at byte offset {first_len}" in str(e.value)
    stats = ReadStats()
    scenes = list(read_scenarios(path, on_corrupt="skip", stats=stats))
    assert len(scenes) == 2 and (stats.records, stats.skipped) == (2, 1)


def test_truncated_shard(raw, tmp_path):
    path = tmp_path / "trunc.tfrecord"
    path.write_bytes(encode_record(raw) + encode_record(raw)[:-100])
    with pytest.raises(CorruptRecordError, match="truncated") as e:
        list(read_scenarios(path))
    assert e.value.record_index == 1
    stats = ReadStats()
    assert len(list(read_scenarios(path, on_corrupt="skip", stats=stats))) == 1 and stats.skipped == 1


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such scenario file"):
        list(read_scenarios(tmp_path / "nope.tfrecord"))
    with pytest.raises(ValueError, match="on_corrupt"):
        list(read_scenarios([], on_corrupt="ignore"))


def random_scene(seed: int):
    from drope.data import scene_from_world
    from drope.data.types import LaneLink, MapType

    r = np.random.default_rng(seed)
    A, T, S = int(r.integers(1, 6)), int(r.integers(2, 15)), int(r.integers(0, 3))
    origin = r.uniform(-8000, 8000, 2)
    kinds = r.choice(list(MapType), size=int(r.integers(1, 8)))
    npts = np.where(kinds == MapType.stop_sign, 1, r.integers(1, 6, len(kinds)))
    valid = r.random((A, T)) < 0.7
    valid[0, T // 2] = True
    lanes = [i for i, k in enumerate(kinds) if k == MapType.lane]
    ids = r.choice(10_000, len(kinds), replace=False)
    links = [(ids[i], 77, LaneLink(r.integers(0, 4)), 0, 1, 2, 3) for i in lanes]
    return scene_from_world(
        scenario_id=f"rnd{seed}", source="womd", timestamps=np.arange(T) * 0.1 + 5, current_index=T // 2,
        sdc_index=0, agent_id=r.choice(100_000, A, replace=False), agent_type=r.integers(0, 5, A),
        agent_xyz=np.concatenate([r.normal(size=(A, T, 2)) * 80 + origin, r.normal(size=(A, T, 1))], -1),
        agent_heading=r.uniform(-math.pi, math.pi, (A, T)), agent_vel=r.normal(size=(A, T, 2)) * 5,
        agent_size=r.uniform(0.5, 5, (A, T, 3)), agent_valid=valid,
        tracks_to_predict=r.choice(A, min(A, 2), replace=False), tracks_to_predict_difficulty=r.integers(0, 3, min(A, 2)),
        objects_of_interest=[], map_id=ids, map_type=kinds, map_subtype=r.integers(0, 3, len(kinds)),
        map_offsets=np.concatenate([[0], np.cumsum(npts)]),
        map_points=np.concatenate([r.normal(size=(npts.sum(), 2)) * 100 + origin, r.normal(size=(npts.sum(), 1))], -1),
        lane_speed_limit=np.where(kinds == MapType.lane, 25.0, 0.0), lane_interpolating=np.zeros(len(kinds), bool),
        lane_links=np.array(links, np.int64).reshape(-1, 7),
        stop_sign_lanes=[(ids[i], 5) for i, k in enumerate(kinds) if k == MapType.stop_sign],
        signal_lane_id=r.integers(0, 50, (T, S)), signal_state=r.integers(0, 9, (T, S)),
        signal_stop_point=np.concatenate([r.normal(size=(T, S, 2)) + origin, np.zeros((T, S, 1))], -1),
        signal_valid=np.ones((T, S), bool),
    ).validate()


def test_random_scenes_round_trip(tmp_path):
    """Writer/reader over varied sizes, validity, every map kind and link kind (WOMD-scale coordinates)."""
    from drope.data.types import LaneLink

    scenes = [random_scene(seed) for seed in range(12)]
    write_scenarios(tmp_path / "r.tfrecord", scenes)
    for a, b in zip(scenes, read_scenarios(tmp_path / "r.tfrecord")):
        wa, wb = a.to_world(), b.to_world()
        assert np.abs(wa.agent_pos - wb.agent_pos).max() < 1e-3 and np.abs(wa.map_xy - wb.map_xy).max() < 1e-3
        for name in ("agent_id", "agent_type", "agent_valid", "map_id", "map_type", "map_offsets", "signal_state",
                     "signal_lane_id", "stop_sign_lanes", "tracks_to_predict", "tracks_to_predict_difficulty"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        # links come back grouped by kind (entry, exit, left, right) per lane, as WOMD stores them
        key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
        la = a.lane_links.clone()
        entry_exit = (la[:, 2] == LaneLink.entry) | (la[:, 2] == LaneLink.exit)
        la[entry_exit, 3:] = -1  # entry/exit links carry no index ranges
        assert key(la) == key(b.lane_links)
        assert torch.allclose(a.agent_size, b.agent_size) and torch.allclose(a.agent_z, b.agent_z)
