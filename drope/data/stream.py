"""The one dataset layer of drope-train and drope-eval: map-style Scene datasets and their samplers.

- :class:`SceneStreamDataset` over WOMD Scenario TFRecord shards (plain/gzip), ``drope-data cache``
  files/dirs and Argoverse 2 scenario dirs/split roots, in any mix. Only an index is kept in memory
  (per file: its scene count and, for TFRecords, the records' offsets and lengths), read from the
  directory's ``drope-data index`` file where one is current (memory-mapped; one ``stat`` per file),
  else found by reading the files (record headers alone for TFRecords: length CRC checked, payload
  skipped; the zip directory for caches; the listing for AV2). ``__getitem__`` reads and decodes one
  scene through a small LRU of open files, so neither memory nor the time to the first item grows
  with the number of scenes.
- :class:`SceneListDataset`: scenes already in memory (generated scenes, tests) behind the same
  interface; ``in_memory`` tells a consumer that caching derived tensors per scene is affordable.
- A corrupt item (bad data CRC, bad proto, unreadable cache member or AV2 parquet) is ``None`` with
  ``on_corrupt="skip"`` (logged, counted in ``dataset.corrupt`` of the process that read it --
  consumers count the ``None`` they receive, which works across DataLoader workers) or raises with
  ``on_corrupt="raise"``. An empty or missing source is a :class:`SourceError` naming it.
- :class:`EpochSampler` (per-epoch, DistributedSampler semantics) and :class:`StepSampler` (the
  step-based trainer's: no scene twice, none dropped) share :func:`epoch_order`.
"""
from __future__ import annotations

import glob as _glob
import logging
import math
import os
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from drope.data import cache as _cache
from drope.data import shard_index
from drope.data.tfrecord import CorruptRecordError, open_records, read_record_at

log = logging.getLogger(__name__)

#: errors a damaged item raises while it is read/decoded (AV2 and cache readers raise ValueError flavours)
ITEM_ERRORS = (CorruptRecordError, ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


class SourceError(FileNotFoundError):
    """An empty or missing data source (the message names it)."""


def _av2_items(p: Path) -> list[Path]:
    """Scenario dirs (or the parquet file) of an AV2 path: a listing only, nothing is decoded."""
    if p.is_file():
        return [p]
    return sorted({q.parent for q in p.rglob("scenario_*.parquet")})


def expand_sources(sources: str | Path | Sequence[str | Path]) -> list[tuple[str, Path]]:
    """Files, globs and directories -> ``[(kind, path)]``, kind ``"tfrecord"``, ``"cache"`` or ``"av2"``
    (an AV2 entry is one scenario directory or parquet file)."""
    from drope.data.av2 import is_av2_path

    if isinstance(sources, (str, Path)):
        sources = [str(sources)]
    out: list[tuple[str, Path]] = []
    for s in sources:
        p = Path(s)
        if p.exists() and is_av2_path(p):
            items = _av2_items(p)
            if not items:
                raise SourceError(f"data source {s}: no AV2 scenario directories (scenario_*.parquet)")
            out += [("av2", q) for q in items]
        elif p.is_dir():
            caches = sorted(p.glob("*" + _cache.CACHE_SUFFIX))
            if caches:
                out += [("cache", c) for c in caches]
                continue
            files = sorted(q for q in p.iterdir() if q.is_file() and ".tfrecord" in q.name)
            if not files:
                raise SourceError(f"data source {s}: directory is empty of cache files, TFRecord shards and AV2 scenarios")
            out += [("tfrecord", q) for q in files]
        elif p.is_file():
            out.append(("cache" if p.name.endswith(_cache.CACHE_SUFFIX) else "tfrecord", p))
        else:
            matches = sorted(_glob.glob(str(s)))
            if not matches:
                raise SourceError(f"no such data source: {s} (no file, directory or glob match)")
            out += expand_sources(matches)
    if not out:
        raise SourceError(f"data source {list(sources)!r} is empty")
    return out


class SceneListDataset(Dataset):
    """Scenes held in memory, behind the dataset interface (generated scenes for ``make demo``)."""

    in_memory = True

    def __init__(self, scenes: Sequence) -> None:
        self.scenes = list(scenes)
        self.corrupt = 0

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int):
        return self.scenes[i]

    def __iter__(self):
        return iter(self.scenes)


