"""Model configuration (one dataclass, mirrored by ``configs/model/*.yaml``)."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields

from drope.data.features import FeatureSpec
from drope.nn.encodings import EncodingConfig

log = logging.getLogger(__name__)

# Flat ModelConfig keys of checkpoints written before the feature contract, and where they went.
_LEGACY_FEATURE_KEYS = {"history": "history", "future": "future", "map_points": "segment_points",
                        "a2a_radius": "a2a_radius", "m2a_radius": "m2a_radius", "m2m_radius": "m2m_radius"}


@dataclass
class ModelConfig:
    name: str = "drope_small"
    dim: int = 64
    num_heads: int = 4
    num_blocks: int = 2  # map→agent + agent→agent blocks
    map_layers: int = 1  # map self-attention layers
    num_modes: int = 6
    ff_mult: int = 2
    dropout: float = 0.0
    encoding: EncodingConfig = field(default_factory=EncodingConfig)  # agent/map interaction encoding
    temporal_time_pairs: int = 2  # time RoPE pairs per head in the temporal attention
    local_map_segments: int = 32  # k nearest map segments encoded in each agent's own frame (0: off)
    features: FeatureSpec = field(default_factory=FeatureSpec)  # history/horizon, map tokens, radii
    # interaction attention (map-map, map-agent, agent-agent): dense masks, radius graphs, or
    # auto (graphs when a scene is large and sparse; drope.model.transformer.ATTENTION_BACKENDS)
    attention_backend: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From yaml or a checkpoint's ``model_config``; bad keys/values are ``ValueError`` naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"model_config: expected a mapping, got {type(d).__name__}")
        d = dict(d)
        # checkpoints written before the field existed had no local-map encoder
        d.setdefault("local_map_segments", 0)
        legacy_keys = [k for k in _LEGACY_FEATURE_KEYS if k in d]
        legacy = {_LEGACY_FEATURE_KEYS[k]: d.pop(k) for k in legacy_keys}
        if "features" in d:
            if legacy:
                raise ValueError(f"model_config: feature settings {legacy_keys} belong under 'features', "
                                 "which is also given")
            features = FeatureSpec.from_dict(d.pop("features"), "model_config.features")
        else:
            features = FeatureSpec.from_dict(legacy, "model_config")
            log.warning("model_config has no 'features' block (written before the feature contract): %s from its "
                        "top-level keys, the rest WOMD defaults: %s", legacy_keys or "nothing", features)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model_config: unknown key(s) {unknown}")
        enc = d.pop("encoding", {})
        if not isinstance(enc, dict):
            raise ValueError(f"model_config.encoding: expected a mapping, got {type(enc).__name__}")
        return cls(encoding=EncodingConfig(**enc), features=features, **d)


def _feature_alias(key: str) -> property:
    return property(lambda self: getattr(self.features, key), doc=f"``features.{key}`` (read-only alias)")


# Read-only ``cfg.history``, ``cfg.map_points``, ... for callers written before the feature contract.
for _old, _new in _LEGACY_FEATURE_KEYS.items():
    setattr(ModelConfig, _old, _feature_alias(_new))
