"""``drope-data``: inspect and convert scenario data: WOMD Scenario shards (real or generated) and
Argoverse 2 scenario directories or split roots (format detected per path, see drope.data.formats).

Subcommands:
  info   per-scenario summary (``--json``: one JSON object per line; keys are a contract)
  stats  distribution summary (agents by type, speed, acceleration, yaw rate, extent, map)
  cache  convert shards into the compact training cache (parallel, resumable; indexes its output)
  index  write a directory's scene index (drope-index.json) so training starts without reading every file
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from drope.data.av2 import Av2FormatError
from drope.data.cache import CacheError
from drope.data.shard_index import IndexFileError
from drope.data.tfrecord import CorruptRecordError

EPILOG = """examples:
  drope-data info ../shared/data/womd/motion_data_one_scenario.tfrecord --json
  drope-data stats data/generated/*.tfrecord
  drope-data cache data/generated/*.tfrecord --out data/cache --workers 2
  drope-data info av2/val/<scenario_id> --json      # one AV2 scenario directory
  drope-data stats av2/val --on-corrupt skip        # an AV2 split root
  drope-data cache av2/train --out data/av2_cache   # 1000 scenarios per cache file
  drope-data index womd/training --workers 8       # raw shards: offsets of every record, written once
"""


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "files", nargs="+", type=Path,
        help="WOMD Scenario TFRecord shards (plain or gzip), AV2 scenario directories or AV2 split roots",
    )
    p.add_argument(
        "--on-corrupt",
        choices=["raise", "skip"],
        default="raise",
        help="corrupt record or unreadable AV2 scenario: stop with an error naming the file (raise, default) "
        "or log, count and go on (skip)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drope-data", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser(
        "info",
        help="summary per scenario",
        description="Summary per scenario. With --json, one object per line with keys scenario_id, num_agents, "
        "agent_types, num_steps, current_index, sdc_index, sdc_world_pose [x, y, heading] (world), "
        "map_feature_counts, tracks_to_predict, num_valid_at_current.",
    )
    _add_inputs(info)
    info.add_argument("--json", action="store_true", help="one JSON object per scenario per line")
    stats = sub.add_parser(
        "stats",
        help="distribution summary over all scenarios",
        description="Distributions over all scenarios (mean/p5/p50/p95): agents per scene (total and by type), "
        "speed, |acceleration| and |yaw rate| by type (finite differences over valid step pairs), scene extent "
        "(largest side of the box around valid agent positions) and map features per scene by kind. Works for "
        "real and generated shards alike.",
    )
    _add_inputs(stats)
    stats.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    cache = sub.add_parser(
        "cache",
        help="convert shards into the training cache (resumable)",
        description="Convert shards into the compact training cache: one <shard>.scenes.npz per shard under --out "
        "(float32 scene-frame tensors, deflated per member; ~0.3 MB per WOMD scene). Shards are converted in "
        "parallel processes; a shard whose cache file exists and matches the source's size and mtime is skipped, "
        "so an interrupted run resumes. Writes the directory's scene index (as drope-data index) at the end. Train on it with drope-train data.train=[DIR]; load with drope.data.sources.load_scenes(DIR).",
    )
    _add_inputs(cache)
    cache.add_argument("--out", type=Path, required=True, help="cache directory (created if missing)")
    cache.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    cache.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cache.add_argument(
        "--scenes-per-file", type=int, default=1000,
        help="AV2 split roots: scenario directories per cache file (<root>-00000.scenes.npz, ...)",
    )
    index = sub.add_parser(
        "index",
        help="write a directory's scene index (read by drope-train/drope-eval instead of every file)",
        description="Scan the cache files or TFRecord shards of each DIR (record headers only) and write "
        "DIR/drope-index.json (per file: size, mtime, scene count) and DIR/drope-index.records.npy (offset and "
        "length of every TFRecord record, memory-mapped by readers). A dataset then starts without reading its "
        "files; a file changed since is noticed (size/mtime) and scanned again, with a warning.",
    )
    index.add_argument("dirs", nargs="+", type=Path, help="directories of cache files or TFRecord shards")
    index.add_argument("--workers", type=int, default=4, help="threads reading headers (I/O bound; default 4)")
    return parser


def _cmd_index(args) -> int:
    from drope.data.shard_index import INDEX_NAME, write_index

    for d in args.dirs:
        rep = write_index(d, workers=args.workers)
        print(f"index {d / INDEX_NAME}: {rep['files']} file(s), {rep['scenes']} scenes"
              + (f", {rep['bad']} bad record header(s) (the rest of those shards is unreachable)" if rep["bad"] else ""))
    return 0


def _cmd_info(args) -> int:
    from drope.data.formats import read_scenes
    from drope.data.summary import scene_info
    from drope.data.womd import ReadStats

    stats = ReadStats()
    for scene in read_scenes(args.files, on_corrupt=args.on_corrupt, stats=stats):
        rec = scene_info(scene)
        print(json.dumps(rec) if args.json else _info_line(rec), flush=True)
    if stats.skipped:
        print(f"drope-data: skipped {stats.skipped} corrupt record(s) or scenario(s)", file=sys.stderr)
    return 0


def _info_line(rec: dict) -> str:
    types = ", ".join(f"{k[5:].lower()} {v}" for k, v in rec["agent_types"].items())
    maps = ", ".join(f"{k} {v}" for k, v in rec["map_feature_counts"].items() if v)
    pose = rec["sdc_world_pose"]
    sdc = f"at ({pose[0]:.3f}, {pose[1]:.3f}) heading {pose[2]:.4f}" if pose else "not valid at the current step"
    return (
        f"{rec['scenario_id']}: {rec['num_agents']} agents ({types}), {rec['num_steps']} steps "
        f"(current {rec['current_index']}), {rec['num_valid_at_current']} valid now, SDC #{rec['sdc_index']} "
        f"{sdc}; map: {maps}; predict {rec['tracks_to_predict']}"
    )


def _cmd_stats(args) -> int:
    from drope.data.formats import read_scenes
    from drope.data.stats import dataset_stats, format_stats_table
    from drope.data.womd import ReadStats

    rs = ReadStats()
    stats = dataset_stats(read_scenes(args.files, on_corrupt=args.on_corrupt, stats=rs))
    stats["corrupt_records_skipped"] = rs.skipped
    print(json.dumps(stats) if args.json else format_stats_table(stats))
    return 0


def _cmd_cache(args) -> int:
    from drope.data.cache import build_cache

    rep = build_cache(
        args.files, args.out, workers=args.workers, on_corrupt=args.on_corrupt, progress=not args.no_progress,
        scenes_per_file=args.scenes_per_file,
    )
    print(
        f"cache {args.out}: {rep.shards_written} file(s) written, {rep.shards_skipped} already present, "
        f"{rep.scenes} scenes, {rep.bytes / 1e6:.2f} MB ({rep.bytes_per_scene / 1e6:.3f} MB/scene), "
        f"{rep.corrupt_records} corrupt record(s) or scenario(s) skipped"
    )
    return 0


COMMANDS = {"info": _cmd_info, "stats": _cmd_stats, "cache": _cmd_cache, "index": _cmd_index}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    for opt in ("workers", "scenes_per_file"):
        if getattr(args, opt, None) is not None and getattr(args, opt) < 1:
            print(f"drope-data: --{opt.replace('_', '-')} must be at least 1, got {getattr(args, opt)}", file=sys.stderr)
            return 2
    try:
        return COMMANDS[args.command](args)
    except CorruptRecordError as e:
        print(f"drope-data: corrupt input: {e} (use --on-corrupt skip to go on)", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0
    except Av2FormatError as e:  # e.g. a parquet missing columns: the message names the file
        print(f"drope-data: bad AV2 input: {e} (use --on-corrupt skip to go on)", file=sys.stderr)
        return 2
    except (OSError, CacheError, IndexFileError) as e:  # missing/unreadable input or output: a user error, no traceback
        print(f"drope-data: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
