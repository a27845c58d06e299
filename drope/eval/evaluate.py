"""Open-loop evaluation of a model and kinematic baselines on the same scenes and metrics.

:func:`predict_scenes` runs the model and the baselines once per batch and keeps the predictions
per scene (scene agent indices, modes sorted by probability); :func:`score_predictions` turns them
into drope's dense metrics plus the official WOMD motion metrics of :mod:`drope.metrics.motion`;
:func:`evaluate` does both. The same per-scene predictions feed
:func:`drope.metrics.submission.write_motion_submission`, so a written submission scored by
``drope-score motion`` reproduces the official numbers of :func:`score_predictions`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from drope.data.batch import collate_scenes
from drope.data.scene import Scene
from drope.eval.baselines import constant_turn_rate, constant_velocity
from drope.eval.metrics import add_official_metrics, summarize
from drope.metrics.motion import MotionMetricsConfig, aggregate_motion_metrics, scene_motion_records

Tensor = torch.Tensor
log = logging.getLogger(__name__)
METHODS = ("drope", "constant_velocity", "constant_turn_rate")


@dataclass(frozen=True)
class ScenePredictions:
    """Every method's predictions for the scored agents of one scene (scene frame, 10 Hz)."""

    scene: Scene
    agent_index: Tensor  # [R] int64 indices into the scene's agents
    xy: dict[str, Tensor]  # method -> [R, K, F, 2] float32 m, modes by descending probability
    prob: dict[str, Tensor]  # method -> [R, K] float32, descending
    gt: Tensor  # [R, F, 2] logged future
    gt_valid: Tensor  # [R, F] bool
    agent_type: Tensor  # [R] int64 ObjectType


def _sorted(xy: Tensor, prob: Tensor) -> tuple[Tensor, Tensor]:
    order = torch.sort(prob, dim=-1, descending=True, stable=True).indices
    return xy.gather(1, order[..., None, None].expand_as(xy)), prob.gather(1, order)


@torch.no_grad()
def predict_scenes(model, scenes: Sequence[Scene], batch_size: int = 8, max_agents: int | None = 64,
                   max_map: int = 384, only_tracks_to_predict: bool = True, plot_dir: Path | None = None,
                   num_plots: int = 0) -> list[ScenePredictions]:
    """Model and baseline predictions for the agents valid at the current step (and, by default,
    in ``tracks_to_predict``); ``max_agents=None`` keeps every agent of a scene."""
    from drope.model.checkpoint import predict_scene_frame

    cfg = model.cfg
    out: list[ScenePredictions] = []
    plotted = 0
    for i in range(0, len(scenes), batch_size):
        chunk = scenes[i : i + batch_size]
        b = collate_scenes(chunk, cfg.history, cfg.future, max_agents, max_map, segment_points=cfg.map_points)
        xy, prob = predict_scene_frame(model, b)
        m = b.agent_mask & b.agent_valid[:, :, -1]
        if only_tracks_to_predict:
            m &= b.predict_mask
        base = {"constant_velocity": constant_velocity(b, cfg.future), "constant_turn_rate": constant_turn_rate(b, cfg.future)}
        for j, scene in enumerate(chunk):
            sel = m[j]
            n = int(sel.sum())
            preds = {"drope": _sorted(xy[j][sel], prob[j][sel])}
            preds |= {k: (v[j][sel], torch.ones(n, 1)) for k, v in base.items()}
            out.append(ScenePredictions(
                scene=scene, agent_index=b.agent_index[j][sel], xy={k: v[0] for k, v in preds.items()},
                prob={k: v[1] for k, v in preds.items()}, gt=b.future_pos[j][sel], gt_valid=b.future_valid[j][sel],
                agent_type=b.agent_type[j][sel]))
        if plot_dir is not None and plotted < num_plots:
            plotted += _plot(chunk, b, xy, prob, m, plot_dir, num_plots - plotted)
    return out


def official_fit(preds: Sequence[ScenePredictions], config: MotionMetricsConfig = MotionMetricsConfig()) -> str | None:
    """Why the official motion metrics cannot be computed for these predictions (None: they can)."""
    T = config.track_history_samples + 1 + config.track_future_samples
    for p in preds:
        s = p.scene
        if s.num_steps != T or s.current_index != config.track_history_samples:
            return f"scene {s.scenario_id!r} has {s.num_steps} steps, current index {s.current_index} (official: {T}, {config.track_history_samples})"
        if p.gt.shape[1] != config.track_future_samples:
            return f"the model predicts {p.gt.shape[1]} future steps (official: {config.track_future_samples})"
    return None


def official_metrics(preds: Sequence[ScenePredictions], method: str,
                     config: MotionMetricsConfig = MotionMetricsConfig()) -> dict | None:
    """``drope-score motion --json`` structure for one method, or None when the scenes or the
    model's horizon do not fit the official config (logged)."""
    why = official_fit(preds, config)
    if why is not None:
        log.warning("official WOMD motion metrics skipped: %s", why)
        return None
    records = [scene_motion_records(p.scene, p.agent_index, p.xy[method], p.prob[method], config=config)
               for p in preds if p.agent_index.numel()]
    return aggregate_motion_metrics(records, config)


def score_predictions(preds: Sequence[ScenePredictions], config: MotionMetricsConfig = MotionMetricsConfig()) -> dict:
    """``{method: {type | "ALL": {horizon: row}}}``: dense metrics (``min_ade@6``, …, ``count``) and,
    in per-type rows, the official metrics (``min_ade``, ``mean_average_precision``, …)."""
    gt, valid, typ = (torch.cat([getattr(p, k) for p in preds]) for k in ("gt", "gt_valid", "agent_type"))
    res = {}
    for k in METHODS:
        dense = summarize(torch.cat([p.xy[k] for p in preds]), torch.cat([p.prob[k] for p in preds]), gt, valid, typ)
        res[k] = add_official_metrics(dense, official_metrics(preds, k, config))
    return res


def evaluate(model, scenes: Sequence[Scene], batch_size: int = 8, max_agents: int | None = 64, max_map: int = 384,
             only_tracks_to_predict: bool = True, plot_dir: Path | None = None, num_plots: int = 0) -> dict:
    """``{"drope": ..., "constant_velocity": ..., "constant_turn_rate": ...}`` (see :func:`score_predictions`)."""
    preds = predict_scenes(model, scenes, batch_size, max_agents, max_map, only_tracks_to_predict, plot_dir, num_plots)
    return score_predictions(preds)


def _plot(scenes, b, xy, prob, mask, plot_dir: Path, limit: int) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drope.viz import draw_predictions, plot_scene

    plot_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for j, scene in enumerate(scenes[:limit]):
        fig, ax = plt.subplots(figsize=(7, 7))
        plot_scene(scene, ax, title=f"{scene.scenario_id}: predicted modes (width/alpha = probability)")
        sel = mask[j]
        draw_predictions(ax, xy[j][sel].numpy(), prob[j][sel].numpy())
        fig.tight_layout()
        fig.savefig(plot_dir / f"{scene.scenario_id}.png", dpi=100)
        plt.close(fig)
        n += 1
    return n
