"""Model configuration (one dataclass, mirrored by ``configs/model/*.yaml``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from drope.nn.encodings import EncodingConfig


@dataclass
class ModelConfig:
    name: str = "drope_small"
    dim: int = 64
    num_heads: int = 4
    num_blocks: int = 2  # map→agent + agent→agent blocks
    map_layers: int = 1  # map self-attention layers
    num_modes: int = 6
    history: int = 11
    future: int = 80
    map_points: int = 8
    ff_mult: int = 2
    dropout: float = 0.0
    a2a_radius: float = 60.0  # metres; agents farther apart do not attend
    m2a_radius: float = 50.0
    m2m_radius: float = 40.0
    encoding: EncodingConfig = field(default_factory=EncodingConfig)  # agent/map interaction encoding
    temporal_time_pairs: int = 2  # time RoPE pairs per head in the temporal attention
    local_map_segments: int = 32  # k nearest map segments encoded in each agent's own frame (0: off)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        # checkpoints written before the field existed had no local-map encoder
        d.setdefault("local_map_segments", 0)
        enc = EncodingConfig(**d.pop("encoding", {}))
        return cls(encoding=enc, **d)
