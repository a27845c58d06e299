"""PoseAttention: dense ≡ graph, batching, padding, masked rows, radius masks, ONNX export."""
from __future__ import annotations

import math

import pytest
import torch

from drope.data.graph import padded_radius_edges, radius_edges
from drope.nn import ENCODINGS, EncodingConfig, PoseAttention, PoseTransformerLayer

ALL = ENCODINGS.names()


def scene(n=30, b=1, seed=0, d=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, d, generator=g)
    pose = torch.cat([(torch.rand(b, n, 2, generator=g) - 0.5) * 120, (torch.rand(b, n, 1, generator=g) * 2 - 1) * math.pi], -1)
    return x, pose


def make(name, **kw):
    torch.manual_seed(0)
    return PoseAttention(64, 4, EncodingConfig(name=name, **kw)).eval()


@pytest.mark.parametrize("name", ALL)
def test_dense_equals_graph_on_the_same_graph(name):
    att = make(name)
    x, pose = scene()
    e = radius_edges(pose[0, :, :2], pose[0, :, :2], 35.0, loop=True)
    mask = torch.zeros(1, 30, 30, dtype=torch.bool)
    mask[0, e[1], e[0]] = True
    with torch.no_grad():
        dense = att(x, pose, attn_mask=mask)[0]
        graph = att.forward_graph(x[0], pose[0], x[0], pose[0], e)
    assert (dense - graph).abs().max() < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_cross_attention_dense_equals_graph(name):
    att = make(name)
    xq, pq = scene(12, seed=1)
    xk, pk = scene(40, seed=2)
    e = radius_edges(pk[0, :, :2], pq[0, :, :2], 40.0, loop=True)
    mask = torch.zeros(1, 12, 40, dtype=torch.bool)
    mask[0, e[1], e[0]] = True
    with torch.no_grad():
        dense = att(xq, pq, xk, pk, attn_mask=mask)[0]
        graph = att.forward_graph(xq[0], pq[0], xk[0], pk[0], e)
    assert (dense - graph).abs().max() < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_padded_edges_equal_dense_radius_attention_with_gradients(name):
    """forward_edges on padded batches ≡ the dense radius + key mask path: outputs and every gradient."""
    x, pose = scene(40, b=3, seed=4)
    xk, pk = scene(25, b=3, seed=5)
    key_mask = torch.rand(3, 25, generator=torch.Generator().manual_seed(6)) < 0.7
    key_mask[2] = False  # a scene without keys: zero rows in both
    results = []
    for graph in (False, True):
        att = make(name).train()  # dropout 0: train mode changes nothing but must work
        xq_, xk_ = x.clone().requires_grad_(), xk.clone().requires_grad_()
        if graph:
            y = att.forward_edges(xq_, pose, xk_, pk, padded_radius_edges(pose, pk, 35.0, key_mask))
        else:
            y = att(xq_, pose, xk_, pk, key_mask=key_mask, radius=35.0)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append([y, xq_.grad, xk_.grad] + [p.grad for p in att.parameters() if p.grad is not None])
    dense, graph = results
    assert len(dense) == len(graph) and bool((dense[0][2] == 0).all()) and bool((graph[0][2] == 0).all())
    for a, b in zip(dense, graph):
        assert (a - b).abs().max() <= 1e-5 * (1 + a.abs().max()), name


@pytest.mark.parametrize("name", ["drope_rope", "rpe", "absolute"])
def test_batched_equals_unbatched_and_padding_is_inert(name):
    att = make(name)
    x, pose = scene(20, b=3, seed=4)
    with torch.no_grad():
        batched = att(x, pose)
        single = torch.cat([att(x[i : i + 1], pose[i : i + 1]) for i in range(3)])
        assert (batched - single).abs().max() < 1e-5
        # pad scene 0 with 7 junk tokens masked out as keys: real outputs unchanged
        xp = torch.cat([x[:1], torch.randn(1, 7, 64) * 100], 1)
        pp = torch.cat([pose[:1], torch.randn(1, 7, 3) * 1000], 1)
        km = torch.cat([torch.ones(1, 20, dtype=torch.bool), torch.zeros(1, 7, dtype=torch.bool)], 1)
        padded = att(xp, pp, key_mask=km)[:, :20]
    assert (padded - single[:1]).abs().max() < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_fully_masked_rows_are_exactly_zero(name):
    att = make(name)
    x, pose = scene(10)
    mask = torch.ones(1, 10, 10, dtype=torch.bool)
    mask[0, 3] = False
    with torch.no_grad():
        out = att(x, pose, attn_mask=mask)
        e = torch.tensor([[0, 1, 2], [0, 0, 1]])  # node 5 receives no edge
        g = att.forward_graph(x[0], pose[0], x[0], pose[0], e)
    assert torch.equal(out[0, 3], torch.zeros(64)) and torch.isfinite(out).all()
    assert torch.equal(g[5], torch.zeros(64)) and g[:2].abs().sum() > 0
    assert (out[0, :3].abs().sum(-1) > 0).all()


