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
import json
import logging
import sys

from omegaconf import OmegaConf

from drope.configs.schema import ConfigError, compose, describe, register, to_object


def load_config(overrides: list[str]):
    """``configs/train.yaml`` merged into the :class:`drope.train.config.TrainRun` schema with the
    ``model=<name>`` group file and ``key=value`` overrides (a DictConfig; :func:`typed` for the
    dataclass). A bad key or value raises :class:`ConfigError` naming it."""
    from drope.train.config import SCHEMA, TrainRun

    register(SCHEMA, TrainRun)
    return compose("", "train", overrides)


def typed(cfg):
    """The composed config as :class:`drope.train.config.TrainRun` (dataclass checks run)."""
    from drope.train.config import TrainRun

    return to_object(cfg, TrainRun)


def configs_from(cfg):
    """``(TrainConfig, ModelConfig, TrainData)`` of a composed config."""
    run = typed(cfg)
    return run.trainer_config(), run.model, run.data


def run(overrides: list[str]) -> dict:
    from drope.train.data import generated_scenes, load_scenes
    from drope.train.trainer import Trainer

    cfg = load_config(overrides)
    tcfg, mcfg, data = configs_from(cfg)
    train = load_scenes(data.train) if data.train else generated_scenes(data.generate_train, tcfg.seed)
    val = load_scenes(data.val) if data.val else generated_scenes(data.generate_val, tcfg.seed + 1000)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="drope-train", description=__doc__, add_help=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action="store_true", help="this text and every key with its default and comment")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="hydra overrides key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.help:
            p.print_help()
            print("\nKeys (drope.train.config.TrainRun with configs/train.yaml and the overrides given):\n")
            print(describe(typed(load_config(args.overrides))))
            return 0
        if args.show_config:
            print(OmegaConf.to_yaml(load_config(args.overrides), resolve=True))
            return 0
        result = run(args.overrides)
    except ConfigError as e:
        print(f"drope-train: bad config or override: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"drope-train: {e}", file=sys.stderr)
        return 2
    if result.pop("rank") == 0:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
