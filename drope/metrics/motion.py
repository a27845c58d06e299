"""WOMD motion-prediction metrics as the official motion-metrics op defines them.

Definitions follow the op of ``waymo-open-dataset`` 1.6.x (``motion_metrics.cc`` and
``motion_metrics_utils.cc``; standard challenge config: 10 Hz tracks, 2 Hz predictions,
10 history + current + 80 future samples, measurement steps 5/9/15 = 3/5/8 s, speed-scaled
lateral/longitudinal miss thresholds, 6 predictions). ``docs/compare_motion_official.py`` checks
every value against the compiled op (agreement to float32, see ``docs/wosac_verification.md``).

- minADE / minFDE: over the first ``max_predictions`` predictions (submission order), mean / final
  2 Hz displacement up to the measurement step over the valid ground-truth states;
- miss rate: a prediction is a true positive when its displacement at the measurement step, in
  the ground truth's frame and divided by the speed scale of the current speed, lies within both
  thresholds; the object is a miss when none of its predictions is;
- overlap rate: the most confident prediction (normalised confidences), boxed with the track's
  length/width at each 2 Hz step and a heading from the predicted positions, overlaps (positive
  area) a logged box of another object valid at the current step, at any step up to the horizon;
- mAP: objects go to one of 8 trajectory-type buckets (``classify_trajectory``; right U-turns
  count as right turns); each object whose ground truth is valid at the measurement step adds one
  ground-truth count to its bucket and one sample per prediction (raw confidence; true positive
  only for the first true positive in confidence order, later ones are false positives); per
  bucket the all-point PASCAL VOC AP, then the mean over buckets that received samples;
- soft mAP: as mAP, but later true positives of an object are left out instead of being counted as
  false positives.

Everything is computed in the scene frame (rotation/translation invariant); headings used for the
trajectory-type classification come from world headings as the op sees them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from drope.data.scene import Scene
from drope.data.types import ObjectType
from drope.geometry import box_corners
from drope.metrics.boxes import boxes_overlap

Tensor = torch.Tensor

#: Object types reported by :func:`aggregate_motion_metrics` (WOMD challenge buckets).
REPORTED_TYPES = (ObjectType.TYPE_VEHICLE, ObjectType.TYPE_PEDESTRIAN, ObjectType.TYPE_CYCLIST)
#: Trajectory-type buckets of mAP (WOMD ``TrajectoryType``); right U-turns are folded into right turns.
TRAJECTORY_TYPES = (
    "STATIONARY",
    "STRAIGHT",
    "STRAIGHT_LEFT",
    "STRAIGHT_RIGHT",
    "LEFT_U_TURN",
    "LEFT_TURN",
    "RIGHT_U_TURN",
    "RIGHT_TURN",
)
_TT = {name: i for i, name in enumerate(TRAJECTORY_TYPES)}


@dataclass(frozen=True)
class MeasurementStep:
    """One horizon: the 2 Hz prediction index measured and its unscaled miss thresholds (m)."""

    measurement_step: int
    lateral_miss_threshold: float
    longitudinal_miss_threshold: float


@dataclass(frozen=True)
class MotionMetricsConfig:
    """The motion-metrics op's ``MotionMetricsConfig``; defaults = the WOMD challenge config."""

    track_steps_per_second: int = 10
    prediction_steps_per_second: int = 2
    track_history_samples: int = 10
    track_future_samples: int = 80
    speed_lower_bound: float = 1.4
    speed_upper_bound: float = 11.0
    speed_scale_lower: float = 0.5
    speed_scale_upper: float = 1.0
    step_configurations: tuple[MeasurementStep, ...] = field(
        default_factory=lambda: (
            MeasurementStep(5, 1.0, 2.0),
            MeasurementStep(9, 1.8, 3.6),
            MeasurementStep(15, 3.0, 6.0),
        )
    )
    max_predictions: int = 6

    def __post_init__(self) -> None:
        if self.track_steps_per_second % self.prediction_steps_per_second:
            raise ValueError("track_steps_per_second must be a multiple of prediction_steps_per_second")
        if self.speed_lower_bound >= self.speed_upper_bound:
            raise ValueError("speed_upper_bound must exceed speed_lower_bound")
        for s in self.step_configurations:
            if not 0 <= s.measurement_step < self.num_prediction_steps:
                raise ValueError(f"measurement_step {s.measurement_step} outside [0, {self.num_prediction_steps})")

    @property
    def ratio(self) -> int:
        return self.track_steps_per_second // self.prediction_steps_per_second

    @property
    def num_prediction_steps(self) -> int:
        """Points per predicted trajectory (16 for WOMD)."""
        return self.track_future_samples // self.ratio

    def track_step(self, prediction_step: int) -> int:
        """Track (10 Hz) index of a 2 Hz prediction index: 0 → 15, 15 → 90 for WOMD."""
        return (prediction_step + 1) * self.ratio + self.track_history_samples

    def horizon_name(self, step: MeasurementStep) -> str:
        return f"{(step.measurement_step + 1) / self.prediction_steps_per_second:g}s"


