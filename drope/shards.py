"""Which share of a run this process does: shard I of N, from explicit values or torchrun's
``RANK``/``WORLD_SIZE`` (drope-sim and drope-score both split their scenarios this way)."""
from __future__ import annotations

import os


def shard_of(num_shards: int | None, shard_index: int | None, env=None) -> tuple[int, int]:
    """(I, N): explicit values win over ``RANK``/``WORLD_SIZE``; neither: (0, 1)."""
    env = os.environ if env is None else env
    try:
        n = int(num_shards) if num_shards is not None else int(env.get("WORLD_SIZE", 1))
        i = int(shard_index) if shard_index is not None else int(env.get("RANK", 0))
    except ValueError as e:
        raise ValueError(f"RANK/WORLD_SIZE must be integers: {e}") from None
    if n < 1:
        raise ValueError(f"num_shards must be >= 1, got {n}" + ("" if num_shards is not None else " (from WORLD_SIZE)"))
    if not 0 <= i < n:
        raise ValueError(f"shard_index must be in [0, {n}), got {i}" + ("" if shard_index is not None else " (from RANK)"))
    return i, n
