"""``drope-bench read``: WOMD read+convert throughput and cache bytes per scene.

Throughput is measured on one core (one process) over repeated passes of the input shards;
cache size is what ``drope-data cache`` writes for them.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "womd" / "motion_data_one_scenario.tfrecord"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-bench read", description=__doc__)
    p.add_argument("files", nargs="*", type=Path, default=[DEFAULT], help="Scenario shards (default: shared WOMD sample)")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from drope.data.cache import build_cache
    from drope.data.tfrecord import iter_records
    from drope.data.womd import read_scenarios, scene_from_bytes

    raw = [d for f in args.files for _, _, d in iter_records(f)]
    list(read_scenarios(args.files))  # warm-up (imports, protobuf descriptors)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        n += sum(1 for _ in read_scenarios(args.files))
    read_rate = n / (time.perf_counter() - t0)
    m, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds / 2:
        for d in raw:
            scene_from_bytes(d)
            m += 1
    convert_rate = m / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        rep = build_cache(args.files, tmp, workers=1, progress=False)
    src_bytes = sum(f.stat().st_size for f in args.files)
    res = {
        "scenes_per_s_one_core": round(read_rate, 1),
        "parse_convert_only_scenes_per_s": round(convert_rate, 1),
        "cache_bytes_per_scene": round(rep.bytes_per_scene),
        "source_bytes_per_scene": round(src_bytes / max(rep.scenes, 1)),
        "scenes": rep.scenes,
    }
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:<34}{v}")
    return 0
