"""``drope-train [key=value ...]``: train the DRoPE transformer (hydra overrides on configs/train.yaml).

Examples:
  drope-train steps=300 out=runs/small                      # generated data, drope_small
  drope-train data.train='[shards/*.tfrecord]' model=drope_base model.encoding.name=rpe
  drope-train out=runs/small resume=auto                     # continue an interrupted run exactly
  torchrun --nproc_per_node=2 -m drope.train.cli ...          # DDP (rank 0 logs and checkpoints)
  drope-train 'augment.current_steps=[10,20,30,40,50,60,70,80]' augment.perturb_prob=0.5 augment.perturb_lateral_m=0.5
                                                             # closed-loop augmentation (drope.train.augment)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from drope.configs import config_dir

CONFIG_DIR = config_dir()


def load_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def configs_from(cfg):
    from drope.model import ModelConfig
    from drope.train.augment import AugmentConfig
    from drope.train.loss import LossWeights
    from drope.train.trainer import TrainConfig

    d = OmegaConf.to_container(cfg, resolve=True)
    model = ModelConfig.from_dict(d.pop("model"))
    data = d.pop("data")
    loss = LossWeights(**d.pop("loss"))
    augment = AugmentConfig(**d.pop("augment", {}))
    return TrainConfig(loss=loss, augment=augment, **d), model, data


def run(overrides: list[str]) -> dict:
    from drope.train.data import generated_scenes, load_scenes
    from drope.train.trainer import Trainer

    cfg = load_config(overrides)
    tcfg, mcfg, data = configs_from(cfg)
    tcfg = dataclasses.replace(tcfg, num_workers=int(data.get("num_workers", 0)))
    train = load_scenes(data["train"]) if data["train"] else generated_scenes(data["generate_train"], tcfg.seed)
    val = load_scenes(data["val"]) if data["val"] else generated_scenes(data["generate_val"], tcfg.seed + 1000)
    trainer = Trainer(tcfg, mcfg, train, val, resolved_config=OmegaConf.to_container(cfg, resolve=True))
    result = trainer.fit()
    if trainer.val and trainer.rank == 0:
        result["val"] = trainer.validate()
    result["rank"] = trainer.rank
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="hydra overrides key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.show_config:
            print(OmegaConf.to_yaml(load_config(args.overrides)))
            return 0
        result = run(args.overrides)
    except (FileNotFoundError, ValueError) as e:
        print(f"drope-train: {e}", file=sys.stderr)
        return 2
    if result.pop("rank") == 0:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
