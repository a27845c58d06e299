"""Compact on-disk training cache: one compressed ``.npz`` per source shard.

Every Scene tensor field is stored under ``"{scene}/{field}"`` (fields are looped, never
listed); scalars and strings go into a JSON ``meta`` entry. Positions stay float32 (float16
would quantise ±300 m scene coordinates to 0.25 m); invalid states are zero, which compresses
well. Writing is atomic (temp file + rename), so an interrupted run resumes by skipping shards
whose cache file exists.
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from drope.data.scene import Scene

log = logging.getLogger(__name__)

CACHE_SUFFIX = ".scenes.npz"
_SCALARS = ("scenario_id", "source", "current_index", "sdc_index", "dt")


def cache_path_for(shard: Path, out_dir: Path) -> Path:
    return out_dir / (shard.name + CACHE_SUFFIX)


def save_scenes(path: str | Path, scenes: Sequence[Scene]) -> int:
    """Write scenes to one compressed npz (atomically). Returns bytes written."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, scene in enumerate(scenes):
        meta.append({k: getattr(scene, k) for k in _SCALARS})
        for f in Scene.tensor_fields():
            arrays[f"{i}/{f.name}"] = getattr(scene, f.name).cpu().numpy()
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path.stat().st_size


def load_scenes(path: str | Path) -> list[Scene]:
    """Read all scenes of one cache file."""
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        return [
            Scene(**m, **{f.name: torch.from_numpy(z[f"{i}/{f.name}"]) for f in Scene.tensor_fields()})
            for i, m in enumerate(meta)
        ]


@dataclass
class CacheReport:
    shards_written: int = 0
    shards_skipped: int = 0
    scenes: int = 0
    bytes: int = 0
    corrupt_records: int = 0

    def add(self, scenes: int, size: int, corrupt: int) -> None:
        self.shards_written += 1
        self.scenes += scenes
        self.bytes += size
        self.corrupt_records += corrupt

    @property
    def bytes_per_scene(self) -> float:
        return self.bytes / max(self.scenes, 1)


def _cache_one(shard: str, out_dir: str, on_corrupt: str) -> tuple[int, int, int]:
    from drope.data.womd import ReadStats, read_scenarios

    stats = ReadStats()
    scenes = list(read_scenarios(shard, on_corrupt=on_corrupt, stats=stats))
    size = save_scenes(cache_path_for(Path(shard), Path(out_dir)), scenes)
    return len(scenes), size, stats.skipped


def build_cache(
    shards: Sequence[str | Path], out_dir: str | Path, workers: int | None = None, on_corrupt: str = "raise",
    progress: bool = True,
) -> CacheReport:
    """Convert Scenario shards into cache files under ``out_dir``, in parallel over files.

    Shards whose cache file already exists are skipped (resume after interruption).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = CacheReport()
    todo = []
    for s in map(Path, shards):
        if cache_path_for(s, out).exists():
            report.shards_skipped += 1
        else:
            todo.append(str(s))
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(total=len(todo), desc="cache", unit="shard", disable=not progress)
    if workers == 1:
        results = (_cache_one(s, str(out), on_corrupt) for s in todo)
        for n, size, bad in results:
            report.add(n, size, bad)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(_cache_one, s, str(out), on_corrupt) for s in todo]
            for fut in as_completed(futures):
                n, size, bad = fut.result()
                report.add(n, size, bad)
                bar.update()
    bar.close()
    return report


def iter_cached_scenes(cache_dir: str | Path) -> Iterator[Scene]:
    for path in sorted(Path(cache_dir).glob("*" + CACHE_SUFFIX)):
        yield from load_scenes(path)


class CachedSceneDataset(Dataset):
    """A map-style dataset of Scenes from a cache directory (files loaded lazily, one at a time)."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.files = sorted(Path(cache_dir).glob("*" + CACHE_SUFFIX))
        if not self.files:
            raise FileNotFoundError(f"no cache files (*{CACHE_SUFFIX}) in {cache_dir}")
        self.index: list[tuple[int, int]] = []
        for fi, path in enumerate(self.files):
            with np.load(path) as z:
                n = len(json.loads(z["meta"].tobytes().decode()))
            self.index.extend((fi, i) for i in range(n))
        self._loaded: tuple[int, list[Scene]] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Scene:
        fi, si = self.index[i]
        if self._loaded is None or self._loaded[0] != fi:
            self._loaded = (fi, load_scenes(self.files[fi]))
        return self._loaded[1][si]
