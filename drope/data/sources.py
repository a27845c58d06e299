"""Scene sources that are not files: a registry that other packages plug into.

The library must not import the simulator (layers point down), yet ``drope-train``/``drope-eval``
default to generated scenes. The generator registers itself under the entry-point group
``drope.scene_sources`` (see pyproject.toml); this module finds it by name at call time.

A source is ``fn(n: int, seed: int) -> list[Scene]``: scene ``i`` depends only on ``(seed, i)``.
File sources (:func:`load_scenes`) stream through :mod:`drope.data.stream`.
"""
from __future__ import annotations

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


def load_scenes(sources: str | Sequence[str], on_corrupt: str = "skip", origin: str = "sdc"):
    """The scenes of shard files, globs, cache directories (``drope-data cache`` output) and Argoverse 2
    scenario directories / split roots, in any mix, as a lazy
    :class:`drope.data.stream.SceneStreamDataset` (an index in memory, one scene decoded per access).

    This is the one way drope-train and drope-eval read data (generated scenes come from
    :func:`generated_scenes` and go through :func:`drope.data.stream.as_dataset`). ``on_corrupt``:
    ``"skip"`` (a damaged record reads as ``None``, logged and counted) or ``"raise"``. A missing or
    empty source raises :class:`drope.data.stream.SourceError` (a ``FileNotFoundError``) naming it.
    """
    from drope.data.stream import SceneStreamDataset

    return SceneStreamDataset([sources] if isinstance(sources, (str, Path)) else list(map(str, sources)),
                              origin=origin, on_corrupt=on_corrupt)
