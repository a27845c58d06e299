"""Compare drope's AV2 metrics and submission writer with the ``av2`` package (verification only).

NOT part of the package or the tests. The official side runs in a throwaway environment, never
a project dependency (av2's metrics and submission modules need only numpy, pandas and pyarrow)::

    python -m venv /tmp/av2env
    /tmp/av2env/bin/pip install --no-deps av2==0.3.6 numpy pyarrow pandas \
        universal_pathlib fsspec pathlib_abc python-dateutil six tzdata   # what av2.utils.typing and pandas import

Then, from the repository root in the project environment::

    python docs/compare_av2_official.py --av2-python /tmp/av2env/bin/python          # compare, rewrite golden
    python docs/compare_av2_official.py --av2-python /tmp/av2env/bin/python --check  # compare only
    python docs/compare_av2_official.py --av2-python /tmp/av2env/bin/python --read-submission FILE.parquet \
        [--scenarios AV2_ROOT --metrics EVAL_OUT/metrics.json]
        # read a drope-eval --submission file with av2's reader and drope's, compare; with --scenarios
        # also score its focal tracks with av2 against the scenarios' logged futures (vs AV2_FOCAL)

What it does:
1. builds deterministic cases (seed 0, positions rounded to 1/64 m and probabilities to 2^-20, so
   the JSON holds them exactly):
   K = 6, 8 (top 6 chosen by probability), 3 and 1; tied probabilities (K = 1 and the top-6 cut
   fall on ties), tied FDEs (identical trajectories), FDE of exactly 2 m (not a miss), 2 m + 1/64,
   unnormalised and zero probabilities, city-frame coordinates, and invalid ground-truth steps;
2. scores every track in a subprocess of ``--av2-python`` with ``av2.datasets.motion_forecasting
   .eval.metrics`` (compute_ade/fde, compute_is_missed_prediction, compute_brier_fde with
   normalize=True) following the challenge's per-track procedure: predictions in descending
   probability order, K = 1 the first, K = 6 the first six, minFDE/miss/brier at the argmin FDE,
   minADE at its own argmin. The order is a stable sort (av2's reader uses pandas' default sort,
   whose order among equal probabilities is not specified); invalid steps: av2 on the valid steps;
3. compares ``drope.metrics.av2`` with that (|diff| <= --tol, default 1e-9);
4. writes a submission with ``drope.metrics.av2_submission.write_av2_submission``, reads it with
   av2's ``ChallengeSubmission.from_parquet`` (which also runs its validation) and scores the
   trajectories and probabilities av2 read back: they must give the same metrics;
5. writes ``tests/data/av2_metrics_golden.json`` (inputs and av2's outputs), which
   ``tests/test_metrics_av2.py`` compares drope against to 1e-6 without av2 installed.
Exit status 1 when anything differs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

KEYS = ("min_ade_k1", "min_fde_k1", "miss_rate_k1", "min_ade_k6", "min_fde_k6", "miss_rate_k6", "brier_min_fde_k6")
GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "av2_metrics_golden.json"


# ---------------------------------------------------------------------------------------------
# cases (project side)
# ---------------------------------------------------------------------------------------------
def _q(x: np.ndarray, step: float = 1 / 64) -> np.ndarray:
    return np.round(np.asarray(x, np.float64) / step) * step  # exact in binary and in JSON


def _walk(rng, n: int, k: int, t: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth [n, t, 2] and predictions [n, k, t, 2] around it (some close, some far)."""
    v = rng.normal(0, 1.5, size=(n, 1, 2)) + np.array([8.0, 0.0])
    gt = np.cumsum(np.broadcast_to(v, (n, t, 2)) * 0.1 + rng.normal(0, 0.05, (n, t, 2)), axis=1)
    spread = rng.uniform(0.0, 4.0 * scale, size=(n, k, 1, 2)) * np.linspace(0, 1, t)[None, None, :, None]
    pred = gt[:, None] + spread * rng.choice([-1, 1], size=(n, k, 1, 2)) + rng.normal(0, 0.2, (n, k, t, 2))
    return gt, pred


