"""Map polylines → fixed-size segments (the map tokens/nodes of every model).

Each polyline (polygons closed first) is cut into pieces of equal arc length, at most
``max_len`` metres; each piece is resampled to ``num_points`` points evenly spaced by arc
length. A segment's pose is its start point and the direction from its first to its last point
(0 for zero-length pieces such as stop signs). Lanes carry the state of the traffic signal that
controls them; :func:`segment_signal_states` looks it up for any steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from drope.data.features import FeatureSpec
from drope.data.scene import Scene
from drope.data.types import POLYGON_TYPES, MapType

Tensor = torch.Tensor
_DEFAULT = FeatureSpec()


@dataclass(frozen=True)
class MapSegments:
    """Segments of one scene (M segments, S points each), scene frame."""

    points: Tensor  # [M, S, 2] float32 m, resampled by arc length
    pose: Tensor  # [M, 3] float32 (start x, start y, direction rad in [-π, π])
    length: Tensor  # [M] float32 m, arc length of the piece (0: stop sign / degenerate)
    type: Tensor  # [M] int64 MapType
    subtype: Tensor  # [M] int64 lane/road-line/road-edge type
    feature_index: Tensor  # [M] int64 index into the scene's map features (-1: padding)
    signal_state: Tensor  # [M] int64 SignalState of the lane at the chosen step (0: none/unknown)
    valid: Tensor  # [M] bool, False only on rows added by pad()

    @property
    def num_segments(self) -> int:
        return int(self.points.shape[0])

    def select(self, index: Tensor) -> "MapSegments":
        """Rows ``index`` (bool mask or int indices) of every field, e.g. the segments nearest the SDC."""
        return MapSegments(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def pad(self, m: int) -> "MapSegments":
        """Padded to ``m`` rows with zeros (``valid`` False, ``feature_index`` -1)."""
        if m < self.num_segments:
            raise ValueError(f"cannot pad {self.num_segments} segments to {m}")
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            fill = -1 if f.name == "feature_index" else 0
            out[f.name] = torch.cat([v, v.new_full((m - v.shape[0], *v.shape[1:]), fill)])
        return MapSegments(**out)


def split_polylines(
    scene: Scene, max_len: float = _DEFAULT.segment_len, num_points: int = _DEFAULT.segment_points,
    step: int | None = None,
) -> MapSegments:
    """Cut every map feature of ``scene`` into segments ≤ ``max_len`` m (stop signs: one point).

    The defaults are :class:`~drope.data.features.FeatureSpec`'s ``segment_len``/``segment_points``.
    Pieces of one feature share its length equally (with 20 m pieces a 45 m lane gives three 15 m
    pieces, not 20 + 20 + 5), so no token is a sliver. ``step`` selects the signal states attached to lanes
    (default: the current step).
    """
    if not max_len > 0 or num_points < 2:
        raise ValueError(f"max_len must be > 0 and num_points >= 2, got {max_len}, {num_points}")
    step = scene.current_index if step is None else step
    if not 0 <= step < scene.num_steps:
        raise ValueError(f"scene {scene.scenario_id!r}: step {step} outside [0, {scene.num_steps})")
    pts_all = scene.map_points[:, :2].cpu().numpy().astype(np.float64)
    off = scene.map_offsets.tolist()
    mtype = scene.map_type.tolist()
    u = np.linspace(0.0, 1.0, num_points)  # [S]
    out_pts, out_len, out_f = [], [], []
    for f in range(scene.num_map_features):
        poly = pts_all[off[f] : off[f + 1]]
        if len(poly) == 0:
            raise ValueError(
                f"scene {scene.scenario_id!r}: map feature {f} (id {int(scene.map_id[f])}) has no points"
            )
        if mtype[f] in POLYGON_TYPES and len(poly) > 2:
            poly = np.concatenate([poly, poly[:1]])
        cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(poly, axis=0).T))])  # [P]
        total = float(cum[-1])
        if total < 1e-6:  # stop sign or a polyline with coincident points
            out_pts.append(np.repeat(poly[:1], num_points, axis=0)[None])
            out_len.append([0.0])
            out_f.append([f])
            continue
        pieces = max(1, math.ceil(total / max_len - 1e-9))
        piece_len = total / pieces
        s = (np.arange(pieces)[:, None] + u[None, :]) * piece_len  # [pieces, S] arc positions
        s[:, -1] = np.minimum(s[:, -1], total)  # rounding must not run past the end
        out_pts.append(np.stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])], axis=-1))
        out_len.append([piece_len] * pieces)
        out_f.append([f] * pieces)
    points = np.concatenate(out_pts) if out_pts else np.zeros((0, num_points, 2))  # [M, S, 2]
    fidx = torch.from_numpy(np.concatenate(out_f).astype(np.int64) if out_f else np.zeros(0, np.int64))
    d = points[:, -1] - points[:, 0]
    direction = np.where(np.hypot(d[:, 0], d[:, 1]) > 1e-9, np.arctan2(d[:, 1], d[:, 0]), 0.0)  # [M]
    seg_type = scene.map_type.cpu()[fidx]
    pose = np.concatenate([points[:, 0], direction[:, None]], axis=-1)
    return MapSegments(
        points=torch.from_numpy(points.astype(np.float32)),
        pose=torch.from_numpy(pose.astype(np.float32)),
        length=torch.from_numpy(np.concatenate(out_len).astype(np.float32) if out_len else np.zeros(0, np.float32)),
        type=seg_type,
        subtype=scene.map_subtype.cpu()[fidx],
        feature_index=fidx,
        signal_state=feature_signal_states(scene, [step])[0][fidx],
        valid=torch.ones(fidx.shape[0], dtype=torch.bool),
    )


def feature_signal_states(scene: Scene, steps: list[int] | Tensor | None = None) -> Tensor:
    """``[len(steps), F]`` int64 SignalState of each map feature (lanes only; 0 elsewhere/unknown).

    ``steps`` defaults to all steps. Signals naming a lane id absent from the map are ignored.
    """
    steps_t = torch.arange(scene.num_steps) if steps is None else torch.as_tensor(steps, dtype=torch.long)
    F = scene.num_map_features
    out = torch.zeros(steps_t.numel(), F, dtype=torch.int64)
    if scene.signal_valid.shape[1] == 0 or F == 0:
        return out
    order = torch.argsort(scene.map_id.cpu())
    ids_sorted = scene.map_id.cpu()[order]
    lane_id = scene.signal_lane_id.cpu()[steps_t]  # [T', S]
    slot = torch.searchsorted(ids_sorted, lane_id).clamp_(max=F - 1)
    feat = order[slot]  # [T', S] candidate feature per signal slot
    ok = scene.signal_valid.cpu()[steps_t] & (ids_sorted[slot] == lane_id)
    ok &= scene.map_type.cpu()[feat] == MapType.lane
    t_idx = torch.arange(steps_t.numel())[:, None].expand_as(feat)
    out[t_idx[ok], feat[ok]] = scene.signal_state.cpu()[steps_t][ok].long()
    return out


def segment_signal_states(scene: Scene, seg: MapSegments, steps: list[int] | Tensor | None = None) -> Tensor:
    """``[len(steps), M]`` int64 signal state of each segment's lane at ``steps`` (default: all).

    For closed-loop rollouts, where the signal changes while the map tokens stay fixed.
    Padding rows (``feature_index`` -1) get 0.
    """
    table = feature_signal_states(scene, steps)  # [T', F]
    if table.shape[1] == 0:
        return table.new_zeros(table.shape[0], seg.num_segments)
    out = table[:, seg.feature_index.clamp(min=0)]  # [T', M]
    return out.masked_fill_(~seg.valid[None, :], 0)
