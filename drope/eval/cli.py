"""``drope-eval --ckpt PATH [--data FILE...] [--out DIR] [--submission FILE]``: open-loop metrics of a trained model.

For the model and the constant-velocity / constant-turn-rate baselines, on the scenes' tracks to
predict, per object type at 3/5/8 s:

- the official WOMD motion metrics (drope.metrics.motion, the definitions of the official
  motion-metrics op, 2 Hz, 6 predictions): min_ade, min_fde, miss_rate (speed-scaled
  lateral/longitudinal thresholds), overlap_rate, mean_average_precision,
  soft_mean_average_precision — the numbers ``drope-score motion --json`` reports;
- drope's dense 10 Hz metrics: min_ade@1/@6, min_fde@1/@6, miss_rate@1/@6 (2 m), brier_min_fde,
  also pooled over all types ("ALL").

Without ``--data``, held-out generated scenes are used (``--seed``, default 1000, a seed the
default training never uses). ``--data`` streams (shards, cache dirs, AV2 scenario dirs, globs,
any mix) through the same dataset layer as drope-train: memory does not grow with the number of
scenes (metrics are accumulated per batch), a progress bar shows scenes/s, and corrupt records
are skipped and counted, not fatal. Writes ``metrics.json`` ({method: {type|ALL: {3s|5s|8s: row}}}),
``read.json`` (scenes evaluated, corrupt records skipped) and prediction plots under ``--out``. ``--submission FILE`` also writes the model's predictions as
an official ``MotionChallengeSubmission`` (6 modes, 16 points at 2 Hz = steps 15…90, world
coordinates, object id = track id, confidence = mode probability) that ``drope-score motion FILE
--scenarios ...`` scores to the same official numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

#: submission header flags -> SubmissionMetadata fields
META_FLAGS = {"account_name": "WOMD account e-mail", "unique_method_name": "method name shown on the leaderboard",
              "authors": "author names", "affiliation": "affiliation", "description": "method description",
              "method_link": "link to the method (paper / code)"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="drope-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by drope-train (last.ckpt)")
    p.add_argument("--data", nargs="*", default=[], help="Scenario shards / cache dirs (default: generated)")
    p.add_argument("--num-scenes", type=int, default=64, help="generated scenes when --data is not given")
    p.add_argument("--seed", type=int, default=1000, help="seed of the generated evaluation scenes")
    p.add_argument("--all-agents", action="store_true", help="score every valid agent, not only tracks to predict")
    p.add_argument("--max-agents", type=int, default=64,
                   help="agents per scene the model sees, nearest the SDC (0: all); default 64")
    p.add_argument("--out", type=Path, default=Path("eval_out"))
    p.add_argument("--plots", type=int, default=4, help="prediction plots for the first N scenes")
    p.add_argument("--batch-size", type=int, default=8, help="scenes per forward pass")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers reading --data (0: main process)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    g = p.add_argument_group("submission", "official MotionChallengeSubmission of the model's predictions; the "
                             "header defaults are placeholders to override for a real challenge entry")
    g.add_argument("--submission", type=Path, default=None, metavar="FILE",
                   help="write the model's predictions for the tracks to predict as a MotionChallengeSubmission proto")
    from drope.metrics.submission import SubmissionMetadata

    default = SubmissionMetadata(description="DRoPE transformer predictions")
    for name, what in META_FLAGS.items():
        value = getattr(default, name)
        g.add_argument(f"--{name.replace('_', '-')}", default=value, nargs="+" if isinstance(value, tuple) else None,
                       help=f"{what} (default: {' '.join(value) if isinstance(value, tuple) else repr(value)})")
    return p


def _check_complete(p) -> None:
    """Every tracks_to_predict object must carry a prediction, or the submission is not valid."""
    s = p.scene
    missing = sorted(set(s.tracks_to_predict.tolist()) - set(p.agent_index.tolist()))
    if missing:
        ids = [int(s.agent_id[a]) for a in missing]
        raise ValueError(f"scenario {s.scenario_id}: tracks to predict {ids} have no prediction (dropped by "
                         f"--max-agents or not valid at the current step); a submission needs all of them")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from drope.data.sources import generated_scenes, load_scenes
    from drope.data.stream import as_dataset
    from drope.eval.evaluate import ReadStats, Scorer, iter_predictions, official_fit
    from drope.eval.metrics import format_official_table, format_table
    from drope.eval.submission import MotionSubmissionWriter
    from drope.metrics.submission import SubmissionMetadata
    from drope.model.checkpoint import load_model

    if args.submission is not None and args.all_agents:
        print("drope-eval: --submission holds the tracks to predict only; drop --all-agents", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    writer, stats, scorer = None, ReadStats(), Scorer()
    try:
        model, _ = load_model(args.ckpt)
        scenes = load_scenes(args.data) if args.data else as_dataset(generated_scenes(args.num_scenes, args.seed))
        if args.submission is not None:
            meta = SubmissionMetadata(**{k: getattr(args, k) for k in META_FLAGS},
                                      num_model_parameters=str(sum(p.numel() for p in model.parameters())))
            writer = MotionSubmissionWriter(args.submission, meta)
        for p in iter_predictions(model, scenes, batch_size=args.batch_size, max_agents=args.max_agents or None,
                                  only_tracks_to_predict=not args.all_agents, plot_dir=args.out / "plots",
                                  num_plots=args.plots, num_workers=args.num_workers, progress=args.progress,
                                  stats=stats):
            scorer.add(p)
            if writer is not None:
                if (why := official_fit([p])) is not None:
                    raise ValueError(f"cannot write a MotionChallengeSubmission: {why}")
                _check_complete(p)
                writer.add(p.scene, p.agent_index, p.xy["drope"], p.prob["drope"])
        n = writer.close() if writer is not None else 0
    except (FileNotFoundError, ValueError, OSError) as e:
        if writer is not None:
            writer.abort()
        print(f"drope-eval: {e}", file=sys.stderr)
        return 2
    res = scorer.result()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(res, indent=1))
    (args.out / "read.json").write_text(json.dumps({"scenes": stats.scenes, "corrupt": stats.corrupt}, indent=1))
    print("drope dense metrics (10 Hz; miss = final error > 2 m), all types")
    print(format_table({m: {"ALL": r["ALL"]} for m, r in res.items()}))
    print("\nofficial WOMD motion metrics (drope.metrics.motion = drope-score motion), per type")
    print(format_official_table(res))
    print(f"\n{stats.scenes} scenes evaluated, {stats.corrupt} corrupt records skipped; per-type results and plots in {args.out}/")
    if args.submission is not None:
        print(f"MotionChallengeSubmission with {n} scenarios -> {args.submission}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
