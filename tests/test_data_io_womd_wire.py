"""The wire-level fast path decodes exactly what the protobuf API reads, and falls back on odd layouts."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from drope.data import womd_wire
from drope.data.tfrecord import iter_records
from drope.data.womd import scene_from_proto

FIELDS = ("center_x", "center_y", "center_z", "length", "width", "height", "heading", "velocity_x", "velocity_y")


@pytest.fixture(scope="module")
def proto(womd_path):
    from waymo_open_dataset.protos import scenario_pb2

    ((_, _, raw),) = list(iter_records(womd_path))
    return scenario_pb2.Scenario.FromString(raw)


def _copy(proto):
    from waymo_open_dataset.protos import scenario_pb2

    p = scenario_pb2.Scenario()
    p.CopyFrom(proto)
    return p


def ref_states(p):
    states = np.array([[[getattr(s, k) for k in FIELDS] for s in t.states] for t in p.tracks])
    valid = np.array([[s.valid for s in t.states] for t in p.tracks])
    return states * valid[..., None], valid


def bodies(p):
    out = []
    for f in p.map_features:
        kind = f.WhichOneof("feature_data")
        if kind != "stop_sign":
            body = getattr(f, kind)
            out.append((body, body.polygon if kind in ("crosswalk", "speed_bump", "driveway") else body.polyline))
    return out


def test_fast_path_equals_attribute_access_on_the_sample(proto):
    states, valid = womd_wire.track_states(proto.tracks, len(proto.timestamps_seconds))
    ref, ref_valid = ref_states(proto)
    assert (valid == ref_valid).all() and np.array_equal(states, ref)
    b = bodies(proto)
    counts = np.array([len(pts) for _, pts in b])
    points, ok = womd_wire.polyline_points([body for body, _ in b], counts)
    assert ok.all() and np.array_equal(points, np.array([(q.x, q.y, q.z) for _, pts in b for q in pts]))


def test_odd_state_layout_falls_back(proto):
    p = _copy(proto)
    a, t = next((a, t) for a, tr in enumerate(p.tracks) for t, s in enumerate(tr.states) if s.valid)
    p.tracks[a].states[t].ClearField("velocity_y")  # still valid, one field short
    assert womd_wire.track_states(p.tracks, len(p.timestamps_seconds)) is None
    scene = scene_from_proto(p)
    ref, valid = ref_states(p)
    assert np.abs(scene.to_world().agent_pos[valid] - ref[valid][:, :2]).max() < 1e-3


def test_odd_point_layouts_fall_back_per_feature(proto):
    p = _copy(proto)
    b = bodies(p)
    lane_i = next(i for i, (body, _) in enumerate(b) if hasattr(body, "speed_limit_mph"))
    # a speed limit whose bytes hold the point pattern (tag 0x42, length 27, x tag) must not fool it
    b[lane_i][0].speed_limit_mph = struct.unpack("<d", b"\x42\x1b\x09\x00\x00\x00\x40\x40")[0]
    b[lane_i + 1][1][0].ClearField("z")  # a point one field short
    del b[lane_i + 2][1][1:]  # a single-point polyline stays on the fast path
    counts = np.array([len(pts) for _, pts in b])
    points, ok = womd_wire.polyline_points([body for body, _ in b], counts)
    assert not ok[lane_i + 1] and ok[lane_i + 2] and ok.sum() >= len(b) - 2
    ref = np.array([(q.x, q.y, q.z) for _, pts in b for q in pts])
    rows = np.repeat(ok, counts)
    assert np.array_equal(points[rows], ref[rows])
    scene = scene_from_proto(p)
    stop_signs = [f.stop_sign.position for f in p.map_features if f.WhichOneof("feature_data") == "stop_sign"]
    assert scene.map_points.shape[0] == len(ref) + len(stop_signs)
    is_sign = np.repeat((scene.map_type == 3).numpy(), np.diff(scene.map_offsets.numpy()))
    w = scene.to_world_xy(scene.map_points[~is_sign, :2])
    assert np.abs(w - ref[:, :2]).max() < 1e-3
    assert np.array_equal(scene.map_points[~is_sign, 2].numpy(), ref[:, 2].astype(np.float32))


def test_point_tags_follow_the_official_field_numbers():
    from waymo_open_dataset.protos import map_pb2

    from drope.data import womd

    for kind, msg in [("lane", map_pb2.LaneCenter), ("road_line", map_pb2.RoadLine), ("road_edge", map_pb2.RoadEdge),
                      ("crosswalk", map_pb2.Crosswalk), ("speed_bump", map_pb2.SpeedBump),
                      ("driveway", map_pb2.Driveway)]:
        field = msg.DESCRIPTOR.fields_by_name.get("polyline") or msg.DESCRIPTOR.fields_by_name["polygon"]
        assert womd._POINT_FIELD[kind] == field.number
        assert womd_wire.POINT_FIELD_TAG[field.number] == (field.number << 3) | 2


def test_encoders_produce_what_the_proto_api_writes(proto):
    from waymo_open_dataset.protos import map_pb2, scenario_pb2

    ref, valid = ref_states(proto)
    for a, blob in enumerate(womd_wire.encode_track_states(ref, valid)):
        t = scenario_pb2.Track.FromString(blob)
        got = np.array([[getattr(s, k) for k in FIELDS] for s in t.states])
        assert [s.valid for s in t.states] == valid[a].tolist() and np.array_equal(got, ref[a])
    pts = np.array([[1.5, -2.25, 3.0], [-7785.9165, -6683.4059, 0.1]])
    lane = map_pb2.LaneCenter.FromString(womd_wire.encode_points(pts, np.full(2, 0x42)))
    assert [(q.x, q.y, q.z) for q in lane.polyline] == [tuple(p) for p in pts.tolist()]
