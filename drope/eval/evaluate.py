"""Open-loop evaluation of a model and kinematic baselines on the same scenes and metrics, streamed.

:func:`iter_predictions` reads scenes through the dataset layer (:mod:`drope.data.stream`: a
streamed dataset or in-memory scenes), runs the model and the baselines once per batch and yields
per-scene predictions (scene agent indices, modes sorted by probability); a :class:`Scorer`
accumulates them into drope's dense metrics (sums and counts, O(1) memory) plus the official metric
set of the scenes' dataset (:mod:`drope.eval.metric_sets`, per-object records only). Nothing holds
the scenes of an evaluation at once, so memory does not grow with the number of scenes beyond those
small records. :func:`evaluate` does both; :func:`predict_scenes` / :func:`score_predictions` are
the list forms. The same per-scene predictions feed the submission writer, so a written submission
scored by ``drope-score motion`` reproduces the official numbers.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from drope.data.scene import Scene
from drope.data.stream import CollateSkipNone, SceneCollate, as_dataset, make_loader
from drope.eval.baselines import constant_turn_rate, constant_velocity
from drope.eval.metric_sets import MetricSet, metric_set_for
from drope.eval.displacement import DenseMetricSums

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


@dataclass
class ReadStats:
    """What the loader saw: scenes predicted and corrupt records skipped."""

    scenes: int = 0
    corrupt: int = 0


def _sorted(xy: Tensor, prob: Tensor) -> tuple[Tensor, Tensor]:
    order = torch.sort(prob, dim=-1, descending=True, stable=True).indices
    return xy.gather(1, order[..., None, None].expand_as(xy)), prob.gather(1, order)


@torch.no_grad()
def iter_predictions(model, scenes, batch_size: int = 8, max_agents: int | None = 64, max_map: int = 384,
                     only_tracks_to_predict: bool = True, plot_dir: Path | None = None, num_plots: int = 0,
                     num_workers: int = 0, progress: bool = False, stats: ReadStats | None = None,
                     device: torch.device | str | None = None) -> Iterator[ScenePredictions]:
    """Model and baseline predictions, scene by scene, for the agents valid at the current step (and,
    by default, in ``tracks_to_predict``); ``max_agents=None`` keeps every agent of a scene.
    ``scenes``: a dataset of :mod:`drope.data.stream` or a sequence of scenes; streamed data is read
    and collated in ``num_workers`` DataLoader workers. Corrupt records are counted in ``stats``.
    ``device``: where the model runs (moved there; None: where it is); scoring stays on the CPU."""
    from tqdm import tqdm

    from drope.model.checkpoint import predict_scene_frame

    cfg = model.cfg
    if device is not None:
        model = model.to(device)
    device = next(model.parameters()).device
    stats = stats if stats is not None else ReadStats()
    ds = as_dataset(scenes)
    collate = CollateSkipNone(SceneCollate(cfg.history, cfg.future, max_agents, max_map, cfg.map_points))
    loader = make_loader(ds, batch_size, num_workers=num_workers, collate_fn=collate, persistent=False)
    plotted = 0
    with tqdm(total=len(ds), desc="eval", unit="scene", disable=not progress) as bar:
        for chunk, b, bad in loader:
            stats.corrupt += bad
            bar.update(len(chunk) + bad)
            if bad:
                bar.set_postfix(corrupt=stats.corrupt)
            if b is None:
                continue
            xy, prob = predict_scene_frame(model, b if device.type == "cpu" else b.to(device))
            xy, prob = xy.float().cpu(), prob.float().cpu()
            m = b.agent_mask & b.agent_valid[:, :, -1]
            if only_tracks_to_predict:
                m &= b.predict_mask
            base = {"constant_velocity": constant_velocity(b, cfg.future), "constant_turn_rate": constant_turn_rate(b, cfg.future)}
            if plot_dir is not None and plotted < num_plots:
                plotted += _plot(chunk, b, xy, prob, m, plot_dir, num_plots - plotted)
            for j, scene in enumerate(chunk):
                sel = m[j]
                n = int(sel.sum())
                preds = {"drope": _sorted(xy[j][sel], prob[j][sel])}
                preds |= {k: (v[j][sel], torch.ones(n, 1)) for k, v in base.items()}
                stats.scenes += 1
                yield ScenePredictions(
                    scene=scene, agent_index=b.agent_index[j][sel], xy={k: v[0] for k, v in preds.items()},
                    prob={k: v[1] for k, v in preds.items()}, gt=b.future_pos[j][sel], gt_valid=b.future_valid[j][sel],
                    agent_type=b.agent_type[j][sel])


def predict_scenes(model, scenes, batch_size: int = 8, max_agents: int | None = 64, max_map: int = 384,
                   only_tracks_to_predict: bool = True, plot_dir: Path | None = None,
                   num_plots: int = 0) -> list[ScenePredictions]:
    """:func:`iter_predictions` as a list (small evaluations and tests)."""
    return list(iter_predictions(model, scenes, batch_size, max_agents, max_map, only_tracks_to_predict, plot_dir,
                                 num_plots))


class Scorer:
    """Accumulates :class:`ScenePredictions` into ``{method: {type | "ALL": {horizon: row}}}``.

    Dense rows: sums and counts (:class:`~drope.eval.displacement.DenseMetricSums`), fed ``merge_every``
    scenes at a time (per-call overhead, not memory, is what a scene-by-scene feed costs). Official rows: the
    metric set of the scenes' source (:func:`~drope.eval.metric_sets.metric_set_for`); its per-scene
    records are merged every ``merge_every`` scenes so their overhead stays small. The official keys
    are None (with one warning) when a scene has no set, does not fit it, or the sources mix sets.
    """

    def __init__(self, methods: Sequence[str] = METHODS, merge_every: int = 64) -> None:
        self.methods, self.merge_every = tuple(methods), merge_every
        self.dense = {k: DenseMetricSums() for k in self.methods}
        self.records: dict[str, list] = {k: [] for k in self.methods}
        self._pending: list[ScenePredictions] = []  # dense inputs not yet summed (scenes dropped)
        self.metric_set: MetricSet | None = None
        self.why_not: str | None = None  # why the official metrics are off
        self.future: int | None = None  # predicted steps (the official rows are placed at this horizon)

    def _official_off(self, why: str) -> None:
        if self.why_not is None:
            log.warning("official metrics skipped: %s", why)
            self.why_not, self.records = why, {k: [] for k in self.methods}

    def _flush_dense(self) -> None:
        if not self._pending:
            return
        gt, valid, typ = (torch.cat([getattr(p, f) for p in self._pending]) for f in ("gt", "gt_valid", "agent_type"))
        for k in self.methods:
            self.dense[k].add(torch.cat([p.xy[k] for p in self._pending]), torch.cat([p.prob[k] for p in self._pending]),
                              gt, valid, typ)
        self._pending = []

    def add(self, p: ScenePredictions) -> None:
        self._pending.append(dataclasses.replace(p, scene=None))
        self.future = p.gt.shape[1]
        if len(self._pending) >= self.merge_every:
            self._flush_dense()
        if self.why_not is not None:
            return
        ms = metric_set_for(p.scene.source)
        if ms is None:
            return self._official_off(f"no official metric set for source {p.scene.source!r} (scene {p.scene.scenario_id})")
        if self.metric_set is not None and ms.name != self.metric_set.name:
            return self._official_off(f"sources mix metric sets {self.metric_set.name} and {ms.name}")
        if (why := ms.fit(p.scene, p.gt.shape[1])) is not None:
            return self._official_off(why)
        self.metric_set = ms
        if not p.agent_index.numel():
            return
        for k in self.methods:
            recs = self.records[k]
            recs.append(ms.records(p.scene, p.agent_index, p.xy[k], p.prob[k]))
            if len(recs) >= self.merge_every:
                self.records[k] = [ms.merge(recs)]

    def add_all(self, preds: Iterable[ScenePredictions]) -> "Scorer":
        for p in preds:
            self.add(p)
        return self

    def result(self) -> dict:
        """``{method: {group: {horizon: row}}}``: dense metrics per type and ``"ALL"`` (``min_ade@6``, …,
        ``count``) and the official metrics of the scenes' set, placed by the set
        (:mod:`drope.eval.metric_sets`: WOMD keys in the per-type rows, AV2 groups ``AV2_FOCAL`` /
        ``AV2_SCORED``); with no set (or no scene) the WOMD keys are present as None."""
        from drope.eval.metric_sets import WOMD

        self._flush_dense()
        ms = self.metric_set or WOMD
        res = {}
        for k in self.methods:
            official = ms.aggregate(self.records[k]) if (self.why_not is None and self.metric_set is not None) else None
            res[k] = ms.place(self.dense[k].result(), official, self.future or 0)
        return res


def score_predictions(preds: Iterable[ScenePredictions]) -> dict:
    """:class:`Scorer` over ``preds`` (see :meth:`Scorer.result`)."""
    return Scorer().add_all(preds).result()


def evaluate(model, scenes, batch_size: int = 8, max_agents: int | None = 64, max_map: int = 384,
             only_tracks_to_predict: bool = True, plot_dir: Path | None = None, num_plots: int = 0,
             num_workers: int = 0, progress: bool = False, stats: ReadStats | None = None) -> dict:
    """``{"drope": ..., "constant_velocity": ..., "constant_turn_rate": ...}`` (see :meth:`Scorer.result`),
    streamed: ``scenes`` may be a dataset of any size."""
    return Scorer().add_all(iter_predictions(model, scenes, batch_size, max_agents, max_map, only_tracks_to_predict,
                                             plot_dir, num_plots, num_workers, progress, stats)).result()


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
