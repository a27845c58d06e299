"""Padded dense batches: shapes, padding, truncation warnings."""
from __future__ import annotations

import logging

import torch

from drope.data.batch import collate_scenes
from drope.data.womd import read_scenarios
from tests.builders import make_scene


def test_collate_pads_and_keeps_values(womd_path):
    (scene,) = list(read_scenarios(womd_path))
    small = make_scene(A=3, T=91)
    b = collate_scenes([scene, small])
    assert b.agent_pos.shape == (2, 50, 11, 2) and b.future_pos.shape == (2, 50, 80, 2)
    assert int(b.agent_mask[0].sum()) == 50 and int(b.agent_mask[1].sum()) == 3
    i = int(b.agent_index[0, 0])
    assert torch.equal(b.agent_pos[0, 0], scene.agent_pos[i, :11])
    assert torch.equal(b.future_pos[0, 0], scene.agent_pos[i, 11:91])
    assert int(b.predict_mask[0].sum()) == 3
    assert not b.map_mask[1, 5:].any() and b.map_mask[0].sum() > 300
    assert b.agent_pos[1, 3:].abs().sum() == 0  # padding is zero


def test_truncation_warns_and_keeps_nearest(womd_path, caplog):
    (scene,) = list(read_scenarios(womd_path))
    import drope.data.batch as batch_mod

    batch_mod._warned.clear()
    with caplog.at_level(logging.WARNING):
        b = collate_scenes([scene], max_agents=10, max_map=64)
        collate_scenes([scene], max_agents=10, max_map=64)
    assert caplog.text.count("agents nearest the SDC") == 1  # once per scene, not per batch
    assert b.agent_pos.shape[1] == 10 and b.map_points.shape[1] == 64
    assert scene.sdc_index in b.agent_index[0].tolist()
