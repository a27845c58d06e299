"""Position-encoding ablation: train ``drope_small`` once per encoding on the same generated scenes,
evaluate every run and the kinematic baselines on held-out generated scenes (a different seed),
and write one table (``bench/results/ablation.md`` + ``.json``).

  python bench/ablation.py --train-scenes 512 --val-scenes 128 --steps 400

Each encoding trains in a fresh spawned process, so the reported peak RSS is that run's own
(CPU); on CUDA the peak allocated GPU memory is reported instead. Training time excludes the
one-off scene generation.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENCODINGS = ("none", "absolute", "rpe", "rope2d", "drope_rope")
log = logging.getLogger("ablation")


def _generate(n: int, seed: int):
    from tqdm import tqdm

    from drope.sim.generate.scenario import generate_scene

    return [generate_scene(seed, i)[0] for i in tqdm(range(n), desc=f"generate seed={seed}", unit="scene")]


def _run_one(args: dict) -> dict:
    """One encoding, in its own process: train, then evaluate on the held-out scenes."""
    import torch

    torch.set_num_threads(args["threads"])
    # this process only: map truncation to max_map is expected on large generated scenes
    logging.getLogger("drope.data.batch").setLevel(logging.ERROR)
    from drope.eval.evaluate import evaluate
    from drope.model import ModelConfig
    from drope.nn import EncodingConfig
    from drope.train.trainer import Trainer, TrainConfig

    with open(args["data"], "rb") as f:
        train, val = pickle.load(f)
    mcfg = ModelConfig(encoding=EncodingConfig(name=args["encoding"]))
    tcfg = TrainConfig(out=str(Path(args["runs"]) / args["encoding"]), seed=args["seed"], steps=args["steps"],
                       batch_size=args["batch_size"], lr=args["lr"], warmup_steps=max(1, args["steps"] // 20),
                       val_every=10**9, log_every=max(1, args["steps"] // 20), ckpt_every=10**9, progress=False)
    trainer = Trainer(tcfg, mcfg, train, [])
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fit = trainer.fit()
    train_s = time.perf_counter() - t0
    if trainer.device.type == "cuda":
        peak_mb, peak_kind = torch.cuda.max_memory_allocated() / 2**20, "cuda_allocated"
    else:
        peak_mb, peak_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_rss"
    res = evaluate(trainer.model.eval(), val, batch_size=args["batch_size"])
    return {"encoding": args["encoding"], "train_s": train_s, "scenes_per_s": fit["scenes_per_s"],
            "peak_mb": peak_mb, "peak_kind": peak_kind, "final_train_loss": fit["train"].get("loss"),
            "params": sum(p.numel() for p in trainer.model.parameters()), "metrics": res}


def _row(name: str, r: dict, h: str) -> dict:
    return {k: r["ALL"][h][k] for k in ("min_ade@6", "min_fde@6", "miss_rate@6", "min_ade@1")} | {"name": name}


def format_markdown(runs: list[dict], meta: dict) -> str:
    h = "8s"
    lines = [f"# Encoding ablation (drope_small, {meta['train_scenes']} train scenes seed {meta['train_seed']}, "
             f"{meta['val_scenes']} held-out scenes seed {meta['val_seed']}, {meta['steps']} steps x batch "
             f"{meta['batch_size']}, {meta['device']}, {meta['threads']} thread(s))", "",
             f"Tracks to predict, all types, {h} horizon; miss = final displacement > 2 m.", "",
             "| method | minADE@6 | minFDE@6 | miss rate@6 | minADE@1 | peak memory (MB) | training time (s) | scenes/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m = _row(r["encoding"], r["metrics"]["drope"], h)
        lines.append(f"| {r['encoding']} | {m['min_ade@6']:.3f} | {m['min_fde@6']:.3f} | {m['miss_rate@6']:.3f} | "
                     f"{m['min_ade@1']:.3f} | {r['peak_mb']:.0f} ({r['peak_kind']}) | {r['train_s']:.0f} | "
                     f"{r['scenes_per_s']:.1f} |")
    for base in ("constant_velocity", "constant_turn_rate"):
        m = _row(base, runs[0]["metrics"][base], h)
        lines.append(f"| {base} | {m['min_ade@6']:.3f} | {m['min_fde@6']:.3f} | {m['miss_rate@6']:.3f} | "
                     f"{m['min_ade@1']:.3f} | - | - | - |")
    cv = runs[0]["metrics"]["constant_velocity"]["ALL"][h]["min_ade@6"]
    by = {r["encoding"]: r["metrics"]["drope"]["ALL"][h]["min_ade@6"] for r in runs}
    if "drope_rope" in by:
        lines += ["", f"drope_rope minADE@6 vs constant velocity: {100 * (1 - by['drope_rope'] / cv):.1f} % lower."]
        for other in ("rpe", "absolute"):
            if other in by:
                lines.append(f"drope_rope vs {other}: {100 * (by['drope_rope'] / by[other] - 1):+.1f} % minADE@6.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-scenes", type=int, default=512)
    p.add_argument("--val-scenes", type=int, default=128)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0, help="training-data and model seed")
    p.add_argument("--val-seed", type=int, default=1000, help="held-out generated scenes (never trained on)")
    p.add_argument("--encodings", nargs="+", default=list(ENCODINGS))
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (the runs are sequential)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.val_seed == args.seed:
        p.error("--val-seed must differ from --seed (held-out scenes)")
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "scenes.pkl"
        with open(data, "wb") as f:
            pickle.dump((_generate(args.train_scenes, args.seed), _generate(args.val_scenes, args.val_seed)), f)
        ctx = mp.get_context("spawn")
        runs = []
        for enc in args.encodings:
            log.info("training %s", enc)
            job = {"encoding": enc, "data": str(data), "runs": tmp, "seed": args.seed, "steps": args.steps,
                   "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads}
            with ctx.Pool(1) as pool:
                r = pool.apply(_run_one, (job,))
            log.info("%s: minADE@6 %.3f, %.0f s", enc, r["metrics"]["drope"]["ALL"]["8s"]["min_ade@6"], r["train_s"])
            runs.append(r)
    meta = {"train_scenes": args.train_scenes, "val_scenes": args.val_scenes, "steps": args.steps,
            "batch_size": args.batch_size, "lr": args.lr, "train_seed": args.seed, "val_seed": args.val_seed,
            "threads": args.threads, "device": "cuda" if torch.cuda.is_available() else "cpu",
            "command": "python bench/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    md = format_markdown(runs, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.md").write_text(md)
    (args.out / "ablation.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
