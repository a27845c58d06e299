"""The DRoPE agent-interaction transformer. See :mod:`drope.model.transformer` for the forward contract."""
from drope.model.config import ModelConfig
from drope.model.transformer import DRoPETransformer, build_model, to_scene_frame

__all__ = ["DRoPETransformer", "ModelConfig", "build_model", "to_scene_frame"]
