"""``make demo``: the main job end to end on an embedded default (no downloads).

Stages run in order, each a thin call of the same code the CLIs use, and each writes under
``--out``: data (``drope-generate``: synthetic scenes written as WOMD Scenario shards, or your
``--data`` files), summary (``drope-data info``/``stats``, side by side with the shared WOMD
sample when present), plots and an animation (``drope-viz``), cache (``drope-data cache``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("drope.demo")
REPO = Path(__file__).resolve().parents[1]
WOMD_SAMPLE = REPO.parent / "shared" / "data" / "womd" / "motion_data_one_scenario.tfrecord"


def _stage(name: str):
    print(f"\n=== {name} " + "=" * max(0, 70 - len(name)), flush=True)
    return time.perf_counter()


def _data(args) -> list[Path]:
    if args.data:
        return [Path(p) for p in args.data]
    from sim.generate.cli import generate

    return generate(args.out / "data", num_scenes=args.num_scenes, seed=args.seed, scenes_per_shard=16, workers=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m drope.demo", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    p.add_argument("--data", nargs="*", help="Scenario TFRecord shards to use instead of generated scenes")
    p.add_argument("--num-scenes", type=int, default=64, help="generated scenes (default 64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drope.data.cache import build_cache
    from drope.data.summary import dataset_stats, format_stats_table, scene_info
    from drope.data.womd import read_scenarios
    from drope.viz import plot_scene

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = _stage("data")
    files = _data(args)
    print(f"{len(files)} shard(s): {', '.join(str(f) for f in files[:4])}{' ...' if len(files) > 4 else ''}")

    t = _stage("summary (drope-data info / stats)")
    scenes = list(read_scenarios(files))
    with open(args.out / "info.jsonl", "w") as f:
        for s in scenes:
            f.write(json.dumps(scene_info(s.validate())) + "\n")
    stats = dataset_stats(scenes)
    (args.out / "stats.json").write_text(json.dumps(stats, indent=1))
    print(format_stats_table(stats))
    if not args.data and WOMD_SAMPLE.exists():
        real = dataset_stats(read_scenarios(WOMD_SAMPLE))
        (args.out / "stats_womd_sample.json").write_text(json.dumps(real, indent=1))
        print("\nshared WOMD sample, for comparison:")
        print(format_stats_table(real))
    print(f"[{time.perf_counter() - t:.1f} s] {len(scenes)} scenes validated -> {args.out / 'info.jsonl'}")

    t = _stage("plots (drope-viz)")
    plots = args.out / "plots"
    plots.mkdir(exist_ok=True)
    for s in scenes[:4]:
        fig, ax = plt.subplots(figsize=(7, 7))
        plot_scene(s, ax)
        fig.tight_layout()
        fig.savefig(plots / f"{s.scenario_id}.png", dpi=110)
        plt.close(fig)
    from drope.viz.animate import animate_scene

    anim = animate_scene(scenes[0], plots / f"{scenes[0].scenario_id}.gif", steps=range(0, scenes[0].num_steps, 2), fps=8,
                         dpi=60)
    print(f"[{time.perf_counter() - t:.1f} s] {min(4, len(scenes))} plot(s) and {anim['path']} "
          f"({anim['seconds_per_frame'] * 1000:.0f} ms/frame) -> {plots}")

    t = _stage("cache (drope-data cache)")
    rep = build_cache(files, args.out / "cache", workers=2, progress=False)
    print(f"[{time.perf_counter() - t:.1f} s] {rep.scenes} scenes, {rep.bytes_per_scene / 1e6:.3f} MB/scene")

    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s; outputs in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
