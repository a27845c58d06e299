"""``drope-bench read``: WOMD read+convert throughput and cache bytes per scene.

Runs in one process with one torch thread ("per core"). Reports wall-clock rates and rates per
CPU second (the latter are steadier on a shared machine), split into stages: TFRecord framing
with both CRC checks, protobuf parsing, and conversion to a Scene; then the size of the
``drope-data cache`` output and how fast cached scenes load back.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from drope.samples import womd_sample

DEFAULT = womd_sample()


def _rate(fn, min_seconds: float) -> tuple[float, float]:
    """Run ``fn() -> scenes handled`` repeatedly for ``min_seconds``; (scenes/s wall, scenes/CPU-s)."""
    fn()  # warm-up: imports, protobuf descriptors
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < min_seconds:
        n += fn()
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-bench read", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", type=Path, default=[DEFAULT], help="Scenario shards (default: shared WOMD sample)")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time per stage")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    missing = [f for f in args.files if not f.is_file()]
    if missing:
        print(f"drope-bench read: no such scenario file: {missing[0]}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    from waymo_open_dataset.protos import scenario_pb2

    from drope.data.cache import CachedSceneDataset, build_cache
    from drope.data.tfrecord import iter_records
    from drope.data.womd import read_scenarios, scene_from_proto

    raw = [d for f in args.files for _, _, d in iter_records(f)]
    protos = [scenario_pb2.Scenario.FromString(d) for d in raw]
    read_wall, read_cpu = _rate(lambda: sum(1 for _ in read_scenarios(args.files)), args.seconds)
    frame_wall, _ = _rate(lambda: sum(1 for f in args.files for _ in iter_records(f)), args.seconds / 3)
    parse_wall, _ = _rate(lambda: len([scenario_pb2.Scenario.FromString(d) for d in raw]), args.seconds / 3)
    conv_wall, conv_cpu = _rate(lambda: len([scene_from_proto(q) for q in protos]), args.seconds / 2)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rep = build_cache(args.files, tmp, workers=1, progress=False)
        cache_s = time.perf_counter() - t0
        ds = CachedSceneDataset(tmp)
        load_wall, _ = _rate(lambda: len([ds[i] for i in range(len(ds))]), args.seconds / 3)
    src_bytes = sum(f.stat().st_size for f in args.files)
    res = {
        "scenes": rep.scenes,
        "read_convert_scenes_per_s": round(read_wall, 1),
        "read_convert_scenes_per_cpu_s": round(read_cpu, 1),
        "framing_crc_ms_per_scene": round(1e3 / frame_wall, 3),
        "proto_parse_ms_per_scene": round(1e3 / parse_wall, 3),
        "convert_ms_per_scene": round(1e3 / conv_wall, 3),
        "convert_ms_per_scene_cpu": round(1e3 / conv_cpu, 3),
        "source_bytes_per_scene": round(src_bytes / max(rep.scenes, 1)),
        "cache_bytes_per_scene": round(rep.bytes_per_scene),
        "cache_write_s_per_scene": round(cache_s / max(rep.scenes, 1), 4),
        "cache_load_scenes_per_s": round(load_wall, 1),
        "goal_scenes_per_s": 50,
        "goal_cache_bytes_per_scene": 1_000_000,
    }
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:<34}{v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
