"""Many distinct WOMD-sized scenes from a few real ones: rigid transforms and new ids.

Copy ``i`` of base scene ``scenes[i % len(scenes)]`` moves the whole world (agents, map,
signals) by a rotation ``θ_i`` about the world origin and a translation ``t_i``, both drawn
from ``(seed, i)``, and gets a new scenario id and new track ids. A Scene stores its tensors
in its own frame plus the world pose of that frame, so the move is exact and cheap: only
``origin_xy``/``origin_heading`` change (``p' = R(θ) p + t`` for every world point), while
the world coordinates written to TFRecord shards all change. Sizes (agents, map points,
bytes per scene) stay those of the base scenes, which is what data-pipeline benchmarks need.

Writers stream scene by scene and split the work over files in parallel processes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from drope.data.scene import Scene
from drope.geometry import rot2, wrap_angle

# track ids of copy i are offset by (i + 1) * TRACK_ID_STRIDE (unique within a scene, new per copy)
TRACK_ID_STRIDE = 1_000_000
TRANSLATION_M = 5_000.0  # WOMD worlds span roughly ±8 km
MANIFEST = "scenes.json"


def rigid_copy(scene: Scene, i: int, seed: int = 0) -> Scene:
    """Copy ``i`` of ``scene``: the world rotated by θ and shifted by t (drawn from ``(seed, i)``)."""
    rng = np.random.default_rng([seed, i])
    theta = float(rng.uniform(-math.pi, math.pi))
    t = rng.uniform(-TRANSLATION_M, TRANSLATION_M, 2)
    origin = rot2(scene.origin_xy.double().numpy(), theta) + t
    off = (i + 1) * TRACK_ID_STRIDE
    return dataclasses.replace(
        scene,
        scenario_id=f"{scene.scenario_id}-rigid{i:07d}",
        origin_xy=torch.from_numpy(origin),
        origin_heading=wrap_angle(scene.origin_heading.double() + theta),
        agent_id=scene.agent_id + off,
        objects_of_interest=scene.objects_of_interest + off,
    )


def rigid_copies(scenes: Sequence[Scene], n: int, seed: int = 0, start: int = 0) -> Iterator[Scene]:
    """Copies ``start .. start + n - 1`` (copy ``i`` is made from ``scenes[i % len(scenes)]``)."""
    if not scenes:
        raise ValueError("rigid_copies: no base scenes")
    for i in range(start, start + n):
        yield rigid_copy(scenes[i % len(scenes)], i, seed)


def base_scenes(path: str | Path | None = None) -> list[Scene]:
    """Base scenes from shards / a cache (default: the shared WOMD scenario, drope.samples)."""
    from drope.data.sources import load_scenes
    from drope.samples import womd_sample

    p = Path(path) if path is not None else womd_sample()
    if not p.exists():
        raise FileNotFoundError(f"base scenes not found: {p} (set DROPE_WOMD_SAMPLE or pass a path)")
    return load_scenes([str(p)], on_corrupt="raise")


def _write_one(fmt: str, base: str | None, out: str, start: int, n: int, seed: int) -> int:
    scenes = rigid_copies(base_scenes(base), n, seed, start)
    if fmt == "cache":
        from drope.data.cache import save_scenes

        return save_scenes(out, scenes)[0]
    from drope.data.womd import write_scenarios

    return write_scenarios(out, scenes)


FORMATS = {"cache": "part-{:05d}.scenes.npz", "tfrecord": "part-{:05d}.tfrecord"}


def write_dataset(out_dir: str | Path, n: int, fmt: str = "cache", per_file: int = 100, seed: int = 0,
                  base: str | Path | None = None, workers: int = 2) -> list[Path]:
    """``n`` rigid copies of the base scenes as a cache directory (``fmt="cache"``, readable by
    drope-train like ``drope-data cache`` output) or as TFRecord Scenario shards (``"tfrecord"``).

    A directory whose manifest records the same request is reused as it is (benchmarks rebuild
    nothing); any other content is replaced.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {sorted(FORMATS)}")
    if n < 1 or per_file < 1:
        raise ValueError(f"write_dataset: n={n} and per_file={per_file} must be >= 1")
    out = Path(out_dir)
    from drope.data.cache import FORMAT_VERSION
    from drope.data.shard_index import INDEX_NAME, write_index

    want = {"n": n, "format": fmt, "per_file": per_file, "seed": seed, "base": str(base) if base else "womd_sample",
            "cache_format": FORMAT_VERSION}
    paths = [out / FORMATS[fmt].format(k) for k in range(math.ceil(n / per_file))]
    man = out / MANIFEST
    if man.exists() and json.loads(man.read_text()) == want and all(p.exists() for p in paths):
        if not (out / INDEX_NAME).exists():
            write_index(out, workers=workers)
        return paths
    out.mkdir(parents=True, exist_ok=True)
    man.unlink(missing_ok=True)
    for old in [*out.glob("part-*"), *out.glob("drope-index.*")]:
        old.unlink()
    jobs = [(fmt, str(base) if base else None, str(p), k * per_file, min(per_file, n - k * per_file), seed)
            for k, p in enumerate(paths)]
    if workers <= 1:
        for j in jobs:
            _write_one(*j)
    else:
        # spawn: forking a process with running torch threads can deadlock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_write_one, *zip(*jobs)))
    write_index(out, workers=workers)  # as drope-data cache / drope-data index leave it
    man.write_text(json.dumps(want))
    return paths
