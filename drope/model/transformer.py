"""The DRoPE agent-interaction transformer on plain tensors (the export path: no PyG, no dataclasses).

Inputs (B scenes, A agents, H = ``cfg.features.history`` steps, M map segments of
S = ``cfg.features.segment_points`` points; scene frame, metres/rad), in
``FeatureSpec.input_names`` order:
``agent_pos [B,A,H,2]``, ``agent_heading [B,A,H]``, ``agent_vel [B,A,H,2]``, ``agent_size [B,A,3]``,
``agent_type [B,A]`` int64, ``agent_valid [B,A,H]`` bool, ``map_points [B,M,S,2]``,
``map_type [B,M]`` int64, ``map_signal [B,M]`` int64, ``map_mask [B,M]`` bool.

Outputs: ``traj [B,A,K,F,3]`` (x, y, heading in each agent's frame at the current step),
``scale [B,A,K,F,2]`` (F = ``cfg.features.future``) (Laplace scales of x, y, metres) and ``logits [B,A,K]`` (mode scores;
softmax for probabilities). Agents not valid at the current step produce finite, meaningless
outputs. Feature engineering (agent and segment frames) happens inside ``forward``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from drope.data.graph import expected_pair_share, padded_radius_edges
from drope.data.types import MapType, ObjectType, SignalState
from drope.geometry import rotate_into_frame, wrap_angle_smooth
from drope.model.config import ModelConfig
from drope.model.local_map import LocalMapEncoder
from drope.nn import EncodingConfig, PoseTransformerLayer
from drope.registry import Registry

Tensor = torch.Tensor

# ``auto`` runs an interaction attention on its radius graph when the dense mask has at least
# this many query-key pairs and the graph keeps at most this share of them. Measured on one CPU
# thread (docs/experiments/attention.md, ``drope-bench attention --backends``): the graph
# breaks even near a 1 % share at N = 2048 and loses at 1 % for N = 512 (per-edge gathers cost
# ~10-40× a fused dense pair), so auto asks for a clear margin.
AUTO_MIN_PAIRS = 512 * 512
AUTO_MAX_SHARE = 0.004

# ``ModelConfig.attention_backend`` → whether one interaction attention (query poses, key poses,
# radius, key mask) runs on its radius graph instead of a dense [Nq, Nk] mask.
ATTENTION_BACKENDS: Registry[Callable[[Tensor, Tensor, float, Tensor], bool]] = Registry("attention backend")
ATTENTION_BACKENDS.register("dense")(lambda pose_q, pose_k, radius, key_mask: False)
ATTENTION_BACKENDS.register("graph")(lambda pose_q, pose_k, radius, key_mask: True)


@ATTENTION_BACKENDS.register("auto")
def graph_pays(pose_q: Tensor, pose_k: Tensor, radius: float, key_mask: Tensor) -> bool:
    """A large scene whose radius keeps few pairs: the edges cost less than the dense mask.

    CPU only: on accelerators the trade-off is unmeasured, so auto keeps the fused dense kernel.
    """
    if pose_q.device.type != "cpu":
        return False
    pairs = pose_q.shape[0] * pose_q.shape[1] * pose_k.shape[1]
    return pairs >= AUTO_MIN_PAIRS and expected_pair_share(pose_q, pose_k, radius, key_mask) <= AUTO_MAX_SHARE


def to_scene_frame(traj: Tensor, pos_now: Tensor, heading_now: Tensor) -> Tensor:
    """Agent-frame ``traj [B,A,K,F,3]`` → scene frame, given ``pos_now [B,A,2]``, ``heading_now [B,A]``."""
    c, s = torch.cos(heading_now)[:, :, None, None], torch.sin(heading_now)[:, :, None, None]
    x, y = traj[..., 0], traj[..., 1]
    xs = c * x - s * y + pos_now[:, :, None, None, 0]
    ys = s * x + c * y + pos_now[:, :, None, None, 1]
    h = wrap_angle_smooth(traj[..., 2] + heading_now[:, :, None, None])
    return torch.stack([xs, ys, h], dim=-1)


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.LayerNorm(h), nn.GELU(), nn.Linear(h, o))


class DRoPETransformer(nn.Module):
    # the submodules ``encode_map`` runs: their work depends on the map inputs alone, not on agents
    # (profiles attribute a call's time to map encoding by these names: drope.bench.sim_learned)
    MAP_ENCODER = ("map_point_mlp", "map_type", "map_signal", "map_layers")

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        try:
            self._use_graph = ATTENTION_BACKENDS.get(cfg.attention_backend)
        except KeyError as e:
            raise ValueError(f"model_config.attention_backend: {e.args[0]}") from None
        D, Hh = cfg.dim, cfg.num_heads
        self.map_point_mlp = _mlp(4, D, D)
        self.map_type = nn.Embedding(len(MapType), D)
        self.map_signal = nn.Embedding(len(SignalState), D)
        self.agent_step_mlp = _mlp(8, D, D)
        self.agent_type = nn.Embedding(len(ObjectType), D)
        self.agent_size = nn.Linear(3, D)
        temporal = EncodingConfig(name="drope", time_pairs=cfg.temporal_time_pairs)
        self.temporal = PoseTransformerLayer(D, Hh, temporal, cfg.ff_mult, cfg.dropout)
        self.local_map = LocalMapEncoder(D, cfg.local_map_segments) if cfg.local_map_segments > 0 else None
        self.map_layers = nn.ModuleList(
            [PoseTransformerLayer(D, Hh, cfg.encoding, cfg.ff_mult, cfg.dropout) for _ in range(cfg.map_layers)])
        self.m2a = nn.ModuleList(
            [PoseTransformerLayer(D, Hh, cfg.encoding, cfg.ff_mult, cfg.dropout) for _ in range(cfg.num_blocks)])
        self.a2a = nn.ModuleList(
            [PoseTransformerLayer(D, Hh, cfg.encoding, cfg.ff_mult, cfg.dropout) for _ in range(cfg.num_blocks)])
        self.mode_emb = nn.Parameter(torch.randn(cfg.num_modes, D) * 0.2)
        self.mode_map = PoseTransformerLayer(D, Hh, cfg.encoding, cfg.ff_mult, cfg.dropout)
        self.mode_self = PoseTransformerLayer(D, Hh, EncodingConfig(name="none"), cfg.ff_mult, cfg.dropout)
        self.head_traj = _mlp(D, 2 * D, cfg.features.future * 5)
        self.head_logit = _mlp(D, D, 1)

    def interaction_edges(self, pose_q: Tensor, pose_k: Tensor, radius: float, key_mask: Tensor) -> Tensor | None:
        """The radius graph one interaction attention runs on, or ``None`` for the dense mask.

        Exporting always takes the dense path: the ONNX graph has no data-dependent edge lists.
        """
        if torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return None
        if not self._use_graph(pose_q, pose_k, radius, key_mask):
            return None
        return padded_radius_edges(pose_q, pose_k, radius, key_mask)

    # ---- encoders ----------------------------------------------------------------------------------
    def encode_map(self, map_points, map_type, map_signal, map_mask):
        B, M, S, _ = map_points.shape
        start = map_points[:, :, 0]  # [B, M, 2]
        d = map_points[:, :, -1] - start
        direction = torch.atan2(d[..., 1], d[..., 0])  # [B, M]
        c, s = torch.cos(direction)[..., None], torch.sin(direction)[..., None]
        local = rotate_into_frame(map_points - start[:, :, None], c, s)  # [B, M, S, 2] in the segment's frame
        step = torch.cat([local[:, :, 1:] - local[:, :, :-1], torch.zeros_like(local[:, :, :1])], 2)
        feats = self.map_point_mlp(torch.cat([local, step], -1)).max(dim=2).values  # PointNet max-pool [B, M, D]
        x = feats + self.map_type(map_type) + self.map_signal(map_signal)
        pose = torch.cat([start, direction[..., None]], -1)  # [B, M, 3]
        r = self.cfg.features.m2m_radius
        edges = self.interaction_edges(pose, pose, r, map_mask) if len(self.map_layers) else None
        for layer in self.map_layers:
            x = layer(x, pose, key_mask=map_mask, radius=r, edges=edges)
        return x, pose

    def encode_agents(self, agent_pos, agent_heading, agent_vel, agent_size, agent_type, agent_valid):
        B, A, H, _ = agent_pos.shape
        now_pos, now_h = agent_pos[:, :, -1], agent_heading[:, :, -1]  # [B, A, 2], [B, A]
        c, s = torch.cos(now_h)[..., None], torch.sin(now_h)[..., None]
        rel = rotate_into_frame(agent_pos - now_pos[:, :, None], c, s)  # [B, A, H, 2] agent frame
        vel = rotate_into_frame(agent_vel, c, s)
        dh = agent_heading - now_h[..., None]
        valid_f = agent_valid.to(rel.dtype)[..., None]
        step = torch.cat([torch.zeros_like(rel[:, :, :1]), rel[:, :, 1:] - rel[:, :, :-1]], 2)
        feats = torch.cat([rel, vel, torch.cos(dh)[..., None], torch.sin(dh)[..., None], step], -1) * valid_f
        x = self.agent_step_mlp(feats) + (self.agent_type(agent_type) + self.agent_size(agent_size))[:, :, None]
        # temporal attention: the current step attends over the valid history (time RoPE + DRoPE)
        t = torch.arange(H, dtype=rel.dtype, device=rel.device).expand(B, A, H)
        pose_t = torch.cat([agent_pos, agent_heading[..., None], t[..., None]], -1).reshape(B * A, H, 4)
        xs = x.reshape(B * A, H, -1)
        q = xs[:, -1:]
        out = self.temporal(q, pose_t[:, -1:], xs, pose_t, key_mask=agent_valid.reshape(B * A, H))
        return out.reshape(B, A, -1)

    def forward(self, agent_pos, agent_heading, agent_vel, agent_size, agent_type, agent_valid,
                map_points, map_type, map_signal, map_mask):
        cfg, spec = self.cfg, self.cfg.features
        B, A = agent_pos.shape[:2]
        # any H or S would run (attention and max-pooling do not care) and predict garbage
        if agent_pos.shape[2] != spec.history or map_points.shape[2] != spec.segment_points:
            raise ValueError(f"model {cfg.name!r} expects {spec.history} history steps and {spec.segment_points} "
                             f"points per map segment (its features), got agent_pos {tuple(agent_pos.shape)}, "
                             f"map_points {tuple(map_points.shape)}")
        m, m_pose = self.encode_map(map_points, map_type, map_signal, map_mask)
        a = self.encode_agents(agent_pos, agent_heading, agent_vel, agent_size, agent_type, agent_valid)
        if self.local_map is not None:
            a = a + self.local_map(agent_pos[:, :, -1], agent_heading[:, :, -1], map_points, map_type, map_signal, map_mask)
        a_pose = torch.cat([agent_pos[:, :, -1], agent_heading[:, :, -1:]], -1)  # [B, A, 3]
        a_mask = agent_valid[:, :, -1]
        m2a_edges = self.interaction_edges(a_pose, m_pose, spec.m2a_radius, map_mask)
        a2a_edges = self.interaction_edges(a_pose, a_pose, spec.a2a_radius, a_mask)
        for m2a, a2a in zip(self.m2a, self.a2a):
            a = m2a(a, a_pose, m, m_pose, key_mask=map_mask, radius=spec.m2a_radius, edges=m2a_edges)
            a = a2a(a, a_pose, key_mask=a_mask, radius=spec.a2a_radius, edges=a2a_edges)
        K = cfg.num_modes
        q = (a[:, :, None] + self.mode_emb).reshape(B, A * K, -1)  # [B, A*K, D]
        q_pose = a_pose[:, :, None].expand(B, A, K, 3).reshape(B, A * K, 3)
        # the K mode queries of an agent sit at its pose: its map edges, once per mode (query b*A*K + a*K + k)
        mode_edges = None if m2a_edges is None else torch.stack([
            m2a_edges[0].repeat_interleave(K),
            (m2a_edges[1][:, None] * K + torch.arange(K, device=m2a_edges.device)).reshape(-1)])
        q = self.mode_map(q, q_pose, m, m_pose, key_mask=map_mask, radius=spec.m2a_radius, edges=mode_edges)
        # modes of one agent see each other (diversity), nothing else
        q = self.mode_self(q.reshape(B * A, K, -1), q_pose.reshape(B * A, K, 3)).reshape(B, A, K, -1)
        out = self.head_traj(q).reshape(B, A, K, spec.future, 5)
        xy = torch.cumsum(out[..., :2], dim=3)  # displacements per step → positions (smooth, scale-friendly)
        heading = out[..., 2:3]
        scale = F.softplus(out[..., 3:5]) + 0.01
        logits = self.head_logit(q)[..., 0]
        return torch.cat([xy, heading], -1), scale, logits


def build_model(cfg: ModelConfig | dict) -> DRoPETransformer:
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return DRoPETransformer(dataclasses.replace(cfg))