def _prob(rng, n: int, k: int) -> np.ndarray:
    p = rng.uniform(0.05, 1.0, size=(n, k))
    # fine steps: no accidental ties (those get their own case); sums near, not at, 1
    return _q(p / p.sum(axis=1, keepdims=True) * 0.98, 2.0**-20)


def make_cases(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    cases = []

    def add(name, pred, prob, gt, valid=None):
        c = {"name": name, "pred": _q(pred).tolist(), "prob": _q(prob, 2.0**-20).tolist(), "gt": _q(gt).tolist()}
        if valid is not None:
            c["valid"] = np.asarray(valid, bool).tolist()
        cases.append(c)

    gt, pred = _walk(rng, 6, 6, 60)
    add("random_k6_t60", pred, _prob(rng, 6, 6), gt)

    gt, pred = _walk(rng, 4, 8, 12)
    prob = _prob(rng, 4, 8)
    pred[:, int(np.argmin(prob[0]))] = gt  # the exact answer, with the lowest probability of track 0: cut at K=6
    add("k8_top6_by_probability", pred, prob, gt)

    gt, pred = _walk(rng, 3, 3, 12)
    add("k3_fewer_than_6", pred, _prob(rng, 3, 3), gt)
    gt, pred = _walk(rng, 3, 1, 12)
    add("k1_single_prediction", pred, np.ones((3, 1)), gt)

    gt, pred = _walk(rng, 4, 8, 12)
    prob = np.full((4, 8), 0.125)  # all tied: K=1 is the first submitted, K=6 the first six
    prob[1] = [0.25, 0.25, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]  # tie at the top and across the top-6 cut
    add("tied_probabilities", pred, prob, gt)

    gt, pred = _walk(rng, 3, 6, 12)
    pred[:, 4] = pred[:, 1]  # identical trajectories, different probabilities: the more probable one counts
    pred[:, 2] = pred[:, 1]
    add("tied_fde", pred, _prob(rng, 3, 6), gt)

    t = 12
    gt = np.zeros((4, t, 2))
    gt[:, :, 0] = np.linspace(0, 11, t)
    pred = np.repeat(gt[:, None], 6, axis=1).copy()
    pred[:, :, -1, 1] += np.array([2.0, 2.0 + 1 / 64, 2.0 - 1 / 64, 3.0])[:, None]  # FDE exactly 2 m is no miss
    pred[:, 1:, -1, 1] += 5.0
    add("miss_threshold_edges", pred, np.tile([0.5, 0.1, 0.1, 0.1, 0.1, 0.1], (4, 1)), gt)

    gt, pred = _walk(rng, 3, 6, 12)
    prob = np.array([[0.1, 0.1, 0.1, 0.1, 0.1, 0.0], [0.5, 0.0, 0.0, 0.0, 0.0, 0.0], [0.2, 0.3, 0.05, 0.05, 0.05, 0.05]])
    add("unnormalised_and_zero_probabilities", pred, prob, gt)

    gt, pred = _walk(rng, 3, 6, 60)
    off = np.array([5123.25, -2047.5])
    add("city_frame_coordinates", pred + off, _prob(rng, 3, 6), gt + off)

    gt, pred = _walk(rng, 4, 6, 12)
    valid = np.ones((4, 12), bool)
    valid[0, 9:] = False  # ends early: FDE at step 8
    valid[1, [0, 3, 4]] = False  # holes: ADE over the valid steps
    valid[2, :] = False  # nothing to score: not counted
    gt[2] = np.nan
    add("invalid_steps", pred, _prob(rng, 4, 6), np.nan_to_num(gt, nan=0.0), valid)
    return cases


# ---------------------------------------------------------------------------------------------
# official side (runs in the av2 environment: numpy and av2 only)
# ---------------------------------------------------------------------------------------------
def _official_track(metrics, traj, prob, gt, valid) -> dict | None:
    order = np.argsort(-prob, kind="stable")
    traj, prob = traj[order], prob[order]
    if valid is not None:
        if not valid.any():
            return None
        traj, gt = traj[:, valid], gt[valid]
    fde = metrics.compute_fde(traj, gt)
    ade = metrics.compute_ade(traj, gt)
    missed = metrics.compute_is_missed_prediction(traj, gt)
    i6 = int(np.argmin(fde[:6]))
    brier = metrics.compute_brier_fde(traj, gt, prob, normalize=True)
    return {
        "min_ade_k1": float(ade[0]), "min_fde_k1": float(fde[0]), "miss_rate_k1": float(missed[0]),
        "min_ade_k6": float(ade[int(np.argmin(ade[:6]))]), "min_fde_k6": float(fde[i6]),
        "miss_rate_k6": float(missed[i6]), "brier_min_fde_k6": float(brier[i6]),
    }


def official_case(case: dict) -> dict:
    """av2's per-track values and their means for one case (imports av2)."""
    from av2.datasets.motion_forecasting.eval import metrics

    pred, prob, gt = (np.asarray(case[k], np.float64) for k in ("pred", "prob", "gt"))
    valid = np.asarray(case["valid"], bool) if "valid" in case else None
    rows = [_official_track(metrics, pred[n], prob[n], gt[n], None if valid is None else valid[n]) for n in range(len(pred))]
    per = {k: [None if r is None else r[k] for r in rows] for k in KEYS}
    counted = [r is not None for r in rows]
    summary = {k: float(np.mean([v for v in per[k] if v is not None])) for k in KEYS}
    summary["num_tracks"] = int(sum(counted))
    return {"per_track": per, "counted": counted, "summary": summary}


def official_from_submission(path: str, cases: list[dict]) -> dict:
    """Read ``path`` with av2's ChallengeSubmission and score what it read (scenario ``<case>/<n>``)."""
    from av2.datasets.motion_forecasting.eval import metrics
    from av2.datasets.motion_forecasting.eval.submission import ChallengeSubmission

    sub = ChallengeSubmission.from_parquet(Path(path))
    out = {}
    for case in cases:
        gt = np.asarray(case["gt"], np.float64)
        per = []
        for n in range(len(gt)):
            probs, tracks = sub.predictions[f"{case['name']}/{n}"]
            per.append(_official_track(metrics, tracks[f"track-{n}"], probs, gt[n], None))
        out[case["name"]] = {k: [r[k] for r in per] for k in KEYS}
    joint_probs, joint = sub.predictions["joint/0"]
    out["joint"] = {"tracks": sorted(joint), "probabilities": np.asarray(joint_probs).tolist()}
    return out


def av2_read(path: str) -> dict:
    """What av2's ChallengeSubmission.from_parquet reads from ``path`` (it also validates it)."""
    from av2.datasets.motion_forecasting.eval.submission import ChallengeSubmission

    sub = ChallengeSubmission.from_parquet(Path(path))
    return {sid: {"prob": np.asarray(p).tolist(), "tracks": {tid: np.asarray(t).tolist() for tid, t in tracks.items()}}
            for sid, (p, tracks) in sub.predictions.items()}


def av2_score_focal(sub_path: str, scenarios: str) -> dict:
    """Score a submission's focal tracks as the challenge does: av2's reader for the predictions, the
    focal track's logged future read from each ``scenario_<id>.parquet`` with pandas, av2's metrics."""
    import pandas as pd
    from av2.datasets.motion_forecasting.eval import metrics
    from av2.datasets.motion_forecasting.eval.submission import ChallengeSubmission

    sub = ChallengeSubmission.from_parquet(Path(sub_path))
    rows = []
    for pq_path in sorted(Path(scenarios).rglob("scenario_*.parquet")):
        df = pd.read_parquet(pq_path)
        sid, focal = str(df["scenario_id"].iloc[0]), str(df["focal_track_id"].iloc[0])
        tr = df[(df["track_id"] == focal) & (~df["observed"])].sort_values("timestep")
        gt = tr[["position_x", "position_y"]].to_numpy(np.float64)
        probs, tracks = sub.predictions[sid]
        if len(gt) != tracks[focal].shape[1]:
            raise SystemExit(f"{pq_path}: focal track has {len(gt)} future steps, submission {tracks[focal].shape[1]}")
        rows.append(_official_track(metrics, np.asarray(tracks[focal]), np.asarray(probs), gt, None))
    return {k: float(np.mean([r[k] for r in rows])) for k in KEYS} | {"num_tracks": len(rows)}


def _worker(argv: list[str]) -> None:
    mode, src, dst = argv
    cases = json.loads(Path(src).read_text())
    if mode == "--official":
        result = [official_case(c) for c in cases]
    elif mode.startswith("--read="):
        result = av2_read(mode.split("=", 1)[1])
    elif mode.startswith("--score="):
        result = av2_score_focal(*mode.split("=", 1)[1].split("|"))
    else:
        result = official_from_submission(mode.split("=", 1)[1], cases)
    Path(dst).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# comparison (project side)
# ---------------------------------------------------------------------------------------------
def _run(py: str, mode: str, cases: list[dict], tmp: Path):
    src, dst = tmp / "cases.json", tmp / "out.json"
    src.write_text(json.dumps(cases))
    subprocess.run([py, __file__, "--worker", mode, str(src), str(dst)], check=True)
    return json.loads(dst.read_text())


def drope_case(case: dict) -> dict:
    from drope.metrics.av2 import av2_track_metrics, summarize_av2

    per = av2_track_metrics(case["pred"], case["prob"], case["gt"], case.get("valid"))
    return {"per_track": per, "summary": summarize_av2(per)}


def _diff(a, b) -> float:
    a = np.array([np.nan if v is None else v for v in a], np.float64)
    b = np.array([np.nan if v is None else v for v in b], np.float64)
    if (np.isnan(a) != np.isnan(b)).any():
        return float("inf")
    return float(np.nanmax(np.abs(a - b), initial=0.0))


def compare_read(py: str, path: Path) -> int:
    """av2's reader and drope's on one submission file: same scenarios, tracks, probabilities, trajectories."""
    from drope.metrics.av2_submission import read_av2_submission

    with tempfile.TemporaryDirectory() as d:
        theirs = _run(py, f"--read={path.resolve()}", [], Path(d))
    ours = read_av2_submission(path)
    same_keys = sorted(theirs) == sorted(ours) and all(sorted(theirs[s]["tracks"]) == sorted(ours[s][1]) for s in ours)
    worst, sums = 0.0, []
    for sid, (prob, tracks) in ours.items() if same_keys else ():
        sums.append(abs(float(np.sum(theirs[sid]["prob"])) - 1.0))
        worst = max(worst, float(np.abs(np.asarray(theirs[sid]["prob"]) - prob).max()))
        for tid, t in tracks.items():
            worst = max(worst, float(np.abs(np.asarray(theirs[sid]["tracks"][tid]) - t).max()))
    n_tracks = sum(len(v["tracks"]) for v in theirs.values())
    print(f"{path}: av2's ChallengeSubmission.from_parquet read {len(theirs)} scenarios, {n_tracks} tracks; "
          f"same scenarios and tracks as drope's reader: {same_keys}; max |sum(p) - 1| = {max(sums, default=0):.1e}; "
          f"max |av2 - drope| over probabilities and trajectories = {worst:.1e}")
    return 0 if same_keys and worst == 0.0 else 1


def compare_scored(py: str, sub: Path, scenarios: Path, metrics_json: Path | None) -> int:
    """av2 scoring a drope-eval submission's focal tracks vs drope-eval's ``AV2_FOCAL`` row (tolerance
    1e-4). drope-eval scores float32 scene-frame positions, av2 the float64 city frame: on files that
    drope.data.av2 wrote from scenes the two agree exactly; real AV2 positions round to float32 (~1e-5 m)."""
    with tempfile.TemporaryDirectory() as d:
        theirs = _run(py, f"--score={sub.resolve()}|{scenarios.resolve()}", [], Path(d))
    if metrics_json is None:
        print("av2 on the submission's focal tracks:", json.dumps(theirs))
        return 0
    row = next(iter(json.loads(metrics_json.read_text())["drope"]["AV2_FOCAL"].values()))
    worst = max(abs(row[k] - theirs[k]) for k in KEYS)
    print(f"{'metric':<18}{'drope-eval':>12}{'av2 (submission)':>18}")
    for k in KEYS:
        print(f"{k:<18}{row[k]:>12.6f}{theirs[k]:>18.6f}")
    print(f"tracks: {row['count']} / {theirs['num_tracks']}; max |diff| = {worst:.1e}")
    return 0 if worst < 1e-4 and row["count"] == theirs["num_tracks"] else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--av2-python", required=True, help="python of the throwaway environment with av2 installed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-9)
    ap.add_argument("--check", action="store_true", help="compare only; do not rewrite the golden file")
    ap.add_argument("--golden", type=Path, default=GOLDEN)
    ap.add_argument("--read-submission", type=Path, default=None, metavar="FILE.parquet",
                    help="only read FILE (e.g. drope-eval --submission output) with av2's ChallengeSubmission reader "
                         "and with drope's read_av2_submission, and compare what they read")
    ap.add_argument("--scenarios", type=Path, default=None, metavar="ROOT",
                    help="with --read-submission: also score the file's focal tracks with av2 against the logged "
                         "futures of the AV2 scenarios under ROOT and compare with --metrics")
    ap.add_argument("--metrics", type=Path, default=None, metavar="metrics.json",
                    help="drope-eval's metrics.json of the run that wrote --read-submission (its drope AV2_FOCAL row)")
    args = ap.parse_args()
    if args.read_submission is not None:
        rc = compare_read(args.av2_python, args.read_submission)
        if args.scenarios is not None:
            rc |= compare_scored(args.av2_python, args.read_submission, args.scenarios, args.metrics)
        return rc
    from drope.metrics.av2_submission import write_av2_submission

    cases = make_cases(args.seed)
    worst = 0.0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        official = _run(args.av2_python, "--official", cases, tmp)
        print(f"{'case':<38}{'metric':<18}{'max |drope - av2|':>18}")
        for case, ref in zip(cases, official):
            ours = drope_case(case)
            for k in KEYS:
                diff = _diff(ours["per_track"][k].tolist(), ref["per_track"][k])
                worst = max(worst, diff)
                print(f"{case['name']:<38}{k:<18}{diff:>18.2e}")
            case["expected"] = ref
        # submission: one scenario per track (single-agent layout), plus a joint scenario of two tracks
        sub_cases = [c for c in cases if len(c["gt"][0]) == 60]
        rows = [(f"{c['name']}/{n}", f"track-{n}", np.asarray(c["pred"][n]), np.asarray(c["prob"][n]))
                for c in sub_cases for n in range(len(c["gt"]))]
        shared = np.asarray(sub_cases[0]["prob"][0])
        rows += [("joint/0", f"track-{n}", np.asarray(sub_cases[0]["pred"][n]), shared) for n in range(2)]
        path = tmp / "submission.parquet"
        write_av2_submission(path, rows)
        read_back = _run(args.av2_python, f"--submission={path}", sub_cases, tmp)
        for c in sub_cases:
            # probabilities were normalised on writing: compare with drope on the normalised file values
            p = np.asarray(c["prob"], np.float64)
            ours = drope_case({**c, "prob": (p / p.sum(axis=1, keepdims=True)).tolist()})
            for k in KEYS:
                diff = _diff(ours["per_track"][k].tolist(), read_back[c["name"]][k])
                worst = max(worst, diff)
                print(f"{'submission/' + c['name']:<38}{k:<18}{diff:>18.2e}")
        joint_ok = read_back["joint"]["tracks"] == ["track-0", "track-1"] and np.allclose(
            sorted(read_back["joint"]["probabilities"], reverse=True), sorted(shared / shared.sum(), reverse=True))
        print(f"joint scenario read back by av2 with its shared probabilities: {joint_ok}")
    ok = worst <= args.tol and joint_ok
    print(f"\nworst difference {worst:.2e} (tolerance {args.tol:.0e}): {'OK' if ok else 'FAILED'}")
    if ok and not args.check:
        version = subprocess.run([args.av2_python, "-c", "import importlib.metadata as m; print(m.version('av2'))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        golden = {
            "about": "AV2 metrics of deterministic cases as av2's own functions compute them; written by "
                     "docs/compare_av2_official.py (rerun it to regenerate), checked by tests/test_metrics_av2.py",
            "av2_version": version,
            "seed": args.seed,
            "cases": cases,
        }
        args.golden.parent.mkdir(parents=True, exist_ok=True)
        args.golden.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
        print(f"wrote {args.golden} ({args.golden.stat().st_size / 1e3:.0f} kB)")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2:])
    else:
        sys.exit(main())
