"""``drope-eval --ckpt PATH [--data FILE...] [--out DIR]``: open-loop metrics for a trained model.

Reports minADE/minFDE (K = 1 and 6), miss rate (2 m), Brier-minFDE per object type at 3/5/8 s
for the model and for constant-velocity / constant-turn-rate baselines, on the scenes' tracks to
predict. Without ``--data``, held-out generated scenes are used (``--seed``, default 1000, a seed
the default training never uses). Writes ``metrics.json`` and prediction plots under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by drope-train (last.ckpt)")
    p.add_argument("--data", nargs="*", default=[], help="Scenario shards / cache dirs (default: generated)")
    p.add_argument("--num-scenes", type=int, default=64, help="generated scenes when --data is not given")
    p.add_argument("--seed", type=int, default=1000, help="seed of the generated evaluation scenes")
    p.add_argument("--all-agents", action="store_true", help="score every valid agent, not only tracks to predict")
    p.add_argument("--out", type=Path, default=Path("eval_out"))
    p.add_argument("--plots", type=int, default=4, help="prediction plots for the first N scenes")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from drope.eval.evaluate import evaluate
    from drope.eval.metrics import format_table
    from drope.train.data import generated_scenes, load_scenes
    from drope.train.trainer import load_model

    try:
        model, _ = load_model(args.ckpt)
        scenes = load_scenes(args.data) if args.data else generated_scenes(args.num_scenes, args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"drope-eval: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    res = evaluate(model, scenes, only_tracks_to_predict=not args.all_agents, plot_dir=args.out / "plots",
                   num_plots=args.plots)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(res, indent=1))
    short = {m: {"ALL": r["ALL"]} for m, r in res.items()}
    print(format_table(short))
    print(f"\nper-type results and plots in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