@dataclass(frozen=True)
class MotionRecords:
    """Per-object measurements of one scene, ready to be pooled over scenes.

    R objects, S measurement steps (config order), K predictions. NaN marks "no measurement".
    """

    scenario_id: str
    object_id: Tensor  # [R] int64 track ids
    object_type: Tensor  # [R] int64 ObjectType
    min_ade: Tensor  # [R, S] float64 m
    min_fde: Tensor  # [R, S] float64 m
    miss: Tensor  # [R, S] float64 {0, 1} or NaN
    overlap: Tensor  # [R, S] float64 {0, 1}
    trajectory_type: Tensor  # [R] int64 index into TRAJECTORY_TYPES, -1 when unclassifiable
    confidence: Tensor  # [R, K] float64 raw confidences (first K predictions)
    is_tp: Tensor  # [R, S, K] bool, the prediction is within the thresholds
    measured: Tensor  # [R, S, K] bool, the ground truth allows a measurement


def _speed_scale(speed: Tensor, c: MotionMetricsConfig) -> Tensor:
    frac = (speed - c.speed_lower_bound) / (c.speed_upper_bound - c.speed_lower_bound)
    scale = c.speed_scale_lower + (c.speed_scale_upper - c.speed_scale_lower) * frac
    scale = torch.where(speed < c.speed_lower_bound, torch.full_like(scale, c.speed_scale_lower), scale)
    return torch.where(speed > c.speed_upper_bound, torch.full_like(scale, c.speed_scale_upper), scale)


def classify_trajectory(
    start_xy: np.ndarray, start_heading: float, start_vel: np.ndarray,
    end_xy: np.ndarray, end_heading: float, end_vel: np.ndarray,
) -> str:
    """WOMD trajectory type of a track from its current state to its last valid state (world values).

    The op's ``ClassifyTrack``: stationary below 2 m/s (max of start/end speed) and 3 m
    displacement; straight when the wrapped heading change is under 30° (left/right of straight
    beyond 2.5 m lateral offset in the start frame); otherwise a right or left turn by the side of
    the lateral offset, a U-turn when it ends behind the start (longitudinal offset < 0).
    """
    dx_w, dy_w = float(end_xy[0] - start_xy[0]), float(end_xy[1] - start_xy[1])
    displacement = math.hypot(dx_w, dy_w)
    # the op keeps the heading change and offsets in float32
    heading_diff = float(np.float32(math.remainder(float(end_heading) - float(start_heading), 2 * math.pi)))
    c, s = math.cos(-start_heading), math.sin(-start_heading)
    dx, dy = float(np.float32(c * dx_w - s * dy_w)), float(np.float32(s * dx_w + c * dy_w))
    max_speed = max(float(np.float32(math.hypot(*start_vel))), float(np.float32(math.hypot(*end_vel))))
    if max_speed < 2.0 and displacement < 3.0:
        return "STATIONARY"
    if abs(heading_diff) < float(np.float32(math.pi / 6.0)):
        if abs(dy) < 2.5:
            return "STRAIGHT"
        return "STRAIGHT_RIGHT" if dy < 0 else "STRAIGHT_LEFT"
    if dy < 0:
        return "RIGHT_U_TURN" if dx < 0.0 else "RIGHT_TURN"
    return "LEFT_U_TURN" if dx < 0.0 else "LEFT_TURN"


