"""Compare ``drope.metrics.motion`` with the official WOMD motion-metrics op (verification only).

NOT part of the package or the tests. The official side needs a throwaway environment with
TensorFlow and the Waymo wheel, never a project dependency::

    python -m venv $TFENV
    $TFENV/bin/pip install "tensorflow==2.13.*"
    $TFENV/bin/pip install --no-deps waymo-open-dataset-tf-2-12-0==1.6.7

Then, from the repository root in the project environment::

    python docs/compare_motion_official.py --womd ../shared/data/womd/motion_data_one_scenario.tfrecord \\
        --tf-python $TFENV/bin/python [--generated 6] [--seed 0]

The script builds 16 cases from the shared WOMD scene and generated scenes, with deliberately
diverse predictions and ground truth:
- predictions: the log future, lateral/longitudinal shifts inside and outside the miss
  thresholds, constant velocity, random walks and duplicate true positives;
- confidences: tied, zero or all-equal; 8 predictions, of which the op reads 6;
- ground truth: futures invalid at measurement steps or at the end, arcs (U-turns, turns) in place
  of logged futures, all three object types.

Array cases feed the *same float32 world-frame numbers* to drope and, in a subprocess of
``--tf-python``, to ``py_metrics_ops.motion_metrics`` with the challenge config. Scene-frame cases
let drope read each scene in its SDC frame. File cases write Scenario shards and
MotionChallengeSubmission protos, score them with ``drope-score motion --json``, and let the op
read the raw protos. The script prints one row per (case, type, horizon, metric) with the
difference, then per-metric maxima and bucket coverage. Exit status 1 when any difference
exceeds ``--tol``.

Soft mAP: the op does not output it. Its definition (``motion_metrics.h``: duplicate true
positives of an object are ignored instead of counted as false positives) is checked through the
op's own mAP on a transformed submission: each duplicate true positive keeps its trajectory but
gets confidence -1, below every other confidence of the call. It then sorts after the last true
positive of its bucket, where a false positive adds no area to the precision/recall envelope.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

METRICS = ("min_ade", "min_fde", "miss_rate", "overlap_rate", "mean_average_precision")
TYPES = {1: "TYPE_VEHICLE", 2: "TYPE_PEDESTRIAN", 3: "TYPE_CYCLIST"}
STEPS = (5, 9, 15)
HORIZON = {5: "3s", 9: "5s", 15: "8s"}
COVERAGE: dict = {}  # (object type, trajectory type) -> objects over all cases
CHALLENGE_CONFIG = """
track_steps_per_second: 10 prediction_steps_per_second: 2
track_history_samples: 10 track_future_samples: 80
speed_lower_bound: 1.4 speed_upper_bound: 11.0 speed_scale_lower: 0.5 speed_scale_upper: 1.0
step_configurations { measurement_step: 5 lateral_miss_threshold: 1.0 longitudinal_miss_threshold: 2.0 }
step_configurations { measurement_step: 9 lateral_miss_threshold: 1.8 longitudinal_miss_threshold: 3.6 }
step_configurations { measurement_step: 15 lateral_miss_threshold: 3.0 longitudinal_miss_threshold: 6.0 }
max_predictions: 6
"""


# ------------------------------------------------------------------ official side (TF env only)
def run_official(npz_path: str, out_path: str) -> None:
    import tensorflow as tf
    from google.protobuf import text_format
    from waymo_open_dataset.metrics.ops import py_metrics_ops
    from waymo_open_dataset.metrics.python import config_util_py
    from waymo_open_dataset.protos import motion_metrics_pb2

    config = text_format.Parse(CHALLENGE_CONFIG, motion_metrics_pb2.MotionMetricsConfig())
    names = config_util_py.get_breakdown_names_from_motion_config(config)
    data = np.load(npz_path)
    results = {}
    for case in sorted({k.split("/")[0] for k in data.files}):
        g = {k.split("/")[1]: data[k] for k in data.files if k.startswith(case + "/")}
        out = py_metrics_ops.motion_metrics(
            prediction_trajectory=tf.constant(g["pred_traj"], tf.float32),
            prediction_score=tf.constant(g["pred_score"], tf.float32),
            ground_truth_trajectory=tf.constant(g["gt"], tf.float32),
            ground_truth_is_valid=tf.constant(g["gt_valid"], tf.bool),
            prediction_ground_truth_indices=tf.constant(g["pred_gt_idx"], tf.int64),
            prediction_ground_truth_indices_mask=tf.constant(g["pred_gt_mask"], tf.bool),
            object_type=tf.constant(g["object_type"], tf.int64),
            object_id=tf.constant(g["object_id"], tf.int64),
            config=config.SerializeToString(),
        )
        results[case] = {name: {m: float(v) for m, v in zip(METRICS, vals)}
                         for name, vals in zip(names, zip(*[t.numpy().tolist() for t in out]))}
    with open(out_path, "w") as f:
        json.dump(results, f)


def run_official_files(spec_path: str, out_path: str) -> None:
    """End-to-end cases: the op fed from the raw files (Scenario shards + MotionChallengeSubmission)."""
    import tensorflow as tf
    from waymo_open_dataset.protos import motion_submission_pb2, scenario_pb2

    with open(spec_path) as f:
        spec = json.load(f)
    arrays = {}
    for case, files in spec.items():
        scenarios = {}
        for rec in tf.data.TFRecordDataset(files["scenarios"]):
            sc = scenario_pb2.Scenario.FromString(rec.numpy())
            scenarios[sc.scenario_id] = sc
        with open(files["submission"], "rb") as f:
            sub = motion_submission_pb2.MotionChallengeSubmission.FromString(f.read())
        sps = list(sub.scenario_predictions)
        A = max(len(scenarios[sp.scenario_id].tracks) for sp in sps)
        M = max(len(sp.single_predictions.predictions) for sp in sps)
        K = len(sps[0].single_predictions.predictions[0].trajectories)
        B = len(sps)
        g = dict(gt=np.zeros((B, A, 91, 7), np.float32), gt_valid=np.zeros((B, A, 91), bool),
                 object_type=np.zeros((B, A), np.int64), object_id=-1 - np.tile(np.arange(A), (B, 1)),
                 pred_traj=np.zeros((B, M, K, 1, 16, 2), np.float32), pred_score=np.zeros((B, M, K), np.float32),
                 pred_gt_idx=np.zeros((B, M, 1), np.int64), pred_gt_mask=np.zeros((B, M, 1), bool))
        for b, sp in enumerate(sps):
            sc = scenarios[sp.scenario_id]
            index = {}
            for a, tr in enumerate(sc.tracks):
                index[tr.id] = a
                g["object_id"][b, a], g["object_type"][b, a] = tr.id, tr.object_type
                for t, st in enumerate(tr.states):
                    g["gt"][b, a, t] = (st.center_x, st.center_y, st.length, st.width, st.heading,
                                        st.velocity_x, st.velocity_y)
                    g["gt_valid"][b, a, t] = st.valid
            for m, pred in enumerate(sp.single_predictions.predictions):
                g["pred_gt_idx"][b, m, 0], g["pred_gt_mask"][b, m, 0] = index[pred.object_id], True
                for k, st in enumerate(pred.trajectories):
                    g["pred_score"][b, m, k] = st.confidence
                    g["pred_traj"][b, m, k, 0] = np.stack([st.trajectory.center_x, st.trajectory.center_y], -1)
        arrays.update({f"{case}/{k}": v for k, v in g.items()})
    npz = out_path + ".npz"
    np.savez(npz, **arrays)
    run_official(npz, out_path)


# ------------------------------------------------------------------ drope side (project env)
def _world_scene(scene):
    """The scene with its frame = the world frame, so drope and the op read the same float32 numbers."""
    return scene.reframe(np.zeros(2), 0.0)


def _predictions(scene, agents, K, rng, ties: str):
    """Diverse 2 Hz predictions ``[R, K, 16, 2]`` (float32-representable) and confidences ``[R, K]``."""
    import torch

    steps = np.array([(p + 1) * 5 + 10 for p in range(16)])
    pos = scene.agent_pos.numpy().astype(np.float64)
    head = scene.agent_heading.numpy().astype(np.float64)
    vel = scene.agent_vel.numpy().astype(np.float64)
    valid = scene.agent_valid.numpy()
    R = len(agents)
    pred = np.zeros((R, K, 16, 2))
    t = (np.arange(16) + 1) * 0.5
    for r, a in enumerate(agents):
        hard = rng.random() < 0.3  # no prediction near the log: misses
        # log future where valid, constant velocity elsewhere (invalid states hold no position)
        cv = pos[a, 10] + t[:, None] * vel[a, 10]
        log = np.where(valid[a, steps][:, None], pos[a, steps], cv)
        h = np.where(valid[a, steps], head[a, steps], head[a, 10])
        fwd = np.stack([np.cos(h), np.sin(h)], -1)
        left = np.stack([-np.sin(h), np.cos(h)], -1)
        for k in range(K):
            kind = rng.choice(["shift", "cv", "walk"] if hard else ["log", "shift", "shift", "cv", "walk", "dup"])
            if kind in ("log", "dup"):
                p = log + rng.normal(0, 0.05, log.shape)
            elif kind == "shift":  # up to ~2x the thresholds, growing with time
                lat, lon = rng.uniform(-2.5, 2.5), rng.uniform(-5, 5)
                grow = t[:, None] / 8.0
                p = log + grow * (lat * left + lon * fwd)
            elif kind == "cv":
                p = cv
            else:
                p = log + np.cumsum(rng.normal(0, 0.4, log.shape), 0)
            pred[r, k] = p
    if ties == "random":
        conf = rng.uniform(0.05, 1.0, (R, K))
    elif ties == "ties":  # few distinct values: ties inside objects and across objects
        conf = rng.choice([0.1, 0.2, 0.2, 0.5], (R, K))
    elif ties == "zero":  # all-zero rows (normalisation falls back to 1/K) and equal rows
        conf = np.where(rng.random((R, 1)) < 0.5, 0.0, 0.3) * np.ones((R, K))
    else:
        raise ValueError(ties)
    pred = pred.astype(np.float32)
    return torch.from_numpy(pred), torch.from_numpy(conf.astype(np.float32))


def _invalidate(scene, agents, rng):
    """Drop future states of some objects: at measurement steps, tails, random gaps (never the current)."""
    import dataclasses

    import torch

    valid = scene.agent_valid.clone()
    for a in agents:
        u = rng.random()
        if u < 0.15:
            valid[a, [40, 60]] = False  # 3 s and 5 s measurement steps
        elif u < 0.3:
            valid[a, int(rng.integers(20, 90)):] = False  # future ends early
        elif u < 0.4:
            valid[a, 11:] = False  # no future at all
        elif u < 0.55:
            valid[a, 11:][torch.from_numpy(rng.random(80) < 0.3)] = False
    return dataclasses.replace(scene, agent_valid=valid)


def _synthetic_tracks(scene, agents, rng):
    """Replace the logged future of some objects by arcs of chosen total turn (U-turns both ways,
    turns, near-straight, slow/stationary), so every trajectory-type branch of the op is reached
    (U-turns do not occur in the sample scenes); headings wrap through ±π on the way."""
    import dataclasses

    import torch

    pos, head, vel = scene.agent_pos.clone(), scene.agent_heading.clone(), scene.agent_vel.clone()
    valid = scene.agent_valid.clone()
    t = torch.arange(1, 81, dtype=torch.float64) * 0.1
    for a in agents:
        if rng.random() > 0.5:
            continue
        turn = np.deg2rad(rng.choice([200, -200, 175, -175, 120, -120, 90, -90, 40, -40, 10, -10, 0]))
        v = rng.choice([0.3, 1.5, 4.0, 9.0, 14.0])
        lateral = rng.choice([0.0, 0.0, 3.0, -3.0])  # drift sideways: straight-left/right
        h = float(head[a, 10]) + turn * t / 8.0
        d = torch.stack([torch.cos(h), torch.sin(h)], -1)
        n = torch.stack([-torch.sin(torch.tensor(float(head[a, 10]))), torch.cos(torch.tensor(float(head[a, 10])))])
        p = pos[a, 10].double() + torch.cumsum(v * 0.1 * d, 0) + (t / 8.0)[:, None] * lateral * n
        pos[a, 11:] = p.float()
        head[a, 11:] = torch.remainder(h + np.pi, 2 * np.pi).float() - np.pi
        vel[a, 11:] = (v * d).float()
        vel[a, 10] = (v * d[0]).float()
        valid[a, 10:] = True
    return dataclasses.replace(scene, agent_pos=pos, agent_heading=head, agent_vel=vel, agent_valid=valid)


def _op_inputs(scenes, agent_lists, preds, probs):
    """Stack scenes into the op's batch tensors (agents and prediction groups padded)."""
    A = max(s.num_agents for s in scenes)
    M = max(len(a) for a in agent_lists)
    K = preds[0].shape[1]
    B = len(scenes)
    gt = np.zeros((B, A, 91, 7), np.float32)
    gt_valid = np.zeros((B, A, 91), bool)
    otype = np.zeros((B, A), np.int64)
    oid = np.zeros((B, A), np.int64)
    traj = np.zeros((B, M, K, 1, 16, 2), np.float32)
    score = np.zeros((B, M, K), np.float32)
    idx = np.zeros((B, M, 1), np.int64)
    mask = np.zeros((B, M, 1), bool)
    for b, (s, ag, p, c) in enumerate(zip(scenes, agent_lists, preds, probs)):
        n = s.num_agents
        gt[b, :n, :, 0:2] = s.agent_pos.numpy()
        gt[b, :n, :, 2:4] = s.agent_size.numpy()[..., :2]
        gt[b, :n, :, 4] = s.agent_heading.numpy()
        gt[b, :n, :, 5:7] = s.agent_vel.numpy()
        gt_valid[b, :n] = s.agent_valid.numpy()
        otype[b, :n] = s.agent_type.numpy()
        oid[b, :n] = s.agent_id.numpy()
        oid[b, n:] = -1 - np.arange(A - n)
        r = len(ag)
        traj[b, :r, :, 0] = p.numpy()
        score[b, :r] = c.numpy()
        idx[b, :r, 0] = ag
        mask[b, :r, 0] = True
    return dict(pred_traj=traj, pred_score=score, gt=gt, gt_valid=gt_valid, pred_gt_idx=idx,
                pred_gt_mask=mask, object_type=otype, object_id=oid)


