"""Map polylines → fixed-size segments (the map tokens/nodes of every model).

Each polyline (polygons closed first) is cut into pieces of at most ``max_len`` metres of arc
length; each piece is resampled to ``num_points`` points evenly spaced by arc length. A
segment's pose is its start point and the direction from its first to its last point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from drope.data.scene import Scene
from drope.data.types import POLYGON_TYPES, MapType

Tensor = torch.Tensor


@dataclass(frozen=True)
class MapSegments:
    """Segments of one scene (M segments, S points each), scene frame."""

    points: Tensor  # [M, S, 2] float32 m, resampled by arc length
    pose: Tensor  # [M, 3] float32 (start x, start y, direction rad)
    length: Tensor  # [M] float32 m, arc length of the piece
    type: Tensor  # [M] int64 MapType
    subtype: Tensor  # [M] int64 lane/road-line/road-edge type
    feature_index: Tensor  # [M] int64 index into the scene's map features
    signal_state: Tensor  # [M] int64 SignalState of the lane at the current step (0: none)

    @property
    def num_segments(self) -> int:
        return int(self.points.shape[0])


def _resample(poly: np.ndarray, s0: float, s1: float, cum: np.ndarray, n: int) -> np.ndarray:
    s = np.linspace(s0, s1, n)
    return np.stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])], axis=-1)


def split_polylines(scene: Scene, max_len: float = 20.0, num_points: int = 8, step: int | None = None) -> MapSegments:
    """Cut every map feature of ``scene`` into segments ≤ ``max_len`` m (stop signs: one point).

    ``step`` selects the signal states attached to lanes (default: the current step).
    """
    if max_len <= 0 or num_points < 2:
        raise ValueError("max_len must be > 0 and num_points >= 2")
    step = scene.current_index if step is None else step
    pts_all = scene.map_points[:, :2].numpy().astype(np.float64)
    off = scene.map_offsets.tolist()
    mtype, msub = scene.map_type.tolist(), scene.map_subtype.tolist()
    lane_signal = _lane_signals(scene, step)
    out_pts, out_len, out_f = [], [], []
    for f in range(scene.num_map_features):
        poly = pts_all[off[f] : off[f + 1]]
        if mtype[f] in POLYGON_TYPES and len(poly) > 2:
            poly = np.concatenate([poly, poly[:1]])
        seg = np.linalg.norm(np.diff(poly, axis=0), axis=-1)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        total = cum[-1]
        if total < 1e-6:
            out_pts.append(np.repeat(poly[:1], num_points, axis=0))
            out_len.append(0.0)
            out_f.append(f)
            continue
        pieces = max(1, math.ceil(total / max_len - 1e-9))
        bounds = np.linspace(0.0, total, pieces + 1)
        for a, b in zip(bounds[:-1], bounds[1:]):
            out_pts.append(_resample(poly, a, b, cum, num_points))
            out_len.append(b - a)
            out_f.append(f)
    M = len(out_pts)
    points = np.asarray(out_pts, np.float64).reshape(M, num_points, 2)
    d = points[:, -1] - points[:, 0]
    direction = np.arctan2(d[:, 1], d[:, 0])
    fidx = np.asarray(out_f, np.int64)
    mt = np.asarray(mtype, np.int64)[fidx] if M else np.zeros(0, np.int64)
    return MapSegments(
        points=torch.from_numpy(points.astype(np.float32)),
        pose=torch.from_numpy(np.concatenate([points[:, 0], direction[:, None]], axis=-1).astype(np.float32)),
        length=torch.from_numpy(np.asarray(out_len, np.float32)),
        type=torch.from_numpy(mt),
        subtype=torch.from_numpy(np.asarray(msub, np.int64)[fidx] if M else np.zeros(0, np.int64)),
        feature_index=torch.from_numpy(fidx),
        signal_state=torch.from_numpy(
            np.where(mt == MapType.lane, lane_signal[fidx], 0) if M else np.zeros(0, np.int64)
        ),
    )


def _lane_signals(scene: Scene, step: int) -> np.ndarray:
    """[F] int64 signal state per map feature at ``step`` (0 where none)."""
    out = np.zeros(scene.num_map_features, np.int64)
    if scene.signal_valid.shape[1] == 0:
        return out
    valid = scene.signal_valid[step].numpy()
    ids = scene.signal_lane_id[step].numpy()[valid]
    states = scene.signal_state[step].numpy()[valid]
    index_of = {int(i): k for k, i in enumerate(scene.map_id.tolist())}
    for lane, st in zip(ids.tolist(), states.tolist()):
        k = index_of.get(lane)
        if k is not None:
            out[k] = st
    return out
