"""``PoseAttention``: multi-head attention whose relative-pose awareness comes from an encoding.

Dense backend: padded tokens ``[B, N, D]``, boolean masks, fused
``scaled_dot_product_attention`` (no ``[H, N, N]`` score tensor for rotary encodings). Graph
backend: the same padded tokens attend along an ``edge_index`` (per-edge dot products, PyG's
segment softmax, a scatter-sum; :mod:`drope.nn.edge_attention`), for large sparse scenes. A query with no allowed key returns exactly zero in both,
output projection included (the exported softmax would otherwise return the mean of V).

Poses are ``[B, N, 3]`` (x, y, heading) or ``[B, N, 4]`` (…, time step), scene frame, metres
and radians. Temporal attention: pass the step index (float, any origin: only differences
matter) as the fourth column and give the encoding ``time_pairs > 0``; those pairs then rotate
by ``ω_t · t`` with wavelengths ``time_lambda_min..time_lambda_max`` steps. A 3-column pose is
time 0 for every token.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from drope.nn.encodings import EncodingConfig, build_encoding

Tensor = torch.Tensor


def _pose4(pose: Tensor) -> Tensor:
    if pose.shape[-1] == 4:
        return pose
    if pose.shape[-1] != 3:
        raise ValueError(f"pose must be [..., 3] (x, y, heading) or [..., 4] (+ time), got {tuple(pose.shape)}")
    return F.pad(pose, (0, 1))


def radius_mask(pose_q: Tensor, pose_k: Tensor, radius: float) -> Tensor:
    """``[B, Nq, Nk]`` True where keys lie within ``radius`` metres of the query (explicit differences)."""
    # x and y apart: no [B, Nq, Nk, 2] intermediate (the exported graph's costliest mask step)
    dx = pose_q[..., :, None, 0].float() - pose_k[..., None, :, 0].float()  # [B, Nq, Nk]
    dy = pose_q[..., :, None, 1].float() - pose_k[..., None, :, 1].float()
    return dx * dx + dy * dy <= radius * radius


# export-path logit biases: 2^33 scales coordinates exactly (a power of two), so scaled squared
# distances order exactly like eager's; -2^100 excludes a key (exp underflows to exactly 0)
# while sums of penalties stay finite (a row without keys must not become NaN)
_XY_SCALE = 2.0**33
_EXCLUDED = -(2.0**100)


def radius_bias(pose_q: Tensor, pose_k: Tensor, radius: float) -> Tensor:
    """``[B, Nq, Nk]`` additive logit bias: exactly 0 where :func:`radius_mask` is True, ≤ −1e15 elsewhere.

    The same decisions bit for bit (fp32, exact power-of-two scaling) without the boolean
    mask's Where pass; finite for distances below ~2e9 m.
    """
    xq, yq = (pose_q[..., c].float() * _XY_SCALE for c in (0, 1))
    xk, yk = (pose_k[..., c].float() * _XY_SCALE for c in (0, 1))
    dx, dy = xq[..., :, None] - xk[..., None, :], yq[..., :, None] - yk[..., None, :]
    r2 = float(torch.tensor(radius * radius, dtype=torch.float32)) * _XY_SCALE**2  # eager compares with fp32 r²
    return (r2 - (dx * dx + dy * dy)).clamp_max(0.0)


def _export_bias(pose_q: Tensor, pose_k: Tensor, key_mask: Tensor | None, attn_mask: Tensor | None,
                 radius: float | None) -> tuple[Tensor, Tensor]:
    """Export path of the pairwise mask: float bias ``[B, 1, Nq, Nk]`` (0 = may attend) and ``has_key [B, Nq]``."""
    B, Nq, Nk = pose_q.shape[0], pose_q.shape[1], pose_k.shape[1]
    excluded = torch.full((), _EXCLUDED, dtype=torch.float32)
    zero = torch.zeros((), dtype=torch.float32)
    bias = radius_bias(pose_q, pose_k, radius) if radius is not None else pose_q.new_zeros(B, Nq, Nk, dtype=torch.float32)
    if key_mask is not None:
        bias = bias + torch.where(key_mask, zero, excluded)[:, None, :]
    if attn_mask is not None:
        bias = bias + torch.where(attn_mask, zero, excluded)
    return bias[:, None], bias.amax(-1) == 0


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout: float) -> Tensor:
    """Softmax attention ``[B, H, Nq, Dh]``; ``mask`` broadcastable to ``[B, H, Nq, Nk]``.

    Eager: the fused kernel with the boolean mask (every row must keep ≥ 1 key). Under export
    the mask becomes a finite additive bias (0 or the dtype's minimum) at full ``[B, 1, Nq, Nk]``
    shape and goes through ``scaled_dot_product_attention`` with a float mask: at opset ≥ 23 the
    exporter emits ONNX ``Attention`` (ONNX Runtime's fused CPU kernel; it rejects a mask that
    broadcasts over queries), at opset 18 ``Softmax(QKᵀ·s + bias) @ V``. The exporter's
    boolean-mask form instead guards its softmax with IsNaN + Where over all scores. A finite
    bias also makes rows without any key harmless (uniform weights; the caller zeroes them).
    """
    if not torch.compiler.is_exporting():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    if mask.dtype == torch.bool:
        zero, low = torch.zeros((), dtype=q.dtype), torch.full((), torch.finfo(q.dtype).min, dtype=q.dtype)
        bias = torch.where(mask, zero, low)
    else:
        bias = mask.to(q.dtype)
    if bias.shape[-2] == 1:
        bias = bias.expand(*bias.shape[:-2], q.shape[-2], bias.shape[-1])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class PoseAttention(nn.Module):
    """Self- or cross-attention with a pose encoding (``EncodingConfig.name`` picks it)."""

    def __init__(self, dim: int, num_heads: int, encoding: EncodingConfig | None = None, dropout: float = 0.0,
                 kv_dim: int | None = None) -> None:
        super().__init__()
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.encoding = build_encoding(encoding or EncodingConfig(), dim, num_heads)
        kv_dim = kv_dim or dim
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def split_heads(self, x: Tensor) -> Tensor:  # [B, N, D] -> [B, H, N, Dh]
        B, N, _ = x.shape
        return x.view(B, N, self.num_heads, self.head_dim).transpose(1, 2)

    # ---- dense -------------------------------------------------------------------------------
    def forward(self, x_q: Tensor, pose_q: Tensor, x_k: Tensor | None = None, pose_k: Tensor | None = None,
                key_mask: Tensor | None = None, attn_mask: Tensor | None = None, radius: float | None = None) -> Tensor:
        """``x_q [B, Nq, D]``, ``pose_q [B, Nq, 3|4]``; keys default to the queries (self-attention).

        ``key_mask [B, Nk]`` True = valid key; ``attn_mask [B, Nq, Nk]`` True = may attend;
        ``radius`` additionally restricts keys to that distance. Returns ``[B, Nq, D]``.
        """
        self_attention = x_k is None
        if self_attention:
            x_k, pose_k = x_q, pose_q
        if pose_k is None:
            raise ValueError("pose_k is required when x_k is given")
        pose_q, pose_k = _pose4(pose_q), _pose4(pose_k)
        B, Nq, _ = x_q.shape
        Nk = x_k.shape[1]
        enc = self.encoding
        xq, xk = enc.tokens(x_q, pose_q), enc.tokens(x_k, pose_k)
        q, k, v = self.split_heads(self.q(xq)), self.split_heads(self.k(xk)), self.split_heads(self.v(xk))
        if attn_mask is None and radius is None:
            # key padding only: a [B, 1, 1, Nk] mask keeps memory O(N) (no [Nq, Nk] tensor at all)
            km = torch.ones(B, Nk, dtype=torch.bool, device=x_q.device) if key_mask is None else key_mask
            has_key = km.any(-1, keepdim=True).expand(B, Nq)  # [B, Nq]
            safe = (km | ~has_key[:, :1])[:, None, None, :]  # [B, 1, 1, Nk]
        elif torch.compiler.is_exporting() and not enc.relative:
            # float bias straight from the poses: fewer, cheaper [Nq, Nk] passes than bool + Where
            safe, has_key = _export_bias(pose_q, pose_k, key_mask, attn_mask, radius)
        else:
            mask = torch.ones(B, Nq, Nk, dtype=torch.bool, device=x_q.device)
            if key_mask is not None:
                mask = mask & key_mask[:, None, :]
            if attn_mask is not None:
                mask = mask & attn_mask
            if radius is not None:
                mask = mask & radius_mask(pose_q, pose_k, radius)
            has_key = mask.any(-1)  # [B, Nq]
            # rows without keys attend to everything (no NaN), then are zeroed explicitly
            safe = (mask | ~has_key[..., None])[:, None]  # [B, 1, Nq, Nk]
        p = self.dropout if self.training else 0.0
        if enc.relative:
            o = self._dense_relative(q, k, v, pose_q, pose_k, safe, p)
        else:
            if enc.rotary and self_attention:
                q, k = enc.rotate_pair(q, k, pose_q)
            elif enc.rotary:
                q, k = enc.rotate(q, pose_q), enc.rotate(k, pose_k)
            o = attend(q, k, v, safe, p)
        o = o.transpose(1, 2).reshape(B, Nq, self.dim)
        # zero after the projection too: a row without keys must not even carry the output bias
        return self.out(o) * has_key[..., None].to(o.dtype)

    def _dense_relative(self, q, k, v, pose_q, pose_k, mask, p):
        # O(N²) by design: the per-pair embedding [B, Nq, Nk, D] is what RoPE avoids
        B, H, Nq, Dh = q.shape
        r = self.encoding.pair_embedding(pose_q[:, :, None, :], pose_k[:, None, :, :])  # [B, Nq, Nk, D]
        r = r.view(B, Nq, -1, H, Dh).permute(0, 3, 1, 2, 4)  # [B, H, Nq, Nk, Dh]
        logits = (q[:, :, :, None, :] * (k[:, :, None, :, :] + r)).sum(-1) / Dh**0.5  # [B, H, Nq, Nk]
        attn = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        attn = F.dropout(attn, p, self.training)
        return torch.einsum("bhqk,bhqkd->bhqd", attn, v[:, :, None, :, :] + r)

    # ---- graph -------------------------------------------------------------------------------
    def forward_edges(self, x_q: Tensor, pose_q: Tensor, x_k: Tensor, pose_k: Tensor, edge_index: Tensor) -> Tensor:
        """Padded ``x_q [B, Nq, D]``, ``x_k [B, Nk, D]`` (poses as in :meth:`forward`) attending only
        along ``edge_index [2, E]``: row 0 flattened keys ``b * Nk + j``, row 1 flattened queries
        ``b * Nq + i`` (:func:`drope.data.graph.padded_radius_edges`). The same q/k/v, pose rotation
        and zero rows as the dense path; memory O(E·H + N·D) instead of O(Nq·Nk).
        """
        from drope.nn.edge_attention import edge_softmax_attention

        pose_q, pose_k = _pose4(pose_q), _pose4(pose_k)
        B, Nq, _ = x_q.shape
        Nk = x_k.shape[1]
        enc = self.encoding
        xq, xk = enc.tokens(x_q, pose_q), enc.tokens(x_k, pose_k)
        q, k, v = self.split_heads(self.q(xq)), self.split_heads(self.k(xk)), self.split_heads(self.v(xk))  # [B, H, N, Dh]
        if enc.rotary:
            q, k = enc.rotate(q, pose_q), enc.rotate(k, pose_k)
        H, Dh = self.num_heads, self.head_dim
        q, k, v = (t.transpose(1, 2).reshape(-1, H, Dh) for t in (q, k, v))  # [B*N, H, Dh]
        pair = None
        if enc.relative:
            pq, pk = pose_q.reshape(B * Nq, 4), pose_k.reshape(B * Nk, 4)
            pair = enc.pair_embedding(pq[edge_index[1]], pk[edge_index[0]]).view(-1, H, Dh)
        o = edge_softmax_attention(q, k, v, edge_index, pair, self.dropout, self.training)  # [B*Nq, H, Dh]
        has_key = torch.zeros(B * Nq, dtype=torch.bool, device=x_q.device)
        has_key[edge_index[1]] = True
        return (self.out(o.reshape(B, Nq, self.dim)) * has_key.view(B, Nq, 1).to(o.dtype))

    def forward_graph(self, x_q: Tensor, pose_q: Tensor, x_k: Tensor, pose_k: Tensor, edge_index: Tensor) -> Tensor:
        """One graph: nodes ``x_q [Nq, D]``, ``x_k [Nk, D]``; ``edge_index [2, E]`` rows (key/source, query/target)."""
        return self.forward_edges(x_q[None], pose_q[None], x_k[None], pose_k[None], edge_index)[0]


class PoseTransformerLayer(nn.Module):
    """Pre-norm block: pose attention (self or cross) + MLP, both residual."""

    def __init__(self, dim: int, num_heads: int, encoding: EncodingConfig | None = None, ff_mult: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_k = nn.LayerNorm(dim)
        self.attn = PoseAttention(dim, num_heads, encoding, dropout)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))

    def forward(self, x: Tensor, pose: Tensor, ctx: Tensor | None = None, pose_ctx: Tensor | None = None,
                key_mask: Tensor | None = None, attn_mask: Tensor | None = None, radius: float | None = None,
                edges: Tensor | None = None) -> Tensor:
        """``edges`` (:meth:`PoseAttention.forward_edges`' layout) replace the masks: attention runs on them."""
        h = self.norm_q(x)
        kv = h if ctx is None else self.norm_k(ctx)
        pose_kv = pose if ctx is None else pose_ctx
        if edges is not None:
            x = x + self.attn.forward_edges(h, pose, kv, pose_kv, edges)
        else:
            x = x + self.attn(h, pose, kv, pose_kv, key_mask, attn_mask, radius)
        return x + self.ff(self.norm_ff(x))