class SceneStreamDataset(Dataset):
    """Map-style dataset over TFRecord shards / cache files / AV2 scenarios; holds only an index.

    Scene ``i`` is record ``i - starts[f]`` of file ``f = searchsorted(starts, i)``; a TFRecord
    record's ``(offset, length)`` is row ``rec`` of that file's records array.
    """

    in_memory = False

    #: open-handle budget per process, in zip members (an open cache file holds its zip directory, one
    #: entry of ~0.3 KB per scene; a TFRecord handle counts 1) and in handles (file descriptors).
    #: A WOMD-sized cache file (~500 scenes) reopens in ~2 ms, so a few files open are enough.
    OPEN_MEMBERS, OPEN_FILES = 4096, 16

    def __init__(self, sources: str | Sequence[str], origin: str = "sdc", on_corrupt: str = "skip",
                 open_members: int = OPEN_MEMBERS, open_files: int = OPEN_FILES) -> None:
        if on_corrupt not in ("skip", "raise"):
            raise ValueError(f"on_corrupt must be 'skip' or 'raise', got {on_corrupt!r}")
        self.files = expand_sources(sources)
        self.origin, self.on_corrupt = origin, on_corrupt
        self.open_members, self.open_files = open_members, open_files
        self._starts: np.ndarray | None = None  # int64 [files + 1]: first scene of each file
        self._records: list[np.ndarray | None] = []  # per file: TFRecord (offset, length) rows, else None
        self.corrupt = 0
        self.index_corrupt = 0  # bad TFRecord headers (the rest of that shard is unreachable)
        self._fh: OrderedDict[int, tuple[object, int]] = OrderedDict()  # file -> (handle, members), LRU
        self._pid = os.getpid()
        self._last: tuple[int, object] | None = None  # repeated reads of one item decode once

    def file_starts(self) -> np.ndarray:
        """int64 ``[files + 1]``: the first scene index of each file (built lazily from the index)."""
        if self._starts is None:
            counts, self._records, self.index_corrupt = shard_index.count_files(self.files)
            if not counts.sum():
                raise SourceError(f"data sources {[str(p) for _, p in self.files]} hold no records")
            self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return self._starts

    def __len__(self) -> int:
        return int(self.file_starts()[-1])

    def record_offsets(self, fi: int) -> np.ndarray | None:
        """``[records, 2]`` (byte offset, length) of file ``fi``'s TFRecords (memory-mapped from
        ``drope-index.json``'s table when one is current), or None for caches and AV2 scenarios."""
        self.file_starts()
        return self._records[fi]

    def locate(self, i: int) -> tuple[int, int, int, int]:
        """``(file, record in file, byte offset, length)`` of scene ``i`` (offset/length -1 unless TFRecord)."""
        starts = self.file_starts()
        fi = int(np.searchsorted(starts, i, side="right")) - 1
        rec = i - int(starts[fi])
        recs = self._records[fi]
        off, n = (int(recs[rec, 0]), int(recs[rec, 1])) if recs is not None else (-1, -1)
        return fi, rec, off, n

    def _handle(self, fi: int):
        """Open handle of file ``fi``, kept in an LRU within the budget: memory and descriptors stay
        bounded however many files a dataset has (sequential reads never reopen; random access over
        more than the budget reopens files, re-reading a cache file's zip directory)."""
        if self._pid != os.getpid():  # forked worker: never share a file offset with the parent
            self._fh, self._pid = OrderedDict(), os.getpid()
        if fi in self._fh:
            self._fh.move_to_end(fi)
            return self._fh[fi][0]
        kind, p = self.files[fi]
        if kind == "cache":
            h = _cache.CacheFile(p)
            cost = len(h)
        else:
            h, cost = open_records(p), 1
        self._fh[fi] = (h, cost)
        while len(self._fh) > 1 and (len(self._fh) > self.open_files or
                                     sum(c for _, c in self._fh.values()) > self.open_members):
            _, (old, _) = self._fh.popitem(last=False)
            old.close()
        return h

    def _decode(self, kind: str, fi: int, rec: int, off: int, n: int):
        p = self.files[fi][1]
        if kind == "av2":
            from drope.data.av2 import read_scenes

            return next(iter(read_scenes([p], on_corrupt="raise")))
        h = self._handle(fi)
        if kind == "cache":
            return h.scene(rec)
        from drope.data.womd import scene_from_bytes

        return scene_from_bytes(read_record_at(h, p, rec, off, n), origin=self.origin)

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"scene {i} out of range ({len(self)} scenes)")
        i = int(i) % len(self)
        if self._last is not None and self._last[0] == i:
            return self._last[1]
        fi, rec, off, n = self.locate(i)
        kind, p = self.files[fi]
        try:
            scene = self._decode(kind, fi, rec, off, n)
        except ITEM_ERRORS as e:
            if self.on_corrupt == "raise":
                raise ValueError(f"{p}: record {rec} (scene {i}) is corrupt: {e}") from e
            self.corrupt += 1
            log.warning("skipping corrupt record %d of %s (scene %d): %s", rec, p, i, e)
            return None
        self._last = (i, scene)
        return scene

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fh": OrderedDict(), "_last": None}


def as_dataset(scenes) -> Dataset:
    """A dataset of this layer as is; any other sequence of scenes wrapped in :class:`SceneListDataset`."""
    return scenes if isinstance(scenes, (SceneStreamDataset, SceneListDataset)) else SceneListDataset(scenes)


def collate_skip_none(items: list):
    """Drop ``None`` (corrupt records); return the list of remaining scenes."""
    return [x for x in items if x is not None]


