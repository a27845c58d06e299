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
from dataclasses import dataclass, field
from pathlib import Path

from drope.configs.schema import ConfigError, compose, describe, register, to_object, yaml_files
from drope.sim.generate.scenario import GeneratorConfig

SCHEMA = "generate_schema"  # its name in hydra's ConfigStore (``defaults`` of configs/generate/default.yaml)
log = logging.getLogger(__name__)


@dataclass
class GenerateConfig:
    out: str = "generated"  # output directory (relative to the current directory)
    num_scenes: int = 100
    seed: int = 0  # scene i depends only on (seed, i)
    scenes_per_shard: int = 50
    workers: int = 2  # parallel processes (0: all cores)
    compress: bool = False  # gzip shards (.tfrecord.gz)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # layouts (mix) and traffic


def load_config(overrides: list[str], name: str = "default") -> GenerateConfig:
    """``configs/generate/<name>.yaml`` with ``key=value`` overrides, typed; bad keys/values name the key."""
    register(SCHEMA, GenerateConfig)
    return to_object(compose("generate", name, overrides), GenerateConfig)


def generator_config(cfg: GenerateConfig) -> GeneratorConfig:
    return cfg.generator


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
    names = [f.stem for f in yaml_files("generate")]
    p.add_argument("--config", default="default", choices=names, help="config file in configs/generate/")
    p.add_argument("--show-config", action="store_true", help="print every key with its value and comment, and exit")
    p.add_argument("overrides", nargs="*", help="hydra overrides key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.overrides, args.config)
    except ConfigError as e:  # hydra/OmegaConf name the bad key
        print(f"drope-generate: bad config or override: {e}", file=sys.stderr)
        return 2
    if args.show_config:
        print(describe(cfg))
        return 0
    t0 = time.perf_counter()
    shards = generate(cfg.out, cfg.num_scenes, cfg.seed, cfg.scenes_per_shard, cfg.workers, cfg.compress,
                      cfg.generator)
    dt = time.perf_counter() - t0
    print(f"wrote {cfg.num_scenes} scenes in {len(shards)} shard(s) to {cfg.out} in {dt:.1f} s "
          f"({cfg.num_scenes / dt:.1f} scenes/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
