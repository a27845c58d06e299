"""Local-map encoder: nearest segments against a slow reference, SE(2) invariance, padding, legacy configs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drope.data.batch import collate_scenes
from drope.model import ModelConfig, build_model
from drope.model.local_map import LocalMapEncoder, local_map_points, nearest_segments
from drope.sim.generate.scenario import generate_scene


@pytest.fixture(scope="module")
def batch():
    return collate_scenes([generate_scene(5, i)[0] for i in range(3)], max_map=96).model_inputs()


def _reference_nearest(agent_pos, map_points, map_mask, k):
    """Per agent: sort valid segments by their centroid's distance (numpy loops)."""
    B, A = agent_pos.shape[:2]
    out = []
    for b in range(B):
        rows = []
        for a in range(A):
            d = [(float(np.sum((map_points[b, m].mean(0) - agent_pos[b, a]) ** 2)), m)
                 for m in range(map_points.shape[1]) if map_mask[b, m]]
            rows.append(sorted(d)[:k])
        out.append(rows)
    return out


@pytest.mark.parametrize("k", [4, 32, 200])
def test_nearest_segments_match_a_slow_reference(batch, k):
    pos = batch["agent_pos"][:, :, -1]
    idx, valid = nearest_segments(pos, batch["map_points"], batch["map_mask"], k)
    assert idx.shape == valid.shape == (*pos.shape[:2], k)
    ref = _reference_nearest(pos.numpy(), batch["map_points"].numpy(), batch["map_mask"].numpy(), k)
    mp, pn = batch["map_points"].numpy(), pos.numpy()
    for b, rows in enumerate(ref):
        for a, want in enumerate(rows):
            got = idx[b, a][valid[b, a]].tolist()
            # nearest first (compare distances, not indices: equal distances may come in any order)
            got_d = [float(np.sum((mp[b, m].mean(0) - pn[b, a]) ** 2)) for m in got]
            assert np.allclose(got_d, [d for d, _ in want], rtol=1e-5, atol=1e-4)
            assert len(set(got)) == len(got) and all(batch["map_mask"][b, m] for m in got)
            assert int(valid[b, a].sum()) == min(k, int(batch["map_mask"][b].sum()))


def test_local_points_are_in_the_agent_frame():
    # one agent at (10, 5) heading +90°, one straight segment along +y starting 3 m ahead of it
    pos, heading = torch.tensor([[[10.0, 5.0]]]), torch.tensor([[math.pi / 2]])
    seg = torch.stack([torch.full((8,), 10.0), 8.0 + torch.arange(8.0)], -1)[None, None]  # [1, 1, 8, 2]
    f = local_map_points(pos, heading, seg, torch.zeros(1, 1, 1, dtype=torch.long))[0, 0, 0]
    assert torch.allclose(f[:, 0], 3.0 + torch.arange(8.0), atol=1e-5)  # ahead
    assert torch.allclose(f[:, 1], torch.zeros(8), atol=1e-5)  # on the centre line
    assert torch.allclose(f[:, 2:], torch.tensor([1.0, 0.0]).expand(8, 2), atol=1e-5)  # pointing forward


def _se2(xy, angle, shift):
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]], dtype=xy.dtype)
    return xy @ rot.T + torch.tensor(shift, dtype=xy.dtype)


def test_encoder_is_invariant_to_a_rigid_motion_of_the_scene(batch):
    torch.manual_seed(0)
    enc = LocalMapEncoder(32, 16).eval()
    args = (batch["agent_pos"][:, :, -1], batch["agent_heading"][:, :, -1], batch["map_points"],
            batch["map_type"], batch["map_signal"], batch["map_mask"])
    angle, shift = 2.1, (-430.0, 215.0)
    moved = (_se2(args[0], angle, shift), args[1] + angle, _se2(args[2], angle, shift)) + args[3:]
    with torch.no_grad():
        a, b = enc(*args), enc(*moved)
    assert a.abs().max() > 0.1  # not trivially zero
    assert (a - b).abs().max() < 1e-3


def test_agent_without_any_map_segment_gets_zero(batch):
    enc = LocalMapEncoder(16, 8).eval()
    mask = torch.zeros_like(batch["map_mask"])
    with torch.no_grad():
        out = enc(batch["agent_pos"][:, :, -1], batch["agent_heading"][:, :, -1], batch["map_points"],
                  batch["map_type"], batch["map_signal"], mask)
    assert torch.equal(out, torch.zeros_like(out))


def test_local_map_is_optional_and_reaches_the_outputs(batch):
    assert ModelConfig().local_map_segments == 32
    legacy = ModelConfig().to_dict()
    del legacy["local_map_segments"]  # checkpoints written before the field existed
    assert ModelConfig.from_dict(legacy).local_map_segments == 0
    m_off = build_model(ModelConfig(dim=32, num_blocks=1, local_map_segments=0))
    assert not any(n.startswith("local_map") for n, _ in m_off.named_parameters())
    torch.manual_seed(0)
    m = build_model(ModelConfig(dim=32, num_blocks=1))
    traj, _, logits = m(**batch)
    (traj.square().mean() + logits.square().mean()).backward()
    assert m.local_map.point.weight.grad.abs().sum() > 0  # the encoder reaches the outputs


def test_onnx_export_matches_torch_with_fewer_map_segments_than_k(batch, tmp_path):
    """TopK with k > M would fail at run time on a dynamic map axis: k padding segments prevent it."""
    import onnxruntime as ort

    from drope.export.onnx_export import ExportWrapper, export_onnx

    torch.manual_seed(0)
    m = build_model(ModelConfig(dim=16, num_heads=2, num_blocks=1, local_map_segments=12)).eval()
    path = export_onnx(m, batch, tmp_path / "lm.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for M in (96, 5):
        inp = {k: (v[:, :M] if k.startswith("map_") else v) for k, v in batch.items()}
        got = sess.run(None, {k: v.numpy() for k, v in inp.items()})
        with torch.no_grad():
            want = ExportWrapper(m)(**inp)
        assert np.abs(got[0] - want[0].numpy()).max() < 1e-3
        assert np.abs(got[1] - want[1].numpy()).max() < 1e-5
