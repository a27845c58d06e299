"""Compact on-disk training cache: one zip of ``.npy`` members (an ``.npz``) per source shard.

Layout of ``<shard name>.scenes.npz``: every Scene tensor field of scene ``i`` is the member
``"{i}/{field}"`` (fields are looped, never listed), and a JSON ``meta`` member holds the format
version, the source shard's name/size/mtime and each scene's scalars. Members are deflated
individually, so one scene can be read without decompressing the rest of the shard, and the
writer streams scene by scene (a shard never sits in memory as a whole).

Positions stay float32: float16 would quantise ±300 m scene coordinates to 0.25 m. Invalid
agent states are zero, which deflates well (WOMD sample: 0.31 MB per scene, source 0.95 MB).

Resumable: files are written to a temporary name and renamed when complete; a later run skips
shards whose cache file exists and was made from a source of the same size and mtime.
"""
from __future__ import annotations

import multiprocessing

import io
import json
import logging
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from drope.data.scene import Scene

log = logging.getLogger(__name__)

CACHE_SUFFIX = ".scenes.npz"
FORMAT_VERSION = 1
_SCALARS = ("scenario_id", "source", "current_index", "sdc_index", "dt")


class CacheError(ValueError):
    """A cache directory or file that cannot be used (name clash, unreadable, wrong version)."""


def cache_path_for(shard: str | Path, out_dir: str | Path) -> Path:
    return Path(out_dir) / (Path(shard).name + CACHE_SUFFIX)


def _source_meta(shard: Path | None) -> dict | None:
    if shard is None:
        return None
    st = shard.stat()
    return {"name": shard.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def save_scenes(path: str | Path, scenes: Iterable[Scene], source: Path | None = None) -> tuple[int, int]:
    """Stream scenes into one cache file (atomically). Returns ``(scenes written, bytes on disk)``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    meta: dict = {"format": FORMAT_VERSION, "source": _source_meta(source), "scenes": []}
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for i, scene in enumerate(scenes):
                meta["scenes"].append({k: getattr(scene, k) for k in _SCALARS})
                for f in Scene.tensor_fields():
                    with zf.open(f"{i}/{f.name}.npy", "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, getattr(scene, f.name).cpu().numpy(), allow_pickle=False)
            zf.writestr("meta.npy", _npy_bytes(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(meta["scenes"]), path.stat().st_size


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def read_meta(path: str | Path) -> dict:
    """The ``meta`` record of a cache file; raises :class:`CacheError` if it is not one."""
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise CacheError(f"{path}: not a drope scene cache file ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CacheError(f"{path}: cache format {meta.get('format') if isinstance(meta, dict) else '?'} "
                         f"is not {FORMAT_VERSION}; rebuild it with drope-data cache")
    return meta


def _scene_from_npz(z, meta: dict, i: int) -> Scene:
    return Scene(**meta["scenes"][i], **{f.name: torch.from_numpy(z[f"{i}/{f.name}"]) for f in Scene.tensor_fields()})


def load_scene(path: str | Path, index: int) -> Scene:
    """Scene ``index`` of one cache file (only its members are decompressed)."""
    meta = read_meta(path)
    with np.load(path) as z:
        return _scene_from_npz(z, meta, index)


def load_scenes(path: str | Path) -> list[Scene]:
    """All scenes of one cache file."""
    meta = read_meta(path)
    with np.load(path) as z:
        return [_scene_from_npz(z, meta, i) for i in range(len(meta["scenes"]))]


def cache_files(cache_dir: str | Path) -> list[Path]:
    d = Path(cache_dir)
    if not d.is_dir():
        raise CacheError(f"cache directory {d} does not exist")
    return sorted(d.glob("*" + CACHE_SUFFIX))


def load_cached_scenes(cache_dir: str | Path) -> Iterator[Scene]:
    """Stream every scene of a cache directory (files in name order, scenes in record order)."""
    for path in cache_files(cache_dir):
        meta = read_meta(path)
        with np.load(path) as z:
            for i in range(len(meta["scenes"])):
                yield _scene_from_npz(z, meta, i)


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
    n, size = save_scenes(
        cache_path_for(shard, out_dir), read_scenarios(shard, on_corrupt=on_corrupt, stats=stats), source=Path(shard)
    )
    return n, size, stats.skipped


def _is_current(shard: Path, out: Path) -> bool:
    """True if ``shard``'s cache file exists and was built from this very source file."""
    path = cache_path_for(shard, out)
    if not path.exists():
        return False
    try:
        meta = read_meta(path)
    except CacheError as e:
        log.warning("rebuilding %s: %s", path, e)
        return False
    if meta.get("source") != _source_meta(shard):
        log.warning("rebuilding %s: its source %s changed since it was cached", path, shard)
        return False
    return True


def build_cache(
    shards: Sequence[str | Path],
    out_dir: str | Path,
    workers: int | None = None,
    on_corrupt: str = "raise",
    progress: bool = True,
) -> CacheReport:
    """Convert Scenario shards into cache files under ``out_dir``, in parallel over files.

    Shards with an up-to-date cache file are skipped (resume after an interruption). Shards
    with the same file name in different folders would map to one cache file: that raises
    :class:`CacheError`.
    """
    from tqdm import tqdm

    shards = [Path(s) for s in shards]
    for s in shards:
        if not s.is_file():
            raise FileNotFoundError(f"no such scenario file: {s}")
    names: dict[str, Path] = {}
    for s in shards:
        if s.name in names and names[s.name].resolve() != s.resolve():
            raise CacheError(f"shards {names[s.name]} and {s} share the file name {s.name!r}; cache them separately")
        names[s.name] = s
    shards = list(names.values())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = CacheReport()
    todo = []
    for s in shards:
        if _is_current(s, out):
            report.shards_skipped += 1
        else:
            todo.append(str(s))
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    with tqdm(total=len(todo), desc="cache", unit="shard", disable=not progress) as bar:
        if workers == 1:
            for s in todo:
                report.add(*_cache_one(s, str(out), on_corrupt))
                bar.update()
        else:
            # spawn, not fork: forking a process whose torch/OpenMP threads are running can deadlock
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_cache_one, s, str(out), on_corrupt) for s in todo]
                for fut in as_completed(futures):
                    report.add(*fut.result())
                    bar.update()
    return report


class CachedSceneDataset(Dataset):
    """A map-style dataset of Scenes from a cache directory.

    Item ``i`` decompresses only its own scene. Open files are cached per process (reopened
    after a fork, so DataLoader workers never share a file offset).
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.files = cache_files(cache_dir)
        if not self.files:
            raise CacheError(f"no cache files (*{CACHE_SUFFIX}) in {cache_dir}")
        self._meta = [read_meta(p) for p in self.files]
        self.index: list[tuple[int, int]] = [
            (fi, i) for fi, meta in enumerate(self._meta) for i in range(len(meta["scenes"]))
        ]
        self._open: dict[int, object] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Scene:
        fi, si = self.index[i]
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        z = self._open.get(fi)
        if z is None:
            z = self._open[fi] = np.load(self.files[fi])
        return _scene_from_npz(z, self._meta[fi], si)

    def __getstate__(self) -> dict:  # open files do not pickle (spawned DataLoader workers)
        return {**self.__dict__, "_open": {}}
