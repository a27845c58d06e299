"""``drope-generate out=DIR num_scenes=N seed=S [key=value ...]``: synthetic WOMD-format shards.

Overrides use hydra syntax on ``configs/generate/default.yaml`` (e.g.
``generator.traffic.vehicle_rate=0.2``); ``--config dense`` picks another file of that folder.
Scene ``i`` depends only on (seed, i), so output is identical for any number of workers.
"""
from __future__ import annotations

import multiprocessing

import argparse
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from omegaconf import OmegaConf

from drope.configs import config_dir

CONFIG_DIR = config_dir("generate")
log = logging.getLogger(__name__)


def load_config(overrides: list[str], name: str = "default"):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def generator_config(cfg) -> "GeneratorConfig":
    from drope.sim.generate.scenario import GeneratorConfig, ScenarioMix
    from drope.sim.generate.microsim import TrafficConfig

    g = OmegaConf.to_container(cfg.generator, resolve=True)
    traffic = g.pop("traffic")
    traffic["green_s"] = tuple(traffic["green_s"])
    return GeneratorConfig(mix=ScenarioMix(**g.pop("mix")), traffic=TrafficConfig(**traffic), **g)


def _write_shard(args) -> tuple[str, int, dict]:
    path, indices, seed, gcfg = args
    cpu0 = time.process_time()
    import torch

    torch.set_num_threads(1)
    from drope.data.womd import write_scenarios
    from drope.sim.generate.scenario import generate_scene

    stats = {"rejected_overlap": 0, "rejected_no_sdc": 0}
    scenes = []
    for i in indices:
        scene, info = generate_scene(seed, i, gcfg)
        for k in stats:
            stats[k] += info[k]
        scenes.append(scene.validate())
    write_scenarios(path, scenes)
    stats["cpu_s"] = time.process_time() - cpu0  # this worker's CPU time: per-core throughput under contention
    return str(path), len(scenes), stats


def generate(out: str | Path, num_scenes: int, seed: int = 0, scenes_per_shard: int = 50, workers: int = 2,
             compress: bool = False, gcfg=None, progress: bool = True, stats: dict | None = None) -> list[Path]:
    """Write ``num_scenes`` scenes into shards under ``out``; returns the shard paths.

    ``stats``, when given, receives the totals: redrawn scenes and workers' CPU seconds (``cpu_s``).
    """
    from tqdm import tqdm

    from drope.sim.generate.scenario import GeneratorConfig

    if num_scenes < 1:
        raise ValueError("num_scenes must be ≥ 1")
    gcfg = gcfg or GeneratorConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_shards = (num_scenes + scenes_per_shard - 1) // scenes_per_shard
    suffix = ".tfrecord.gz" if compress else ".tfrecord"
    jobs = [
        (out / f"generated-{k:05d}-of-{n_shards:05d}{suffix}",
         range(k * scenes_per_shard, min(num_scenes, (k + 1) * scenes_per_shard)), seed, gcfg)
        for k in range(n_shards)
    ]
    workers = workers or os.cpu_count() or 1
    totals = {"rejected_overlap": 0, "rejected_no_sdc": 0, "cpu_s": 0.0}
    bar = tqdm(total=num_scenes, unit="scene", desc="generate", disable=not progress)
    pool = None
    if workers == 1 or n_shards == 1:
        results = map(_write_shard, jobs)
    else:
        # spawn, not fork: forking a process whose torch/OpenMP threads are running can deadlock
        pool = ProcessPoolExecutor(min(workers, n_shards), mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_write_shard, jobs)
    try:
        for _, n, st in results:
            bar.update(n)
            for k in totals:
                totals[k] += st[k]
    finally:
        if pool is not None:
            pool.shutdown()
        bar.close()
    if totals["rejected_overlap"] or totals["rejected_no_sdc"]:
        log.info("redrawn scenes: %s", totals)
    if stats is not None:
        stats.update(totals)
    return [j[0] for j in jobs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: drope-generate out=data/gen num_scenes=2000 seed=0 workers=2")
    p.add_argument("--config", default="default", help=f"config file in {CONFIG_DIR.name}/ (default, dense, intersections)")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="hydra overrides key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.overrides, args.config)
    except Exception as e:  # hydra reports bad keys/values with its own exception types
        print(f"drope-generate: bad config or override: {e}", file=sys.stderr)
        return 2
    if args.show_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    t0 = time.perf_counter()
    shards = generate(cfg.out, cfg.num_scenes, cfg.seed, cfg.scenes_per_shard, cfg.workers, cfg.compress,
                      generator_config(cfg))
    dt = time.perf_counter() - t0
    print(f"wrote {cfg.num_scenes} scenes in {len(shards)} shard(s) to {cfg.out} in {dt:.1f} s "
          f"({cfg.num_scenes / dt:.1f} scenes/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
