"""WOMD reader/writer against the official facts of the shared sample, plus corruption handling."""
from __future__ import annotations

import gzip
import json
import math
import struct

import numpy as np
import pytest
import torch

from drope.data.summary import scene_info
from drope.data.tfrecord import CorruptRecordError, encode_record, iter_records, masked_crc32c, write_records
from drope.data.womd import ReadStats, read_scenarios, write_scenarios


@pytest.fixture(scope="module")
def womd_scene(womd_path):
    (scene,) = list(read_scenarios(womd_path))
    return scene.validate()


def test_sample_facts_match_official_protos(womd_scene, womd_path):
    from waymo_open_dataset.protos import scenario_pb2

    (_, _, data), = list(iter_records(womd_path))
    proto = scenario_pb2.Scenario.FromString(data)
    info = scene_info(womd_scene)
    assert info["scenario_id"] == proto.scenario_id == "637f20cafde22ff8"
    assert info["num_agents"] == len(proto.tracks) == 83
    assert info["agent_types"] == {"TYPE_VEHICLE": 70, "TYPE_PEDESTRIAN": 10, "TYPE_CYCLIST": 3}
    assert info["num_steps"] == 91 and info["current_index"] == 10 and info["sdc_index"] == 82
    assert int(womd_scene.agent_id[82]) == 2406
    assert info["num_valid_at_current"] == 50
    assert info["tracks_to_predict"] == [72, 43, 42]
    assert info["map_feature_counts"] == {
        "lane": 199, "road_line": 59, "road_edge": 28, "crosswalk": 4, "speed_bump": 3, "driveway": 0, "stop_sign": 8
    }
    sdc = proto.tracks[82].states[10]
    x, y, h = info["sdc_world_pose"]
    assert abs(x - sdc.center_x) < 1e-3 and abs(y - sdc.center_y) < 1e-3 and abs(h - sdc.heading) < 1e-6
    assert len(proto.dynamic_map_states) == 91


def test_world_coordinates_restored_to_a_millimetre(womd_scene, womd_path):
    from waymo_open_dataset.protos import scenario_pb2

    (_, _, data), = list(iter_records(womd_path))
    proto = scenario_pb2.Scenario.FromString(data)
    w = womd_scene.to_world()
    ref = np.array([[(s.center_x, s.center_y) for s in t.states] for t in proto.tracks])
    valid = womd_scene.agent_valid.numpy()
    assert np.abs(w.agent_pos[valid] - ref[valid]).max() < 1e-3
    # the scene frame itself is re-centred: the SDC sits at the origin facing +x
    assert torch.allclose(womd_scene.agent_pos[82, 10], torch.zeros(2), atol=1e-4)
    assert abs(float(womd_scene.agent_heading[82, 10])) < 1e-6
    lane = proto.map_features[0]
    kind = lane.WhichOneof("feature_data")
    pts = getattr(lane, kind).polyline if kind != "stop_sign" else None
    if pts is not None:
        first = womd_scene.to_world_xy(womd_scene.map_polyline(0)[:1, :2])[0]
        assert abs(first[0] - pts[0].x) < 1e-3 and abs(first[1] - pts[0].y) < 1e-3


@pytest.mark.parametrize("suffix", [".tfrecord", ".tfrecord.gz"])
def test_round_trip_read_write_read(womd_scene, tmp_path, suffix):
    out = tmp_path / ("rt" + suffix)
    assert write_scenarios(out, [womd_scene, womd_scene]) == 2
    if suffix.endswith(".gz"):
        assert out.read_bytes()[:2] == b"\x1f\x8b"
    again = list(read_scenarios(out))
    assert len(again) == 2
    for f in type(womd_scene).tensor_fields():
        a, b = getattr(womd_scene, f.name), getattr(again[0], f.name)
        assert a.shape == b.shape and a.dtype == b.dtype, f.name
        if f.name == "agent_heading":
            d = torch.remainder(a.double() - b.double() + math.pi, 2 * math.pi) - math.pi
            assert d.abs().max() < 1e-6
        elif a.is_floating_point():
            assert torch.allclose(a, b, atol=1e-5, rtol=0), f.name
        else:
            assert torch.equal(a, b), f.name
    assert again[0].scenario_id == womd_scene.scenario_id


def test_writer_is_deterministic(womd_scene, tmp_path):
    write_scenarios(tmp_path / "a.tfrecord.gz", [womd_scene])
    write_scenarios(tmp_path / "b.tfrecord.gz", [womd_scene])
    assert (tmp_path / "a.tfrecord.gz").read_bytes() == (tmp_path / "b.tfrecord.gz").read_bytes()


def _three_records(womd_path, tmp_path, middle: bytes):
    (_, _, good), = list(iter_records(womd_path))
    path = tmp_path / "mixed.tfrecord"
    path.write_bytes(encode_record(good) + middle + encode_record(good))
    return path, len(encode_record(good))


