"""Scene sources that are not files: a registry that other packages plug into.

The library must not import the simulator (layers point down), yet ``drope-train``/``drope-eval``
default to generated scenes. The generator registers itself under the entry-point group
``drope.scene_sources`` (see pyproject.toml); this module finds it by name at call time.

A source is ``fn(n: int, seed: int) -> list[Scene]``: scene ``i`` depends only on ``(seed, i)``.
"""
from __future__ import annotations

import glob
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Sequence

from drope.data.scene import Scene
from drope.registry import Registry

SceneSource = Callable[[int, int], list[Scene]]
SOURCES: Registry[SceneSource] = Registry("scene source")
GROUP = "drope.scene_sources"


def get_source(name: str) -> SceneSource:
    """The registered source ``name``, loading installed entry points on first use."""
    if name not in SOURCES:
        for ep in entry_points(group=GROUP):
            if ep.name == name and ep.name not in SOURCES:
                SOURCES.register(ep.name)(ep.load())
    return SOURCES.get(name)


def generated_scenes(n: int, seed: int) -> list[Scene]:
    """``n`` procedurally generated scenes (the ``generated`` source, provided by ``drope.sim``)."""
    return get_source("generated")(n, seed)


def load_scenes(sources: Sequence[str], on_corrupt: str = "skip") -> list[Scene]:
    """Scenes from shard files, globs, cache directories (``drope-data cache`` output) or Argoverse 2
    scenario directories / split roots (format detected per path by :func:`drope.data.av2.is_av2_path`)."""
    from drope.data import cache
    from drope.data.av2 import is_av2_path, read_scenes
    from drope.data.womd import read_scenarios

    scenes: list[Scene] = []
    for src in sources:
        paths = sorted(glob.glob(str(src))) or [src]
        for p in map(Path, paths):
            if p.exists() and is_av2_path(p):
                scenes += list(read_scenes([p], on_corrupt=on_corrupt))
            elif p.is_dir():
                scenes += list(cache.load_cached_scenes(p))
            elif p.exists() and p.name.endswith(cache.CACHE_SUFFIX):
                scenes += cache.load_scenes(p)
            elif p.exists():
                scenes += list(read_scenarios(p, on_corrupt=on_corrupt))
            else:
                raise FileNotFoundError(f"no such data source: {p}")
    return scenes