class CollateSkipNone:
    """DataLoader ``collate_fn``: ``(scenes, fn(scenes) or None when all are corrupt, n_corrupt)``;
    picklable when ``fn`` is (a module-level function or a ``functools.partial`` of one)."""

    def __init__(self, fn: Callable | None = None) -> None:
        self.fn = fn

    def __call__(self, items: list):
        scenes = collate_skip_none(items)
        out = self.fn(scenes) if (self.fn is not None and scenes) else None
        return scenes, out, len(items) - len(scenes)


class SceneCollate:
    """``collate_scenes`` with fixed arguments, picklable for DataLoader workers."""

    def __init__(self, history: int, future: int, max_agents: int | None, max_map: int | None,
                 segment_points: int) -> None:
        self.args, self.segment_points = (history, future, max_agents, max_map), segment_points

    def __call__(self, scenes: list):
        from drope.data.batch import collate_scenes

        return collate_scenes(scenes, *self.args, segment_points=self.segment_points)


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Sample order of ``epoch`` as int64: a permutation seeded by ``(seed, epoch)`` (identity
    unshuffled). 8 bytes per scene (a Python list of ints costs ~5x that, in every worker)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    return torch.randperm(n, generator=g).numpy()


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """:func:`epoch_permutation` as a list."""
    return epoch_permutation(n, seed, epoch, shuffle).tolist()


class EpochSampler(Sampler[int]):
    """Per-epoch sampler with DistributedSampler semantics: each epoch :func:`epoch_order`;
    remainder rule: with ``drop_last=False`` the permutation is padded by repeating its head to
    a multiple of ``world_size`` (so a few samples are seen twice), with ``drop_last=True`` the
    tail is dropped; rank ``r`` takes positions ``r, r+W, r+2W, ...``. ``skip`` drops the first
    ``skip`` indices of this rank's order (mid-epoch resume without loading data)."""

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch, self.skip = 0, 0
        self.num_samples = n // world_size if drop_last else math.ceil(n / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def indices(self) -> list[int]:
        order = epoch_order(self.n, self.seed, self.epoch, self.shuffle)
        total = self.num_samples * self.world
        if total > len(order):
            order += (order * math.ceil(total / max(len(order), 1)))[: total - len(order)]
        order = order[:total]
        return order[self.rank : total : self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


class StepSampler(Sampler[int]):
    """The step-based trainer's sampler: iterates step numbers ``start .. stop-1``; :meth:`batch`
    gives the samples of one step for this rank.

    Rule: the *global stream* is the concatenation of the epochs' :func:`epoch_order` permutations;
    global step ``s`` takes stream positions ``[s·B·W, (s+1)·B·W)`` (B = per-rank batch, W = world
    size) and rank ``r`` the positions ``s·B·W + r + k·W``, k < B. Epoch ``e`` is stream positions
    ``[e·n, (e+1)·n)``, so across ranks every epoch visits every scene exactly once -- nothing padded,
    nothing dropped. Remainder: when ``B·W`` does not divide ``n``, the last global batch of an epoch
    is completed with the head of the next epoch's permutation (an epoch boundary may fall inside a
    batch; every rank still gets B samples per step, so DDP steps stay in lock-step). DataLoader
    workers receive whole steps (round-robin), so every (rank, worker) gets a disjoint part, and a
    step's samples depend only on (seed, step): resuming at step ``s`` is ``start=s``.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start: int = 0, stop: int = 0, shuffle: bool = True) -> None:
        if n <= 0:
            raise ValueError("StepSampler needs at least one sample")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start, self.stop, self.shuffle = rank, world_size, start, stop, shuffle
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 2:  # a step spans at most a few epochs: keep memory O(n)
                self._orders.clear()
            self._orders[epoch] = epoch_permutation(self.n, self.seed, epoch, self.shuffle)
        return self._orders[epoch]

    def positions(self, step: int) -> list[int]:
        """Global stream positions of this rank's samples at ``step``."""
        base = step * self.batch_size * self.world + self.rank
        return [base + k * self.world for k in range(self.batch_size)]

    def batch(self, step: int) -> tuple[list[int], list[int]]:
        """``(sample indices, their epochs)`` of this rank at ``step``."""
        idx, epochs = [], []
        for pos in self.positions(step):
            e, off = divmod(pos, self.n)
            idx.append(int(self._order(e)[off]))
            epochs.append(e)
        return idx, epochs

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def make_loader(dataset: Dataset, batch_size: int, sampler: Sampler | None = None, num_workers: int = 2,
                collate_fn: Callable = collate_skip_none, persistent: bool = True):
    """A DataLoader over ``dataset`` (``sampler=None``: in order); workers only for streamed data."""
    from torch.utils.data import DataLoader

    workers = 0 if getattr(dataset, "in_memory", False) else num_workers
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_fn, persistent_workers=persistent and workers > 0,
                      pin_memory=torch.cuda.is_available())
