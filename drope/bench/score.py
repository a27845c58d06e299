"""``drope-bench score``: seconds per WOSAC scenario (N rollouts) and per motion scenario.

Rollouts are the logged future plus Gaussian noise (so collisions/off-road occur), on the shared
WOMD scene or any ``--scenarios`` shard.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from drope.samples import womd_sample

import torch

DEFAULT = womd_sample()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="drope-bench score", description=__doc__)
    ap.add_argument("--scenarios", nargs="+", default=[str(DEFAULT)])
    ap.add_argument("--rollouts", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from drope.data.womd import read_scenarios
    from drope.metrics.motion import aggregate_motion_metrics, scene_motion_records
    from drope.metrics.wosac import prepare_scene, score_prepared

    g = torch.Generator().manual_seed(0)
    rows = []
    for scene in read_scenarios(args.scenarios):
        t0 = time.perf_counter()
        p = prepare_scene(scene)
        prep = time.perf_counter() - t0
        fut = slice(11, None)
        noise = torch.randn(args.rollouts, len(p.objects), 80, 2, generator=g, dtype=torch.float64).cumsum(2) * 0.05
        xy = p.xy[None, :, fut] + noise
        z = p.z[None, :, 10:11].expand(args.rollouts, -1, 80)  # current z held (log z is 0 where invalid)
        h = p.heading[None, :, fut].expand(args.rollouts, -1, -1)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            score_prepared(p, xy, z, h)
            times.append(time.perf_counter() - t0)
        idx = scene.tracks_to_predict
        pred = scene.agent_pos[idx, fut][:, None].repeat(1, 6, 1, 1) + torch.randn(len(idx), 6, 80, 2, generator=g)
        mt = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            aggregate_motion_metrics([scene_motion_records(scene, idx, pred, torch.rand(len(idx), 6, generator=g))])
            mt.append(time.perf_counter() - t0)
        rows.append({"scenario_id": scene.scenario_id, "sim_agents": len(p.objects), "rollouts": args.rollouts,
                     "wosac_prepare_s": round(prep, 4), "wosac_score_s": round(min(times), 4),
                     "motion_s": round(min(mt), 4), "threads": args.threads})
    for r in rows:
        print(json.dumps(r) if args.json else
              f"{r['scenario_id']}: WOSAC {r['wosac_score_s']:.3f} s/scenario ({r['rollouts']} rollouts, "
              f"{r['sim_agents']} agents, +{r['wosac_prepare_s']:.3f} s map prep), motion {r['motion_s'] * 1000:.1f} ms/scenario")
    return 0
