"""Compact on-disk training cache: one zip per source shard, one deflated member per scene.

Layout of ``<shard name>.scenes.npz`` (format 2): member ``"{i}"`` holds scene ``i``: its scalars and
field names (a JSON ``.npy`` of bytes) followed by its tensor fields as ``.npy`` arrays in the order of
``meta["fields"]``; the member ``meta.npy`` (JSON) holds the format version, the source's
name/size/mtime, the field names and each scene's scalars. One member per scene keeps a file's zip
directory at one entry per scene (format 1 had one member per tensor field, 27 per scene, and an
open WOMD-sized file held ~1 MB of directory per 100 scenes): opening a file to read one scene is
cheap, so a reader keeps only a few files open. The writer streams scene by scene (a shard never
sits in memory as a whole).

Positions stay float32: float16 would quantise ±300 m scene coordinates to 0.25 m. Invalid
agent states are zero, which deflates well (WOMD sample: 0.31 MB per scene, source 0.95 MB).

Resumable: files are written to a temporary name and renamed when complete; a later run skips
shards whose cache file exists and was made from a source of the same size and mtime. When a run
ends, the directory's index (:mod:`drope.data.shard_index`) is rewritten, so a reader learns every
file's scene count without opening the files.

Argoverse 2 has no shards (one directory per scenario): a scenario directory named as input is its
own cache file, and a split root is cut into files of ``scenes_per_file`` scenario directories
(``<root>-00000.scenes.npz`` ...), whose source record lists their directories, sizes and mtimes.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from drope.data import shard_index
from drope.data.scene import Scene

log = logging.getLogger(__name__)

CACHE_SUFFIX = ".scenes.npz"
FORMAT_VERSION = 2
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


@dataclass(frozen=True)
class CacheUnit:
    """The inputs of one cache file: a WOMD shard, or a group of AV2 scenario directories."""

    name: str
    paths: tuple[Path, ...]

    @property
    def grouped(self) -> bool:
        return len(self.paths) != 1 or self.paths[0].is_dir()

    def source_meta(self) -> dict:
        if not self.grouped:
            return _source_meta(self.paths[0])
        files = sorted(f for p in self.paths for f in ([p] if p.is_file() else p.iterdir()) if f.is_file())
        digest = hashlib.sha1()
        for f in files:  # every file's name, size and mtime: a changed scenario rebuilds its chunk
            st = f.stat()
            digest.update(f"{f.parent.name}/{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        return {"name": self.name, "scenarios": [p.name for p in self.paths], "files_sha1": digest.hexdigest()}


def cache_units(inputs: Sequence[str | Path], scenes_per_file: int = 1000) -> list[CacheUnit]:
    """One unit per WOMD shard or named AV2 scenario, and ``ceil(n / scenes_per_file)`` per AV2 split root."""
    from drope.data.av2 import av2_scenario_paths, is_av2_path

    if scenes_per_file < 1:
        raise ValueError(f"scenes_per_file must be at least 1, got {scenes_per_file}")
    units: list[CacheUnit] = []
    for p in map(Path, inputs):
        if not p.exists():
            raise FileNotFoundError(f"no such scenario file or directory: {p}")
        if p.is_dir() and is_av2_path(p):
            dirs = av2_scenario_paths(p)
            if dirs == [p]:
                units.append(CacheUnit(p.name, (p,)))
                continue
            for k in range(0, len(dirs), scenes_per_file):
                units.append(CacheUnit(f"{p.name}-{k // scenes_per_file:05d}", tuple(dirs[k : k + scenes_per_file])))
        elif p.is_dir():
            raise FileNotFoundError(f"{p} is a directory without AV2 scenarios; name the shard files instead")
        else:
            units.append(CacheUnit(p.name, (p,)))
    return units


def save_scenes(
    path: str | Path, scenes: Iterable[Scene], source: Path | None = None, source_meta: dict | None = None
) -> tuple[int, int]:
    """Stream scenes into one cache file (atomically). Returns ``(scenes written, bytes on disk)``.

    ``source`` (a shard) or ``source_meta`` (any record) is what a later run compares to resume."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fields = [f.name for f in Scene.tensor_fields()]
    meta: dict = {"format": FORMAT_VERSION, "source": source_meta or _source_meta(source), "fields": fields,
                  "scenes": []}
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for i, scene in enumerate(scenes):
                scalars = {k: getattr(scene, k) for k in _SCALARS}
                meta["scenes"].append(scalars)
                with zf.open(str(i), "w", force_zip64=True) as fh:  # the field list rides along: a reader checks it
                    np.lib.format.write_array(fh, _json_array({**scalars, "fields": fields}), allow_pickle=False)
                    for name in fields:
                        np.lib.format.write_array(fh, getattr(scene, name).cpu().numpy(), allow_pickle=False)
            zf.writestr(_META, _npy_bytes(_json_array(meta)))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(meta["scenes"]), path.stat().st_size