def test_radius_mask_matches_explicit_mask():
    att = make("drope_rope")
    x, pose = scene(25)
    d = (pose[0, :, None, :2] - pose[0, None, :, :2]).norm(dim=-1)
    with torch.no_grad():
        a = att(x, pose, radius=30.0)
        b = att(x, pose, attn_mask=(d <= 30.0)[None])
    assert (a - b).abs().max() < 1e-6


def test_time_rope_makes_temporal_attention_shift_invariant():
    torch.manual_seed(0)
    att = PoseAttention(64, 4, EncodingConfig(name="drope", time_pairs=2)).eval()
    x, pose = scene(11)
    t = torch.arange(11.0)[None, :, None]
    with torch.no_grad():
        a = att(x, torch.cat([pose, t], -1))
        b = att(x, torch.cat([pose, t + 5.0], -1))
        c = att(x, torch.cat([pose, t * 2.0], -1))
    assert (a - b).abs().max() < 1e-4
    assert (a - c).abs().max() > 1e-3  # time pairs are active


def test_layer_runs_self_and_cross():
    torch.manual_seed(0)
    layer = PoseTransformerLayer(64, 4, EncodingConfig())
    x, pose = scene(8)
    ctx, pctx = scene(30, seed=3)
    y = layer(x, pose)
    z = layer(x, pose, ctx, pctx, key_mask=torch.ones(1, 30, dtype=torch.bool))
    assert y.shape == z.shape == x.shape
    (y.sum() + z.sum()).backward()


