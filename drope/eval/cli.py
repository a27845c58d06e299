"""``drope-eval --ckpt PATH [--data PATH...] [--out DIR] [--submission FILE]``: open-loop metrics of a trained model.

For the model and the constant-velocity / constant-turn-rate baselines, on the scenes' tracks to
predict: drope's dense 10 Hz metrics, plus the official metrics of the scenes' dataset (chosen by
the scenes' source through drope.eval.metric_sets; one run holds one dataset).

Without ``--data``, held-out generated scenes are used (``--seed``, default 1000, a seed the
default training never uses). ``--data`` streams (shards, cache dirs, AV2 scenario dirs or split
roots, globs, any mix) through the same dataset layer as drope-train: memory does not grow with the
number of scenes (metrics are accumulated per batch), a progress bar shows scenes/s, and corrupt
records (a bad TFRecord, an AV2 directory without its map JSON, a parquet missing columns or not a
parquet file) are skipped and counted (``--on-corrupt skip``, the default) or end the run naming
the file (``--on-corrupt raise``).

Output (under ``--out``): ``read.json`` ``{"scenes": evaluated, "corrupt": skipped}``, prediction
plots, and ``metrics.json`` = ``{method: {group: {horizon: row}}}``, method ``drope`` |
``constant_velocity`` | ``constant_turn_rate``:

- groups ``TYPE_VEHICLE``, ``TYPE_PEDESTRIAN``, ``TYPE_CYCLIST``, ``ALL``; horizons ``3s``, ``5s``,
  ``8s`` (a shorter future ends at its length: AV2's 60 steps give ``3s``, ``5s``, ``6s``); dense keys
  ``min_ade@1``, ``min_ade@6``, ``min_fde@1``, ``min_fde@6``, ``miss_rate@1``, ``miss_rate@6``
  (final error > 2 m), ``brier_min_fde@1``, ``brier_min_fde@6``, ``count`` (agents);
- WOMD and generated scenes: the official WOMD motion metrics (drope.metrics.motion, the
  official motion-metrics op: 2 Hz, 6 predictions, speed-scaled misses) in the per-type rows:
  ``min_ade``, ``min_fde``, ``miss_rate``, ``overlap_rate``, ``mean_average_precision``,
  ``soft_mean_average_precision`` -- the numbers ``drope-score motion --json`` reports;
- Argoverse 2 scenes: the official AV2 metrics (drope.metrics.av2, equal to
  av2.datasets.motion_forecasting.eval.metrics) in two more groups, ``AV2_FOCAL`` (the focal
  track: the challenge's numbers) and ``AV2_SCORED`` (every scored track, focal included), each
  with one row at the full horizon (``6s``): ``min_ade_k1``, ``min_fde_k1``, ``miss_rate_k1``,
  ``min_ade_k6``, ``min_fde_k6``, ``miss_rate_k6`` (FDE > 2 m), ``brier_min_fde_k6``, ``count``
  (tracks with a logged future; a test split without futures gives None and 0).
  E.g. ``metrics.json["drope"]["AV2_FOCAL"]["6s"]["brier_min_fde_k6"]``.

``--submission FILE`` writes the model's predictions in the challenge format of the scenes' dataset,
streamed: WOMD / generated scenes an official ``MotionChallengeSubmission`` binproto (6 modes, 16
points at 2 Hz = steps 15..90, world coordinates, object id = track id, confidence = mode
probability; any name but ``.parquet``) that ``drope-score motion FILE --scenarios ...`` scores to the
same official numbers; AV2 scenes the official ``ChallengeSubmission`` parquet (``FILE.parquet``;
scenario_id, track_id, probability, predicted_trajectory_x/y: the focal track's 6 modes, 60 steps,
AV2 city coordinates, probabilities summing to 1), read by av2's ``ChallengeSubmission.from_parquet``.
A file name of the other format is an error.
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
    p.add_argument("--data", nargs="*", default=[],
                   help="Scenario shards, cache dirs, AV2 scenario dirs / split roots, globs (default: generated)")
    p.add_argument("--num-scenes", type=int, default=64, help="generated scenes when --data is not given")
    p.add_argument("--seed", type=int, default=1000, help="seed of the generated evaluation scenes")
    p.add_argument("--all-agents", action="store_true", help="score every valid agent, not only tracks to predict")
    p.add_argument("--max-agents", type=int, default=64,
                   help="agents per scene the model sees, nearest the SDC (0: all); default 64")
    p.add_argument("--out", type=Path, default=Path("eval_out"))
    p.add_argument("--plots", type=int, default=4, help="prediction plots for the first N scenes")
    p.add_argument("--batch-size", type=int, default=8, help="scenes per forward pass")
    p.add_argument("--device", default="auto",
                   help="where the model runs: auto (a GPU when CUDA is available, else the CPU), cpu, cuda "
                        "(cuda:$LOCAL_RANK), cuda:N; default auto")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers reading --data (0: main process)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--on-corrupt", choices=("skip", "raise"), default="skip",
                   help="a corrupt record / AV2 scenario in --data: skip and count it in read.json (default), or "
                        "stop with an error naming the file")
    g = p.add_argument_group("submission", "challenge submission of the model's predictions, in the format of the "
                             "scenes' dataset; the WOMD header defaults are placeholders to override for a real entry")
    g.add_argument("--submission", type=Path, default=None, metavar="FILE",
                   help="write the model's predictions for the tracks to predict: WOMD MotionChallengeSubmission "
                        "binproto, or for AV2 scenes the ChallengeSubmission parquet (FILE.parquet)")
    from drope.metrics.submission import SubmissionMetadata

    default = SubmissionMetadata(description="DRoPE transformer predictions")
    for name, what in META_FLAGS.items():
        value = getattr(default, name)
        g.add_argument(f"--{name.replace('_', '-')}", default=value, nargs="+" if isinstance(value, tuple) else None,
                       help=f"{what} (default: {' '.join(value) if isinstance(value, tuple) else repr(value)})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from drope.data.sources import generated_scenes, load_scenes
    from drope.data.stream import as_dataset
    from drope.eval.evaluate import ReadStats, Scorer, iter_predictions
    from drope.eval.metric_sets import WOMD
    from drope.eval.displacement import format_table
    from drope.eval.submission import SubmissionSink
    from drope.metrics.submission import SubmissionMetadata
    from drope.device import resolve_device
    from drope.model.checkpoint import load_model

    if args.submission is not None and args.all_agents:
        print("drope-eval: --submission holds the tracks to predict only; drop --all-agents", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    writer, stats, scorer = None, ReadStats(), Scorer()
    try:
        device = resolve_device(args.device, "--device")
        model, _ = load_model(args.ckpt)
        scenes = (load_scenes(args.data, on_corrupt=args.on_corrupt) if args.data
                  else as_dataset(generated_scenes(args.num_scenes, args.seed)))
        if args.submission is not None:
            meta = SubmissionMetadata(**{k: getattr(args, k) for k in META_FLAGS},
                                      num_model_parameters=str(sum(p.numel() for p in model.parameters())))
            writer = SubmissionSink(args.submission, meta)
        for p in iter_predictions(model, scenes, batch_size=args.batch_size, max_agents=args.max_agents or None,
                                  only_tracks_to_predict=not args.all_agents, plot_dir=args.out / "plots",
                                  num_plots=args.plots, num_workers=args.num_workers, progress=args.progress,
                                  stats=stats, device=device):
            scorer.add(p)
            if writer is not None:
                writer.add(p)
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
    official = scorer.metric_set or WOMD
    print(f"\n{official.title}")
    print(official.table(res))
    print(f"\n{stats.scenes} scenes evaluated, {stats.corrupt} corrupt records skipped; per-type results and plots in {args.out}/")
    if args.submission is not None:
        print(f"{writer.format.what if writer.format else 'no submission: no scene was read'} with {n} scenarios"
              f" -> {args.submission}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
