"""WOMD enumerations as plain ints, so nothing downstream imports protobuf.

Values equal the official protos' numbers (``scenario_pb2.Track.ObjectType``,
``map_pb2.LaneCenter.LaneType`` ...); ``tests/test_data_types.py`` pins that.
"""
from __future__ import annotations

from enum import IntEnum


class ObjectType(IntEnum):
    TYPE_UNSET = 0
    TYPE_VEHICLE = 1
    TYPE_PEDESTRIAN = 2
    TYPE_CYCLIST = 3
    TYPE_OTHER = 4


class MapType(IntEnum):
    """Kind of a map feature; names equal the ``MapFeature.feature_data`` oneof fields."""

    lane = 0
    road_line = 1
    road_edge = 2
    stop_sign = 3
    crosswalk = 4
    speed_bump = 5
    driveway = 6


#: Map kinds stored as closed polygons (WOMD does not repeat the first vertex).
POLYGON_TYPES = frozenset({MapType.crosswalk, MapType.speed_bump, MapType.driveway})


class LaneType(IntEnum):
    TYPE_UNDEFINED = 0
    TYPE_FREEWAY = 1
    TYPE_SURFACE_STREET = 2
    TYPE_BIKE_LANE = 3


class RoadLineType(IntEnum):
    TYPE_UNKNOWN = 0
    TYPE_BROKEN_SINGLE_WHITE = 1
    TYPE_SOLID_SINGLE_WHITE = 2
    TYPE_SOLID_DOUBLE_WHITE = 3
    TYPE_BROKEN_SINGLE_YELLOW = 4
    TYPE_BROKEN_DOUBLE_YELLOW = 5
    TYPE_SOLID_SINGLE_YELLOW = 6
    TYPE_SOLID_DOUBLE_YELLOW = 7
    TYPE_PASSING_DOUBLE_YELLOW = 8


class RoadEdgeType(IntEnum):
    TYPE_UNKNOWN = 0
    TYPE_ROAD_EDGE_BOUNDARY = 1
    TYPE_ROAD_EDGE_MEDIAN = 2


class SignalState(IntEnum):
    LANE_STATE_UNKNOWN = 0
    LANE_STATE_ARROW_STOP = 1
    LANE_STATE_ARROW_CAUTION = 2
    LANE_STATE_ARROW_GO = 3
    LANE_STATE_STOP = 4
    LANE_STATE_CAUTION = 5
    LANE_STATE_GO = 6
    LANE_STATE_FLASHING_STOP = 7
    LANE_STATE_FLASHING_CAUTION = 8


#: Signal states that forbid entering the intersection (used by red-light metrics).
RED_STATES = frozenset(
    {SignalState.LANE_STATE_STOP, SignalState.LANE_STATE_ARROW_STOP, SignalState.LANE_STATE_FLASHING_STOP}
)


class LaneLink(IntEnum):
    """Relation kind in ``Scene.lane_links``."""

    entry = 0  # other lane flows into this lane
    exit = 1  # this lane flows into other lane
    left = 2  # other lane is a left neighbour
    right = 3  # other lane is a right neighbour
