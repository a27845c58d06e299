"""Model forward contract: shapes for every encoding, padding/batching invariance, frame invariance."""
from __future__ import annotations

import math

import pytest
import torch

from drope.data.batch import collate_scenes
from drope.model import ModelConfig, build_model, to_scene_frame
from drope.nn import EncodingConfig
from drope.train.loss import targets_in_agent_frame


def tiny(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(dim=32, num_heads=4, num_blocks=1, **kw)).eval()


@pytest.mark.parametrize("enc", ["none", "absolute", "rpe", "rope2d", "drope", "drope_rope"])
def test_forward_shapes_for_every_encoding(gen_scenes, enc):
    m = tiny(encoding=EncodingConfig(name=enc))
    b = collate_scenes(gen_scenes[:2], max_map=64)
    traj, scale, logits = m(**b.model_inputs())
    B, A = b.agent_mask.shape
    assert traj.shape == (B, A, 6, 80, 3) and scale.shape == (B, A, 6, 80, 2) and logits.shape == (B, A, 6)
    assert torch.isfinite(traj).all() and bool((scale > 0).all())


def test_padding_and_batching_do_not_change_predictions(gen_scenes):
    m = tiny()
    with torch.no_grad():
        solo = m(**collate_scenes(gen_scenes[:1]).model_inputs())[0]
        both = m(**collate_scenes(gen_scenes[:2]).model_inputs())[0]
    n = solo.shape[1]
    assert (both[0, :n] - solo[0]).abs().max() < 1e-4


def test_translation_of_the_scene_frame_changes_nothing(gen_scenes):
    """Everything is relative (agent frames, RoPE): shifting all inputs leaves agent-frame outputs equal."""
    m = tiny()
    b = collate_scenes(gen_scenes[:1])
    inp = b.model_inputs()
    shifted = dict(inp, agent_pos=inp["agent_pos"] + torch.tensor([37.0, -12.0]),
                   map_points=inp["map_points"] + torch.tensor([37.0, -12.0]))
    with torch.no_grad():
        a, b2 = m(**inp)[0], m(**shifted)[0]
    assert (a - b2).abs().max() < 2e-3


def test_to_scene_frame_inverts_targets_in_agent_frame():
    g = torch.Generator().manual_seed(0)
    fut = torch.randn(2, 3, 80, 2, generator=g) * 30
    fh = (torch.rand(2, 3, 80, generator=g) * 2 - 1) * math.pi
    pos, h = torch.randn(2, 3, 2, generator=g) * 50, (torch.rand(2, 3, generator=g) * 2 - 1) * math.pi
    xy, dh = targets_in_agent_frame(fut, fh, pos, h)
    back = to_scene_frame(torch.cat([xy, dh[..., None]], -1)[:, :, None], pos, h)[:, :, 0]
    assert torch.allclose(back[..., :2], fut, atol=1e-4)
    assert torch.allclose(torch.cos(back[..., 2] - fh), torch.ones_like(fh), atol=1e-5)


def test_agents_without_a_current_state_give_finite_outputs_and_do_not_leak(gen_scenes):
    """An agent invalid at the current step is masked as a key: the others predict exactly as if it
    were absent, whatever garbage its padded slots hold."""
    m = tiny()
    inp = collate_scenes(gen_scenes[:1]).model_inputs()
    ghost = {k: v.clone() for k, v in inp.items()}
    ghost["agent_valid"][0, 0] = False
    junk = {k: v.clone() for k, v in ghost.items()}
    junk["agent_pos"][0, 0] = 1e4 * torch.randn(11, 2)
    junk["agent_heading"][0, 0] = 7.0
    absent = {k: (v[:, 1:] if k.startswith("agent_") else v) for k, v in inp.items()}
    with torch.no_grad():
        g, j, a = m(**ghost), m(**junk), m(**absent)
    assert all(torch.isfinite(t).all() for t in g + j)
    assert (g[0][0, 1:] - j[0][0, 1:]).abs().max() < 1e-4
    assert (g[0][0, 1:] - a[0][0]).abs().max() < 1e-4