def _demote_duplicates(records, probs):
    """Confidences with every duplicate true positive (any horizon's) moved below all others.

    Per horizon a separate copy is needed, since which predictions are duplicates depends on it."""
    import torch

    out = []
    for si in range(len(STEPS)):
        per_scene = []
        for rec, c in zip(records, probs):
            c = c.clone().double()
            tp = rec.is_tp[:, si]
            order = torch.argsort(-c[:, : tp.shape[1]].float(), dim=1, stable=True)  # the op reads 6
            for r in range(c.shape[0]):
                seen = False
                for k in order[r].tolist():
                    if bool(tp[r, k]):
                        if seen:
                            c[r, k] = -1.0  # below every confidence (only the mAP of this call is read)
                        seen = True
            per_scene.append(c.float())
        out.append(per_scene)
    return out


def build_cases(womd: str, generated: int, seed: int):
    import torch

    from drope.geometry import world_to_frame
    from drope.data.womd import read_scenarios
    from drope.metrics.motion import TRAJECTORY_TYPES, aggregate_motion_metrics, motion_records_2hz
    from drope.sim.generate.scenario import generate_scene

    rng = np.random.default_rng(seed)
    womd_scene = next(iter(read_scenarios([womd])))
    gen = [generate_scene(seed, i)[0] for i in range(generated)]
    cases = {}

    def add(name, originals, K=6, ties="random", invalidate=False, frame="world", synthetic=False):
        """frame="world": drope reads the op's float32 world numbers; "scene": drope reads each
        scene in its own SDC frame and the predictions converted to it, as ``drope-score motion`` does."""
        scenes, drope_scenes = [], []
        for s in originals:
            if synthetic:
                s = _synthetic_tracks(s, _agents(s), rng)
            if invalidate:
                s = _invalidate(s, _agents(s), rng)
            scenes.append(_world_scene(s))
            drope_scenes.append(s if frame == "scene" else scenes[-1])
        agent_lists = [_agents(s) for s in scenes]
        pp = [_predictions(s, a, K, rng, ties) for s, a in zip(scenes, agent_lists)]
        preds, probs = [p for p, _ in pp], [c for _, c in pp]
        records = []
        for s, a, p, c in zip(drope_scenes, agent_lists, preds, probs):
            if frame == "scene":
                p = torch.from_numpy(world_to_frame(p.double().numpy(), s.origin_xy.numpy(), float(s.origin_heading)))
            records.append(motion_records_2hz(s, torch.tensor(a), p, c))
        cases[name] = (scenes, agent_lists, preds, probs, aggregate_motion_metrics(records))
        for rec in records:  # coverage of the mAP buckets and object types
            for o, t in zip(rec.object_type.tolist(), rec.trajectory_type.tolist()):
                key = (TYPES.get(o, str(o)), TRAJECTORY_TYPES[t] if t >= 0 else "unclassified")
                COVERAGE[key] = COVERAGE.get(key, 0) + 1
        for si, demoted in enumerate(_demote_duplicates(records, probs)):
            cases[f"{name}~soft{STEPS[si]}"] = (scenes, agent_lists, preds, demoted, None)

    add("womd", [womd_scene])
    add("womd-scenefr", [womd_scene], frame="scene")
    add("womd-ties", [womd_scene], ties="ties")
    add("womd-invalid", [womd_scene], invalidate=True)
    add("womd-k8", [womd_scene], K=8)
    if gen:
        add("gen", gen)
        add("gen-scenefr", gen, invalidate=True, frame="scene")
        add("gen-invalid", gen, invalidate=True)
        add("gen-ties", gen, ties="ties", invalidate=True)
        add("gen-zero", gen, ties="zero")
        add("gen-k8", gen, K=8, invalidate=True)
        add("gen-synth", gen, synthetic=True)
        add("gen-synth-fr", gen, synthetic=True, invalidate=True, frame="scene")
    add("womd-synth", [womd_scene], synthetic=True, ties="ties")
    return cases


