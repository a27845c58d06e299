"""Runs spread over processes or machines: shard I of N simulates scenarios i ≡ I (mod N).

Shard I of N writes ``OUT/shards/IIIII-of-NNNNN/``: ``metrics.json`` (its scenarios with their
index in the full ordered list, its failures and animations), ``rollouts.binproto-*-of-*`` (its
``ScenarioRollouts``, when a submission or WOSAC scoring is configured) and ``COMPLETE``,
written last. A restarted shard whose ``COMPLETE`` matches its configuration is skipped.
``drope-sim merge OUT...`` checks that all N parts are complete and agree, then writes the
aggregate ``metrics.json`` and the submission exactly as one process would have.

N and I come from ``num_shards=``/``shard_index=``, else from ``WORLD_SIZE``/``RANK`` (torchrun).
"""
from __future__ import annotations

import json
import re
from pathlib import Path


MARKER = "COMPLETE"
PART_ROLLOUTS = "rollouts"  # basename of a part's ScenarioRollouts shards
_PART_NAME = re.compile(r"(\d{5})-of-(\d{5})")
#: keys that do not change what a shard computes (the marker ignores them)
_NEUTRAL_KEYS = ("workers", "shard_index", "out")


def part_dir(out: str | Path, index: int, num_shards: int) -> Path:
    return Path(out) / "shards" / f"{index:05d}-of-{num_shards:05d}"


def fingerprint(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in _NEUTRAL_KEYS}


def is_complete(d: Path, cfg: dict) -> bool:
    m = d / MARKER
    return m.is_file() and json.loads(m.read_text()).get("config") == fingerprint(cfg)


def mark_complete(d: Path, cfg: dict) -> None:
    (d / MARKER).write_text(json.dumps({"config": fingerprint(cfg)}))


def find_parts(dirs) -> list[Path]:
    """Part directories under each of ``dirs`` (a run's ``out`` or a part directory itself)."""
    found: list[Path] = []
    for d in map(Path, dirs):
        if _PART_NAME.fullmatch(d.name) and (d / "metrics.json").is_file():
            found.append(d)
        elif (d / "shards").is_dir():
            found += sorted(p for p in (d / "shards").iterdir() if _PART_NAME.fullmatch(p.name))
        else:
            raise FileNotFoundError(f"{d}: neither a drope-sim output with shards/ nor a shard directory")
    return found


def load_parts(dirs) -> list[tuple[Path, dict]]:
    """The N complete parts of one sharded run, in shard order; errors name what is missing or differs."""
    parts = find_parts(dirs)
    if not parts:
        raise FileNotFoundError(f"no shard directories under {[str(d) for d in dirs]}")
    sizes = {int(_PART_NAME.fullmatch(p.name).group(2)) for p in parts}
    if len(sizes) != 1:
        raise ValueError(f"parts of different runs (num_shards {sorted(sizes)}) in {[str(d) for d in dirs]}")
    n = sizes.pop()
    by_index: dict[int, Path] = {}
    for p in parts:
        by_index.setdefault(int(_PART_NAME.fullmatch(p.name).group(1)), p)
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise ValueError(f"shards {missing} of {n} not found (run them with shard_index=I num_shards={n})")
    out = []
    for i in range(n):
        d = by_index[i]
        res = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").is_file() else None
        if res is None or not is_complete(d, res["config"]):
            raise ValueError(f"{d}: shard {i} of {n} is not complete (no {MARKER} marker): rerun it")
        out.append((d, res))
    ref = fingerprint(out[0][1]["config"])
    for d, res in out[1:]:
        diff = sorted(k for k in set(ref) | set(fingerprint(res["config"])) if ref.get(k) != res["config"].get(k))
        if diff:
            raise ValueError(f"{d}: configuration differs from shard 0 in {diff}")
    return out
