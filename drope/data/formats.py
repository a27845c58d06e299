"""Scene file formats behind one reader: the dataset is chosen at the data boundary, by name or by path.

Every command reads through :func:`read_scenes`, so nothing downstream of a Scene knows which
dataset it came from (only ``scene.source`` says). A format is detected from the path (formats are
tried by ascending ``priority``; WOMD TFRecord shards are the fallback for any other file) or named
explicitly (``fmt="av2"``). A new dataset is one :class:`SceneFormat` registered here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from drope.data.scene import Scene
from drope.registry import Registry

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "SceneFormat", "detect_format", "read_scenes"]


@dataclass(frozen=True)
class SceneFormat:
    """``detect(path)``: whether ``path`` holds this format; ``read(path, on_corrupt, stats)``:
    its Scenes, counting good records in ``stats.records`` and skipped ones in ``stats.skipped``."""

    name: str
    priority: int
    detect: Callable[[Path], bool]
    read: Callable[[Path, str, object], Iterator[Scene]]


FORMATS: Registry[SceneFormat] = Registry("scene format")


def _register(fmt: SceneFormat) -> SceneFormat:
    return FORMATS.register(fmt.name)(fmt)


def _read_av2(path: Path, on_corrupt: str, stats) -> Iterator[Scene]:
    from drope.data.av2 import Av2FormatError, av2_scenario_paths, read_av2_scenario

    for scenario in av2_scenario_paths(path):
        try:
            scene = read_av2_scenario(scenario)
        except (Av2FormatError, FileNotFoundError) as e:
            # one broken scenario directory must not end a pass over a 250k-scenario split
            if on_corrupt == "raise":
                raise
            stats.skipped += 1
            log.warning("skipping AV2 scenario %s: %s", scenario, e)
            continue
        stats.records += 1
        yield scene


def _read_womd(path: Path, on_corrupt: str, stats) -> Iterator[Scene]:
    from drope.data.womd import read_scenarios

    return read_scenarios([path], on_corrupt=on_corrupt, stats=stats)


def _is_av2(path: Path) -> bool:
    from drope.data.av2 import is_av2_path

    return is_av2_path(path)


_register(SceneFormat("av2", 0, _is_av2, _read_av2))
_register(SceneFormat("womd", 100, lambda p: p.is_file(), _read_womd))


def detect_format(path: str | Path) -> str:
    """Name of the format of ``path`` (a missing path is reported by the WOMD reader, which names it)."""
    p = Path(path)
    for fmt in sorted((FORMATS.get(n) for n in FORMATS), key=lambda f: f.priority):
        if fmt.detect(p):
            return fmt.name
    return "womd"


def read_scenes(
    paths: str | Path | Sequence[str | Path],
    on_corrupt: str = "raise",
    stats=None,
    fmt: str | None = None,
) -> Iterator[Scene]:
    """Stream Scenes from files or directories of any registered format, in path order.

    ``fmt=None`` detects the format per path; a name forces it. ``on_corrupt="skip"`` logs and
    counts (in ``stats.skipped``) unreadable records or scenario directories instead of raising.
    """
    from drope.data.womd import ReadStats

    if on_corrupt not in ("raise", "skip"):
        raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    stats = stats if stats is not None else ReadStats()
    for p in map(Path, paths):
        yield from FORMATS.get(fmt or detect_format(p)).read(p, on_corrupt, stats)