def _scene_trajectory_types(scene: Scene, agents: Tensor, current: int) -> Tensor:
    valid = scene.agent_valid.cpu().numpy()
    world_xy = scene.to_world_xy(scene.agent_pos)  # [A, T, 2]
    world_h = scene.to_world_heading(scene.agent_heading)
    world_v = scene.to_world_vel(scene.agent_vel)
    out = []
    for a in agents.tolist():
        later = np.nonzero(valid[a, current + 1 :])[0]
        if not valid[a, current] or later.size == 0:
            out.append(-1)
            continue
        e = current + 1 + int(later[-1])
        name = classify_trajectory(world_xy[a, current], world_h[a, current], world_v[a, current],
                                   world_xy[a, e], world_h[a, e], world_v[a, e])
        out.append(_TT["RIGHT_TURN" if name == "RIGHT_U_TURN" else name])
    return torch.tensor(out, dtype=torch.int64)


def _positions_heading(xy: Tensor, zero_angle: float = 0.0) -> Tensor:
    """Per-point heading of trajectories ``[..., P, 2]`` from neighbouring points, as the op does it
    (first/last: one-sided segment angle; inside: the circular mean of the two segment angles).

    A zero-length segment has angle 0 in the op's (world) frame: ``zero_angle`` is that direction
    in the frame of ``xy`` (``-origin_heading`` for a scene frame), so stationary predictions get
    the op's box orientation in any frame.
    """
    seg = xy[..., 1:, :] - xy[..., :-1, :]  # [..., P-1, 2]
    ang = torch.atan2(seg[..., 1], seg[..., 0])  # [..., P-1]
    ang = torch.where((seg == 0).all(-1), torch.full_like(ang, zero_angle), ang)
    a, b = ang[..., 1:], ang[..., :-1]
    inner = torch.atan2(torch.sin(a) + torch.sin(b), torch.cos(a) + torch.cos(b))
    return torch.cat([ang[..., :1], inner, ang[..., -1:]], dim=-1)


