"""Vectorised decoding and encoding of WOMD's two bulkiest repeated messages as wire bytes.

Reading ``ObjectState`` and ``MapPoint`` values one attribute at a time through the protobuf
Python API costs ~60 % of converting a scenario (~75k track-state and ~60k map-point
attribute reads per WOMD scene). Both messages hold only fixed-width fields, and the
official data writes every field, so each record has one fixed layout:

* valid ``ObjectState`` (Track field 3): ``1a 3b | 11 x:f64 | 19 y:f64 | 21 z:f64 | 2d length:f32
  | 35 width:f32 | 3d height:f32 | 45 heading:f32 | 4d vx:f32 | 55 vy:f32 | 58 01`` (61 bytes);
* ``MapPoint`` in a polyline/polygon: ``tag 1b | 09 x:f64 | 11 y:f64 | 19 z:f64`` (29 bytes).

The functions below find those records with regular-expression scans (``findall``: no
Python code runs per record) over the serialised messages and decode them with a numpy
structured view. Records are checked against what the proto API reports (the number of valid
states, the number of points per feature, and that a feature's points form one contiguous
run); on any disagreement they return ``None`` (or flag the feature) and the caller falls
back to attribute access, so unusual layouts stay correct and only cost speed.

The encoders write the same layouts (invalid states as ``1a 02 58 00``: only ``valid=false``,
every other field absent, so it reads as zero) for the writer to ``MergeFromString`` into
its protos.
"""
from __future__ import annotations

import re
from itertools import chain
from operator import attrgetter
from typing import Sequence

import numpy as np

_STATE_RE = re.compile(
    rb"\x1a\x3b\x11.{8}\x19.{8}\x21.{8}\x2d.{4}\x35.{4}\x3d.{4}\x45.{4}\x4d.{4}\x55.{4}\x58\x01", re.DOTALL
)
_STATE_LEN = 61
# center_x, center_y, center_z, length, width, height, heading, velocity_x, velocity_y
_STATE_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "length", "width", "height", "heading", "vx", "vy"],
        "formats": ["<f8"] * 3 + ["<f4"] * 6,
        "offsets": [3, 12, 21, 30, 35, 40, 45, 50, 55],
        "itemsize": _STATE_LEN,
    }
)
# polyline tags: LaneCenter.polyline = 8, RoadLine/RoadEdge.polyline = 2, *.polygon = 1
_POINT_RE = re.compile(rb"[\x0a\x12\x42]\x1b\x09.{8}\x11.{8}\x19.{8}", re.DOTALL)
_POINT_LEN = 29
_POINT_DTYPE = np.dtype({"names": ["x", "y", "z"], "formats": ["<f8"] * 3, "offsets": [3, 12, 21], "itemsize": 29})
_VALID = attrgetter("valid")


def _decode(records: list[bytes], dtype: np.dtype, fields: Sequence[str]) -> np.ndarray:
    """Fixed-layout records (bytes objects of ``dtype.itemsize``) → ``[N, len(fields)]`` float64."""
    rec = np.frombuffer(b"".join(records), dtype)
    return np.stack([rec[name].astype(np.float64) for name in fields], axis=-1).reshape(-1, len(fields))


