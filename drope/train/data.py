"""Scene sources for training: the same functions evaluation uses (:mod:`drope.data.sources`)."""
from __future__ import annotations

from drope.data.sources import generated_scenes, load_scenes  # noqa: F401