_META = "meta.npy"


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def _read_json(fh) -> object:
    return json.loads(np.lib.format.read_array(fh, allow_pickle=False).tobytes().decode())


def _check_meta(path, meta) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CacheError(f"{path}: cache format {meta.get('format') if isinstance(meta, dict) else '?'} "
                         f"is not {FORMAT_VERSION}; rebuild it with drope-data cache")
    want = [f.name for f in Scene.tensor_fields()]
    if meta.get("fields") != want:
        raise CacheError(f"{path}: cache fields {meta.get('fields')} are not this drope's Scene fields {want}; "
                         f"rebuild it with drope-data cache")
    return meta


def read_meta(path: str | Path) -> dict:
    """The ``meta`` record of a cache file; raises :class:`CacheError` if it is not one."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(_META) as fh:
            meta = _read_json(fh)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise CacheError(f"{path}: not a drope scene cache file ({e})") from None
    return _check_meta(path, meta)


class CacheFile:
    """One open cache file: its zip directory (one entry per scene) and nothing else; ``scene(i)``
    decompresses member ``i`` only. The meta record is not parsed (each member holds its scene's
    scalars), so opening costs the directory read alone."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._zf = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as e:
            raise CacheError(f"{self.path}: not a drope scene cache file ({e})") from None
        if "0" not in self._zf.NameToInfo:  # empty, format 1 ("0/agent_xy.npy", ...) or foreign
            try:
                read_meta(self.path)
            except CacheError:
                self.close()
                raise

    def __len__(self) -> int:
        return len(self._zf.NameToInfo) - 1  # every member but meta

    def scene(self, i: int) -> Scene:
        with self._zf.open(str(i)) as fh:
            scalars = _read_json(fh)
            fields = scalars.pop("fields", None)
            if fields != [f.name for f in Scene.tensor_fields()]:
                raise CacheError(f"{self.path}: scene {i} holds fields {fields}, not this drope's Scene fields; "
                                 f"rebuild it with drope-data cache")
            tensors = {name: torch.from_numpy(np.lib.format.read_array(fh, allow_pickle=False)) for name in fields}
        return Scene(**scalars, **tensors)

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> "CacheFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_scene(path: str | Path, index: int) -> Scene:
    """Scene ``index`` of one cache file (only its member is decompressed)."""
    with CacheFile(path) as f:
        return f.scene(index)


def load_scenes(path: str | Path) -> list[Scene]:
    """All scenes of one cache file."""
    with CacheFile(path) as f:
        return [f.scene(i) for i in range(len(f))]


def cache_files(cache_dir: str | Path) -> list[Path]:
    d = Path(cache_dir)
    if not d.is_dir():
        raise CacheError(f"cache directory {d} does not exist")
    return sorted(d.glob("*" + CACHE_SUFFIX))


def load_cached_scenes(cache_dir: str | Path) -> Iterator[Scene]:
    """Stream every scene of a cache directory (files in name order, scenes in record order)."""
    for path in cache_files(cache_dir):
        with CacheFile(path) as f:
            for i in range(len(f)):
                yield f.scene(i)


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