def build_file_cases(womd: str, generated: int, seed: int, tmp: str):
    """End-to-end cases through files: scenario shards written by ``drope.data.womd`` (generated,
    with synthetic and invalidated futures) or the shared shard, MotionChallengeSubmission protos,
    scored by ``drope-score motion --json``; the op reads the same files in the TF env."""
    import contextlib
    import io

    import torch

    from waymo_open_dataset.protos import motion_submission_pb2

    from drope.geometry import world_to_frame
    from drope.data.womd import read_scenarios, write_scenarios
    from drope.metrics.cli import main as score_main
    from drope.metrics.motion import motion_records_2hz
    from drope.sim.generate.scenario import generate_scene

    rng = np.random.default_rng(seed + 1000)
    gen = []
    for i in range(generated):
        s = generate_scene(seed + 1, i)[0]
        s = _invalidate(_synthetic_tracks(s, _agents(s), rng), _agents(s), rng)
        gen.append(s)
    shard = os.path.join(tmp, "generated.tfrecord")
    write_scenarios(shard, gen)
    spec, ours = {}, {}
    for name, files, ties in (("file-womd", [womd], "random"), ("file-gen", [shard], "ties")):
        scenes = list(read_scenarios(files))  # what drope-score will read (its own SDC frame)
        worlds = [_world_scene(sc) for sc in scenes]
        agent_lists = [_agents(w) for w in worlds]
        pp = [_predictions(w, a, 6, rng, ties) for w, a in zip(worlds, agent_lists)]
        records = []
        for sc, a, (p, c) in zip(scenes, agent_lists, pp):
            local = world_to_frame(p.double().numpy(), sc.origin_xy.numpy(), float(sc.origin_heading))
            records.append(motion_records_2hz(sc, torch.tensor(a), torch.from_numpy(local), c))
        variants = {name: [c for _, c in pp]}
        for si, demoted in enumerate(_demote_duplicates(records, [c for _, c in pp])):
            variants[f"{name}~soft{STEPS[si]}"] = demoted
        for case, probs in variants.items():
            sub_path = os.path.join(tmp, case.replace("~", "_") + ".bin")
            _write_submission(motion_submission_pb2, sub_path, worlds, agent_lists, [p for p, _ in pp], probs)
            spec[case] = {"submission": sub_path, "scenarios": files}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = score_main(["motion", spec[name]["submission"], "--scenarios", *files, "--json"])
        if rc != 0:
            raise RuntimeError(f"drope-score motion failed on {name} ({rc})")
        ours[name] = json.loads(out.getvalue())
    return spec, ours


