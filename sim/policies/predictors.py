"""Predictor adapters for :class:`sim.policies.learned.LearnedPolicy` (see its ``Predictor`` protocol).

* :class:`OnnxScenePredictor`: the exported ONNX file through ``export.runtime.OnnxPredictor``
  (the exact file users deploy), all worlds of a replan collated at once and run ``rows_per_call``
  worlds per ONNX Runtime call.
* :class:`TorchScenePredictor`: the torch model of a checkpoint (same inputs and outputs as the
  export) on the CPU or a GPU, ``rows_per_call`` worlds per forward pass.
* :func:`open_predictor`: the one of the two a model file asks for (``drope-sim model=...``).
* :class:`LogFuturePredictor`: an oracle that predicts each agent's logged future (tests, and an
  upper bound); a second, ``offset``-shifted mode lets tests exercise mode sampling.

The ONNX and torch adapters also answer ``predict_worlds``: the B worlds of one scene collated at
once (:func:`collate_worlds`: the map split once per scene, every world's frame change one array
operation) instead of B snapshot Scenes collated one by one — the same inputs to float32
rounding, and most of a batched replan's host time. Worlds whose inputs are identical
(:func:`distinct_worlds`) share one model row. ``rows_run`` counts the model rows evaluated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from drope.data.batch import SceneBatch, collate_scenes
from drope.data.features import INPUT_NAMES
from drope.data.scene import Scene
from drope.data.segments import MapSegments, segment_signal_states, split_polylines
from drope.geometry import wrap_angle, wrap_angle_f32, world_to_frame
from drope.sim.policies.frame_kernels import points_to_frames

Tensor = torch.Tensor


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


def collate_worlds(scene: Scene, worlds, frames: Tensor, collate_kw: dict, seg: MapSegments) -> tuple[dict, Tensor] | None:
    """Model inputs ``{name: [B, ...]}`` and ``agent_index [A']`` of B worlds of ``scene`` at one step,
    each in the frame ``frames[b]`` (x, y, heading in the scene frame; float64), as
    ``collate_scenes`` builds them from the worlds' snapshot Scenes; ``seg``: the scene's map split
    at ``collate_kw``'s segment settings. ``worlds``: (xy, heading, vel, valid [B, A, T(, 2)], size
    [B, A, 3], step). None where the fast path does not apply (worlds that disagree on which agents
    exist, agent or map caps exceeded): collate the snapshots then."""
    xy, heading, vel, valid, size, t = worlds
    H = int(collate_kw.get("history", 11))
    alive = valid[:, :, t]
    if not bool((alive == alive[:1]).all()) or t + 1 < H:
        return None
    idx = alive[0].nonzero(as_tuple=True)[0]
    if collate_kw.get("max_agents") is not None and idx.numel() > collate_kw["max_agents"]:
        return None
    if collate_kw.get("max_map") is not None and seg.num_segments > collate_kw["max_map"]:
        return None
    B, n, m = xy.shape[0], idx.numel(), seg.num_segments
    h = slice(t + 1 - H, t + 1)
    f = frames.double()
    c, s_ = torch.cos(f[:, 2]), torch.sin(f[:, 2])

    def to_frame(p: Tensor, shift: bool = True) -> Tensor:  # [B, ..., 2] scene frame -> each world's frame
        shape = (B,) + (1,) * (p.dim() - 2)
        d = p.double() - (f[:, :2].view(*shape, 2) if shift else 0)
        cb, sb = c.view(shape), s_.view(shape)
        return torch.stack([cb * d[..., 0] + sb * d[..., 1], -sb * d[..., 0] + cb * d[..., 1]], -1)

    ok = valid[:, idx, h]  # [B, n, H]
    okf = ok[..., None].double()
    A, M = max(1, n), max(1, m)
    out = {"agent_pos": torch.zeros(B, A, H, 2), "agent_heading": torch.zeros(B, A, H), "agent_vel": torch.zeros(B, A, H, 2),
           "agent_size": torch.zeros(B, A, 3), "agent_type": torch.zeros(B, A, dtype=torch.int64),
           "agent_valid": torch.zeros(B, A, H, dtype=torch.bool), "map_points": torch.zeros(B, M, seg.points.shape[1], 2),
           "map_type": torch.zeros(B, M, dtype=torch.int64), "map_signal": torch.zeros(B, M, dtype=torch.int64),
           "map_mask": torch.zeros(B, M, dtype=torch.bool)}
    # invalid states are zeros in the snapshot frame, as Scene.reframe leaves them
    out["agent_pos"][:, :n] = (to_frame(xy[:, idx, h] * ok[..., None]) * okf).float()
    out["agent_vel"][:, :n] = (to_frame(vel[:, idx, h] * ok[..., None], shift=False) * okf).float()
    hd = wrap_angle_f32(((heading[:, idx, h] * ok).double() - f[:, 2].view(B, 1, 1)).numpy())
    out["agent_heading"][:, :n] = torch.from_numpy(hd) * ok
    out["agent_size"][:, :n] = size[:, idx]
    out["agent_type"][:, :n] = scene.agent_type[idx]
    out["agent_valid"][:, :n] = ok
    if m:
        pts = np.ascontiguousarray(seg.points.numpy().reshape(-1, 2), dtype=np.float32)
        framed = np.empty((B, pts.shape[0], 2), np.float32)
        f_np, c_np, s_np = f.numpy(), c.numpy(), s_.numpy()
        points_to_frames(pts, np.ascontiguousarray(f_np[:, 0]), np.ascontiguousarray(f_np[:, 1]), c_np, s_np, framed)
        out["map_points"][:, :m] = torch.from_numpy(framed).view(B, m, seg.points.shape[1], 2)
    out["map_type"][:, :m] = seg.type
    out["map_signal"][:, :m] = segment_signal_states(scene, seg, [t])[0]
    out["map_mask"][:, :m] = True
    if set(INPUT_NAMES) - set(out):
        return None  # the contract grew inputs this path does not build
    return {k: out[k] for k in INPUT_NAMES}, torch.cat([idx, idx.new_full((A - n,), -1)])


def distinct_worlds(inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``(rows [U], inverse [B])``: the first world of each distinct set of model inputs among the B
    worlds of ``inputs`` (``{name: [B, ...]}``), and which of those rows world b reads.

    Why: worlds of one scene that have not diverged have identical inputs — all of them at the
    first replan (every world starts from the log), and for the whole run under a deterministic
    policy (``mode="max"``) — so one model row serves them all. Exact: identical inputs, one output.
    """
    B = next(iter(inputs.values())).shape[0]
    arrays = [v.reshape(B, -1).contiguous().numpy() for v in inputs.values()]
    row_of: dict[bytes, int] = {}
    rows, inverse = [], []
    for b in range(B):
        key = b"".join(a[b].tobytes() for a in arrays)
        if key not in row_of:
            row_of[key] = len(rows)
            rows.append(b)
        inverse.append(row_of[key])
    return torch.tensor(rows), torch.tensor(inverse)