def _cache_one(unit: CacheUnit, out_dir: str, on_corrupt: str) -> tuple[int, int, int]:
    from drope.data.formats import read_scenes
    from drope.data.womd import ReadStats

    stats = ReadStats()
    n, size = save_scenes(
        Path(out_dir) / (unit.name + CACHE_SUFFIX),
        read_scenes(list(unit.paths), on_corrupt=on_corrupt, stats=stats),
        source_meta=unit.source_meta(),
    )
    return n, size, stats.skipped


def _is_current(unit: CacheUnit, out: Path) -> bool:
    """True if ``unit``'s cache file exists and was built from these very source files."""
    path = out / (unit.name + CACHE_SUFFIX)
    if not path.exists():
        return False
    try:
        meta = read_meta(path)
    except CacheError as e:
        log.warning("rebuilding %s: %s", path, e)
        return False
    if meta.get("source") != unit.source_meta():
        log.warning("rebuilding %s: its source %s changed since it was cached", path, unit.name)
        return False
    return True


def _is_av2_chunk(path: Path) -> bool:
    try:
        return "scenarios" in (read_meta(path).get("source") or {})
    except CacheError:
        return False


def _drop_stale_chunks(units: list[CacheUnit], inputs: Sequence[Path], out: Path) -> None:
    """Remove ``<root>-NNNNN`` files left from a run when a split root had more chunks: they would load twice."""
    names = {u.name for u in units}
    for root in inputs:
        for f in out.glob(f"{root.name}-[0-9][0-9][0-9][0-9][0-9]{CACHE_SUFFIX}"):
            if f.name[: -len(CACHE_SUFFIX)] not in names and _is_av2_chunk(f):
                log.warning("removing %s: its split root %s now has fewer chunks", f, root)
                f.unlink()


def build_cache(
    shards: Sequence[str | Path],
    out_dir: str | Path,
    workers: int | None = None,
    on_corrupt: str = "raise",
    progress: bool = True,
    scenes_per_file: int = 1000,
) -> CacheReport:
    """Convert Scenario shards, AV2 scenario directories or AV2 split roots into cache files under
    ``out_dir``, in parallel over files.

    Inputs with an up-to-date cache file are skipped (resume after an interruption). Two inputs that
    map to one cache file name (same shard name in different folders) raise :class:`CacheError`.
    """
    from tqdm import tqdm

    inputs = [Path(s) for s in shards]
    units: dict[str, CacheUnit] = {}
    for u in cache_units(inputs, scenes_per_file):
        if u.name in units and [p.resolve() for p in units[u.name].paths] != [p.resolve() for p in u.paths]:
            raise CacheError(
                f"inputs {units[u.name].paths[0]} and {u.paths[0]} share the file name {u.name!r}; cache them separately"
            )
        units[u.name] = u
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _drop_stale_chunks(list(units.values()), [p for p in inputs if p.is_dir()], out)
    report = CacheReport()
    todo = []
    for u in units.values():
        if _is_current(u, out):
            report.shards_skipped += 1
        else:
            todo.append(u)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    with tqdm(total=len(todo), desc="cache", unit="file", disable=not progress) as bar:
        if workers == 1:
            for u in todo:
                report.add(*_cache_one(u, str(out), on_corrupt))
                bar.update()
        else:
            # spawn, not fork: forking a process whose torch/OpenMP threads are running can deadlock
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_cache_one, u, str(out), on_corrupt) for u in todo]
                for fut in as_completed(futures):
                    report.add(*fut.result())
                    bar.update()
    if todo or not (out / shard_index.INDEX_NAME).exists():
        shard_index.write_index(out)  # readers count scenes from it instead of opening every file
    return report


def CachedSceneDataset(cache_dir: str | Path):  # noqa: N802 -- kept as the name callers construct
    """The scenes of a cache directory through the one dataset layer,
    :class:`drope.data.stream.SceneStreamDataset` (an index in memory, one scene decoded per access;
    a damaged member raises)."""
    files = cache_files(cache_dir)
    if not files:
        raise CacheError(f"no cache files (*{CACHE_SUFFIX}) in {cache_dir}")
    from drope.data.stream import SceneStreamDataset

    return SceneStreamDataset([str(f) for f in files], on_corrupt="raise")