def motion_records_2hz(
    scene: Scene,
    agent_index: Tensor,
    pred_xy: Tensor,
    pred_prob: Tensor,
    config: MotionMetricsConfig = MotionMetricsConfig(),
) -> MotionRecords:
    """Records for predictions already at the op's rate.

    ``agent_index [R]`` agent indices, ``pred_xy [R, K, P, 2]`` scene frame at the 2 Hz prediction
    steps (P = ``config.num_prediction_steps``; step p is track step ``config.track_step(p)``),
    ``pred_prob [R, K]`` confidences (any scale; only order and normalised argmax matter).
    """
    c = config
    where = f"scene {scene.scenario_id!r}"
    agent_index = torch.as_tensor(agent_index, dtype=torch.int64).cpu()
    pred_xy = torch.as_tensor(pred_xy).detach().cpu().to(torch.float64)
    # the op (like the submission proto) holds confidences as float32: ties are decided there
    pred_prob = torch.as_tensor(pred_prob).detach().cpu().to(torch.float32)
    R = int(agent_index.shape[0])
    P = c.num_prediction_steps
    if pred_xy.dim() != 4 or pred_xy.shape[0] != R or pred_xy.shape[2] != P or pred_xy.shape[3] != 2:
        raise ValueError(f"{where}: pred_xy has shape {tuple(pred_xy.shape)}, expected [R={R}, K, {P}, 2]")
    if pred_prob.shape != pred_xy.shape[:2]:
        raise ValueError(f"{where}: pred_prob has shape {tuple(pred_prob.shape)}, expected {tuple(pred_xy.shape[:2])}")
    if not bool(torch.isfinite(pred_xy).all()) or not bool(torch.isfinite(pred_prob).all()):
        bad = int((~torch.isfinite(pred_xy)).flatten(1).any(1).nonzero()[0, 0]) if not bool(
            torch.isfinite(pred_xy).all()) else int((~torch.isfinite(pred_prob)).any(1).nonzero()[0, 0])
        raise ValueError(f"{where}: predictions for object {int(scene.agent_id[agent_index[bad]])} hold NaN/Inf")
    T_needed = c.track_history_samples + c.track_future_samples + 1
    if scene.num_steps != T_needed:
        raise ValueError(f"{where}: has {scene.num_steps} steps, the motion metrics need {T_needed}")
    K = min(int(pred_xy.shape[1]), c.max_predictions)
    # overlap uses the most confident of the first K predictions after normalising over *all* of
    # them (float32, a zero sum gives 1/K_all each; a negative sum flips the order, as in the op)
    total = pred_prob.sum(1, keepdim=True)
    normed = torch.where(total == 0, torch.full_like(pred_prob, 1.0 / pred_prob.shape[1]), pred_prob / total)
    top = normed[:, :K].argmax(dim=1)  # [R] first maximum
    pred_xy, pred_prob = pred_xy[:, :K], pred_prob[:, :K].to(torch.float64)
    cur = c.track_history_samples
    steps = torch.tensor([c.track_step(p) for p in range(P)])
    pos = scene.agent_pos.cpu().to(torch.float64)
    head = scene.agent_heading.cpu().to(torch.float64)
    valid = scene.agent_valid.cpu()
    size = scene.agent_size.cpu().to(torch.float64)
    gt = pos[agent_index][:, steps]  # [R, P, 2]
    gt_valid = valid[agent_index][:, steps]  # [R, P]
    gt_head = head[agent_index][:, steps]  # [R, P]
    err = pred_xy - gt[:, None]  # [R, K, P, 2]
    dist = err.norm(dim=-1)  # [R, K, P]
    speed = scene.agent_vel.cpu().to(torch.float64)[agent_index, cur].norm(dim=-1)  # [R]
    scale = _speed_scale(speed, c)  # [R]
    ch, sh = torch.cos(gt_head), torch.sin(gt_head)
    lon = (err[..., 0] * ch[:, None] + err[..., 1] * sh[:, None]) / scale[:, None, None]  # [R, K, P]
    lat = (-err[..., 0] * sh[:, None] + err[..., 1] * ch[:, None]) / scale[:, None, None]

    top_xy = pred_xy[torch.arange(R), top]  # [R, P, 2]
    top_heading = _positions_heading(top_xy, -float(scene.origin_heading))  # [R, P]
    dims = size[agent_index][:, steps]  # [R, P, 3] the track's box at that step, as the op uses
    pred_box = box_corners(top_xy, top_heading, dims[..., 0], dims[..., 1])  # [R, P, 4, 2]
    others = valid[:, cur]  # [A] objects valid at the current step
    other_box = box_corners(pos[:, steps], head[:, steps], size[:, steps, 0], size[:, steps, 1])  # [A, P, 4, 2]
    hit = boxes_overlap(pred_box[:, None], other_box[None])  # [R, A, P]
    hit &= others[None, :, None] & valid[:, steps][None]
    hit[torch.arange(R), agent_index] = False
    overlap_step = hit.any(1)  # [R, P]

    S = len(c.step_configurations)
    nan = float("nan")
    min_ade = torch.full((R, S), nan, dtype=torch.float64)
    min_fde = torch.full((R, S), nan, dtype=torch.float64)
    miss = torch.full((R, S), nan, dtype=torch.float64)
    overlap = torch.zeros((R, S), dtype=torch.float64)
    is_tp = torch.zeros((R, S, K), dtype=torch.bool)
    measured = torch.zeros((R, S, K), dtype=torch.bool)
    for si, sc in enumerate(c.step_configurations):
        m = sc.measurement_step
        v = gt_valid[:, : m + 1]  # [R, m+1]
        n = v.sum(-1)  # [R]
        ade = (dist[..., : m + 1] * v[:, None]).sum(-1) / n.clamp_min(1)[:, None]  # [R, K]
        min_ade[:, si] = torch.where(n > 0, ade.amin(-1), torch.full_like(n, nan, dtype=torch.float64))
        ok = gt_valid[:, m]  # [R]
        min_fde[:, si] = torch.where(ok, dist[..., m].amin(-1), torch.full((R,), nan, dtype=torch.float64))
        tp = (lat[..., m].abs() <= sc.lateral_miss_threshold) & (lon[..., m].abs() <= sc.longitudinal_miss_threshold)
        is_tp[:, si] = tp & ok[:, None]
        measured[:, si] = ok[:, None].expand(R, K)
        miss[:, si] = torch.where(ok, (~tp.any(-1)).double(), torch.full((R,), nan, dtype=torch.float64))
        overlap[:, si] = overlap_step[:, : m + 1].any(-1).double()
    return MotionRecords(
        scenario_id=scene.scenario_id,
        object_id=scene.agent_id.cpu()[agent_index],
        object_type=scene.agent_type.cpu()[agent_index],
        min_ade=min_ade,
        min_fde=min_fde,
        miss=miss,
        overlap=overlap,
        trajectory_type=_scene_trajectory_types(scene, agent_index, cur),
        confidence=pred_prob,
        is_tp=is_tp,
        measured=measured,
    )


