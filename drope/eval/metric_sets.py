"""Per-dataset official metric sets for drope-eval, looked up by ``Scene.source``.

A :class:`MetricSet` turns one scene's predictions into small records (no Scene kept) and pools
them over the evaluation; drope-eval merges the pooled ``{type: {horizon: {key: value}}}`` into its
per-type rows. ``womd`` (the official WOMD motion metrics of :mod:`drope.metrics.motion`) serves
WOMD scenes and generated scenes (``drope-sim/...``, WOMD-format). Another dataset plugs in with
``METRIC_SETS.register("av2")(MetricSet(...))``; a source with no set gets dense metrics only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from drope.data.scene import Scene
from drope.eval.metrics import OFFICIAL_KEYS
from drope.metrics.motion import MotionMetricsConfig, MotionRecords, aggregate_motion_metrics, scene_motion_records
from drope.registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class MetricSet:
    """``fit(scene, future_steps) -> reason | None``; ``records(scene, agent_index [R], xy [R,K,F,2],
    prob [R,K]) -> record``; ``merge(records) -> record`` (bounds per-record overhead on long runs);
    ``aggregate(records) -> {type: {horizon: {key: value}} | None}`` with ``keys`` per row."""

    name: str
    keys: tuple[str, ...]
    fit: Callable[[Scene, int], str | None]
    records: Callable[[Scene, Tensor, Tensor, Tensor], Any]
    merge: Callable[[list], Any]
    aggregate: Callable[[list], dict]


METRIC_SETS: Registry[MetricSet] = Registry("metric set")


def metric_set_for(source: str) -> MetricSet | None:
    """The set registered for ``source`` or for its prefix before ``/`` (``drope-sim/urban``); None if none."""
    for name in (source, source.split("/", 1)[0]):
        if name in METRIC_SETS:
            return METRIC_SETS.get(name)
    return None


def womd_fit(scene: Scene, future: int, config: MotionMetricsConfig = MotionMetricsConfig()) -> str | None:
    """Why the official WOMD motion metrics cannot score this scene / horizon (None: they can)."""
    T = config.track_history_samples + 1 + config.track_future_samples
    if scene.num_steps != T or scene.current_index != config.track_history_samples:
        return (f"scene {scene.scenario_id!r} has {scene.num_steps} steps, current index {scene.current_index} "
                f"(official: {T}, {config.track_history_samples})")
    if future != config.track_future_samples:
        return f"the model predicts {future} future steps (official: {config.track_future_samples})"
    return None


def merge_motion_records(records: list[MotionRecords]) -> MotionRecords:
    """One record holding the objects of many (the pooled metrics are per object, so this is exact)."""
    if len(records) == 1:
        return records[0]
    cat = {f.name: torch.cat([getattr(r, f.name) for r in records]) for f in dataclasses.fields(MotionRecords)
           if f.name != "scenario_id"}
    return MotionRecords(scenario_id=f"<{len(records)} merged>", **cat)


WOMD = MetricSet(name="womd", keys=OFFICIAL_KEYS, fit=womd_fit,
                 records=lambda scene, idx, xy, prob: scene_motion_records(scene, idx, xy, prob),
                 merge=merge_motion_records, aggregate=aggregate_motion_metrics)
METRIC_SETS.register("womd")(WOMD)
METRIC_SETS.register("drope-sim")(WOMD)
