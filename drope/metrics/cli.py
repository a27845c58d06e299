"""``drope-score``: score sim-agents rollouts or motion predictions against scenario shards.

    drope-score wosac ROLLOUTS --scenarios FILE... [--json]   (ROLLOUTS: a submission file, a
        directory of *.binproto-NNNNN-of-NNNNN shards, or their .tar.gz)
    drope-score motion SUBMISSION --scenarios FILE... [--json]
    drope-score merge PART.jsonl... [--json]

Scoring spread over processes or machines: ``drope-score wosac ... --json --num-shards N
--shard-index I > part-I.jsonl`` scores the scenarios i ≡ I (mod N) of the rollouts' order
(default from ``WORLD_SIZE``/``RANK``, as set by torchrun; explicit flags win) and tags each row
with its ``index``; ``drope-score merge part-*.jsonl`` prints the rows in order and the mean,
exactly as one unsharded run.

Exit status: 0 scored, 2 bad input (unreadable file, rule violation, missing scenario).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys

import numpy as np
import torch

log = logging.getLogger(__name__)


def _scenes(paths: list[str], wanted: set[str]) -> dict:
    from drope.data.womd import read_scenarios

    out = {}
    for scene in read_scenarios(paths):
        if scene.scenario_id in wanted:
            out[scene.scenario_id] = scene
    missing = wanted - set(out)
    if missing:
        raise ValueError(f"scenarios {sorted(missing)} not found in {paths}")
    return out


def json_value(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def run_wosac(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from drope.metrics.submission import iter_rollouts, scenario_rollouts_arrays, validate_scenario_rollouts
    from drope.metrics.wosac import prepare_scene, score_prepared

    # streaming: a first pass collects the scenario ids only, the second scores scenario by
    # scenario; either way one shard is held in memory at a time
    from drope.shards import shard_of

    shard, num_shards = shard_of(args.num_shards, args.shard_index)
    mine = lambda i: i % num_shards == shard  # noqa: E731
    ids = [ro.scenario_id for i, ro in enumerate(iter_rollouts(args.rollouts)) if mine(i)]
    scenes = _scenes(args.scenarios, set(ids))
    rows = []
    todo = (x for x in enumerate(iter_rollouts(args.rollouts)) if mine(x[0]))
    for i, ro in tqdm(todo, total=len(ids), desc="wosac", disable=len(ids) < 2 or args.json):
        scene = scenes[ro.scenario_id]
        validate_scenario_rollouts(ro, scene, n_rollouts=args.rollouts_per_scenario)
        p = prepare_scene(scene)
        xy, z, h = scenario_rollouts_arrays(ro, p)
        rows.append(({"index": i} if num_shards > 1 else {}) | score_prepared(p, xy, z, h))
    return print_wosac_rows(rows, args.json)


def print_wosac_rows(rows: list[dict], as_json: bool) -> int:
    from drope.metrics.wosac import METRIC_FIELDS

    if as_json:
        for r in rows:
            print(json.dumps({k: json_value(v) for k, v in r.items()}))
        return 0
    for r in rows:
        print(f"scenario {r['scenario_id']}")
        for k in METRIC_FIELDS[1:]:
            print(f"  {k:<42} {r[k]:.4f}")
    if len(rows) > 1:
        print("mean over scenarios")
        for k in METRIC_FIELDS[1:]:
            print(f"  {k:<42} {np.mean([r[k] for r in rows]):.4f}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """Rows of ``drope-score wosac --json --num-shards N`` parts, in scenario order, index dropped."""
    rows = []
    for path in args.parts:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    r = json.loads(line)
                    if "index" not in r:
                        raise ValueError(f"{path} line {n}: no 'index' (not from drope-score wosac --num-shards N --json)")
                    rows.append(r)
    rows.sort(key=lambda r: r["index"])
    if [r["index"] for r in rows] != list(range(len(rows))):
        seen = {r["index"] for r in rows}
        raise ValueError(f"parts {args.parts} miss or repeat scenario indices (missing {sorted(set(range(len(rows))) - seen)[:10]})")
    nan = float("nan")
    return print_wosac_rows([{k: nan if v is None else v for k, v in r.items() if k != "index"} for r in rows], args.json)


def run_motion(args: argparse.Namespace) -> int:
    from drope.geometry import world_to_frame
    from drope.metrics.motion import MotionMetricsConfig, aggregate_motion_metrics, motion_records_2hz
    from drope.metrics.submission import read_motion_submission

    config = MotionMetricsConfig()
    preds = read_motion_submission(args.submission)
    scenes = _scenes(args.scenarios, set(preds))
    records = []
    for sid, rows in preds.items():
        scene = scenes[sid]
        id_to_index = {int(i): a for a, i in enumerate(scene.agent_id.tolist())}
        required = {int(scene.agent_id[a]) for a in scene.tracks_to_predict.tolist()}
        given = {oid for oid, _, _ in rows}
        if required - given:
            raise ValueError(f"scenario {sid}: missing predictions for required objects {sorted(required - given)}")
        unknown = given - set(id_to_index)
        if unknown:
            raise ValueError(f"scenario {sid}: predictions for unknown objects {sorted(unknown)}")
        K = max(xy.shape[0] for _, xy, _ in rows)
        P = config.num_prediction_steps
        for oid, xy, _ in rows:
            if xy.shape[1] != P:
                raise ValueError(f"scenario {sid}, object {oid}: {xy.shape[1]} points per trajectory, expected {P}")
        if any(xy.shape[0] != K for _, xy, _ in rows):
            bad = [oid for oid, xy, _ in rows if xy.shape[0] != K]
            raise ValueError(f"scenario {sid}: objects {bad} carry fewer than {K} predictions (all must have the same count)")
        pred = np.stack([world_to_frame(xy, scene.origin_xy.numpy(), float(scene.origin_heading)) for _, xy, _ in rows])
        prob = np.stack([conf for _, _, conf in rows])
        agent_index = torch.tensor([id_to_index[oid] for oid, _, _ in rows])
        records.append(motion_records_2hz(scene, agent_index, torch.from_numpy(pred), torch.from_numpy(prob), config))
    result = aggregate_motion_metrics(records, config)
    if args.json:
        print(json.dumps(result))
        return 0
    for t, per_h in result.items():
        print(t if per_h is not None else f"{t}: no objects")
        for h, m in (per_h or {}).items():
            vals = "  ".join(f"{k}={'-' if v is None else f'{v:.4f}'}" for k, v in m.items())
            print(f"  {h}: {vals}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="drope-score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wosac", help="2025 sim-agents metrics of a SimAgentsChallengeSubmission / ScenarioRollouts file")
    w.add_argument("rollouts", help="SimAgentsChallengeSubmission / ScenarioRollouts file, a directory of "
                   "*.binproto-NNNNN-of-NNNNN shards, or a .tar.gz of them")
    w.add_argument("--scenarios", nargs="+", required=True, help="WOMD Scenario TFRecord shards")
    w.add_argument("--json", action="store_true", help="one JSON object per scenario (SimAgentMetrics field names)")
    w.add_argument("--rollouts-per-scenario", type=int, default=32, help="expected joint scenes per scenario (official: 32)")
    w.add_argument("--num-shards", type=int, default=None,
                   help="score only scenarios i = shard-index (mod num-shards) of the rollouts' order (default: $WORLD_SIZE or 1)")
    w.add_argument("--shard-index", type=int, default=None, help="this process's shard (default: $RANK or 0)")
    w.set_defaults(fn=run_wosac)
    g = sub.add_parser("merge", help="merge the --json outputs of drope-score wosac --num-shards N runs")
    g.add_argument("parts", nargs="+", help="files holding the JSON rows of each shard")
    g.add_argument("--json", action="store_true", help="one JSON object per scenario, as an unsharded --json run")
    g.set_defaults(fn=run_merge)
    m = sub.add_parser("motion", help="WOMD motion metrics of a MotionChallengeSubmission file")
    m.add_argument("submission")
    m.add_argument("--scenarios", nargs="+", required=True, help="WOMD Scenario TFRecord shards")
    m.add_argument("--json", action="store_true", help="one JSON object: type -> horizon -> metric")
    m.set_defaults(fn=run_motion)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    try:
        return int(args.fn(args))
    except (ValueError, OSError) as e:
        print(f"drope-score: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