def scene_motion_records(
    scene: Scene,
    agent_index: Tensor,
    pred_xy: Tensor,
    pred_prob: Tensor,
    pred_heading: Tensor | None = None,
    config: MotionMetricsConfig = MotionMetricsConfig(),
) -> MotionRecords:
    """Records for 10 Hz predictions ``pred_xy [R, K, F, 2]`` (scene frame, future steps
    current+1 … current+F, F = ``config.track_future_samples``) with ``pred_prob [R, K]``.

    The predictions are subsampled to the op's 2 Hz steps (10 Hz index ``ratio·(p+1) − 1``).
    ``pred_heading`` is accepted for API symmetry but unused: the official op derives box headings
    from the predicted positions.
    """
    del pred_heading
    pred_xy = torch.as_tensor(pred_xy)
    F = config.track_future_samples
    if pred_xy.dim() != 4 or pred_xy.shape[2] != F:
        raise ValueError(
            f"scene {scene.scenario_id!r}: pred_xy has shape {tuple(pred_xy.shape)}, expected [R, K, {F}, 2]"
        )
    idx = torch.arange(config.num_prediction_steps) * config.ratio + config.ratio - 1
    return motion_records_2hz(scene, agent_index, pred_xy[:, :, idx], pred_prob, config)


def _average_precision(conf: np.ndarray, tp: np.ndarray, num_objects: int) -> float:
    """Area under the precision/recall curve's precision envelope (PASCAL VOC, all points), as the
    op computes it: samples by confidence descending, false before true positives at equal
    confidence; precision/recall in float32; from the last sample backwards, each rise of the
    precision closes a rectangle of the current best precision over the recall gained since."""
    if conf.size == 0:
        return 0.0
    order = np.lexsort((tp.astype(np.int8), -conf))
    cum = np.cumsum(tp[order]).astype(np.float32)
    precision = cum / np.arange(1, conf.size + 1, dtype=np.float32)
    recall = cum / np.float32(num_objects)
    # walking backwards, the "highest" sample changes where the precision beats all later ones
    rp, rr = precision[::-1], recall[::-1]
    later_max = np.maximum.accumulate(rp)
    keep = np.concatenate([[True], rp[1:] > later_max[:-1]])
    hp, hr = rp[keep], rr[keep]
    rects = hp[:-1] * (hr[:-1] - hr[1:])  # float32 products, summed in double (as the op)
    return float(rects.astype(np.float64).sum()) + float(hr[-1] * hp[-1])


