"""Compare ``drope.metrics.wosac`` with the official 2025 sim-agents metric code (verification only).

NOT part of the package or the tests. The official side needs a throwaway environment with
TensorFlow and the Waymo wheel, never a project dependency::

    python3.11 -m venv $TFENV
    $TFENV/bin/pip install "tensorflow-cpu==2.13.*"
    $TFENV/bin/pip install --no-deps waymo-open-dataset-tf-2-12-0==1.6.7
    $TFENV/bin/pip install protobuf==3.20.3 "scikit-learn<1.4" "scipy<1.12" numpy==1.24.3 \\
        tensorflow-probability==0.21.0
    $TFENV/bin/pip install protobuf==4.23.4   # the pure-Python 3.20 runtime refuses the tf.Tensor
                                             # that converters.scenario_to_joint_scene puts in a proto

Then, from the repository root in the project environment::

    python docs/compare_wosac_official.py --tf-python $TFENV/bin/python --generated 30 \\
        [--womd ../shared/data/womd/motion_data_one_scenario.tfrecord] [--rollouts 32] [--seed 0] \\
        [--workdir DIR]

What it does:
1. Generates scenes (``drope-generate``'s generator) and opens *validity gaps* in them: evaluated
   objects invalid for single future steps, blocks of steps or the whole tail; other sim agents
   leaving and re-entering; history gaps; objects entering after the current step. The scenes are
   written as a Scenario shard (``drope.data.womd.write_scenarios``) and read back, so both sides
   read the same file.
2. Builds rollouts per scene (the log future with invalid steps filled in, plus noise, time warps
   that make followers close in, constant velocity, lateral drifts) and writes them as a
   ``SimAgentsChallengeSubmission`` (``drope.metrics.submission``).
3. Runs, in a subprocess of ``--tf-python``, the official
   ``metric_features.compute_scenario_rollouts_features`` and
   ``metrics.compute_scenario_metrics_for_features_bundle`` (2025 sim-agents config) on each
   scenario, saving log/sim features and the metric values (``WORKDIR/official``; reused when
   present, so a drope change is re-checked without re-running TensorFlow).
4. Computes drope's features and metrics from the same files (``rollout_features`` /
   ``scenario_metrics``) and prints per feature the max |drope − official| over the object-steps
   the metric uses (log-valid; speed/acceleration validity for kinematics), the number of
   object-steps differing by more than ``--tol``, and per metric component the max difference
   over scenes. Exit status 1 when any metric component differs by more than ``--tol``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

FEATURES = {  # official MetricFeatures field -> drope WosacFeatures field
    "average_displacement_error": "ade",
    "linear_speed": "linear_speed",
    "linear_acceleration": "linear_acceleration",
    "angular_speed": "angular_speed",
    "angular_acceleration": "angular_acceleration",
    "distance_to_nearest_object": "distance_to_nearest_object",
    "collision_per_step": "collision",
    "time_to_collision": "time_to_collision",
    "distance_to_road_edge": "distance_to_road_edge",
    "offroad_per_step": "offroad",
    "traffic_light_violation_per_step": "traffic_light_violation",
}
SENTINEL = 1e9  # both sides use ±1e10 for "no object / invalid"; float32 rounds it differently


# ------------------------------------------------------------------ official side (TF env only)
def run_official(workdir: str, part: int = 0, parts: int = 1) -> None:
    import tensorflow as tf
    from waymo_open_dataset.protos import scenario_pb2, sim_agents_submission_pb2
    from waymo_open_dataset.utils.sim_agents import submission_specs
    from waymo_open_dataset.wdl_limited.sim_agents_metrics import metric_features, metrics

    spec = json.load(open(os.path.join(workdir, "spec.json")))
    challenge = submission_specs.ChallengeType.SIM_AGENTS
    from google.protobuf import text_format
    from waymo_open_dataset.protos import sim_agents_metrics_pb2

    # load_metrics_config opens a path relative to the working directory: read the same file here
    path = os.path.join(os.path.dirname(metrics.__file__), "challenge_2025_sim_agents_config.textproto")
    config = text_format.Parse(open(path).read(), sim_agents_metrics_pb2.SimAgentMetricsConfig())
    out_dir = os.path.join(workdir, "official")
    os.makedirs(out_dir, exist_ok=True)
    for case in spec["cases"]:
        sub = sim_agents_submission_pb2.SimAgentsChallengeSubmission.FromString(open(case["submission"], "rb").read())
        rollouts = {ro.scenario_id: ro for ro in sub.scenario_rollouts}
        for i, rec in enumerate(tf.data.TFRecordDataset(case["scenarios"], compression_type="")):
            scenario = scenario_pb2.Scenario.FromString(rec.numpy())
            sid = scenario.scenario_id
            if i % parts != part or sid not in rollouts or os.path.exists(os.path.join(out_dir, f"{sid}.json")):
                continue
            log_f, sim_f = metric_features.compute_scenario_rollouts_features(scenario, rollouts[sid], challenge)
            m = metrics.compute_scenario_metrics_for_features_bundle(config, sid, log_f, sim_f)
            arrays = {"object_id": log_f.object_id.numpy()}
            for side, f in (("log", log_f), ("sim", sim_f)):
                for name in FEATURES:
                    arrays[f"{side}/{name}"] = getattr(f, name).numpy()
                arrays[f"{side}/valid"] = f.valid.numpy()
            np.savez(os.path.join(out_dir, f"{sid}.npz"), **arrays)
            fields = {fd.name: getattr(m, fd.name) for fd in m.DESCRIPTOR.fields if fd.name != "scenario_id"}
            with open(os.path.join(out_dir, f"{sid}.json"), "w") as fh:
                json.dump(fields, fh)
            print(f"official: {sid} done", flush=True)


# ------------------------------------------------------------------ scenes with validity gaps
def open_gaps(scene, rng):
    """Invalidate states so that agents enter and leave and evaluated objects have future gaps
    (the evaluated objects and the SDC stay valid at the current step)."""
    import torch

    c = scene.current_index
    T = scene.num_steps
    valid = scene.agent_valid.clone()
    evaluated = set(scene.tracks_to_predict.tolist()) - {scene.sdc_index}
    for a in range(valid.shape[0]):
        if not bool(valid[a, c]):
            continue
        u = rng.random()
        if a == scene.sdc_index:
            continue
        if a in evaluated:
            if u < 0.3:  # single-step gaps
                valid[a, rng.choice(np.arange(c + 1, T), size=3, replace=False)] = False
            elif u < 0.6:  # a block, then back
                s = int(rng.integers(c + 1, T - 12))
                valid[a, s : s + int(rng.integers(2, 12))] = False
            elif u < 0.8:  # leaves
                valid[a, int(rng.integers(c + 2, T - 1)) :] = False
        else:
            if u < 0.25:  # leaves
                valid[a, int(rng.integers(c + 1, T - 1)) :] = False
            elif u < 0.5:  # leaves and comes back
                s = int(rng.integers(c + 1, T - 15))
                valid[a, s : s + int(rng.integers(1, 15))] = False
            elif u < 0.6:  # single steps
                valid[a, rng.choice(np.arange(c + 1, T), size=2, replace=False)] = False
        if rng.random() < 0.2:  # a history gap
            valid[a, int(rng.integers(0, c - 1))] = False
    # objects that are not sim agents but enter during the rollout
    for a in range(valid.shape[0]):
        if not bool(valid[a, c]) and rng.random() < 0.5:
            valid[a] = False
            s = int(rng.integers(c + 1, T - 5))
            valid[a, s:] = scene.agent_valid[a, s:]
    f = valid.to(torch.float32)
    return dataclasses.replace(
        scene, agent_valid=valid, agent_pos=scene.agent_pos * f[..., None], agent_z=scene.agent_z * f,
        agent_heading=scene.agent_heading * f, agent_vel=scene.agent_vel * f[..., None],
        agent_size=scene.agent_size * f[..., None],
    )


def make_rollouts(p, R: int, rng):
    """Rollouts ``xy [R, O, 80, 2]``, ``z``, ``heading`` in the prepared object order (scene frame)."""
    import torch

    c = p.scene.current_index
    T = p.xy.shape[1]
    steps = np.arange(T, dtype=np.float64)
    xy, z, h, val = p.xy.numpy(), p.z.numpy(), p.heading.numpy(), p.valid.numpy()
    O = xy.shape[0]
    base = np.zeros((O, T, 4))  # x, y, z, heading with invalid steps interpolated / held
    for o in range(O):
        v = np.flatnonzero(val[o])
        for k, arr in enumerate((xy[o, :, 0], xy[o, :, 1], z[o], np.unwrap(h[o]))):
            base[o, :, k] = np.interp(steps, v, arr[v])
    fut = steps[c + 1 :]
    out = np.zeros((R, O, T - c - 1, 4))
    for r in range(R):
        kind = r % 4
        if kind == 0:  # log + smooth noise
            noise = np.cumsum(rng.normal(0, 0.03, (O, len(fut), 4)), axis=1)
            out[r] = base[:, c + 1 :] + noise * [1, 1, 0.3, 0.2]
        elif kind == 1:  # time warp: some objects close in on the ones they follow
            for o in range(O):
                w = rng.uniform(0.5, 1.6)
                tt = np.clip(c + (fut - c) * w, 0, T - 1)
                for k in range(4):
                    out[r, o, :, k] = np.interp(tt, steps, base[o, :, k])
        elif kind == 2:  # constant velocity from the current step
            vel = base[:, c, :2] - base[:, c - 1, :2]
            out[r, :, :, :2] = base[:, c, None, :2] + vel[:, None] * (fut - c)[None, :, None]
            out[r, :, :, 2] = base[:, c, None, 2]
            out[r, :, :, 3] = base[:, c, None, 3]
        else:  # lateral drift (off-road, collisions)
            drift = rng.uniform(-4, 4, (O, 1)) * np.linspace(0, 1, len(fut))[None]
            n = np.stack([-np.sin(base[:, c + 1 :, 3]), np.cos(base[:, c + 1 :, 3])], -1)
            out[r] = base[:, c + 1 :]
            out[r, :, :, :2] += drift[..., None] * n
            out[r, :, :, 3] += rng.normal(0, 0.05, (O, 1))
    t = torch.from_numpy(out)
    return t[..., :2], t[..., 2], t[..., 3]


def _float32_track_xy(shard: str) -> None:
    """Round the track states' x/y to float32 values, as they are in WOMD (the shared scene: all
    valid states), so that the official code's float32 world coordinates lose nothing. Generated
    scenes carry float64 values: read as float32 by the official code, their log speeds alone
    would differ by ~1e-3 m/s (kilometre offsets, ulp 2.4e-4 m)."""
    from waymo_open_dataset.protos import scenario_pb2

    from drope.data.tfrecord import iter_records, write_records

    out = []
    for _, _, rec in iter_records(shard):
        sc = scenario_pb2.Scenario.FromString(rec)
        for track in sc.tracks:
            for st in track.states:
                st.center_x, st.center_y = float(np.float32(st.center_x)), float(np.float32(st.center_y))
        out.append(sc.SerializeToString())
    write_records(shard, out)


def build(args, workdir: str) -> dict:
    """Write scenario shards and submissions; returns the spec the official side reads."""
    import torch

    from drope.data.womd import read_scenarios, write_scenarios
    from drope.metrics.submission import rollouts_to_scenario_rollouts, write_sim_agents_submission
    from drope.metrics.wosac import prepare_scene
    from drope.sim.generate.scenario import generate_scene

    rng = np.random.default_rng(args.seed)
    cases = []
    if args.generated:
        gen = [open_gaps(generate_scene(args.seed, i)[0], rng) for i in range(args.generated)]
        shard = os.path.join(workdir, "generated.tfrecord")
        write_scenarios(shard, gen)
        _float32_track_xy(shard)
        cases.append(("generated", shard))
    if args.womd:
        cases.append(("womd", args.womd))
    spec = {"cases": []}
    for name, shard in cases:
        ros = []
        for scene in read_scenarios([shard]):
            p = prepare_scene(scene)
            xy, z, h = make_rollouts(p, args.rollouts, rng)
            ros.append(rollouts_to_scenario_rollouts(scene, xy, z, h, p.objects))
        sub = os.path.join(workdir, f"{name}.submission.binproto")
        write_sim_agents_submission(sub, ros)
        spec["cases"].append({"name": name, "scenarios": [shard], "submission": sub})
    with open(os.path.join(workdir, "spec.json"), "w") as f:
        json.dump(spec, f)
    return spec


# ------------------------------------------------------------------ comparison
def _masks(valid):
    from drope.metrics.wosac.features import kinematic_validity

    import torch

    v = torch.from_numpy(valid)
    speed, accel = kinematic_validity(v)
    return valid, speed.numpy(), accel.numpy()


def compare(spec: dict, workdir: str, tol: float) -> int:
    import torch

    from drope.data.womd import read_scenarios
    from drope.metrics.submission import iter_rollouts, scenario_rollouts_arrays
    from drope.metrics.wosac import METRIC_FIELDS, WosacConfig, prepare_scene, rollout_features, scenario_metrics

    config = WosacConfig()
    feat_rows: dict = {}  # (case, side, feature) -> [max diff, n differing, n compared]
    metric_rows: dict = {}  # (case, field) -> [max diff, official at max, drope at max, scenes]
    missing: list[str] = []
    for case in spec["cases"]:
        scenes = {s.scenario_id: s for s in read_scenarios(case["scenarios"])}
        for ro in iter_rollouts(case["submission"]):
            sid = ro.scenario_id
            if not os.path.exists(os.path.join(workdir, "official", f"{sid}.json")):
                missing.append(sid)  # the official run was stopped before this scene
                continue
            p = prepare_scene(scenes[sid])
            xy, z, h = scenario_rollouts_arrays(ro, p)
            log, sim = rollout_features(p, xy, z, h, config)
            ours = scenario_metrics(sid, log, sim, config)
            off = np.load(os.path.join(workdir, "official", f"{sid}.npz"))
            off_m = json.load(open(os.path.join(workdir, "official", f"{sid}.json")))
            ids = p.scene.agent_id[p.objects[: p.num_eval]].numpy()
            if not np.array_equal(ids, off["object_id"]):
                raise RuntimeError(f"{sid}: evaluated objects differ: {ids} vs {off['object_id']}")
            valid, speed_valid, accel_valid = _masks(off["log/valid"][0])
            if not np.array_equal(valid, log.valid.numpy()):
                raise RuntimeError(f"{sid}: log validity differs")
            for side, ft in (("log", log), ("sim", sim)):
                for oname, dname in FEATURES.items():
                    a = off[f"{side}/{oname}"].astype(np.float64)
                    b = getattr(ft, dname).double().numpy()
                    if oname == "average_displacement_error":
                        mask = np.ones_like(a, bool)
                    else:
                        m = accel_valid if "acceleration" in oname else speed_valid if "speed" in oname else valid
                        mask = np.broadcast_to(m, a.shape)
                    a, b = np.clip(a, -SENTINEL, SENTINEL), np.clip(b, -SENTINEL, SENTINEL)
                    d = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
                    d = np.where(np.isnan(d), np.inf, d)[mask]
                    row = feat_rows.setdefault((case["name"], side, oname), [0.0, 0, 0])
                    row[0] = max(row[0], float(d.max()) if d.size else 0.0)
                    row[1] += int((d > tol).sum())
                    row[2] += int(d.size)
            for field in METRIC_FIELDS[1:]:
                a, b = float(off_m[field]), float(ours[field])
                row = metric_rows.setdefault((case["name"], field), [0.0, a, b, 0])
                if abs(a - b) > row[0]:
                    row[:3] = [abs(a - b), a, b]
                row[3] += 1
    print("\nfeatures: max |drope - official| over the object-steps the metric uses")
    print(f"| case | side | feature | max abs diff | object-steps > {tol:g} | object-steps |")
    print("|---|---|---|---|---|---|")
    for (case, side, name), (mx, n, tot) in feat_rows.items():
        print(f"| {case} | {side} | {name} | {mx:.2e} | {n} | {tot} |")
    print("\nmetrics: max |drope - official| over the scenes")
    print("| case | component | max abs diff | official | drope | scenes |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for (case, field), (mx, a, b, n) in metric_rows.items():
        worst = max(worst, mx)
        print(f"| {case} | {field} | {mx:.2e} | {a:.6f} | {b:.6f} | {n} |")
    print(f"\nlargest metric difference {worst:.2e} (tolerance {tol:g})")
    if missing:
        print(f"{len(missing)} scenes without official results (not compared): {' '.join(missing)}")
    return int(worst > tol)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tf-python", help="python of the throwaway TensorFlow environment")
    ap.add_argument("--womd", help="a WOMD scenario shard to compare as well (the shared scene)")
    ap.add_argument("--generated", type=int, default=30, help="generated scenes with validity gaps")
    ap.add_argument("--rollouts", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--workdir", help="keep inputs and official results here (reused when present)")
    ap.add_argument("--compare-only", action="store_true", help="only compare with the official results present")
    ap.add_argument("--jobs", type=int, default=1, help="official processes (scenes split between them)")
    ap.add_argument("--official", nargs=3, metavar=("WORKDIR", "PART", "PARTS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.official:
        run_official(args.official[0], int(args.official[1]), int(args.official[2]))
        return 0
    if not args.tf_python:
        ap.error("--tf-python is required")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        spec_path = os.path.join(workdir, "spec.json")
        spec = json.load(open(spec_path)) if os.path.exists(spec_path) else build(args, workdir)
        if args.compare_only:
            return compare(spec, workdir, args.tol)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        jobs = [subprocess.Popen([args.tf_python, os.path.abspath(__file__), "--official", workdir, str(i), str(args.jobs)],
                                 env=env) for i in range(args.jobs)]
        if any(j.wait() != 0 for j in jobs):
            raise RuntimeError("the official side failed")
        return compare(spec, workdir, args.tol)


if __name__ == "__main__":
    sys.exit(main())
