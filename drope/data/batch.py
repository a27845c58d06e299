"""Padded dense batches of plain tensors: the model and export input path (no PyG).

Every scene keeps its own scene frame. ``collate_scenes(scenes, spec)`` cuts history, future and
map segments as the :class:`~drope.data.features.FeatureSpec` says and pads agents and segments to
the largest scene of the batch (or truncates to ``spec.max_agents``/``spec.max_map`` nearest to the
SDC, with a logged warning — never silently).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

import torch

from drope.data.features import FeatureSpec
from drope.data.scene import Scene
from drope.data.segments import split_polylines

log = logging.getLogger(__name__)
Tensor = torch.Tensor
_warned: set[tuple[str, str]] = set()


def _warn_once(scenario_id: str, what: str, msg: str, *args) -> None:
    """Truncation is logged once per scene and kind (training collates the same scene many times)."""
    if (scenario_id, what) not in _warned:
        _warned.add((scenario_id, what))
        log.warning(msg, *args)


@dataclass(frozen=True)
class SceneBatch:
    """B scenes padded to A agents, M map segments (S points each), history H, future F steps."""

    agent_pos: Tensor  # [B, A, H, 2] float32 m, scene frame
    agent_heading: Tensor  # [B, A, H] float32 rad
    agent_vel: Tensor  # [B, A, H, 2] float32 m/s
    agent_size: Tensor  # [B, A, 3] float32 m (length, width, height) at the current step
    agent_type: Tensor  # [B, A] int64 ObjectType
    agent_valid: Tensor  # [B, A, H] bool
    agent_mask: Tensor  # [B, A] bool, real agent (not padding)
    agent_index: Tensor  # [B, A] int64, index into the scene's agents (-1 padding)
    future_pos: Tensor  # [B, A, F, 2] float32 m, logged future (targets)
    future_heading: Tensor  # [B, A, F] float32 rad
    future_valid: Tensor  # [B, A, F] bool
    predict_mask: Tensor  # [B, A] bool, agent is in tracks_to_predict
    map_points: Tensor  # [B, M, S, 2] float32 m
    map_pose: Tensor  # [B, M, 3] float32 (x, y, direction)
    map_type: Tensor  # [B, M] int64 MapType
    map_signal: Tensor  # [B, M] int64 SignalState at the current step
    map_mask: Tensor  # [B, M] bool
    scenario_id: list[str] = dataclasses.field(default_factory=list)

    def tensor_items(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                yield f.name, v

    def to(self, device) -> "SceneBatch":
        return dataclasses.replace(self, **{k: v.to(device) for k, v in self.tensor_items()})

    def model_inputs(self) -> dict[str, Tensor]:
        """The plain-tensor inputs of the model / ONNX graph."""
        return {k: getattr(self, k) for k in FeatureSpec.input_names}


def _nearest(xy: Tensor, keep: int, anchor: Tensor) -> Tensor:
    d = (xy - anchor).norm(dim=-1)
    return torch.sort(torch.topk(d, keep, largest=False).indices).values


# The positional order of the keyword-per-setting signature that predates FeatureSpec.
_LEGACY_ARGS = ("history", "future", "max_agents", "max_map", "segment_len", "segment_points")


def _legacy_spec(spec, args: tuple, kw: dict) -> FeatureSpec:
    """``collate_scenes(scenes, history, future, ...)`` / ``collate_scenes(scenes, history=...)`` as a spec."""
    if isinstance(spec, FeatureSpec):
        if args or kw:
            raise TypeError("collate_scenes: give a FeatureSpec or the per-setting arguments, not both")
        return spec
    if spec is not None:
        args = (spec, *args)
    if len(args) > len(_LEGACY_ARGS):
        raise TypeError(f"collate_scenes: at most {len(_LEGACY_ARGS)} positional settings, got {len(args)}")
    given = dict(zip(_LEGACY_ARGS, args))
    unknown = sorted(set(kw) - set(_LEGACY_ARGS))
    twice = sorted(set(kw) & set(given))
    if unknown or twice:
        raise TypeError(f"collate_scenes: unexpected argument(s) {unknown}, given twice {twice}")
    given.update(kw)
    return dataclasses.replace(FeatureSpec(), **given)


def collate_scenes(scenes: Sequence[Scene], spec: FeatureSpec | None = None, *legacy, **legacy_kw) -> SceneBatch:
    """Pad scenes into a :class:`SceneBatch` as ``spec`` says (default: WOMD's :class:`FeatureSpec`).

    Agents not valid at the current step are dropped. The older per-setting form
    ``collate_scenes(scenes, history, future, max_agents, max_map, segment_len, segment_points)``
    (positional or keyword) still works: unset settings take the FeatureSpec defaults.
    """
    spec = _legacy_spec(spec, legacy, legacy_kw)
    history, max_agents, max_map = spec.history, spec.max_agents, spec.max_map
    if not scenes:
        raise ValueError("collate_scenes needs at least one scene")
    per = []
    for scene in scenes:
        t = scene.current_index
        if t + 1 < history:
            raise ValueError(f"scene {scene.scenario_id!r}: current_index {t} leaves fewer than the {history} "
                             "history steps of the feature spec (features.history)")
        idx = scene.agent_valid[:, t].nonzero(as_tuple=True)[0]
        anchor = scene.agent_pos[scene.sdc_index, t] if scene.num_agents else torch.zeros(2)
        if max_agents is not None and idx.numel() > max_agents:
            _warn_once(scene.scenario_id, "agents", "scene %s: keeping the %d agents nearest the SDC of %d",
                       scene.scenario_id, max_agents, idx.numel())
            idx = idx[_nearest(scene.agent_pos[idx, t], max_agents, anchor)]
        seg = split_polylines(scene, spec.segment_len, spec.segment_points)
        keep = torch.arange(seg.num_segments)
        if max_map is not None and seg.num_segments > max_map:
            _warn_once(scene.scenario_id, "map", "scene %s: keeping the %d map segments nearest the SDC of %d",
                       scene.scenario_id, max_map, seg.num_segments)
            keep = _nearest(seg.pose[:, :2], max_map, anchor)
        per.append((scene, idx, seg, keep))
    B = len(scenes)
    A = max(1, max(p[1].numel() for p in per))
    M = max(1, max(p[3].numel() for p in per))
    H, F, S = history, spec.future, spec.segment_points

    def z(*shape, dtype=torch.float32, fill=0):
        return torch.full(shape, fill, dtype=dtype)

    out = dict(
        agent_pos=z(B, A, H, 2), agent_heading=z(B, A, H), agent_vel=z(B, A, H, 2), agent_size=z(B, A, 3),
        agent_type=z(B, A, dtype=torch.int64), agent_valid=z(B, A, H, dtype=torch.bool),
        agent_mask=z(B, A, dtype=torch.bool), agent_index=z(B, A, dtype=torch.int64, fill=-1),
        future_pos=z(B, A, F, 2), future_heading=z(B, A, F), future_valid=z(B, A, F, dtype=torch.bool),
        predict_mask=z(B, A, dtype=torch.bool), map_points=z(B, M, S, 2), map_pose=z(B, M, 3),
        map_type=z(B, M, dtype=torch.int64), map_signal=z(B, M, dtype=torch.int64), map_mask=z(B, M, dtype=torch.bool),
    )
    for b, (scene, idx, seg, keep) in enumerate(per):
        t, n = scene.current_index, idx.numel()
        h = slice(t + 1 - H, t + 1)
        f_end = min(scene.num_steps, t + 1 + F)
        nf = f_end - (t + 1)
        out["agent_pos"][b, :n] = scene.agent_pos[idx, h]
        out["agent_heading"][b, :n] = scene.agent_heading[idx, h]
        out["agent_vel"][b, :n] = scene.agent_vel[idx, h]
        out["agent_size"][b, :n] = scene.agent_size[idx, t]
        out["agent_type"][b, :n] = scene.agent_type[idx]
        out["agent_valid"][b, :n] = scene.agent_valid[idx, h]
        out["agent_mask"][b, :n] = True
        out["agent_index"][b, :n] = idx
        out["future_pos"][b, :n, :nf] = scene.agent_pos[idx, t + 1 : f_end]
        out["future_heading"][b, :n, :nf] = scene.agent_heading[idx, t + 1 : f_end]
        out["future_valid"][b, :n, :nf] = scene.agent_valid[idx, t + 1 : f_end]
        out["predict_mask"][b, :n] = torch.isin(idx, scene.tracks_to_predict)
        m = keep.numel()
        out["map_points"][b, :m] = seg.points[keep]
        out["map_pose"][b, :m] = seg.pose[keep]
        out["map_type"][b, :m] = seg.type[keep]
        out["map_signal"][b, :m] = seg.signal_state[keep]
        out["map_mask"][b, :m] = True
    return SceneBatch(**out, scenario_id=[s.scenario_id for s in scenes])


def pad_history(scene: Scene, history: int) -> Scene:
    """``scene`` with unobserved steps (``agent_valid`` False, zeros, no signals) put before its first
    step, so that ``history`` steps end at its current step; a scene with enough history is returned
    as is. For checking a model on scenes with a shorter log than its history (generated, WOMD-shaped
    scenes into an Argoverse 2 model's export check): the model masks unobserved steps."""
    pad = history - 1 - scene.current_index
    if pad <= 0:
        return scene
    out = {}
    for f in Scene.tensor_fields():
        v, shape = getattr(scene, f.name), f.metadata["shape"]
        if "T" not in shape:
            continue
        ax = shape.index("T")
        if f.name == "timestamps":
            front = v[0] - scene.dt * torch.arange(pad, 0, -1, dtype=v.dtype)
        else:
            front = v.new_full((*v.shape[:ax], pad, *v.shape[ax + 1:]), -1 if f.name == "signal_lane_id" else 0)
        out[f.name] = torch.cat([front, v], ax)
    return dataclasses.replace(scene, **out, current_index=scene.current_index + pad)


def stack_batches(batches: Sequence[SceneBatch]) -> SceneBatch:
    """Concatenate pre-collated batches along B, padding A and M to the largest (training caches one
    single-scene batch per scene so that map splitting runs once, not every step)."""
    if not batches:
        raise ValueError("stack_batches needs at least one batch")
    A = max(b.agent_mask.shape[1] for b in batches)
    M = max(b.map_mask.shape[1] for b in batches)
    pad_value = {"agent_index": -1}
    out = {}
    for name, _ in batches[0].tensor_items():
        parts = []
        for b in batches:
            v = getattr(b, name)
            axis_len = A if name.startswith(("agent_", "future_", "predict_")) else M
            if v.shape[1] < axis_len:
                pad = v.new_full((v.shape[0], axis_len - v.shape[1], *v.shape[2:]), pad_value.get(name, 0))
                v = torch.cat([v, pad], 1)
            parts.append(v)
        out[name] = torch.cat(parts, 0)
    return SceneBatch(**out, scenario_id=[s for b in batches for s in b.scenario_id])