class _WorldCollation:
    """``predict``/``predict_worlds`` for model adapters with ``collate_kw``, ``rows_per_call`` and
    ``_call(inputs) -> (traj, prob)`` (one model call on ``{name: tensor [rows, ...]}``); the map
    split is kept for the scene it was made for."""

    collate_kw: dict
    rows_per_call: int | None = None  # worlds per model call (None: all in one call)
    _seg: tuple | None = None
    rows_run: int = 0  # model rows evaluated so far (worlds with identical inputs count once)

    def _set_rows_per_call(self, rows_per_call: int | None) -> None:
        if rows_per_call is not None and rows_per_call < 1:
            raise ValueError(f"rows_per_call must be >= 1 or None, got {rows_per_call}")
        self.rows_per_call = rows_per_call

    def predict(self, scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
        batch = collate_scenes(scenes, **self.collate_kw)
        traj, prob = self._run(batch.model_inputs())
        return scatter_to_agents(batch, traj, prob, scenes[0].num_agents)

    def _run(self, inputs: dict[str, Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """``(traj, prob)`` numpy of all rows of ``inputs``, ``rows_per_call`` rows per model call."""
        B = next(iter(inputs.values())).shape[0]
        n = B if self.rows_per_call is None else self.rows_per_call
        outs = [self._call({k: v[i : i + n] for k, v in inputs.items()}) for i in range(0, B, n)]
        self.rows_run += B
        if len(outs) == 1:
            return outs[0]
        return np.concatenate([t for t, _ in outs]), np.concatenate([p for _, p in outs])

    def segments(self, scene: Scene) -> MapSegments:
        if self._seg is None or self._seg[0] is not scene:
            kw = self.collate_kw
            self._seg = (scene, split_polylines(scene, kw.get("segment_len", 20.0), kw.get("segment_points", 8)))
        return self._seg[1]

    def predict_worlds(self, scene: Scene, worlds, frames: Tensor):
        """Predictions of every world, ``(traj [B, n, K, F, C], prob [B, A, K], rows [n])``: the
        trajectories of the n agents the model saw (row j is scene agent ``rows[j]``) and every
        agent's mode probabilities (zeros for the others); None where the fast path does not apply
        (use ``predict``). Trajectories stay in the model's rows: scattering all K modes to agent
        order would copy [B, A, K, F, C] per replan (15 MB for 32 WOMD worlds) of which the policy
        keeps one mode."""
        built = collate_worlds(scene, worlds, frames, self.collate_kw, self.segments(scene))
        if built is None:
            return None
        inputs, agent_index = built
        rows, inverse = distinct_worlds(inputs)
        if len(rows) < len(inverse):
            traj, prob = self._run({k: v[rows] for k, v in inputs.items()})
            traj, prob = traj[inverse.numpy()], prob[inverse.numpy()]
        else:
            traj, prob = self._run(inputs)
        n = int((agent_index >= 0).sum())  # collate_worlds puts the n agents first, padding after
        agents = agent_index[:n].numpy()
        out_p = np.zeros((traj.shape[0], scene.num_agents, prob.shape[2]), np.float32)
        out_p[:, agents] = prob[:, :n]
        return traj[:, :n], out_p, agents


class OnnxScenePredictor(_WorldCollation):
    """``rows_per_call``: at most this many worlds per ONNX Runtime call (None: all in one call);
    ``providers``: ONNX Runtime execution providers (default CPU; e.g. CUDA with onnxruntime-gpu,
    where one call for all worlds is what pays).

    Default 1, measured (docs/experiments/learned_batching.md): on one thread the model's cost per
    world does not fall with the batch, and its largest intermediates grow with it (the map
    self-attention scores ``[B, heads, M, M]``, 7 MB per world on the WOMD sample) until they
    leave the cache: 32 WOMD worlds in one call cost 1.3× as much as 32 calls of one. And a
    world's prediction is then the same bits whichever worlds run beside it (kernels round
    differently at other batch sizes), so rollout r of a batched run equals rollout r run alone.
    """

    def __init__(self, path: str | Path, threads: int = 1, rows_per_call: int | None = 1,
                 providers: Sequence[str] | None = None) -> None:
        from drope.export.runtime import OnnxPredictor

        self._set_rows_per_call(rows_per_call)
        self.runtime = OnnxPredictor(path, threads=threads, providers=list(providers) if providers else None)
        spec = self.runtime.spec
        self.collate_kw = dict(history=int(spec["history"]), future=int(spec["future"]),
                               segment_points=int(spec["map_points"]), segment_len=float(spec.get("segment_max_len_m", 20.0)))

    def _call(self, inputs: dict[str, Tensor]) -> tuple[np.ndarray, np.ndarray]:
        pred = self.runtime.predict({k: v.numpy() for k, v in inputs.items()})
        return pred.traj, pred.prob


class TorchScenePredictor(_WorldCollation):
    """The torch model (a ``drope-train`` checkpoint: no export step, the training install's CUDA) on
    ``device``, ``rows_per_call`` worlds per forward pass (None: all worlds of a replan in one
    pass, what pays on a GPU). Same inputs and outputs as the ONNX export."""

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "cpu", rows_per_call: int | None = None,
                 segment_len: float | None = None) -> None:
        from drope.model.checkpoint import scene_frame_outputs

        self._set_rows_per_call(rows_per_call)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self._forward = scene_frame_outputs
        f = model.cfg.features
        self.collate_kw = dict(history=f.history, future=f.future, segment_points=f.segment_points,
                               segment_len=f.segment_len if segment_len is None else segment_len)

    @torch.inference_mode()
    def _call(self, inputs: dict[str, Tensor]) -> tuple[np.ndarray, np.ndarray]:
        traj, prob = self._forward(self.model, **{k: v.to(self.device, non_blocking=True) for k, v in inputs.items()})
        return traj.float().cpu().numpy(), prob.float().cpu().numpy()


def is_onnx_model(path: str | Path) -> bool:
    """The one rule for a model file's kind: ``*.onnx`` is an ONNX export, anything else a checkpoint."""
    return Path(path).suffix.lower() == ".onnx"


def open_predictor(path: str | Path, rows_per_call: int | None = 1, providers: Sequence[str] | None = None,
                   device: str = "auto", threads: int = 1,
                   device_key: str = "model_device") -> OnnxScenePredictor | TorchScenePredictor:
    """The learned policy's model from ``path``: an ONNX file (``*.onnx``, from ``drope-export``) runs in
    ONNX Runtime on ``providers``; anything else is read as a ``drope-train`` checkpoint and runs in
    torch on ``device`` (:func:`drope.device.resolve_device`: auto, cpu, cuda, cuda:N) with the
    process's torch threads. ``rows_per_call``: worlds per call (None: all rollouts of a replan at once);
    ``threads``: ONNX Runtime's intra-op threads; ``device_key``: the setting an unusable device is
    reported under."""
    from drope.device import resolve_device

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found (an ONNX file from drope-export or a drope-train checkpoint)")
    if is_onnx_model(path):
        return OnnxScenePredictor(path, threads=threads, rows_per_call=rows_per_call, providers=providers)
    from drope.model.checkpoint import load_model

    dev = resolve_device(device, device_key)
    model, _ = load_model(path)
    return TorchScenePredictor(model, dev, rows_per_call)


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
