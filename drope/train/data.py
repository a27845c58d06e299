"""Scene sources for training/eval: Scenario shards, cache directories, or generated scenes."""
from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Sequence

from drope.data.scene import Scene

log = logging.getLogger(__name__)


def load_scenes(sources: Sequence[str], on_corrupt: str = "skip") -> list[Scene]:
    """Scenes from shard files, globs, or cache directories (``drope-data cache`` output)."""
    from drope.data import cache
    from drope.data.womd import read_scenarios

    scenes: list[Scene] = []
    for src in sources:
        paths = sorted(glob.glob(str(src))) or [src]
        for p in map(Path, paths):
            if p.is_dir():
                scenes += list(cache.load_cached_scenes(p))
            elif p.exists() and p.name.endswith(cache.CACHE_SUFFIX):
                scenes += cache.load_scenes(p)
            elif p.exists():
                scenes += list(read_scenarios(p, on_corrupt=on_corrupt))
            else:
                raise FileNotFoundError(f"no such data source: {p}")
    return scenes


def generated_scenes(n: int, seed: int) -> list[Scene]:
    from tqdm import tqdm

    from drope.sim.generate.scenario import generate_scene

    return [generate_scene(seed, i)[0] for i in tqdm(range(n), desc=f"generate (seed {seed})", unit="scene",
                                                       disable=n < 64)]
