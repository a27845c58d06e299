"""drope.data.sources: the generated source via its entry point, and file sources of every format."""
from __future__ import annotations

import pytest
import torch

from drope.data.av2 import write_av2_split
from drope.data.sources import SOURCES, generated_scenes, get_source, load_scenes
from drope.data.womd import write_scenarios


def test_generated_source_is_found_through_its_entry_point():
    scenes = generated_scenes(2, 3)
    again = get_source("generated")(2, 3)
    assert "generated" in SOURCES and len(scenes) == 2
    assert torch.equal(scenes[1].agent_pos, again[1].agent_pos)
    with pytest.raises(KeyError, match="unknown scene source 'nope'"):
        get_source("nope")


def test_load_scenes_reads_av2_split_roots_beside_womd_shards(tmp_path):
    scenes = generated_scenes(2, 0)
    write_av2_split(scenes, tmp_path / "av2")
    write_scenarios(tmp_path / "w.tfrecord", scenes[:1])
    out = load_scenes([str(tmp_path / "av2"), str(tmp_path / "w.tfrecord")])
    assert len(out) == 3 and out[2].source == "womd" and out[2].scenario_id == scenes[0].scenario_id
    out = list(out)[:2]
    assert [s.source for s in out] == ["av2", "av2"]
    assert sorted(s.scenario_id for s in out) == sorted(s.scenario_id for s in scenes)
    with pytest.raises(FileNotFoundError, match="no such data source"):
        load_scenes([str(tmp_path / "missing")])
