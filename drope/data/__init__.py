"""Data layer: the typed :class:`Scene`, WOMD I/O, scene graphs and the training cache."""
from drope.data.scene import Scene, SceneValidationError, WorldCoords, scene_from_world

__all__ = ["Scene", "SceneValidationError", "WorldCoords", "scene_from_world"]
