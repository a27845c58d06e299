"""Map-style streaming datasets over WOMD Scenario TFRecord shards and ``drope-data cache`` dirs.

Only a small per-record index ``(file, byte offset, length)`` is kept in memory. For TFRecord
shards it is built lazily (on first use) from record headers alone: each 12-byte header is read,
its length CRC checked, and the payload skipped -- no scene is decoded at index time. For gzip
shards offsets are in the decompressed stream (the stream is still only scanned, not parsed).
Each ``__getitem__`` reads and decodes one scene. Corrupt records (bad data CRC, bad proto) give
``None``; :func:`collate_skip_none` drops them, and ``dataset.corrupt`` counts them per process.
"""
from __future__ import annotations

import glob as _glob
import logging
import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from drope.data import cache as _cache
from drope.data.tfrecord import CorruptRecordError, index_records, open_records, read_record_at

log = logging.getLogger(__name__)


class SourceError(FileNotFoundError):
    """An empty or missing data source (the message names it)."""


def expand_sources(sources: str | Sequence[str]) -> list[tuple[str, Path]]:
    """Files, globs and directories -> ``[(kind, path)]`` with kind ``"tfrecord"`` or ``"cache"``."""
    if isinstance(sources, (str, Path)):
        sources = [str(sources)]
    out: list[tuple[str, Path]] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            caches = sorted(p.glob("*" + _cache.CACHE_SUFFIX))
            if caches:
                out += [("cache", c) for c in caches]
                continue
            files = sorted(q for q in p.iterdir() if q.is_file() and ".tfrecord" in q.name)
            if not files:
                raise SourceError(f"data source {s}: directory has no cache files or TFRecord shards")
            out += [("tfrecord", q) for q in files]
        elif p.is_file():
            out.append(("cache" if p.name.endswith(_cache.CACHE_SUFFIX) else "tfrecord", p))
        else:
            matches = sorted(_glob.glob(str(s)))
            if not matches:
                raise SourceError(f"data source {s}: no such file, directory or glob match")
            out += expand_sources(matches)
    if not out:
        raise SourceError(f"data source {list(sources)!r} is empty")
    return out


def index_tfrecord(path: str | Path) -> tuple[list[tuple[int, int]], int]:
    """``([(offset, length)], n_bad)`` from headers only (see :func:`drope.data.tfrecord.index_records`)."""
    out, bad = index_records(path)
    if bad:
        log.warning("%s: bad record header after %d records; rest of the shard skipped", path, len(out))
    return out, bad


class SceneStreamDataset(Dataset):
    """Map-style dataset over TFRecord shards / cache files; holds only an index."""

    def __init__(self, sources: str | Sequence[str], origin: str = "sdc") -> None:
        self.files = expand_sources(sources)
        self.origin = origin
        self._index: list[tuple[int, int, int]] | None = None  # (file, offset or scene, length)
        self.corrupt = 0
        self.index_corrupt = 0
        self._fh: dict[int, object] = {}
        self._pid = os.getpid()

    @property
    def index(self) -> list[tuple[int, int, int]]:
        if self._index is None:
            idx = []
            for fi, (kind, p) in enumerate(self.files):
                if kind == "cache":
                    n = len(_cache.read_meta(p)["scenes"])
                    idx += [(fi, i, -1) for i in range(n)]
                else:
                    recs, bad = index_tfrecord(p)
                    self.index_corrupt += bad
                    idx += [(fi, o, n) for o, n in recs]
            if not idx:
                raise SourceError(f"data sources {[str(p) for _, p in self.files]} hold no records")
            self._index = idx
        return self._index

    def __len__(self) -> int:
        return len(self.index)

    def _handle(self, fi: int):
        if self._pid != os.getpid():
            self._fh, self._pid = {}, os.getpid()
        h = self._fh.get(fi)
        if h is None:
            kind, p = self.files[fi]
            h = self._fh[fi] = (_cache.np.load(p), _cache.read_meta(p)) if kind == "cache" else open_records(p)
        return h

    def __getitem__(self, i: int):
        fi, off, n = self.index[i]
        kind, p = self.files[fi]
        try:
            h = self._handle(fi)
            if kind == "cache":
                return _cache._scene_from_npz(*h, off)  # the npz and its meta, opened once per process
            data = read_record_at(h, p, i, off, n)
            from drope.data.womd import scene_from_bytes
            return scene_from_bytes(data, origin=self.origin)
        except (CorruptRecordError, ValueError, OSError, KeyError) as e:
            self.corrupt += 1
            log.warning("skipping corrupt record %d (%s at %d): %s", i, p, off, e)
            return None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fh": {}}


def collate_skip_none(items: list):
    """Drop ``None`` (corrupt records); return the list of remaining scenes."""
    return [x for x in items if x is not None]


class EpochSampler(Sampler[int]):
    """DistributedSampler semantics: each epoch a permutation seeded by ``seed + epoch``;
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
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.num_samples * self.world
        if total > len(order):
            order += (order * math.ceil(total / max(len(order), 1)))[: total - len(order)]
        order = order[:total]
        return order[self.rank : total : self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def make_loader(dataset: Dataset, batch_size: int, sampler: EpochSampler, num_workers: int = 2):
    from torch.utils.data import DataLoader
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_skip_none, persistent_workers=num_workers > 0,
                      pin_memory=torch.cuda.is_available())
