"""Predictor adapters for :class:`sim.policies.learned.LearnedPolicy` (see its ``Predictor`` protocol).

* :class:`OnnxScenePredictor`: the exported ONNX file through ``export.runtime.OnnxPredictor``
  (the exact file users deploy), all worlds of a replan in one batched call.
* :class:`TorchScenePredictor`: the torch model (same inputs and outputs as the export).
* :class:`LogFuturePredictor`: an oracle that predicts each agent's logged future (tests, and an
  upper bound); a second, ``offset``-shifted mode lets tests exercise mode sampling.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from drope.data.batch import SceneBatch, collate_scenes
from drope.geometry import wrap_angle, world_to_frame
from drope.data.scene import Scene


def scatter_to_agents(batch: SceneBatch, traj: np.ndarray, prob: np.ndarray, num_agents: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded model rows ``[B, A', K, F, C]`` → rows by scene agent index ``[B, A, K, F, C]`` (zeros elsewhere)."""
    B, _, K, F, C = traj.shape
    out_t = np.zeros((B, num_agents, K, F, C), np.float32)
    out_p = np.zeros((B, num_agents, K), np.float32)
    idx = batch.agent_index.numpy()
    b, j = np.nonzero(idx >= 0)
    out_t[b, idx[b, j]] = traj[b, j]
    out_p[b, idx[b, j]] = prob[b, j]
    return out_t, out_p


class OnnxScenePredictor:
    def __init__(self, path: str | Path, threads: int = 1) -> None:
        from drope.export.runtime import OnnxPredictor

        self.runtime = OnnxPredictor(path, threads=threads)
        spec = self.runtime.spec
        self.collate_kw = dict(history=int(spec["history"]), future=int(spec["future"]),
                               segment_points=int(spec["map_points"]), segment_len=float(spec.get("segment_max_len_m", 20.0)))

    def predict(self, scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
        batch = collate_scenes(scenes, **self.collate_kw)
        pred = self.runtime.predict({k: v.numpy() for k, v in batch.model_inputs().items()})
        return scatter_to_agents(batch, pred.traj, pred.prob, scenes[0].num_agents)


class TorchScenePredictor:
    def __init__(self, model: torch.nn.Module, segment_len: float = 20.0) -> None:
        from drope.export.onnx_export import ExportWrapper

        self.wrapper = ExportWrapper(model).eval()
        c = model.cfg
        self.collate_kw = dict(history=c.history, future=c.future, segment_points=c.map_points, segment_len=segment_len)

    @torch.no_grad()
    def predict(self, scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
        batch = collate_scenes(scenes, **self.collate_kw)
        traj, prob = self.wrapper(**batch.model_inputs())
        return scatter_to_agents(batch, traj.numpy(), prob.numpy(), scenes[0].num_agents)


class LogFuturePredictor:
    """Predicts the logged future of ``log`` (the original scene) from any snapshot's current step.

    Mode 0 is the log (probability ``p_log``); with ``offset`` > 0 mode 1 is the log shifted
    sideways by ``offset`` metres in the scene frame. Steps past the log's end repeat its last pose.
    Outputs are in each snapshot's own frame (the learned policy re-frames snapshots to the SDC's
    current simulated pose), through world coordinates.
    """

    def __init__(self, log: Scene, horizon: int = 80, offset: float = 0.0, p_log: float = 0.7) -> None:
        self.log, self.horizon, self.offset, self.p_log = log, horizon, offset, p_log
        # gaps in the log hold the last valid pose (invalid states are zeros, i.e. the scene origin)
        T = log.num_steps
        idx = torch.where(log.agent_valid, torch.arange(T), 0).cummax(dim=1).values  # [A, T]
        self.xy = log.agent_pos.gather(1, idx[..., None].expand(-1, -1, 2)).numpy()
        self.heading = log.agent_heading.gather(1, idx).numpy()

    def predict(self, scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
        out_t, out_p = [], []
        for s in scenes:
            t, T = s.current_index, self.log.num_steps
            steps = np.minimum(np.arange(t + 1, t + 1 + self.horizon), T - 1)
            xy = world_to_frame(self.log.to_world_xy(self.xy[:, steps]), s.origin_xy.numpy(), float(s.origin_heading))
            h = wrap_angle(self.heading[:, steps] + float(self.log.origin_heading) - float(s.origin_heading))
            mode0 = np.concatenate([xy, h[..., None]], -1)
            if self.offset > 0:
                mode1 = mode0.copy()
                mode1[..., 1] += self.offset
                traj = np.stack([mode0, mode1], 1)
                prob = np.tile([self.p_log, 1 - self.p_log], (s.num_agents, 1))
            else:
                traj, prob = mode0[:, None], np.ones((s.num_agents, 1))
            out_t.append(traj)
            out_p.append(prob)
        return np.stack(out_t).astype(np.float32), np.stack(out_p).astype(np.float32)