def track_states(tracks: Sequence, T: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(states [A, T, 9] float64, valid [A, T] bool)`` for the tracks, or None if any valid
    state does not have the fixed layout. States at invalid steps are zero."""
    A = len(tracks)
    valid = np.fromiter(chain.from_iterable(map(_VALID, t.states) for t in tracks), bool, count=A * T)
    # findall keeps the scan and the slicing in C (no Python code per record)
    records = _STATE_RE.findall(b"".join([t.SerializeToString() for t in tracks]))
    if len(records) != int(valid.sum()):
        return None
    out = np.zeros((A * T, 9), np.float64)
    out[valid] = _decode(records, _STATE_DTYPE, _STATE_DTYPE.names)
    return out.reshape(A, T, 9), valid.reshape(A, T)


def polyline_points(bodies: Sequence, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points of the polyline/polygon of every map-feature body (LaneCenter, RoadLine, ...).

    Returns ``(points [sum(counts), 3] float64, ok [len(bodies)] bool)``; rows of features with
    ``ok`` False are zero and must be read another way.
    """
    blobs = [b.SerializeToString() for b in bodies]
    ends = np.cumsum(np.fromiter(map(len, blobs), np.int64, count=len(blobs)))  # [F] end of each body
    buf = b"".join(blobs)
    # split() leaves the bytes between matches: their lengths give every match's offset, in C
    gaps = np.fromiter(map(len, _POINT_RE.split(buf)), np.int64)
    n = gaps.size - 1
    starts = np.cumsum(gaps[:-1]) + _POINT_LEN * np.arange(n)  # [N] byte offset of each match
    owner = np.searchsorted(ends, starts, side="right")  # [N] body holding each match
    ok = np.bincount(owner, minlength=len(blobs))[: len(blobs)] == counts
    # a body's points are one contiguous run; a spurious match inside another field (a lane's
    # speed limit, its neighbours) changes the count or leaves a gap in the run
    broken = (gaps[1:-1] != 0) & (owner[1:] == owner[:-1])
    ok[owner[1:][broken]] = False
    points = np.zeros((int(counts.sum()), 3), np.float64)
    if ok.any():
        first = starts[np.searchsorted(owner, np.flatnonzero(ok))]  # run start of every ok body
        stop = first + _POINT_LEN * counts[ok]
        run = b"".join([buf[a:b] for a, b in zip(first.tolist(), stop.tolist())])
        rec = np.frombuffer(run, _POINT_DTYPE)
        # runs are joined in body order, so they fill the ok bodies' rows in order
        points[np.repeat(ok, counts)] = np.stack([rec["x"], rec["y"], rec["z"]], axis=-1)
    return points, ok


# polyline/polygon field number → wire tag byte of its MapPoint records (pinned by a test)
POINT_FIELD_TAG = {1: 0x0A, 2: 0x12, 8: 0x42}
_STATE_TAGS = {0: 0x1A, 1: 0x3B, 2: 0x11, 11: 0x19, 20: 0x21, 29: 0x2D, 34: 0x35, 39: 0x3D, 44: 0x45, 49: 0x4D,
               54: 0x55, 59: 0x58, 60: 0x01}
_INVALID_STATE = np.frombuffer(b"\x1a\x02\x58\x00", np.uint8)
_POINT_TAGS = {1: 0x1B, 2: 0x09, 11: 0x11, 20: 0x19}


def encode_track_states(values: np.ndarray, valid: np.ndarray) -> list[bytes]:
    """Serialised ``states`` of every track: ``values [A, T, 9]`` (center x/y/z, length, width,
    height, heading, velocity x/y; world frame) and ``valid [A, T]`` → A byte strings."""
    A, T = valid.shape
    mat = np.zeros((A * T, _STATE_LEN), np.uint8)  # [A*T, 61] one record per row
    for off, tag in _STATE_TAGS.items():
        mat[:, off] = tag
    rec = mat.view(_STATE_DTYPE)[:, 0]  # writes through to mat
    for name, col in zip(_STATE_DTYPE.names, values.reshape(-1, 9).T):
        rec[name] = col
    v = valid.reshape(-1)
    mat[~v, : len(_INVALID_STATE)] = _INVALID_STATE
    lens = np.where(v, _STATE_LEN, len(_INVALID_STATE))  # [A*T]
    flat = mat[np.arange(_STATE_LEN) < lens[:, None]].tobytes()  # records back to back, row order
    ends = np.cumsum(lens.reshape(A, T).sum(1)).tolist()
    return [flat[a:b] for a, b in zip([0] + ends[:-1], ends)]


def encode_points(points: np.ndarray, tags: np.ndarray) -> bytes:
    """MapPoint records for ``points [P, 3]`` (world x, y, z) with per-point field tags ``[P]``;
    point ``i`` occupies bytes ``[29 i, 29 (i + 1))``."""
    mat = np.zeros((len(points), _POINT_LEN), np.uint8)  # [P, 29]
    mat[:, 0] = tags
    for off, tag in _POINT_TAGS.items():
        mat[:, off] = tag
    rec = mat.view(_POINT_DTYPE)[:, 0]
    rec["x"], rec["y"], rec["z"] = points[:, 0], points[:, 1], points[:, 2]
    return mat.tobytes()
