"""Scene sources for training (re-exported from :mod:`drope.data.sources`, where evaluation finds them too).

``load_scenes`` here streams: WOMD shards / cache directories become a lazy
:class:`drope.data.stream.SceneStreamDataset` (one scene decoded per access, nothing kept in
RAM); sources with Argoverse 2 paths fall back to the in-memory reader.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Sequence

from drope.data.sources import generated_scenes  # noqa: F401
from drope.data.sources import load_scenes as load_scenes_in_memory


def load_scenes(sources: Sequence[str], on_corrupt: str = "skip"):
    from drope.data.av2 import is_av2_path
    from drope.data.stream import SceneStreamDataset

    paths = [Path(p) for s in sources for p in (sorted(glob.glob(str(s))) or [s])]
    if on_corrupt != "skip" or any(p.exists() and is_av2_path(p) for p in paths):
        return load_scenes_in_memory(sources, on_corrupt=on_corrupt)
    return SceneStreamDataset(list(map(str, sources)))