def _write_submission(ms, path, worlds, agent_lists, preds, probs):
    sub = ms.MotionChallengeSubmission(submission_type=ms.MotionChallengeSubmission.MOTION_PREDICTION,
                                       account_name="compare", unique_method_name="compare")
    for w, agents, p, c in zip(worlds, agent_lists, preds, probs):
        sp = sub.scenario_predictions.add(scenario_id=w.scenario_id)
        for r, a in enumerate(agents):
            pred = sp.single_predictions.predictions.add(object_id=int(w.agent_id[a]))
            for k in range(p.shape[1]):
                st = pred.trajectories.add(confidence=float(c[r, k]))
                st.trajectory.center_x.extend(p[r, k, :, 0].tolist())
                st.trajectory.center_y.extend(p[r, k, :, 1].tolist())
    with open(path, "wb") as f:
        f.write(sub.SerializeToString())


def _agents(scene):
    """Every agent valid at the current step (more objects than tracks_to_predict: all types)."""
    return np.nonzero(scene.agent_valid[:, 10].numpy())[0]


def _frame_case(name: str) -> bool:
    """drope read the scene in its SDC frame (float64 conversion) instead of the op's numbers."""
    return "scenefr" in name or name.endswith("-fr") or name.startswith("file-")


def compare(cases, official, tol: float) -> int:
    rows, worst = [], 0.0
    for name, (_, _, _, _, ours) in cases.items():
        if ours is None:
            continue
        for tcode, tname in TYPES.items():
            for step in STEPS:
                op = official[name][f"{tname}_{step}"]
                mine = (ours.get(tname) or {}).get(HORIZON[step])
                for m in METRICS + ("soft_mean_average_precision",):
                    if m == "soft_mean_average_precision":
                        ref = official[f"{name}~soft{step}"][f"{tname}_{step}"]["mean_average_precision"]
                    else:
                        ref = op[m]
                    val = None if mine is None else mine[m]
                    if mine is None:  # type without objects: the op reports -1
                        ok = ref == -1.0
                        diff = 0.0 if ok else float("inf")
                    elif val is None:  # no measurement: the op reports 0
                        ok = ref == 0.0
                        diff = 0.0 if ok else float("inf")
                    else:
                        diff = val - ref
                        ok = abs(diff) <= tol
                    worst = max(worst, abs(diff))
                    rows.append((name, tname, HORIZON[step], m, ref, val, diff, ok))
    for r in rows:
        val = "null" if r[5] is None else f"{r[5]:.6f}"
        print(f"{r[0]:14s} {r[1]:16s} {r[2]:3s} {r[3]:28s} op {r[4]: .6f} drope {val:>9s} diff {r[6]:+.2e}"
              f"{'' if r[7] else '  <-- MISMATCH'}")
    bad = sum(not r[7] for r in rows)
    print("largest |difference| per metric (world-frame cases / scene-frame and file cases), values compared:")
    for m in METRICS + ("soft_mean_average_precision",):
        sel = [r for r in rows if r[3] == m and r[5] is not None]
        w = max((abs(r[6]) for r in sel if not _frame_case(r[0])), default=0.0)
        f = max((abs(r[6]) for r in sel if _frame_case(r[0])), default=0.0)
        print(f"  {m:28s} {w:.1e} / {f:.1e}  ({len(sel)} values, {sum(0 < r[4] < 1 for r in sel)} strictly in (0, 1))")
    print("objects per (object type, trajectory type):", ", ".join(f"{k[0][5:]}/{k[1]}: {v}" for k, v in sorted(COVERAGE.items())))
    print(f"{len(rows)} values compared, {bad} mismatches, largest |difference| {worst:.3e}")
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--womd", help="the shared WOMD scenario shard")
    ap.add_argument("--tf-python", help="python of the throwaway TensorFlow environment")
    ap.add_argument("--generated", type=int, default=6, help="generated scenes per generated case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--official", nargs=2, metavar=("NPZ", "JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--official-files", nargs=2, metavar=("SPEC", "JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.official:
        run_official(*args.official)
        return 0
    if args.official_files:
        run_official_files(*args.official_files)
        return 0
    if not args.womd or not args.tf_python:
        ap.error("--womd and --tf-python are required")
    cases = build_cases(args.womd, args.generated, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {}
        for name, (scenes, agents, preds, probs, _) in cases.items():
            for k, v in _op_inputs(scenes, agents, preds, probs).items():
                arrays[f"{name}/{k}"] = v
        npz, js = os.path.join(tmp, "cases.npz"), os.path.join(tmp, "official.json")
        np.savez(npz, **arrays)
        spec, file_ours = build_file_cases(args.womd, args.generated, args.seed, tmp)
        spec_path, js_files = os.path.join(tmp, "spec.json"), os.path.join(tmp, "official_files.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        me = os.path.abspath(__file__)
        subprocess.run([args.tf_python, me, "--official", npz, js], check=True, env=env)
        subprocess.run([args.tf_python, me, "--official-files", spec_path, js_files], check=True, env=env)
        with open(js) as f:
            official = json.load(f)
        with open(js_files) as f:
            official.update(json.load(f))
    for name, ours in file_ours.items():
        cases[name] = (None, None, None, None, ours)
    return compare(cases, official, args.tol)


if __name__ == "__main__":
    sys.exit(main())
