"""``TrainRun``: the schema of ``configs/train.yaml`` (drope-train's whole config).

The trainer's own settings are :class:`TrainConfig` (inherited here, so a field added there is a
``drope-train`` key at once); ``model`` is :class:`ModelConfig` (its ``encoding`` and ``features``
sections their own dataclasses), ``data`` says where scenes come from. Hydra merges the yaml, the
``model=<name>`` group file and ``key=value`` overrides into this dataclass, so a bad key or type
is refused naming it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from drope.model.config import ModelConfig
from drope.train.trainer import TrainConfig

SCHEMA = "train_schema"  # its name in hydra's ConfigStore (``defaults`` of configs/train.yaml)


@dataclass
class TrainData:
    train: list[str] = field(default_factory=list)  # WOMD shards (plain/gzip), drope-data caches, AV2 scenario dirs/split roots, globs; empty: generate
    val: list[str] = field(default_factory=list)  # the same kinds; empty: generate
    generate_train: int = 256  # generated scenes when train is empty (seed = seed)
    generate_val: int = 32  # generated validation scenes (seed = seed + 1000, never used in training)
    num_workers: int = 2  # DataLoader workers decoding streamed shards/caches (2 fits a 2-core machine; 0: in the main process)


@dataclass
class TrainRun(TrainConfig):
    model: ModelConfig = field(default_factory=ModelConfig)  # the group file model=<name> (configs/model/) then model.* overrides
    data: TrainData = field(default_factory=TrainData)

    def trainer_config(self) -> TrainConfig:
        """The :class:`TrainConfig` part (train.yaml sets its ``num_workers`` to ``${data.num_workers}``)."""
        return TrainConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)})
