"""Layers: rotary pose math, pose encodings, pose attention."""
from drope.nn.attention import PoseAttention, PoseTransformerLayer, radius_mask
from drope.nn.encodings import ENCODINGS, EncodingConfig, build_encoding

__all__ = ["ENCODINGS", "EncodingConfig", "PoseAttention", "PoseTransformerLayer", "build_encoding", "radius_mask"]
