"""``drope-viz PATH --out scene.png``: plot one scenario of a WOMD shard or an Argoverse 2 scenario
directory / split root (read through drope.data.formats, so the plot code never sees the dataset)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="drope-viz",
        description="Plot one scenario of a WOMD Scenario TFRecord shard or an AV2 scenario directory / split "
        "root: map (lanes, road lines and edges, "
        "crosswalks, stop signs, signal states at the step), agents as oriented boxes coloured by type "
        "(SDC orange, tracks to predict outlined), their history (solid) and logged future (dashed).",
        epilog="examples: drope-viz shard.tfrecord --index 3 --out scene.png --dpi 150; "
        "drope-viz av2/val/<scenario_id> --out av2.png",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", type=Path, help="Scenario TFRecord shard (plain or gzip), AV2 scenario directory or split root")
    p.add_argument("--out", type=Path, default=Path("scene.png"), help="output image (png/pdf/svg)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--index", type=int, default=0, help="which scenario of the shard or split (0-based)")
    g.add_argument("--scenario-id", help="plot the scenario with this id instead")
    p.add_argument("--step", type=int, default=None, help="time step to draw boxes at (default: current)")
    p.add_argument("--extent", type=float, default=None, help="half-width of the view in metres (default: auto)")
    p.add_argument("--dpi", type=int, default=130, help="resolution of raster outputs")
    p.add_argument("--no-legend", dest="legend", action="store_false", help="leave out the legend")
    p.add_argument("--no-future", dest="future", action="store_false", help="leave out the logged future")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drope.data.formats import read_scenes
    from drope.data.tfrecord import CorruptRecordError
    from drope.viz import plot_scene

    try:
        scene = None
        for i, s in enumerate(read_scenes(args.file)):
            if (args.scenario_id is None and i == args.index) or s.scenario_id == args.scenario_id:
                scene = s
                break
    except (CorruptRecordError, OSError, ValueError) as e:
        print(f"drope-viz: {args.file}: {e}", file=sys.stderr)
        return 2
    if scene is None:
        what = f"scenario id {args.scenario_id!r}" if args.scenario_id else f"index {args.index}"
        print(f"drope-viz: {args.file} has no scenario with {what}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    fig, ax = plt.subplots(figsize=(8, 8))
    try:
        plot_scene(scene, ax, step=args.step, extent=args.extent, legend=args.legend, future=args.future)
    except ValueError as e:  # e.g. --step outside the scenario
        plt.close(fig)
        print(f"drope-viz: {e}", file=sys.stderr)
        return 2
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    plt.close(fig)
    print(f"wrote {args.out} ({scene.scenario_id}, {time.perf_counter() - t0:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
