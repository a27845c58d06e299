"""Pose encodings behind one interface, selected by name through ``ENCODINGS``.

An encoding may (a) add features to tokens (``absolute``), (b) rotate q and k by each token's own
pose (``rope2d``, ``drope``, ``drope_rope``) or (c) produce a per-pair relative embedding that is
added to keys and values (``rpe``, QCNet-style, O(N²) memory dense / O(E) on a graph). ``none``
does nothing. Poses are ``[..., N, 4]`` = (x m, y m, heading rad, time step), scene frame.

Allocation of rotary pairs (``EncodingConfig.allocation``):

* ``head_by_head`` — the paper's DRoPE-RoPE: the first ``position_heads`` heads carry position
  RoPE (plus NoPE pairs), the other heads carry DRoPE heading pairs.
* ``intra_head`` — every head splits its pairs: ``position_fraction`` position pairs,
  ``heading_fraction`` heading pairs, the rest NoPE.

In both, ``time_pairs`` pairs per head (taken from the NoPE budget) rotate with the time step.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from drope.nn.rotary import (apply_rotary, head_cos_sin, metric_frequencies, pose_angles, rotate_heads, schedule_cos_sum,
                             spread_directions)
from drope.geometry import wrap_angle_smooth
from drope.registry import Registry

Tensor = torch.Tensor

ENCODINGS: Registry[type["PoseEncoding"]] = Registry("encoding")


@dataclass
class EncodingConfig:
    """Pose-encoding settings; mirrored by ``configs/encoding/*.yaml``."""

    name: str = "drope_rope"
    allocation: str = "head_by_head"  # head_by_head | intra_head
    position_heads: int | None = None  # head_by_head: heads with position RoPE (default: half)
    position_fraction: float = 0.5  # intra_head: share of pairs with position RoPE
    heading_fraction: float = 0.25  # intra_head: share of pairs with DRoPE heading
    nope_fraction: float = 0.25  # share of a position head's pairs left unrotated (NoPE)
    lambda_min: float = 0.5  # shortest position wavelength, metres
    lambda_max: float = 2000.0  # longest position wavelength (≈ 10× a 200 m scene span)
    max_distance: float = 100.0  # distances the schedule must serve: Σ cos(ω·d) ≥ 0 up to here
    harmonics: int = 1  # heading pairs rotate by k·θ, k = 1..harmonics (1 = plain DRoPE)
    learnable_mixed: bool = False  # RoPE-Mixed: learnable 2D directions and frequencies
    time_pairs: int = 0  # pairs per head rotated by time (temporal attention)
    time_lambda_min: float = 4.0  # shortest time wavelength, steps
    time_lambda_max: float = 100.0  # longest time wavelength, steps
    rpe_frequencies: int = 16  # rpe: Fourier frequencies per relative-pose component
    absolute_frequencies: int = 16  # absolute: sinusoidal frequencies per pose component

    def to_dict(self) -> dict:
        return asdict(self)


class PoseEncoding(nn.Module):
    """Base: no features, no rotation, no relative term (the ``none`` encoding)."""

    rotary = False
    relative = False

    def __init__(self, cfg: EncodingConfig, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise ValueError(f"dim {dim} must split into {num_heads} heads of even size")
        self.cfg, self.dim, self.num_heads, self.head_dim = cfg, dim, num_heads, dim // num_heads

    def tokens(self, x: Tensor, pose: Tensor) -> Tensor:
        """Token features before q/k/v projections ``[B, N, D]``."""
        return x

    def _apply(self, fn, recurse=True):
        # .half()/.to(bfloat16) must not cast frequency tables: a bf16 ω errs by ~0.4 %, i.e.
        # radians at 100 m. Floating buffers and rope_* parameters stay fp32 (devices still move).
        keep = {n: t for n, t in self._buffers.items() if t is not None and t.dtype == torch.float32}
        keep |= {n: p for n, p in self._parameters.items() if n.startswith("rope_") and p.dtype == torch.float32}
        keep = {n: t.detach().clone() for n, t in keep.items()}
        super()._apply(fn, recurse)
        for name, old in keep.items():
            cur = self._buffers[name] if name in self._buffers else self._parameters[name]
            if cur.dtype in (torch.float16, torch.bfloat16):
                fixed = old.to(cur.device)
                if name in self._buffers:
                    self._buffers[name] = fixed
                else:
                    cur.data = fixed
        return self

    def rotate(self, x: Tensor, pose: Tensor) -> Tensor:
        """Rotate per-head features ``x [B, H, N, Dh]`` by ``pose [B, N, 4]``."""
        return x

    def rotate_pair(self, q: Tensor, k: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys that share one pose tensor (self-attention)."""
        return self.rotate(q, pose), self.rotate(k, pose)

    def pair_embedding(self, pose_q: Tensor, pose_k: Tensor) -> Tensor:
        """Relative embedding for broadcastable pose pairs ``[..., 4]`` → ``[..., D]``."""
        raise TypeError(f"encoding {self.cfg.name!r} has no relative pair embedding")

    def describe(self) -> dict:
        """What goes into checkpoints/ONNX metadata: the config and, for rotary, the schedule."""
        return {"config": self.cfg.to_dict()}


ENCODINGS.register("none")(PoseEncoding)


class RotaryPoseEncoding(PoseEncoding):
    """RoPE on position, DRoPE on heading, time RoPE; allocation by head or within heads."""

    rotary = True
    use_position = True
    use_heading = True

    def __init__(self, cfg: EncodingConfig, dim: int, num_heads: int) -> None:
        super().__init__(cfg, dim, num_heads)
        kinds = self._allocate()  # [H][P] of "pos" | "head" | "time" | "nope"
        H, P = num_heads, self.head_dim // 2
        coeff = torch.zeros(H, P, 4, dtype=torch.float64)
        n_pos = max((row.count("pos") for row in kinds), default=0)
        # each position level gets two orthogonal directions (x/y axes, or spread mixed ones)
        levels = (n_pos + 1) // 2
        omega = metric_frequencies(levels, cfg.lambda_min, cfg.lambda_max)
        n_time = max((row.count("time") for row in kinds), default=0)
        omega_t = metric_frequencies(n_time, cfg.time_lambda_min, cfg.time_lambda_max)
        base_dir = spread_directions(max(levels, 1)) if cfg.learnable_mixed else torch.zeros(max(levels, 1))
        pos_omega = torch.zeros(H, P, dtype=torch.float64)
        pos_phi = torch.zeros(H, P, dtype=torch.float64)
        pos_mask = torch.zeros(H, P, dtype=torch.bool)
        for h, row in enumerate(kinds):
            ip = ih = it = 0
            for p, kind in enumerate(row):
                if kind == "pos":
                    lvl, axis = ip // 2, ip % 2
                    phi = base_dir[lvl] + axis * math.pi / 2 + (h * math.pi / (2 * H) if cfg.learnable_mixed else 0.0)
                    pos_omega[h, p], pos_phi[h, p], pos_mask[h, p] = omega[lvl], phi, True
                    ip += 1
                elif kind == "head":
                    coeff[h, p, 2] = 1 + ih % max(cfg.harmonics, 1)
                    ih += 1
                elif kind == "time":
                    coeff[h, p, 3] = omega_t[it]
                    it += 1
        self.register_buffer("fixed_coeff", coeff.float(), persistent=False)
        self.register_buffer("pos_mask", pos_mask, persistent=False)
        self.kinds = kinds
        if cfg.learnable_mixed:
            # fp32 parameters; names start with "rope_" so optimisers can exclude them from weight decay
            self.rope_log_omega = nn.Parameter(torch.log(pos_omega.clamp_min(1e-12)).float())
            self.rope_phi = nn.Parameter(pos_phi.float())
        else:
            self.register_buffer("pos_omega", pos_omega.float(), persistent=False)
            self.register_buffer("pos_phi", pos_phi.float(), persistent=False)

    # -- allocation ---------------------------------------------------------------------------
    def _allocate(self) -> list[list[str]]:
        cfg, H, P = self.cfg, self.num_heads, self.head_dim // 2
        if cfg.time_pairs > P:
            raise ValueError(f"time_pairs {cfg.time_pairs} exceeds {P} pairs per head")
        rows = []
        for h in range(H):
            free = P - cfg.time_pairs
            if cfg.allocation == "head_by_head":
                pos_heads = H // 2 if cfg.position_heads is None else cfg.position_heads
                if self.use_position and self.use_heading:
                    is_pos = h < pos_heads
                else:
                    is_pos = self.use_position
                if is_pos:
                    n_nope = int(round(free * cfg.nope_fraction))
                    row = ["pos"] * (free - n_nope) + ["nope"] * n_nope
                else:
                    row = ["head"] * free
            elif cfg.allocation == "intra_head":
                n_pos = int(round(free * cfg.position_fraction)) if self.use_position else 0
                n_head = int(round(free * cfg.heading_fraction)) if self.use_heading else 0
                if n_pos + n_head > free:
                    raise ValueError("position_fraction + heading_fraction exceed 1")
                row = ["pos"] * n_pos + ["head"] * n_head + ["nope"] * (free - n_pos - n_head)
            else:
                raise ValueError(f"unknown allocation {cfg.allocation!r}; use head_by_head or intra_head")
            rows.append(row + ["time"] * cfg.time_pairs)
        return rows

    # -- angles ---------------------------------------------------------------------------------
    def coefficients(self) -> Tensor:
        """The pair coefficient table ``W [H, P, 4]`` (fp32; learnable parts included)."""
        if self.cfg.learnable_mixed:
            omega, phi = torch.exp(self.rope_log_omega.float()), self.rope_phi.float()
        else:
            omega, phi = self.pos_omega, self.pos_phi
        m = self.pos_mask.to(omega.dtype)
        pos = torch.stack([omega * torch.cos(phi) * m, omega * torch.sin(phi) * m], dim=-1)  # [H, P, 2]
        return self.fixed_coeff + torch.nn.functional.pad(pos, (0, 2))

    def rotate(self, x: Tensor, pose: Tensor) -> Tensor:
        return rotate_heads(x, pose_angles(pose, self.coefficients()))

    def rotate_pair(self, q: Tensor, k: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate ``q, k [B, H, N, Dh]`` sharing one ``pose [B, N, 4]`` (self-attention: cos/sin once)."""
        cos, sin = head_cos_sin(pose_angles(pose, self.coefficients()))
        with torch.autocast(q.device.type, enabled=False):
            return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

    def schedule_margin(self, max_distance: float | None = None, directions: int = 25, samples: int = 4001) -> float:
        """min over position heads, directions and distances ≤ ``max_distance`` of Σ_p cos(W_p · d).

        ≥ 0 means the "base bounds context" criterion holds over that range.
        """
        R = self.cfg.max_distance if max_distance is None else max_distance
        heads = self.pos_mask.any(-1)
        if not bool(heads.any()):
            return float("inf")
        W = self.coefficients().detach()[heads]  # [Hp, P, 4]
        d = torch.linspace(0, R, samples, dtype=torch.float64)
        worst = float("inf")
        for ang in torch.linspace(0, math.pi, directions).tolist():
            disp = torch.stack([d * math.cos(ang), d * math.sin(ang), 0 * d, 0 * d], -1)
            for h in range(W.shape[0]):
                worst = min(worst, float(schedule_cos_sum(W[h], disp).min()))
        return worst

    def describe(self) -> dict:
        w = self.coefficients().detach().double()
        return {
            "config": self.cfg.to_dict(),
            "pair_layout": "interleaved (x[2i], x[2i+1])",
            "pair_kinds": self.kinds,
            "coefficients": w.tolist(),  # angle = W @ (x, y, heading, t)
        }


@ENCODINGS.register("drope_rope")
class DRoPERoPE(RotaryPoseEncoding):
    pass


@ENCODINGS.register("rope2d")
class RoPE2D(RotaryPoseEncoding):
    use_heading = False


@ENCODINGS.register("drope")
class DRoPEOnly(RotaryPoseEncoding):
    use_position = False


def fourier_features(x: Tensor, freqs: Tensor) -> Tensor:
    """``[..., C]`` → ``[..., C * (2F + 1)]``: the raw value plus sin/cos at each frequency."""
    a = x[..., None] * freqs  # [..., C, F]
    return torch.cat([x[..., None], torch.sin(a), torch.cos(a)], dim=-1).flatten(-2)


@ENCODINGS.register("absolute")
class AbsolutePose(PoseEncoding):
    """Sinusoidal features of the absolute pose (x, y, cos θ, sin θ) → linear, added to tokens."""

    def __init__(self, cfg: EncodingConfig, dim: int, num_heads: int) -> None:
        super().__init__(cfg, dim, num_heads)
        self.register_buffer("freqs", metric_frequencies(cfg.absolute_frequencies, cfg.lambda_min, cfg.lambda_max).float(),
                             persistent=False)
        self.proj = nn.Linear(4 * (2 * cfg.absolute_frequencies + 1), dim)

    def tokens(self, x: Tensor, pose: Tensor) -> Tensor:
        p = pose.float()
        feats = torch.stack([p[..., 0], p[..., 1], torch.cos(p[..., 2]), torch.sin(p[..., 2])], dim=-1)
        return x + self.proj(fourier_features(feats, self.freqs).to(self.proj.weight.dtype)).to(x.dtype)


def relative_pose(pose_q: Tensor, pose_k: Tensor) -> Tensor:
    """Key pose in the query's frame: ``[..., 4]`` = (dx, dy) rotated by -θ_q, wrapped dθ, dist."""
    d = pose_k[..., :2] - pose_q[..., :2]
    c, s = torch.cos(pose_q[..., 2]), torch.sin(pose_q[..., 2])
    lx, ly = c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]
    dth = wrap_angle_smooth(pose_k[..., 2] - pose_q[..., 2])
    return torch.stack([lx, ly, dth, torch.sqrt(lx * lx + ly * ly + 1e-12)], dim=-1)


@ENCODINGS.register("rpe")
class RelativePoseEmbedding(PoseEncoding):
    """QCNet-style: Fourier features of the relative pose in the query frame → MLP → added to k and v."""

    relative = True

    def __init__(self, cfg: EncodingConfig, dim: int, num_heads: int) -> None:
        super().__init__(cfg, dim, num_heads)
        self.register_buffer("freqs", metric_frequencies(cfg.rpe_frequencies, cfg.lambda_min, cfg.lambda_max).float(),
                             persistent=False)
        n_in = 4 * (2 * cfg.rpe_frequencies + 1)
        self.mlp = nn.Sequential(nn.Linear(n_in, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, dim))

    def pair_embedding(self, pose_q: Tensor, pose_k: Tensor) -> Tensor:
        rel = relative_pose(pose_q.float(), pose_k.float())  # relative pose in fp32, then the MLP's dtype
        return self.mlp(fourier_features(rel, self.freqs).to(self.mlp[0].weight.dtype))


def build_encoding(cfg: EncodingConfig, dim: int, num_heads: int) -> PoseEncoding:
    return ENCODINGS.get(cfg.name)(cfg, dim, num_heads)


def no_weight_decay_names(module: nn.Module) -> set[str]:
    """Parameter names to exclude from weight decay (learnable rotary frequencies/directions)."""
    return {n for n, _ in module.named_parameters() if n.rsplit(".", 1)[-1].startswith("rope_")}
