"""The one typed representation of a driving scene used by every stage.

Frames
------
*World* is the dataset's frame (WOMD: metres, ~±8 km). The *scene frame* is the world
translated to ``origin_xy`` and rotated by ``origin_heading`` (default: the SDC pose at the
current step): ``p_scene = R(-origin_heading) (p_world - origin_xy)``. All x/y/heading/velocity
tensors are float32 in the scene frame; the origin is float64 so :meth:`Scene.to_world_xy`
restores world coordinates to well under 1 mm. z values stay in world metres (never rotated).

Symbols in shape legends: A agents, T steps, F map features, P map points, L lane links,
S signal slots per step (padded), K stop-sign/lane pairs, Q objects of interest, R tracks to
predict. Values of an agent at steps where ``agent_valid`` is False are zero and meaningless.

Not carried from WOMD (and therefore not written back): lane boundary segments
(``left_boundaries``/``right_boundaries``), neighbour boundary lists, lidar and camera data.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from drope.geometry import frame_to_world, world_to_frame, wrap_angle, wrap_angle_f32
from drope.data.types import MapType

Tensor = torch.Tensor

_F32, _F64, _I64, _B = torch.float32, torch.float64, torch.int64, torch.bool


class SceneValidationError(ValueError):
    """A Scene breaks its contract (shape, dtype, NaN/Inf, range)."""


def _t(shape: tuple, dtype: torch.dtype, doc: str) -> Any:
    return field(metadata={"shape": shape, "dtype": dtype, "doc": doc})


@dataclass(frozen=True)
class Scene:
    """One driving scenario. Every tensor field documents shape, dtype, unit and frame."""

    # ---- identity & time -------------------------------------------------------------------
    scenario_id: str = field(metadata={"doc": "dataset scenario id"})
    source: str = field(metadata={"doc": "where the scene came from, e.g. 'womd' or 'drope-sim'"})
    timestamps: Tensor = _t(("T",), _F64, "[T] float64 s, absolute timestamps of the steps")
    current_index: int = field(metadata={"doc": "index of the current step (WOMD: 10)"})
    sdc_index: int = field(metadata={"doc": "agent index of the self-driving car"})

    # ---- frame -------------------------------------------------------------------------------
    origin_xy: Tensor = _t((2,), _F64, "[2] float64 m, world position of the scene-frame origin")
    origin_heading: Tensor = _t((), _F64, "[] float64 rad, world heading of the scene-frame x axis")

    # ---- agents -----------------------------------------------------------------------------
    agent_id: Tensor = _t(("A",), _I64, "[A] int64, dataset track id")
    agent_type: Tensor = _t(("A",), _I64, "[A] int64, WOMD ObjectType (drope.data.types.ObjectType)")
    agent_pos: Tensor = _t(("A", "T", 2), _F32, "[A, T, 2] float32 m, box centre x/y, scene frame")
    agent_z: Tensor = _t(("A", "T"), _F32, "[A, T] float32 m, box centre z, world")
    agent_heading: Tensor = _t(("A", "T"), _F32, "[A, T] float32 rad in [-π, π), scene frame")
    agent_vel: Tensor = _t(("A", "T", 2), _F32, "[A, T, 2] float32 m/s, velocity x/y, scene frame")
    agent_size: Tensor = _t(("A", "T", 3), _F32, "[A, T, 3] float32 m, box length, width, height")
    agent_valid: Tensor = _t(("A", "T"), _B, "[A, T] bool, True where the state was observed")
    tracks_to_predict: Tensor = _t(("R",), _I64, "[R] int64, agent indices to predict")
    tracks_to_predict_difficulty: Tensor = _t(("R",), _I64, "[R] int64, WOMD difficulty level")
    objects_of_interest: Tensor = _t(("Q",), _I64, "[Q] int64, track ids (not indices) of interest")

    # ---- map ---------------------------------------------------------------------------------
    map_id: Tensor = _t(("F",), _I64, "[F] int64, map feature id")
    map_type: Tensor = _t(("F",), _I64, "[F] int64, drope.data.types.MapType")
    map_subtype: Tensor = _t(("F",), _I64, "[F] int64, LaneType / RoadLineType / RoadEdgeType, else 0")
    map_offsets: Tensor = _t(("F+1",), _I64, "[F+1] int64, feature f owns map_points[off[f]:off[f+1]]")
    map_points: Tensor = _t(("P", 3), _F32, "[P, 3] float32 m, x/y scene frame, z world; polygons not closed")
    lane_speed_limit: Tensor = _t(("F",), _F32, "[F] float32 mph, lane speed limit (0: unknown / not a lane)")
    lane_interpolating: Tensor = _t(("F",), _B, "[F] bool, lane is interpolated (e.g. in intersections)")
    lane_links: Tensor = _t(
        ("L", 7),
        _I64,
        "[L, 7] int64 rows (lane_id, other_id, LaneLink kind, self_start, self_end, other_start, "
        "other_end); index ranges are -1 for entry/exit links",
    )
    stop_sign_lanes: Tensor = _t(("K", 2), _I64, "[K, 2] int64 rows (stop-sign feature id, controlled lane id)")

    # ---- traffic signals --------------------------------------------------------------------
    signal_lane_id: Tensor = _t(("T", "S"), _I64, "[T, S] int64, controlled lane id (padding: -1)")
    signal_state: Tensor = _t(("T", "S"), _I64, "[T, S] int64, drope.data.types.SignalState")
    signal_stop_point: Tensor = _t(("T", "S", 3), _F32, "[T, S, 3] float32 m, x/y scene frame, z world")
    signal_valid: Tensor = _t(("T", "S"), _B, "[T, S] bool, slot holds a signal at this step")

    dt: float = field(default=0.1, metadata={"doc": "seconds between steps"})

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def num_agents(self) -> int:
        return int(self.agent_id.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def num_map_features(self) -> int:
        return int(self.map_id.shape[0])

    @property
    def device(self) -> torch.device:
        return self.agent_pos.device

    @classmethod
    def tensor_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if "shape" in f.metadata]

    # ---- generic transforms --------------------------------------------------------------------
    def apply(self, fn: Callable[[Tensor], Tensor]) -> "Scene":
        """Return a copy with ``fn`` applied to every tensor field (fields looped, not listed)."""
        return dataclasses.replace(self, **{f.name: fn(getattr(self, f.name)) for f in self.tensor_fields()})

    def to(self, device: torch.device | str) -> "Scene":
        return self.apply(lambda t: t.to(device))

    def map_polyline(self, f: int) -> Tensor:
        """Points ``[n, 3]`` of map feature ``f``."""
        return self.map_points[int(self.map_offsets[f]) : int(self.map_offsets[f + 1])]

    def map_feature_index(self) -> Tensor:
        """``[P]`` int64: the feature index that owns each map point."""
        counts = self.map_offsets[1:] - self.map_offsets[:-1]
        return torch.repeat_interleave(torch.arange(self.num_map_features, device=counts.device), counts)

    # ---- coordinates -------------------------------------------------------------------------
    def to_world_xy(self, xy: Tensor | np.ndarray) -> np.ndarray:
        """Scene-frame x/y ``[..., 2]`` → world x/y as float64 numpy."""
        xy = xy.detach().cpu().numpy() if isinstance(xy, Tensor) else np.asarray(xy)
        return frame_to_world(xy.astype(np.float64), self.origin_xy.cpu().numpy(), float(self.origin_heading))

    def to_world_heading(self, heading: Tensor | np.ndarray) -> np.ndarray:
        """Scene-frame headings → world headings in [-π, π), float64 numpy."""
        h = heading.detach().cpu().numpy() if isinstance(heading, Tensor) else np.asarray(heading)
        return wrap_angle(h.astype(np.float64) + float(self.origin_heading))

    def to_world_vel(self, vel: Tensor | np.ndarray) -> np.ndarray:
        v = vel.detach().cpu().numpy() if isinstance(vel, Tensor) else np.asarray(vel)
        return frame_to_world(v.astype(np.float64), np.zeros(2), float(self.origin_heading))

    def to_world(self) -> "WorldCoords":
        """All frame-dependent fields in world coordinates, float64 numpy (invalid agent states zero)."""
        valid = self.agent_valid.cpu().numpy()
        return WorldCoords(
            agent_pos=self.to_world_xy(self.agent_pos) * valid[..., None],
            agent_heading=self.to_world_heading(self.agent_heading) * valid,
            agent_vel=self.to_world_vel(self.agent_vel) * valid[..., None],
            map_xy=self.to_world_xy(self.map_points[:, :2]),
            signal_stop_xy=self.to_world_xy(self.signal_stop_point[..., :2]),
        )

    def reframe(self, origin_xy: np.ndarray | Tensor, origin_heading: float) -> "Scene":
        """The same scene expressed in another frame (conversion through float64 world coordinates)."""
        w = self.to_world()
        origin_xy = np.asarray(origin_xy.cpu() if isinstance(origin_xy, Tensor) else origin_xy, np.float64)
        return _with_frame(self, w, origin_xy, float(origin_heading))

    # ---- checks --------------------------------------------------------------------------------
    def validate(self) -> "Scene":
        """Raise :class:`SceneValidationError` naming the field on any contract breach; return self."""
        where = f"scene {self.scenario_id!r}"
        dims: dict[str, int] = {}
        for f in self.tensor_fields():
            value = getattr(self, f.name)
            if not isinstance(value, Tensor):
                raise SceneValidationError(f"{where}: field {f.name} must be a torch.Tensor, got {type(value).__name__}")
            want_dtype, want_shape = f.metadata["dtype"], f.metadata["shape"]
            if value.dtype != want_dtype:
                raise SceneValidationError(f"{where}: field {f.name} has dtype {value.dtype}, expected {want_dtype}")
            if value.dim() != len(want_shape):
                raise SceneValidationError(
                    f"{where}: field {f.name} has shape {tuple(value.shape)}, expected {_legend(want_shape)}"
                )
            for sym, size in zip(want_shape, value.shape):
                if isinstance(sym, int):
                    ok = size == sym
                else:
                    ok = dims.setdefault(sym, size) == size
                if not ok:
                    raise SceneValidationError(
                        f"{where}: field {f.name} has shape {tuple(value.shape)}, expected {_legend(want_shape)} "
                        f"with {dims}"
                    )
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                bad = (~torch.isfinite(value)).nonzero()[0].tolist()
                raise SceneValidationError(f"{where}: field {f.name} holds NaN/Inf (first at index {bad})")
        A, T, F = self.num_agents, self.num_steps, self.num_map_features
        if self.map_offsets.shape[0] != F + 1:
            raise SceneValidationError(f"{where}: map_offsets has {self.map_offsets.shape[0]} entries, expected F+1={F + 1}")
        off = self.map_offsets
        if int(off[0]) != 0 or int(off[-1]) != self.map_points.shape[0] or bool((off[1:] < off[:-1]).any()):
            raise SceneValidationError(f"{where}: map_offsets must rise from 0 to {self.map_points.shape[0]} (P)")
        if F and bool(((off[1:] - off[:-1]) < 1).any()):
            empty = int(((off[1:] - off[:-1]) < 1).nonzero()[0, 0])
            raise SceneValidationError(f"{where}: map feature {empty} (id {int(self.map_id[empty])}) has no points")
        h = self.agent_heading
        if bool(((h < -math.pi) | (h >= math.pi)).any()):
            bad = ((h < -math.pi) | (h >= math.pi)).nonzero()[0].tolist()
            raise SceneValidationError(f"{where}: agent_heading outside [-π, π) at [agent, step] {bad}")
        if not 0 <= self.current_index < T:
            raise SceneValidationError(f"{where}: current_index {self.current_index} outside [0, {T})")
        if A and not 0 <= self.sdc_index < A:
            raise SceneValidationError(f"{where}: sdc_index {self.sdc_index} outside [0, {A})")
        if self.tracks_to_predict.numel() and (
            int(self.tracks_to_predict.min()) < 0 or int(self.tracks_to_predict.max()) >= A
        ):
            raise SceneValidationError(f"{where}: tracks_to_predict holds indices outside [0, {A})")
        if bool((self.map_type < 0).any()) or bool((self.map_type > max(MapType)).any()):
            raise SceneValidationError(f"{where}: map_type holds values outside MapType")
        if not self.dt > 0:
            raise SceneValidationError(f"{where}: dt must be positive, got {self.dt}")
        return self


@dataclass(frozen=True)
class WorldCoords:
    """World-frame (float64 numpy) versions of a Scene's frame-dependent fields."""

    agent_pos: np.ndarray  # [A, T, 2] m
    agent_heading: np.ndarray  # [A, T] rad in [-π, π)
    agent_vel: np.ndarray  # [A, T, 2] m/s
    map_xy: np.ndarray  # [P, 2] m
    signal_stop_xy: np.ndarray  # [T, S, 2] m