def test_garbage_payload_raises_with_index_and_offset(womd_path, tmp_path):
    path, first_len = _three_records(womd_path, tmp_path, encode_record(b"\x08\x96\x01 not a scenario \xff\xff"))
    with pytest.raises(CorruptRecordError) as e:
        list(read_scenarios(path))
    assert e.value.record_index == 1 and e.value.offset == first_len
    assert str(path) in str(e.value) and "record 1" in str(e.value)
    stats = ReadStats()
    scenes = list(read_scenarios(path, on_corrupt="skip", stats=stats))
    assert len(scenes) == 2 and stats.skipped == 1 and stats.records == 2


def test_bad_data_crc_is_detected(womd_path, tmp_path):
    rec = bytearray(encode_record(b"hello world"))
    rec[14] ^= 0xFF  # flip a payload byte, keep the stored CRC
    path, first_len = _three_records(womd_path, tmp_path, bytes(rec))
    with pytest.raises(CorruptRecordError, match="data CRC"):
        list(read_scenarios(path))
    stats = ReadStats()
    assert len(list(read_scenarios(path, on_corrupt="skip", stats=stats))) == 2 and stats.skipped == 1


def test_bad_length_crc_and_truncation(womd_path, tmp_path):
    (_, _, good), = list(iter_records(womd_path))
    rec = bytearray(encode_record(good))
    rec[8] ^= 0x01
    p = tmp_path / "lencrc.tfrecord"
    p.write_bytes(encode_record(good) + bytes(rec))
    with pytest.raises(CorruptRecordError, match="length CRC"):
        list(read_scenarios(p))
    stats = ReadStats()
    assert len(list(read_scenarios(p, on_corrupt="skip", stats=stats))) == 1 and stats.skipped == 1
    t = tmp_path / "trunc.tfrecord"
    t.write_bytes(encode_record(good)[:-100])
    with pytest.raises(CorruptRecordError, match="truncated") as e:
        list(read_scenarios(t))
    assert e.value.record_index == 0 and e.value.offset == 0


def test_truncated_gzip_names_decompressed_offset(womd_path, tmp_path):
    (_, _, good), = list(iter_records(womd_path))
    p = tmp_path / "x.tfrecord.gz"
    p.write_bytes(gzip.compress(encode_record(good) + encode_record(good))[:-5000])
    with pytest.raises(CorruptRecordError) as e:
        list(read_scenarios(p))
    assert e.value.record_index == 1 and "decompressed" in str(e.value)


def test_crc_mask_known_value():
    # masked CRC of the 8-byte length header of an empty record, computed by hand from the spec
    import crc32c

    crc = crc32c.crc32c(struct.pack("<Q", 0))
    assert masked_crc32c(struct.pack("<Q", 0)) == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
    assert list(iter_records(_write_tmp([b"", b"abc"]))) == [(0, 0, b""), (1, 16, b"abc")]


def _write_tmp(records):
    import tempfile
    from pathlib import Path

    p = Path(tempfile.mkdtemp()) / "r.tfrecord"
    write_records(p, records)
    return p


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such scenario file"):
        list(read_scenarios(tmp_path / "nope.tfrecord"))


def test_cli_info_json_contract(womd_path, capsys):
    from drope.data.cli import main

    assert main(["info", str(womd_path), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    for key in ("scenario_id", "num_agents", "agent_types", "num_steps", "current_index", "sdc_index",
                "sdc_world_pose", "map_feature_counts", "tracks_to_predict", "num_valid_at_current"):
        assert key in rec
    assert rec["num_agents"] == 83 and rec["sdc_world_pose"][0] == pytest.approx(-7785.9165, abs=1e-3)


def test_cli_corrupt_raise_exits_nonzero(womd_path, tmp_path, capsys):
    from drope.data.cli import main

    path, first_len = _three_records(womd_path, tmp_path, encode_record(b"garbage"))
    assert main(["info", str(path), "--on-corrupt", "raise"]) != 0
    err = capsys.readouterr().err
    assert str(path) in err and "record 1" in err and f"offset {first_len}" in err
    assert main(["info", str(path), "--on-corrupt", "skip", "--json"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_cache_round_trip_and_resume(womd_path, tmp_path, womd_scene):
    from drope.data.cache import CachedSceneDataset, build_cache

    rep = build_cache([womd_path], tmp_path / "c", workers=1, progress=False)
    assert rep.scenes == 1 and 0 < rep.bytes_per_scene < 1e6
    again = build_cache([womd_path], tmp_path / "c", workers=1, progress=False)
    assert again.shards_skipped == 1 and again.shards_written == 0
    ds = CachedSceneDataset(tmp_path / "c")
    assert len(ds) == 1
    cached = ds[0].validate()
    for f in type(womd_scene).tensor_fields():
        assert torch.equal(getattr(cached, f.name), getattr(womd_scene, f.name)), f.name


def test_stats_cli_table(womd_path, capsys):
    from drope.data.cli import main

    assert main(["stats", str(womd_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_scenes"] == 1
    assert stats["agents_per_scene"]["TYPE_VEHICLE"]["mean"] == 70
    assert 0 < stats["speed_mps"]["TYPE_PEDESTRIAN"]["p50"] < 3
