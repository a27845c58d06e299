"""Open-loop evaluation of a model and kinematic baselines on the same scenes and metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from drope.data.batch import collate_scenes
from drope.data.scene import Scene
from drope.eval.baselines import constant_turn_rate, constant_velocity
from drope.eval.metrics import summarize


@torch.no_grad()
def evaluate(model, scenes: Sequence[Scene], batch_size: int = 8, max_agents: int = 64, max_map: int = 384,
             only_tracks_to_predict: bool = True, plot_dir: Path | None = None, num_plots: int = 0) -> dict:
    """``{"drope": ..., "constant_velocity": ..., "constant_turn_rate": ...}`` (see :func:`summarize`)."""
    from drope.train.trainer import predict_scene_frame

    cfg = model.cfg
    preds = {"drope": [], "constant_velocity": [], "constant_turn_rate": []}
    probs = {k: [] for k in preds}
    gts, valids, types, headings, speeds = [], [], [], [], []
    plotted = 0
    for i in range(0, len(scenes), batch_size):
        chunk = scenes[i : i + batch_size]
        b = collate_scenes(chunk, cfg.history, cfg.future, max_agents, max_map, segment_points=cfg.map_points)
        xy, prob = predict_scene_frame(model, b)
        m = b.agent_mask & b.agent_valid[:, :, -1]
        if only_tracks_to_predict:
            m &= b.predict_mask
        preds["drope"].append(xy[m])
        probs["drope"].append(prob[m])
        for name, fn in (("constant_velocity", constant_velocity), ("constant_turn_rate", constant_turn_rate)):
            preds[name].append(fn(b, cfg.future)[m])
            probs[name].append(torch.ones(int(m.sum()), 1))
        gts.append(b.future_pos[m])
        valids.append(b.future_valid[m])
        types.append(b.agent_type[m])
        headings.append(b.future_heading[m])
        speeds.append(b.agent_vel[:, :, -1].norm(dim=-1)[m])
        if plot_dir is not None and plotted < num_plots:
            plotted += _plot(chunk, b, xy, prob, m, plot_dir, num_plots - plotted)
    gt, valid, typ = torch.cat(gts), torch.cat(valids), torch.cat(types)
    head, speed = torch.cat(headings), torch.cat(speeds)
    return {k: summarize(torch.cat(preds[k]), torch.cat(probs[k]), gt, valid, typ, head, speed) for k in preds}


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