def _object_samples(conf: np.ndarray, tp: np.ndarray, soft: bool) -> tuple[list[float], list[bool]]:
    """PR samples of one object: its predictions by confidence (descending; equal confidences keep
    submission order, as the op's small-array sort does). Only the first true positive counts as
    one; later true positives are false positives (mAP) or left out (soft mAP)."""
    confs, tps, found = [], [], False
    for k in np.argsort(-conf, kind="stable"):
        if found and tp[k] and soft:
            continue
        confs.append(float(conf[k]))
        tps.append(bool(tp[k]) and not found)
        found = found or bool(tp[k])
    return confs, tps


def _map(records: list[MotionRecords], rows: list[tuple[int, int]], si: int, soft: bool) -> float | None:
    """mAP of the objects ``rows`` (record, row) at measurement step ``si``: one PR bucket per
    trajectory type, each object counted once in its bucket when its ground truth allows a
    measurement; the mean AP over the buckets that received samples. ``None`` when none did
    (no measurement, like minFDE; the op reports 0.0 there)."""
    buckets: dict[int, tuple[list[float], list[bool], list[int]]] = {}  # confidences, TPs, [objects]
    for ri, r in rows:
        rec = records[ri]
        ttype = int(rec.trajectory_type[r])
        meas = rec.measured[r, si].numpy()
        if ttype < 0 or not meas.any():
            continue
        confs, tps = _object_samples(rec.confidence[r].numpy()[meas], rec.is_tp[r, si].numpy()[meas], soft)
        cf, tp, n = buckets.setdefault(ttype, ([], [], [0]))
        cf.extend(confs)
        tp.extend(tps)
        n[0] += 1
    aps = [_average_precision(np.asarray(cf), np.asarray(tp, bool), n[0]) for cf, tp, n in buckets.values() if cf]
    return float(np.mean(aps)) if aps else None


def aggregate_motion_metrics(
    records: list[MotionRecords], config: MotionMetricsConfig = MotionMetricsConfig()
) -> dict[str, dict[str, dict[str, float | None]] | None]:
    """Pool records over scenes: ``{type: {horizon: {metric: value}}}`` (``drope-score motion --json``).

    Types are ``TYPE_VEHICLE``/``TYPE_PEDESTRIAN``/``TYPE_CYCLIST``; a type with no objects maps to
    ``None``; a metric with no measurement is ``None``.
    """
    out: dict[str, dict | None] = {}
    for t in REPORTED_TYPES:
        rows = [(ri, r) for ri, rec in enumerate(records) for r in range(len(rec.object_type)) if int(rec.object_type[r]) == t]
        if not rows:
            out[t.name] = None
            continue
        per_h = {}
        for si, sc in enumerate(config.step_configurations):
            def mean(name: str) -> float | None:
                vals = torch.stack([getattr(records[ri], name)[r, si] for ri, r in rows])
                vals = vals[~torch.isnan(vals)]
                return float(vals.mean()) if vals.numel() else None

            per_h[config.horizon_name(sc)] = {
                "min_ade": mean("min_ade"),
                "min_fde": mean("min_fde"),
                "miss_rate": mean("miss"),
                "overlap_rate": mean("overlap"),
                "mean_average_precision": _map(records, rows, si, soft=False),
                "soft_mean_average_precision": _map(records, rows, si, soft=True),
            }
        out[t.name] = per_h
    return out
