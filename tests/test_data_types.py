"""drope.data.types mirrors the official WOMD enums (values and names) without importing protobuf."""
from __future__ import annotations

from drope.data import types


def test_enums_match_official_protos():
    from waymo_open_dataset.protos import map_pb2, scenario_pb2

    for enum, desc in [
        (types.ObjectType, scenario_pb2.Track.ObjectType),
        (types.LaneType, map_pb2.LaneCenter.LaneType),
        (types.RoadLineType, map_pb2.RoadLine.RoadLineType),
        (types.RoadEdgeType, map_pb2.RoadEdge.RoadEdgeType),
        (types.SignalState, map_pb2.TrafficSignalLaneState.State),
    ]:
        assert {e.name: e.value for e in enum} == dict(desc.items()), enum.__name__


def test_map_type_order_is_the_feature_data_oneof():
    from waymo_open_dataset.protos import map_pb2

    oneof = [f.name for f in map_pb2.MapFeature.DESCRIPTOR.oneofs_by_name["feature_data"].fields]
    assert [m.name for m in types.MapType] == oneof


def test_polygon_and_red_state_sets():
    assert types.POLYGON_TYPES == {types.MapType.crosswalk, types.MapType.speed_bump, types.MapType.driveway}
    assert all("STOP" in s.name for s in types.RED_STATES)


def test_types_module_does_not_import_protobuf():
    import subprocess
    import sys

    # load the file alone (the package __init__ pulls in torch, which is irrelevant here)
    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('t', sys.argv[1]); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
        "print(any(m.startswith('google') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, types.__file__], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
