"""Scene sources for training (re-exported from :mod:`drope.data.sources`, where evaluation finds them too)."""
from drope.data.sources import generated_scenes, load_scenes  # noqa: F401