def _legend(shape: tuple) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _with_frame(scene: Scene, w: WorldCoords, origin_xy: np.ndarray, origin_heading: float) -> Scene:
    valid = scene.agent_valid.cpu().numpy()
    pos = world_to_frame(w.agent_pos, origin_xy, origin_heading) * valid[..., None]
    vel = world_to_frame(w.agent_vel, np.zeros(2), origin_heading) * valid[..., None]
    heading = wrap_angle_f32(w.agent_heading - origin_heading) * valid
    map_xy = world_to_frame(w.map_xy, origin_xy, origin_heading)
    stop_xy = world_to_frame(w.signal_stop_xy, origin_xy, origin_heading) * scene.signal_valid.cpu().numpy()[..., None]
    dev = scene.device
    f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=dev)  # noqa: E731
    return dataclasses.replace(
        scene,
        origin_xy=torch.as_tensor(origin_xy, dtype=_F64, device=dev),
        origin_heading=torch.tensor(origin_heading, dtype=_F64, device=dev),
        agent_pos=f32(pos),
        agent_vel=f32(vel),
        agent_heading=f32(heading),
        map_points=torch.cat([f32(map_xy), scene.map_points[:, 2:]], dim=-1),
        signal_stop_point=torch.cat([f32(stop_xy), scene.signal_stop_point[..., 2:]], dim=-1),
    )


