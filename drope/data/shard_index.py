"""A directory's scene index, written once beside its files and read instead of opening them.

Without it, a dataset learns how many scenes each file holds by reading every file before the first
step: a cache file's zip directory, every record header of a TFRecord shard (for gzip shards the
whole shard is decompressed). For the WOMD training split (1,000 shards) that pass grows with the
dataset. ``drope-data index DIR`` (and ``drope-data cache``, for its output directory) writes

- ``drope-index.json``: format, and per file its name, kind, size, mtime_ns, scene count, bad
  headers and first row in the records file;
- ``drope-index.records.npy``: int64 ``[rows, 2]``, ``(offset, length)`` of every TFRecord record
  (offsets in the decompressed stream for gzip), read memory-mapped: a process touches only the
  pages of the records it reads, and forked DataLoader workers share them through the page cache.

A reader then needs one ``stat`` per file (to tell a current entry from a stale one) and this small
JSON. A file whose size or mtime changed since, or that is missing from the index, is scanned as if
there were no index (and logged once per directory: rerun ``drope-data index``).
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

INDEX_NAME = "drope-index.json"
RECORDS_NAME = "drope-index.records.npy"
FORMAT = 1
INDEXED_KINDS = ("cache", "tfrecord")


class IndexFileError(ValueError):
    """An index file that cannot be used (the message names it)."""


def scan_file(kind: str, path: str | Path) -> tuple[int, np.ndarray | None, int]:
    """``(scenes, records, bad headers)`` of one file by reading it: a cache file's zip directory, or
    every header of a TFRecord shard (``records``: int64 ``[n, 2]`` offsets/lengths; None for a cache)."""
    if kind == "cache":
        from drope.data.cache import CacheFile

        with CacheFile(path) as f:
            return len(f), None, 0
    if kind != "tfrecord":
        raise ValueError(f"{path}: kind {kind!r} is not indexed (one of {INDEXED_KINDS})")
    from drope.data.tfrecord import index_records

    recs, bad = index_records(path)
    if bad:
        log.warning("%s: bad record header after %d records; rest of the shard skipped", path, len(recs))
    return len(recs), np.asarray(recs, dtype=np.int64).reshape(-1, 2), bad


def write_index(directory: str | Path, workers: int = 1) -> dict:
    """Scan every cache file or TFRecord shard of ``directory`` (threads: the scan is reads and
    seeks) and write its index atomically. Returns ``{"files", "scenes", "bad"}``."""
    from drope.data.stream import expand_sources

    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} is not a directory")
    files = [(k, p) for k, p in expand_sources(str(d)) if k in INDEXED_KINDS]
    if not files:
        raise FileNotFoundError(f"{d}: no cache files or TFRecord shards to index")
    stats = [p.stat() for _, p in files]  # before the scan: a file rewritten meanwhile reads as stale later
    with ThreadPoolExecutor(max(1, workers)) as pool:
        scans = list(pool.map(lambda kp: scan_file(*kp), files))
    entries, parts, row = [], [], 0
    for (kind, p), st, (n, recs, bad) in zip(files, stats, scans):
        entries.append({"name": p.name, "kind": kind, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                        "scenes": n, "bad": bad, "row": row if recs is not None else -1})
        if recs is not None:
            parts.append(recs)
            row += len(recs)
    records = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    tmp_json, tmp_npy = d / (INDEX_NAME + ".tmp"), d / (RECORDS_NAME + ".tmp.npy")
    np.save(tmp_npy, records)
    tmp_json.write_text(json.dumps({"format": FORMAT, "records": RECORDS_NAME, "files": entries}))
    tmp_npy.replace(d / RECORDS_NAME)  # records first: a JSON never points at a records file older than it
    tmp_json.replace(d / INDEX_NAME)
    return {"files": len(entries), "scenes": sum(e["scenes"] for e in entries), "bad": sum(e["bad"] for e in entries)}


class DirIndex:
    """A loaded index: entries by file name and the memory-mapped records."""

    def __init__(self, directory: Path) -> None:
        path = directory / INDEX_NAME
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')} is not {FORMAT}")
            self.entries = {e["name"]: e for e in doc["files"]}
            # a cache-only directory has no records (and numpy cannot memory-map a zero-length array)
            self.records = (np.load(directory / doc["records"], mmap_mode="r")
                            if any(e["row"] >= 0 for e in self.entries.values()) else None)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexFileError(f"{path}: unusable scene index ({e}); rebuild it with drope-data index "
                              f"{directory}") from None
        self.stale: list[str] = []

    def lookup(self, kind: str, path: Path) -> tuple[int, np.ndarray | None, int] | None:
        """``(scenes, records view, bad)`` of a current entry, else None (missing or stale)."""
        e = self.entries.get(path.name)
        st = path.stat()
        if e is None or e["kind"] != kind or e["size"] != st.st_size or e["mtime_ns"] != st.st_mtime_ns:
            self.stale.append(path.name)
            return None
        recs = self.records[e["row"] : e["row"] + e["scenes"]] if e["row"] >= 0 else None
        return e["scenes"], recs, e["bad"]


def count_files(files: Sequence[tuple[str, Path]]) -> tuple[np.ndarray, list[np.ndarray | None], int]:
    """Scene counts of ``files`` (``[(kind, path)]``), their TFRecord records and the bad headers:
    from each directory's index where it is current, else by :func:`scan_file`; AV2 items count 1."""
    counts = np.zeros(len(files), dtype=np.int64)
    records: list[np.ndarray | None] = [None] * len(files)
    bad_total = 0
    indexes: dict[Path, DirIndex | None] = {}
    for fi, (kind, p) in enumerate(files):
        if kind not in INDEXED_KINDS:
            counts[fi] = 1
            continue
        d = p.parent
        if d not in indexes:
            indexes[d] = DirIndex(d) if (d / INDEX_NAME).exists() else None
        hit = indexes[d].lookup(kind, p) if indexes[d] is not None else None
        n, recs, bad = hit if hit is not None else scan_file(kind, p)
        counts[fi], records[fi] = n, recs
        bad_total += bad
    for d, idx in indexes.items():
        if idx is not None and idx.stale:
            log.warning("%s: %d file(s) new or changed since %s was written (e.g. %s): scanned; rerun "
                        "drope-data index %s", d, len(idx.stale), INDEX_NAME, idx.stale[0], d)
    return counts, records, bad_total
