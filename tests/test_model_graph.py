"""The model's interaction attention on radius graphs: ≡ dense (outputs, gradients), auto choice, export stays dense."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from drope.data.batch import collate_scenes
from drope.data.features import FeatureSpec
from drope.model import ModelConfig, build_model


def pair(backend_a="dense", backend_b="graph", **kw):
    """Two models with the same weights that differ only in their attention backend."""
    cfg = ModelConfig(dim=32, num_heads=4, num_blocks=1, **kw)
    torch.manual_seed(0)
    a = build_model(dataclasses.replace(cfg, attention_backend=backend_a))
    b = build_model(dataclasses.replace(cfg, attention_backend=backend_b))
    b.load_state_dict(a.state_dict())
    return a, b


def sparse_inputs(A=700, M=600, extent=6000.0, seed=0, history=11, points=8):
    """One km-scale scene: agents and 20 m map segments scattered over ``extent`` metres."""
    g = torch.Generator().manual_seed(seed)
    now = (torch.rand(1, A, 2, generator=g) - 0.5) * extent
    heading = (torch.rand(1, A, generator=g) * 2 - 1) * math.pi
    t = torch.arange(history, dtype=torch.float32) - (history - 1)
    vel = torch.stack([heading.cos(), heading.sin()], -1) * 8.0  # [1, A, 2]
    pos = now[:, :, None] + 0.1 * t[None, None, :, None] * vel[:, :, None]
    start = (torch.rand(1, M, 2, generator=g) - 0.5) * extent
    direction = torch.rand(1, M, 1, generator=g) * 2 * math.pi
    s = torch.linspace(0, 20, points)[None, None, :, None]
    pts = start[:, :, None] + s * torch.cat([direction.cos(), direction.sin()], -1)[:, :, None]
    valid = torch.ones(1, A, history, dtype=torch.bool)
    valid[0, :50, -1] = False  # agents without a current state (queries that are not keys)
    return {"agent_pos": pos, "agent_heading": heading[:, :, None].expand(1, A, history).contiguous(),
            "agent_vel": vel[:, :, None].expand(1, A, history, 2).contiguous(),
            "agent_size": torch.tensor([4.5, 2.0, 1.5]).expand(1, A, 3).contiguous(),
            "agent_type": torch.ones(1, A, dtype=torch.long), "agent_valid": valid,
            "map_points": pts, "map_type": torch.ones(1, M, dtype=torch.long),
            "map_signal": torch.zeros(1, M, dtype=torch.long), "map_mask": torch.rand(1, M, generator=g) < 0.9}


def close(xs, ys, tol=1e-4):
    for x, y in zip(xs, ys):
        assert x.shape == y.shape and (x - y).abs().max() <= tol * (1 + x.abs().max())


def test_graph_equals_dense_on_padded_generated_scenes_with_gradients(gen_scenes):
    # radii other than the defaults: the graph must take the model's FeatureSpec radii to agree
    spec = FeatureSpec(a2a_radius=25.0, m2a_radius=20.0, m2m_radius=15.0, max_map=96)
    dense, graph = pair(features=spec, map_layers=2)
    inputs = collate_scenes(gen_scenes[:3], spec).model_inputs()
    assert not bool(inputs["agent_valid"][:, :, -1].all())  # padding and agents without a current state
    outs, grads = [], []
    for m in (dense, graph):
        m.train()
        out = m(**inputs)
        sum(o.square().mean() for o in out).backward()
        outs.append(out)
        grads.append([p.grad for p in m.parameters()])
    close(outs[0], outs[1])
    assert [g is None for g in grads[0]] == [g is None for g in grads[1]]
    assert sum(g is not None for g in grads[1]) > 50
    close([g for g in grads[0] if g is not None], [g for g in grads[1] if g is not None], tol=1e-3)


def test_many_agents_km_scene_auto_takes_the_graph_and_agrees():
    inputs = sparse_inputs()
    dense, auto = pair("dense", "auto")
    a_pose = torch.cat([inputs["agent_pos"][:, :, -1], inputs["agent_heading"][:, :, -1:]], -1)
    spec = auto.cfg.features
    edges = auto.interaction_edges(a_pose, a_pose, spec.a2a_radius, inputs["agent_valid"][:, :, -1])
    assert edges is not None and 0 < edges.shape[1] < 0.01 * 700 * 700  # sparse: the graph was chosen
    assert dense.interaction_edges(a_pose, a_pose, spec.a2a_radius, inputs["agent_valid"][:, :, -1]) is None
    with torch.no_grad():
        close(dense.eval()(**inputs), auto.eval()(**inputs))


def test_auto_keeps_small_or_dense_scenes_dense(gen_scenes):
    _, auto = pair("dense", "auto")
    b = collate_scenes(gen_scenes[:2]).model_inputs()
    a_pose = torch.cat([b["agent_pos"][:, :, -1], b["agent_heading"][:, :, -1:]], -1)
    assert auto.interaction_edges(a_pose, a_pose, 60.0, b["agent_valid"][:, :, -1]) is None  # few agents
    crowded = sparse_inputs(A=700, extent=300.0)  # many agents, but a tenth of all pairs within 60 m
    c_pose = torch.cat([crowded["agent_pos"][:, :, -1], crowded["agent_heading"][:, :, -1:]], -1)
    assert auto.interaction_edges(c_pose, c_pose, 60.0, crowded["agent_valid"][:, :, -1]) is None


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="model_config.attention_backend: unknown attention backend 'sparse'"):
        build_model(ModelConfig(dim=32, num_heads=4, attention_backend="sparse"))
    with pytest.raises(ValueError, match="attention_backend"):
        build_model(ModelConfig.from_dict({**ModelConfig().to_dict(), "attention_backend": "cuda"}))


@pytest.mark.slow  # one ONNX export (~15 s on an idle 2-core machine)
def test_export_of_a_graph_model_is_dense_and_verifies(tmp_path, gen_scenes):
    from drope.export.onnx_export import export_onnx
    from drope.export.verify import check_fp32, compare

    _, model = pair("dense", "graph")
    model.eval()
    path = export_onnx(model, collate_scenes(gen_scenes[:2]).model_inputs(), tmp_path / "m.onnx")
    stats = compare(model, {"fp32": path}, gen_scenes[2:4])  # torch side runs the graph backend
    check_fp32(stats)
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Attention" in ops and not ops & {"ScatterND", "ScatterElements", "NonZero"}  # dense, no edge lists


def test_backend_benchmark_measures_both_backends_and_tabulates():
    from drope.bench.attention import measure_backend, backend_table

    rows = [measure_backend(b, 96, 400.0, bw, 1) for b in ("dense", "graph") for bw in (False, True)]
    assert {r["edges"] for r in rows} == {rows[0]["edges"]} and 96 <= rows[0]["edges"] < 96 * 96
    assert all(r["ms"] > 0 for r in rows)
    text = backend_table(rows)
    assert "| 96 |" in text and "graph ±400 m fwd+bwd" in text and "×" in text


def test_nearest_segments_of_a_large_scene_equal_a_full_top_k():
    """Many agents × segments: the local map takes agents in chunks; the k nearest stay exact."""
    from drope.model.local_map import nearest_segments

    g = torch.Generator().manual_seed(3)
    agents = (torch.rand(1, 3000, 2, generator=g) - 0.5) * 4000
    pts = (torch.rand(1, 1500, 1, 2, generator=g) - 0.5) * 4000 + torch.linspace(0, 20, 8)[None, None, :, None]
    mask = torch.rand(1, 1500, generator=g) < 0.9
    idx, valid = nearest_segments(agents, pts, mask, 16)
    d2 = (pts.mean(2)[:, None] - agents[:, :, None]).square().sum(-1).masked_fill(~mask[:, None], float("inf"))
    want = torch.topk(d2, 16, dim=-1, largest=False).values
    got = torch.gather(d2, 2, idx)
    assert bool(valid.all()) and torch.allclose(got, want, rtol=1e-5)
