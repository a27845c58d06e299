"""``drope-bench generate``: scenario-generator throughput (``drope-generate`` end to end).

Runs the real CLI code path (simulation, validation, proto writing, parallel shards) into a
temporary directory and reports scenes/s in total and per worker, and scenes per CPU-second
of the workers (the per-core rate; unlike wall time it is not diluted when other processes
share the cores).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-bench generate", description=__doc__)
    p.add_argument("--num-scenes", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from drope.data.womd import read_scenarios
    from drope.sim.generate.cli import generate

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stats: dict = {}
        shards = generate(tmp, args.num_scenes, args.seed, scenes_per_shard=50, workers=args.workers,
                          progress=not args.json, stats=stats)
        wall = time.perf_counter() - t0
        n = sum(1 for s in read_scenarios(shards) if s.validate())
    res = {"scenes": n, "workers": args.workers, "seconds": round(wall, 1), "scenes_per_s": round(n / wall, 1),
           "scenes_per_s_per_worker": round(n / wall / args.workers, 1),
           "scenes_per_cpu_s": round(n / max(stats["cpu_s"], 1e-9), 1), "redrawn": stats["rejected_overlap"]
           + stats["rejected_no_sdc"], "load_avg_1min": round(os.getloadavg()[0], 1)}
    print(json.dumps(res) if args.json else "\n".join(f"{k:<26}{v}" for k, v in res.items()))
    return 0
