"""``make demo``: the main job end to end on an embedded default (no downloads).

Stages run in order, each a thin call of the same code the CLIs use, and each writes under
``--out``: data (``drope-generate``: synthetic scenes written as WOMD Scenario shards, or your
``--data`` files), summary (``drope-data info``/``stats``, side by side with the shared WOMD
sample when present), plots and an animation (``drope-viz``), cache (``drope-data cache``),
a short ``drope_small`` training run, evaluation against kinematic baselines with prediction
plots, ONNX export with verification, a prediction through the torch-free runtime, and a
closed-loop rollout of the ONNX model (``drope-sim``) with its animation.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from drope.samples import womd_sample

log = logging.getLogger("drope.demo")
WOMD_SAMPLE = womd_sample()


def _stage(name: str):
    print(f"\n=== {name} " + "=" * max(0, 70 - len(name)), flush=True)
    return time.perf_counter()


def _data(args) -> list[Path]:
    if args.data:
        return [Path(p) for p in args.data]
    from drope.sim.generate.cli import generate

    return generate(args.out / "data", num_scenes=args.num_scenes, seed=args.seed, scenes_per_shard=16, workers=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m drope.demo", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    p.add_argument("--data", nargs="*", help="Scenario TFRecord shards to use instead of generated scenes")
    p.add_argument("--num-scenes", type=int, default=64, help="generated scenes (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-steps", type=int, default=150, help="drope_small training steps (default 150)")
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

    t = _stage("train drope_small (drope-train)")
    from drope.train.cli import run as train_run

    run_dir = args.out / "run"
    res = train_run([f"out={run_dir}", f"steps={args.train_steps}", "data.train=[" + ",".join(map(str, files)) + "]",
                     "data.generate_val=16", "val_every=100000", "progress=true", "resume=auto"])
    print(f"[{time.perf_counter() - t:.1f} s] {res['step']} steps, {res['scenes_per_s']:.0f} scenes/s, "
          f"held-out minADE@6 {res.get('val', {}).get('min_ade@6', float('nan')):.2f} m -> {run_dir}/last.ckpt")

    t = _stage("evaluate (drope-eval) on held-out generated scenes")
    from drope.eval.evaluate import evaluate
    from drope.eval.displacement import format_table
    from drope.data.sources import generated_scenes
    from drope.model.checkpoint import load_model

    model, _ = load_model(run_dir / "last.ckpt")
    held_out = generated_scenes(32, args.seed + 1000)
    metrics = evaluate(model, held_out, plot_dir=args.out / "eval" / "plots", num_plots=4)
    (args.out / "eval").mkdir(exist_ok=True)
    (args.out / "eval" / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(format_table({m: {"ALL": {"8s": r["ALL"]["8s"]}} for m, r in metrics.items()}))
    print(f"[{time.perf_counter() - t:.1f} s] prediction plots -> {args.out / 'eval' / 'plots'}")

    t = _stage("export to ONNX (drope-export) and run it without torch")
    from drope.export.cli import load_config as export_config
    from drope.export.cli import run as export_run

    onnx_path = args.out / "model.onnx"
    rep = export_run(export_config([f"ckpt={run_dir / 'last.ckpt'}", f"out={onnx_path}", "verify_scenes=4"]))
    for where in ("generated", "womd"):
        for name, st in rep.get(where, {}).items():
            if name != "torch":
                print(f"{where:<10}{name:<5} max |onnx - torch| {st['max_abs_err_m']:.1e} m, "
                      f"minADE change {st['min_ade_change_pct']:+.2f} %")
    from drope.data.batch import collate_scenes
    from drope.export.runtime import OnnxPredictor

    pred = OnnxPredictor(onnx_path).predict({k: v.numpy() for k, v in collate_scenes(held_out[:1]).model_inputs().items()})
    print(f"[{time.perf_counter() - t:.1f} s] runtime (numpy + onnxruntime) predicted {pred.traj.shape} trajectories")

    t = _stage("closed loop: the ONNX model drives every agent (drope-sim)")
    from drope.sim.cli import main as sim_main

    rc = sim_main(["policy=learned", f"model={onnx_path}", "controlled=all", "generate.num_scenes=4",
                   f"generate.seed={args.seed + 3000}", "rollouts=2", f"out={args.out / 'sim'}", "animate=1"])
    if rc != 0:
        raise SystemExit(f"drope-sim failed with exit status {rc}")
    print(f"[{time.perf_counter() - t:.1f} s] metrics and animation -> {args.out / 'sim'}")

    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s; outputs in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