@pytest.mark.parametrize("radius", [None, 40.0])
def test_onnx_export_dynamic_n_matches_onnxruntime(tmp_path, radius):
    import numpy as np
    import onnxruntime as ort

    att = make("drope_rope")

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, pose, key_mask):
            return self.m(x, pose, key_mask=key_mask, radius=radius)

    wrapped = Wrap(att).eval()
    x, pose = scene(16)
    km = torch.ones(1, 16, dtype=torch.bool)
    km[0, -3:] = False
    n = torch.export.Dim("n", min=2, max=4096)
    path = tmp_path / "attn.onnx"
    torch.onnx.export(wrapped, (x, pose, km), str(path), dynamo=True, opset_version=18,
                      dynamic_shapes={"x": {1: n}, "pose": {1: n}, "key_mask": {1: n}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for N in (16, 57):
        x, pose = scene(N, seed=N)
        km = torch.ones(1, N, dtype=torch.bool)
        km[0, :2] = False
        with torch.no_grad():
            ref = wrapped(x, pose, km).numpy()
        got = sess.run(None, {"x": x.numpy(), "pose": pose.numpy(), "key_mask": km.numpy()})[0]
        assert np.abs(got - ref).max() < 1e-5
    if radius is not None:  # a far-away token whose own key is padding has no key at all: zero
        x, pose = scene(20, seed=3)
        pose[0, 0, :2] = torch.tensor([5000.0, 5000.0])
        km = np.ones((1, 20), bool)
        km[0, 0] = False
        got = sess.run(None, {"x": x.numpy(), "pose": pose.numpy(), "key_mask": km})[0]
        assert not np.any(got[0, 0]) and np.all(np.abs(got[0, 1:]).sum(-1) > 0)
    # no valid key at all: the exported softmax would give the mean of V; the layer gives zeros
    none_valid = torch.zeros(1, 9, dtype=torch.bool)
    x, pose = scene(9, seed=9)
    got = sess.run(None, {"x": x.numpy(), "pose": pose.numpy(), "key_mask": none_valid.numpy()})[0]
    assert not np.any(got)


@pytest.mark.parametrize("name", ALL)
def test_scene_without_valid_keys_gives_zero_rows(name):
    att = make(name)
    x, pose = scene(6, b=2)
    km = torch.ones(2, 6, dtype=torch.bool)
    km[1] = False
    with torch.no_grad():
        out = att(x, pose, key_mask=km)
        ref0 = att(x[:1], pose[:1])
    assert torch.equal(out[1], torch.zeros(6, 64))
    assert (out[0] - ref0[0]).abs().max() < 1e-5


# which transforms each encoding is invariant to (the DRoPE invariance: translation and heading difference, not whole-scene rotation); everything else must show a gap
GUARANTEES = {
    "none": {"shift 50 m", "headings + 2π", "headings + 0.7 rad", "rotate scene 0.7 rad"},
    "absolute": {"headings + 2π"},
    "rpe": {"shift 50 m", "headings + 2π", "rotate scene 0.7 rad"},
    "rope2d": {"shift 50 m", "headings + 2π", "headings + 0.7 rad"},
    "drope": {"shift 50 m", "headings + 2π", "headings + 0.7 rad", "rotate scene 0.7 rad"},
    "drope_rope": {"shift 50 m", "headings + 2π", "headings + 0.7 rad"},
}


@pytest.mark.parametrize("name", ALL)
def test_invariance_matrix(name):
    from drope.nn.invariance import invariance_gaps

    att = make(name)
    x, pose = scene(24, seed=7)
    gaps = invariance_gaps(att, x, pose)
    assert set(gaps) == {t for ts in GUARANTEES.values() for t in ts}
    for transform, gap in gaps.items():
        if transform in GUARANTEES[name]:
            assert gap < 1e-5, (transform, gap)
        else:
            assert gap > 1e-2, (transform, gap)  # e.g. drope_rope under a whole-scene rotation
    assert next(att.parameters()).dtype == torch.float32  # measured on a copy


@pytest.mark.parametrize("name", ALL)
def test_half_precision_module_keeps_frequency_tables_fp32(name):
    """``.to(bfloat16)`` casts weights but not ω/φ tables: the error then matches ``none``'s."""
    x, pose = scene(32, seed=11)
    errors = {}
    for enc in ("none", name):
        for kw in ({}, {"learnable_mixed": True}) if enc != "none" else ({},):
            att = make(enc, **kw)
            with torch.no_grad():
                ref = att(x, pose)
                att.to(torch.bfloat16)
                out = att(x.bfloat16(), pose)
            assert out.dtype == torch.bfloat16
            tables = [t for n, t in [*att.encoding.named_buffers(), *att.encoding.named_parameters()]
                      if n in {"fixed_coeff", "pos_omega", "pos_phi", "rope_log_omega", "rope_phi", "freqs"}]
            assert all(t.dtype == torch.float32 for t in tables)
            errors[enc, len(kw)] = float((out.float() - ref).abs().max() / ref.abs().max())
    # cast bf16 tables gave 6-12 % for drope_rope; fp32 tables leave only the weights' rounding
    assert max(errors.values()) < 3 * errors["none", 0] + 5e-3, errors


def test_export_attention_path_matches_fused_kernel(monkeypatch):
    """The scores-written-out path used under export equals SDPA, junk in masked keys included."""
    from drope.nn.attention import attend

    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 9, 16, generator=g).unbind(0)
    k[..., 6:, :] *= 1e3  # masked keys with huge logits and values must still weigh nothing
    v[..., 6:, :] = 1e20
    mask = torch.rand(2, 1, 9, 9, generator=g) < 0.6
    mask[..., :, 0] = True
    mask[..., 6:] = False
    ref = attend(q, k, v, mask, 0.0)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    got = attend(q, k, v, mask, 0.0)
    assert (got - ref).abs().max() < 1e-5


def test_export_radius_bias_makes_the_same_decisions_as_the_mask():
    """Exported float bias ≡ radius_mask bit for bit, also for keys exactly on or one ulp past the radius."""
    from drope.nn.attention import radius_bias, radius_mask

    g = torch.Generator().manual_seed(1)
    pq = (torch.rand(1, 40, 4, generator=g) - 0.5) * 300
    r = 40.0
    ring = torch.tensor([[24.0, 32.0], [40.0, 0.0], [0.0, -40.0]])  # exactly r from the origin
    just_out = ring * (1 + 2 * torch.finfo(torch.float32).eps)
    pk = torch.cat([pq[0, :, :2], ring, just_out, ring + 123.25])  # and ring pairs shifted together
    pk = torch.cat([pk, torch.zeros(len(pk), 2)], -1)[None]
    pq = torch.cat([pq, torch.zeros(1, 2, 4), torch.tensor([[[123.25, 123.25, 0, 0]]])], 1)
    mask, bias = radius_mask(pq, pk, r), radius_bias(pq, pk, r)
    assert mask[0, -2, 40:43].all() and not mask[0, -2, 43:46].any()  # the boundary cases are present
    assert torch.equal(mask, bias == 0)
    assert bias.isfinite().all() and (bias[~mask] < -1e15).all()


@pytest.mark.parametrize("radius", [None, 30.0])
def test_export_path_of_the_layer_matches_eager(monkeypatch, radius):
    """The whole layer under export (float bias, SDPA with float mask) ≡ eager, rows without keys included."""
    att = make("drope_rope")
    x, pose = scene(20, b=2, seed=4)
    pose[1, 0, :2] = torch.tensor([5000.0, 5000.0])  # far away: no key within the radius
    km = torch.ones(2, 20, dtype=torch.bool)
    km[1, 0] = km[0, 5:9] = False
    am = torch.rand(2, 20, 20, generator=torch.Generator().manual_seed(2)) < 0.7
    with torch.no_grad():
        ref = att(x, pose, key_mask=km, attn_mask=am, radius=radius)
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
        got = att(x, pose, key_mask=km, attn_mask=am, radius=radius)
    assert (got - ref).abs().max() < 1e-5
    if radius is not None:
        assert not got[1, 0].any()