def scene_from_world(
    *,
    scenario_id: str,
    source: str,
    timestamps: np.ndarray,
    current_index: int,
    sdc_index: int,
    agent_id: np.ndarray,
    agent_type: np.ndarray,
    agent_xyz: np.ndarray,
    agent_heading: np.ndarray,
    agent_vel: np.ndarray,
    agent_size: np.ndarray,
    agent_valid: np.ndarray,
    tracks_to_predict: np.ndarray,
    tracks_to_predict_difficulty: np.ndarray,
    objects_of_interest: np.ndarray,
    map_id: np.ndarray,
    map_type: np.ndarray,
    map_subtype: np.ndarray,
    map_offsets: np.ndarray,
    map_points: np.ndarray,
    lane_speed_limit: np.ndarray,
    lane_interpolating: np.ndarray,
    lane_links: np.ndarray,
    stop_sign_lanes: np.ndarray,
    signal_lane_id: np.ndarray,
    signal_state: np.ndarray,
    signal_stop_point: np.ndarray,
    signal_valid: np.ndarray,
    dt: float = 0.1,
    origin_xy: np.ndarray | None = None,
    origin_heading: float | None = None,
) -> Scene:
    """Build a Scene from world-frame numpy arrays (float64 preferred) — the one conversion path
    shared by the WOMD reader and the scenario generator.

    ``agent_xyz [A, T, 3]`` and ``map_points [P, 3]`` / ``signal_stop_point [T, S, 3]`` are world
    x, y, z. The origin defaults to the SDC pose at ``current_index`` (or (0, 0, 0) if invalid).
    """
    agent_xyz = np.asarray(agent_xyz, np.float64).reshape(-1, len(timestamps), 3)
    agent_valid = np.asarray(agent_valid, bool).reshape(agent_xyz.shape[:2])
    agent_heading = np.asarray(agent_heading, np.float64).reshape(agent_valid.shape)
    if origin_xy is None or origin_heading is None:
        if agent_valid.shape[0] and 0 <= sdc_index < agent_valid.shape[0] and agent_valid[sdc_index, current_index]:
            origin_xy = agent_xyz[sdc_index, current_index, :2]
            origin_heading = float(agent_heading[sdc_index, current_index])
        else:
            origin_xy, origin_heading = np.zeros(2), 0.0
    origin_xy = np.asarray(origin_xy, np.float64)
    valid_f = agent_valid.astype(np.float64)

    def f32(a, shape=None):
        a = np.asarray(a, dtype=np.float32)
        return torch.from_numpy(a.reshape(shape) if shape is not None else a.copy())

    def i64(a, shape=None):
        a = np.asarray(a, dtype=np.int64)
        return torch.from_numpy(a.reshape(shape) if shape is not None else a.copy())

    map_points = np.asarray(map_points, np.float64).reshape(-1, 3)
    stop = np.asarray(signal_stop_point, np.float64).reshape(len(timestamps), -1, 3)
    sig_valid = np.asarray(signal_valid, bool).reshape(stop.shape[:2])
    return Scene(
        scenario_id=str(scenario_id),
        source=str(source),
        timestamps=torch.from_numpy(np.asarray(timestamps, np.float64).copy()),
        current_index=int(current_index),
        sdc_index=int(sdc_index),
        origin_xy=torch.from_numpy(origin_xy.copy()),
        origin_heading=torch.tensor(float(origin_heading), dtype=_F64),
        agent_id=i64(agent_id),
        agent_type=i64(agent_type),
        agent_pos=f32(world_to_frame(agent_xyz[..., :2], origin_xy, origin_heading) * valid_f[..., None]),
        agent_z=f32(agent_xyz[..., 2] * valid_f),
        agent_heading=torch.from_numpy(wrap_angle_f32(agent_heading - origin_heading) * agent_valid),
        agent_vel=f32(world_to_frame(np.asarray(agent_vel, np.float64), np.zeros(2), origin_heading) * valid_f[..., None]),
        agent_size=f32(np.asarray(agent_size, np.float64) * valid_f[..., None]),
        agent_valid=torch.from_numpy(agent_valid.copy()),
        tracks_to_predict=i64(tracks_to_predict),
        tracks_to_predict_difficulty=i64(tracks_to_predict_difficulty),
        objects_of_interest=i64(objects_of_interest),
        map_id=i64(map_id),
        map_type=i64(map_type),
        map_subtype=i64(map_subtype),
        map_offsets=i64(map_offsets),
        map_points=torch.cat(
            [f32(world_to_frame(map_points[:, :2], origin_xy, origin_heading)), f32(map_points[:, 2:])], dim=-1
        ),
        lane_speed_limit=f32(lane_speed_limit),
        lane_interpolating=torch.from_numpy(np.asarray(lane_interpolating, bool).copy()),
        lane_links=i64(lane_links, (-1, 7)),
        stop_sign_lanes=i64(stop_sign_lanes, (-1, 2)),
        signal_lane_id=i64(signal_lane_id, stop.shape[:2]),
        signal_state=i64(signal_state, stop.shape[:2]),
        signal_stop_point=torch.cat(
            [
                f32(world_to_frame(stop[..., :2], origin_xy, origin_heading) * sig_valid[..., None]),
                f32(stop[..., 2:] * sig_valid[..., None]),
            ],
            dim=-1,
        ),
        signal_valid=torch.from_numpy(sig_valid.copy()),
        dt=float(dt),
    )
