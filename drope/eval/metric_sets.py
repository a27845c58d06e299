"""Per-dataset official metric sets for drope-eval, looked up by ``Scene.source``.

A :class:`MetricSet` turns one scene's predictions into small records (no Scene kept), pools them
over the evaluation and places the pooled metrics into drope-eval's ``{group: {horizon: row}}``
result, so nothing downstream knows which dataset it scored:

- ``womd`` (the official WOMD motion metrics of :mod:`drope.metrics.motion`) serves WOMD scenes and
  generated scenes (``drope-sim/...``, WOMD-format); its keys join the per-type rows.
- ``av2`` (the Argoverse 2 challenge metrics of :mod:`drope.metrics.av2`) serves ``av2`` scenes;
  it adds the groups ``AV2_FOCAL`` (the focal track, the challenge's number) and ``AV2_SCORED``
  (every scored track, focal included) with one row for the whole horizon.

A source with no set gets dense metrics only.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from drope.data.scene import Scene
from drope.eval.displacement import OFFICIAL_KEYS, add_official_metrics, format_official_table, horizon_name
from drope.metrics.av2 import AV2_METRIC_KEYS, av2_track_metrics, summarize_av2
from drope.metrics.motion import MotionMetricsConfig, MotionRecords, aggregate_motion_metrics, scene_motion_records
from drope.registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class MetricSet:
    """``fit(scene, future_steps) -> reason | None``; ``records(scene, agent_index [R], xy [R,K,F,2]
    scene frame, prob [R,K]) -> record``; ``merge(records) -> record`` (bounds per-record overhead on
    long runs); ``aggregate(records) -> pooled | None``; ``place(summary, pooled | None, future_steps)
    -> summary`` puts the pooled metrics (None: not computable, keys present as None) into a method's
    dense ``{group: {horizon: row}}``; ``table(results) -> str`` prints them under ``title``."""

    name: str
    keys: tuple[str, ...]
    fit: Callable[[Scene, int], str | None]
    records: Callable[[Scene, Tensor, Tensor, Tensor], Any]
    merge: Callable[[list], Any]
    aggregate: Callable[[list], Any]
    place: Callable[[dict, Any, int], dict]
    title: str
    table: Callable[[dict], str]


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
                 merge=merge_motion_records, aggregate=aggregate_motion_metrics,
                 place=lambda summary, pooled, future: add_official_metrics(summary, pooled, OFFICIAL_KEYS),
                 title="official WOMD motion metrics (drope.metrics.motion = drope-score motion), per type",
                 table=format_official_table)
METRIC_SETS.register("womd")(WOMD)
METRIC_SETS.register("drope-sim")(WOMD)


# --------------------------------------------------------------------------------------------------
# Argoverse 2
# --------------------------------------------------------------------------------------------------
#: result groups of the AV2 set: the challenge's focal track, and every scored track (focal included)
AV2_GROUPS = {"AV2_FOCAL": "focal", "AV2_SCORED": "scored"}


def av2_fit(scene: Scene, future: int) -> str | None:
    """Why the AV2 metrics cannot score this scene / horizon (None: they can). A test-split scene
    (no future) fits: its tracks are not counted, and ``num_tracks`` says so."""
    from drope.metrics.av2_submission import AV2_PRED_STEPS

    if future != AV2_PRED_STEPS:
        return f"the model predicts {future} future steps (AV2: {AV2_PRED_STEPS})"
    return None


def av2_records(scene: Scene, agent_index: Tensor, xy: Tensor, prob: Tensor) -> dict[str, np.ndarray]:
    """Per-track AV2 metrics of the scored tracks among ``agent_index`` (focal: the scene's object of
    interest, as drope.data.av2 reads AV2's focal track); the logged future is the scene's own."""
    idx = agent_index.cpu()
    scored = torch.isin(idx, scene.tracks_to_predict.cpu())
    idx, xy, prob = idx[scored], xy[scored.to(xy.device)], prob[scored.to(prob.device)]
    t0, F = scene.current_index + 1, xy.shape[2]
    gt = torch.zeros(len(idx), F, 2, dtype=torch.float64)
    valid = torch.zeros(len(idx), F, dtype=torch.bool)
    n = max(0, min(F, scene.num_steps - t0))
    gt[:, :n] = scene.agent_pos[idx, t0 : t0 + n].double()
    valid[:, :n] = scene.agent_valid[idx, t0 : t0 + n]
    focal = torch.isin(scene.agent_id[idx], scene.objects_of_interest.cpu())
    if not len(idx):
        return {k: np.zeros(0) for k in AV2_METRIC_KEYS} | {"counted": np.zeros(0, bool), "focal": np.zeros(0, bool)}
    per = av2_track_metrics(xy, prob, gt.numpy(), valid.numpy())
    return per | {"focal": focal.numpy()}


def merge_av2_records(records: list[dict]) -> dict[str, np.ndarray]:
    if len(records) == 1:
        return records[0]
    return {k: np.concatenate([r[k] for r in records]) for k in records[0]}


def aggregate_av2(records: list[dict]) -> dict[str, dict[str, float]] | None:
    """``{"focal": summary, "scored": summary}`` (:func:`drope.metrics.av2.summarize_av2`)."""
    if not records:
        return None
    per = merge_av2_records(records)
    return {"focal": summarize_av2({k: v[per["focal"]] for k, v in per.items()}), "scored": summarize_av2(per)}


def place_av2(summary: dict, pooled: dict | None, future: int) -> dict:
    """Groups ``AV2_FOCAL`` / ``AV2_SCORED``, one row for the whole horizon: the AV2 keys (NaN means
    no counted track, written as None) and ``count`` (tracks counted)."""
    h = horizon_name(future)
    for group, part in AV2_GROUPS.items():
        got = (pooled or {}).get(part) or {}
        row = {k: (None if got.get(k) is None or math.isnan(got[k]) else got[k]) for k in AV2_METRIC_KEYS}
        summary[group] = {h: row | {"count": int(got.get("num_tracks", 0))}}
    return summary


def format_av2_table(results: dict) -> str:
    from drope.eval.displacement import _table

    short = {"min_ade_k1": "minADE@1", "min_fde_k1": "minFDE@1", "miss_rate_k1": "MR@1", "min_ade_k6": "minADE@6",
             "min_fde_k6": "minFDE@6", "miss_rate_k6": "MR@6", "brier_min_fde_k6": "brier-minFDE@6"}
    rows = {m: {g: {h: {short.get(k, k): v for k, v in row.items()} for h, row in res[g].items()}
                for g in AV2_GROUPS if g in res} for m, res in results.items()}
    return _table(rows, list(short.values()))


AV2 = MetricSet(name="av2", keys=AV2_METRIC_KEYS, fit=av2_fit, records=av2_records, merge=merge_av2_records,
                aggregate=aggregate_av2, place=place_av2,
                title="official Argoverse 2 metrics (drope.metrics.av2 = av2.datasets.motion_forecasting.eval."
                      "metrics; miss = FDE > 2 m), focal track and all scored tracks",
                table=format_av2_table)
METRIC_SETS.register("av2")(AV2)
