"""``drope-bench sim``: simulator throughput on one CPU thread.

1. engine: log replay of a 128-agent scene (the WOMD sample's agents tiled to 128), agent-steps/s
   (whole 80-step rollouts, including the copy of the result arrays);
2. the same with constant velocity through the bicycle model (dynamics + tracking in the loop);
3. the learned policy with ``--model`` (an ONNX file, or a ``drope-train`` checkpoint run in torch on
   ``--device``) on the WOMD sample, all valid agents controlled, replanning at 1 Hz: wall time of
   the 8 s rollout and end-to-end steps/s;
4. closed-loop metrics of one rollout of the WOMD sample;
5. IDM on the same 128-agent scene, every valid agent driven, one rollout, one thread, whole
   step (policy + dynamics, after reset): ``idm_steps_per_s`` (the vectorised ``idm``) and
   ``idm_steps_per_s_reference`` (the per-agent ``idm_reference``, ``--reference-steps`` steps);
   ``idm_32_rollouts_steps_per_s``: 32 rollouts of the WOMD sample stepped together, world-steps/s;
   ``idm_first_step_seconds``: reset + first step of a fresh ``idm`` (numba cache load or compile);
5b. ``learned_32_rollouts_s`` / ``learned_32_rollouts_s_sequential``: 32 learned rollouts of the
   WOMD sample, batched (one engine of 32 worlds) and one at a time, and where a model call's time
   goes, and ``learned_batched_speedup_free_model`` (the same with a model that costs almost nothing:
   the engine's host-side ceiling of batching) (:mod:`drope.bench.sim_learned`; ``--model``, else an
   untrained export, named in ``learned_model``;
   ``--learned-only`` skips 1, 2, 4, 5 and 6: the GPU check runs it with a checkpoint and ``--device cuda``);
6. ``--scale N`` (off by default, it takes minutes): N generated scenes × ``--scale-rollouts``
   (32) rollouts of IDM end to end — simulate, package each scene as an official
   ``ScenarioRollouts`` (validated), write the sharded submission (``submission.binproto-*`` +
   ``submission.tar.gz``), read it back and score it with ``drope.metrics.wosac`` — one process,
   one thread: scenarios per CPU second (``scale_scenarios_per_s_per_core``; wall time too) and a
   *projection* (linear, labelled as such) for the 44,920
   scenarios of the WOSAC validation set on one 16-core machine and on 10 of them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from drope.samples import womd_sample

import torch

DEFAULT_WOMD = womd_sample()


def tile_scene(scene, num_agents: int, gap: float = 100.0, with_map: bool = True):
    """``scene`` repeated side by side along x, map and signals included, until it has
    ``num_agents`` agents (the last copy holds only the first agents): every copy drives on its
    own copy of the map, ``gap`` m beyond the previous one's extent, as in one big scene. Copies
    get fresh map, lane and agent ids (ids + copy × (largest id + 1)). ``with_map=False`` keeps
    one map: the copies' agents then drive off it (tests of the far-from-lanes paths)."""
    A = scene.num_agents
    copies = -(-num_agents // A)
    idx = torch.arange(num_agents) % A
    copy = torch.arange(num_agents) // A
    xy = scene.map_points[:, 0]
    shift = float(xy.max() - xy.min()) + gap if len(xy) else gap
    fields = {f.name: getattr(scene, f.name)[idx].clone() for f in scene.tensor_fields() if f.name.startswith("agent_")}
    fields["agent_pos"][..., 0] += (copy.float() * shift)[:, None] * fields["agent_valid"]
    fields["agent_id"] = torch.arange(num_agents)
    keep = copy == 0  # the SDC and the prediction targets stay the first copy's
    fields["tracks_to_predict"] = scene.tracks_to_predict[keep[scene.tracks_to_predict]]
    if not with_map:
        return dataclasses.replace(scene, **fields)
    step = int(scene.map_id.max()) + 1 if scene.num_map_features else 1
    offs = [c * step for c in range(copies)]
    P = scene.map_points.shape[0]

    def moved(points, c):
        out = points.clone()
        out[..., 0] += c * shift
        return out

    links = []
    for c, o in enumerate(offs):
        ln = scene.lane_links.clone()
        ln[:, :2] += o
        links.append(ln)
    lane_id = scene.signal_lane_id
    fields.update(
        map_id=torch.cat([scene.map_id + o for o in offs]),
        map_type=scene.map_type.repeat(copies), map_subtype=scene.map_subtype.repeat(copies),
        map_offsets=torch.cat([scene.map_offsets[:-1] + c * P for c in range(copies)] + [scene.map_offsets[-1:] + (copies - 1) * P]),
        map_points=torch.cat([moved(scene.map_points, c) for c in range(copies)]),
        lane_speed_limit=scene.lane_speed_limit.repeat(copies),
        lane_interpolating=scene.lane_interpolating.repeat(copies),
        lane_links=torch.cat(links),
        stop_sign_lanes=torch.cat([scene.stop_sign_lanes + o for o in offs]),
        signal_lane_id=torch.cat([torch.where(lane_id >= 0, lane_id + o, lane_id) for o in offs], 1),
        signal_state=scene.signal_state.repeat(1, copies),
        signal_stop_point=torch.cat([moved(scene.signal_stop_point, c) for c in range(copies)], 1)
        * scene.signal_valid.repeat(1, copies)[..., None],
        signal_valid=scene.signal_valid.repeat(1, copies),
    )
    return dataclasses.replace(scene, **fields)


def _time(fn, min_seconds: float = 1.0) -> tuple[float, int]:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds or n < 2:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n, n


def step_rate(policy, scene, dynamics, steps: int, min_seconds: float = 0.0, seed: int = 0, rollouts: int = 1,
              clock=time.perf_counter) -> float:
    """Steps/s of ``policy`` driving every valid agent of ``scene`` (``rollouts`` worlds stepped
    together): ``act`` + ``step`` per step, reset excluded (per-scene precomputation is the
    policy's reset)."""
    from drope.sim.state import SimState, step

    steps = min(steps, scene.num_steps - 1 - scene.current_index)
    n, total = 0, 0.0
    while n == 0 or total < min_seconds:
        rng = torch.Generator().manual_seed(seed)
        state = SimState.from_scene(scene, scene.current_index, batch=rollouts)
        policy.reset(scene, state, rng)
        t0 = clock()
        for _ in range(steps):
            state = step(state, policy.act(state, rng), dynamics, scene.dt)
        total += clock() - t0
        n += steps
    return n / total


def step_split(policy, scene, dynamics, rollouts: int = 2) -> dict:
    """CPU µs per step of ``policy`` driving every valid agent of ``scene``, split into the policy
    (``act`` without the tracking controller), ``dynamics.track`` and ``state.step`` (forward
    dynamics and bookkeeping); ``rollouts`` 80-step rollouts, one world each."""
    from drope.sim.state import SimState, step

    clock, spent = time.process_time, {"policy": 0.0, "track": 0.0, "step": 0.0}
    steps = scene.num_steps - 1 - scene.current_index
    track = dynamics.track

    def timed_track(*a):
        t0 = clock()
        out = track(*a)
        spent["track"] += clock() - t0
        return out

    dynamics.track = timed_track  # an instance attribute shadowing the method, removed below
    try:
        for seed in range(rollouts):
            rng = torch.Generator().manual_seed(seed)
            state = SimState.from_scene(scene, scene.current_index)
            policy.reset(scene, state, rng)
            for _ in range(steps):
                t0 = clock()
                act = policy.act(state, rng)
                t1 = clock()
                state = step(state, act, dynamics, scene.dt)
                spent["policy"] += t1 - t0
                spent["step"] += clock() - t1
    finally:
        del dynamics.track
    spent["policy"] -= spent["track"]
    return {k: v / (rollouts * steps) * 1e6 for k, v in spent.items()}


def idm_keys(big, scene, dyn, seconds: float, reference_steps: int) -> dict:
    """``idm_steps_per_s`` (vectorised, after a warm-up rollout) and ``idm_steps_per_s_reference``
    on ``big`` (medians of 3 alternating rounds; wall and CPU time); ``idm_32_rollouts_steps_per_s``
    (32 worlds of ``scene`` per step, world-steps/s);
    ``idm_first_step_seconds``: reset and first step of a fresh policy in this process (loading
    the numba kernels from their cache, or compiling them where none is cached);
    ``idm_step_cpu_us_{policy,track,step}``: where a vectorised step's CPU time goes."""
    from drope.sim.policies import IDMReference, VectorisedIDM

    vec = VectorisedIDM(dyn)
    # the first step loads the compiled kernels from numba's cache (or compiles them where there is none)
    t0 = time.perf_counter()
    step_rate(vec, big, dyn, 1)
    res = {"idm_first_step_seconds": time.perf_counter() - t0}
    step_rate(vec, big, dyn, 10)  # warm-up: per-scene tables, allocator
    ref = IDMReference(dyn)
    # rounds alternate the two policies so that both see the same load; each key is the median over
    # rounds, each speedup the median of the rounds' ratios (wall, and CPU time of this process: on a
    # shared, oversubscribed machine wall time mostly measures the others)
    rounds = {k: [] for k in ("vec", "ref", "vec_cpu", "ref_cpu")}
    for _ in range(3):
        rounds["vec"].append(step_rate(vec, big, dyn, 80, seconds / 3))
        rounds["ref"].append(step_rate(ref, big, dyn, reference_steps))
        rounds["vec_cpu"].append(step_rate(vec, big, dyn, 80, seconds / 3, clock=time.process_time))
        rounds["ref_cpu"].append(step_rate(ref, big, dyn, reference_steps, clock=time.process_time))
    med = statistics.median
    res["idm_steps_per_s"], res["idm_steps_per_s_reference"] = med(rounds["vec"]), med(rounds["ref"])
    res["idm_speedup_vs_reference"] = med([v / r for v, r in zip(rounds["vec"], rounds["ref"])])
    res["idm_steps_per_cpu_s"], res["idm_steps_per_cpu_s_reference"] = med(rounds["vec_cpu"]), med(rounds["ref_cpu"])
    res["idm_speedup_vs_reference_cpu"] = med([v / r for v, r in zip(rounds["vec_cpu"], rounds["ref_cpu"])])
    split = step_split(vec, big, dyn)
    res.update({f"idm_step_cpu_us_{k}": v for k, v in split.items()})
    res["idm_driven_agents"] = int(vec.drivers.sum())
    res["idm_32_rollouts_steps_per_s"] = 32 * step_rate(VectorisedIDM(dyn), scene, dyn, 20, rollouts=32)
    return res


WOSAC_VALIDATION_SCENARIOS = 44_920


def scale_bench(num_scenes: int, rollouts: int = 32, seed: int = 0, workdir: Path | None = None) -> dict:
    """IDM end to end on ``num_scenes`` generated scenes: simulate → official shards → WOSAC score."""
    import tempfile

    from drope.metrics.submission import iter_rollouts, scenario_rollouts_arrays, write_sim_agents_submission_shards
    from drope.metrics.wosac import prepare_scene, score_prepared
    from drope.sim.dynamics import build_dynamics
    from drope.sim.generate.scenario import generate_scene
    from drope.sim.policies import VectorisedIDM, controlled_mask
    from drope.sim.rollout import run_rollouts
    from drope.sim.submission import sim_scenario_rollouts

    dyn = build_dynamics("bicycle")
    scenes = [generate_scene(seed, i)[0] for i in range(num_scenes)]
    by_id = {sc.scenario_id: sc for sc in scenes}
    t = {"simulate": 0.0, "package": 0.0, "write_shards": 0.0, "score": 0.0}
    cpu0 = time.process_time()
    protos, agents = [], 0
    for i, sc in enumerate(scenes):
        t0 = time.perf_counter()
        pol = VectorisedIDM(dyn)
        ro = run_rollouts(sc, pol, pol, controlled_mask(sc, "all"), dyn, rollouts, seed=seed * 100_003 + i)
        t1 = time.perf_counter()
        protos.append(sim_scenario_rollouts(sc, ro, torch.zeros(sc.num_agents, dtype=torch.bool)))
        t["simulate"] += t1 - t0
        t["package"] += time.perf_counter() - t1
        agents += int(controlled_mask(sc, "all").sum())
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(workdir) if workdir is not None else Path(tmp)
        t0 = time.perf_counter()
        shards, tar = write_sim_agents_submission_shards(d, protos, shard_size=max(1, num_scenes // 4))
        t["write_shards"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scored = []
        for ro in iter_rollouts(tar):
            p = prepare_scene(by_id[ro.scenario_id])
            scored.append(score_prepared(p, *scenario_rollouts_arrays(ro, p)))
        t["score"] = time.perf_counter() - t0
    total = sum(t.values())
    cpu = time.process_time() - cpu0
    rate = num_scenes / cpu
    res = {"scale_scenes": num_scenes, "scale_rollouts": rollouts, "scale_mean_sim_agents": agents / num_scenes,
           "scale_shards": len(shards), "scale_scored": len(scored),
           **{f"scale_{k}_seconds": v for k, v in t.items()}, "scale_total_seconds": total,
           "scale_cpu_seconds": cpu, "scale_scenarios_per_s_wall": num_scenes / total,
           "scale_scenarios_per_s_per_core": rate,
           "scale_metametric_mean": sum(r["metametric"] for r in scored) / len(scored)}
    for name, cores in (("1_machine_16_cores", 16), ("10_machines_16_cores", 160)):
        res[f"projection_wosac_validation_hours_{name}"] = WOSAC_VALIDATION_SCENARIOS / (rate * cores) / 3600
    res["projection_note"] = (f"projection: {WOSAC_VALIDATION_SCENARIOS} scenarios at the measured per-core rate "
                              "(scenarios per CPU second of this process) "
                              "(generated scenes, one process per core, linear scaling assumed; WOMD scenes carry "
                              "more agents and larger maps than generated ones)")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-bench sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--womd", type=Path, default=DEFAULT_WOMD, help="WOMD Scenario file (first record is used)")
    p.add_argument("--model", type=Path, default=None,
                   help="the learned policy for its timings: an ONNX file (*.onnx, ONNX Runtime on the CPU) or a "
                        "drope-train checkpoint (torch on --device)")
    p.add_argument("--device", default="cpu",
                   help="where a checkpoint --model runs: cpu (default), cuda (cuda:$LOCAL_RANK), cuda:N, auto")
    p.add_argument("--learned-only", action="store_true",
                   help="only the learned-policy keys (steps 3 and 5b of the list above)")
    p.add_argument("--agents", type=int, default=128)
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timing duration per measurement")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--reference-steps", type=int, default=20,
                   help="steps timed per round for idm_steps_per_s_reference (3 rounds)")
    p.add_argument("--learned-rollouts", type=int, default=32, metavar="R",
                   help="learned_R_rollouts_s (batched: one engine of R worlds of the WOMD scene) and "
                        "learned_R_rollouts_s_sequential, and the per-call profile; 0 skips them. Without --model an "
                        "untrained model is exported for the timings (labelled in learned_model)")
    p.add_argument("--scale", type=int, default=0, metavar="N",
                   help="also run N generated scenes x --scale-rollouts IDM rollouts end to end (simulate, "
                        "sharded submission, WOSAC score): scenarios/s per core and the labelled projection")
    p.add_argument("--scale-rollouts", type=int, default=32)
    p.add_argument("--scale-seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not args.womd.is_file():
        print(f"drope-bench sim: no such WOMD file: {args.womd}", file=sys.stderr)
        return 2
    if args.model is not None and not args.model.is_file():
        print(f"drope-bench sim: --model: no such file: {args.model}", file=sys.stderr)
        return 2
    from drope.data.womd import read_scenarios
    from drope.sim.dynamics import build_dynamics
    from drope.sim.events import agent_metrics
    from drope.sim.policies import ConstantVelocity, LogReplay, controlled_mask
    from drope.sim.rollout import run_rollouts

    scene = next(read_scenarios(args.womd))
    big = tile_scene(scene, args.agents)
    dyn = build_dynamics("bicycle")
    steps = big.num_steps - 1 - big.current_index
    res: dict = {"agents": args.agents, "steps_per_rollout": steps, "threads": 1}
    try:
        if args.model is not None:
            res.update(learned_model_keys(scene, args.model, args.device, dyn))
        if args.learned_only:
            if args.learned_rollouts:
                from drope.bench.sim_learned import learned_keys

                res.update(learned_keys(scene, args.model, args.learned_rollouts, device=args.device))
            return _report(res, args.json)
    except ValueError as e:  # a model file or device that cannot run, named
        print(f"drope-bench sim: {e}", file=sys.stderr)
        return 2
    lr = LogReplay(dyn)
    every = controlled_mask(big, "all")
    sec, n = _time(lambda: run_rollouts(big, lr, lr, every, dyn), args.seconds)
    res["log_replay_agent_steps_per_s"] = args.agents * steps / sec
    res["log_replay_steps_per_s"] = steps / sec
    cv = ConstantVelocity(dyn)
    sec, n = _time(lambda: run_rollouts(big, cv, lr, every, dyn), args.seconds)
    res["bicycle_cv_agent_steps_per_s"] = args.agents * steps / sec
    ro = run_rollouts(scene, cv, lr, controlled_mask(scene, "all"), dyn)
    sec, _ = _time(lambda: agent_metrics(scene, ro), 0.5)
    res["metrics_seconds_per_rollout_womd"] = sec
    if args.model is None:
        res["onnx"] = "skipped (pass --model PATH.onnx)"
    res.update(idm_keys(big, scene, dyn, args.seconds, args.reference_steps))
    if args.learned_rollouts:
        from drope.bench.sim_learned import learned_keys

        res.update(learned_keys(scene, args.model, args.learned_rollouts, device=args.device))
    if args.scale:
        res.update(scale_bench(args.scale, args.scale_rollouts, args.scale_seed))
    return _report(res, args.json)


def learned_model_keys(scene, model: Path, device: str, dyn) -> dict:
    """One 8 s learned rollout of ``scene`` with ``model`` (ONNX or checkpoint on ``device``): wall
    seconds and end-to-end steps/s (``onnx_*`` keys, named before checkpoints ran here)."""
    from drope.sim.policies import LearnedPolicy, LogReplay, controlled_mask
    from drope.sim.policies.predictors import open_predictor
    from drope.sim.rollout import run_rollouts

    pol = LearnedPolicy(dyn, open_predictor(model, device=device, threads=1, device_key="--device"))
    mask = controlled_mask(scene, "all")
    lr = LogReplay(dyn)
    sec, _ = _time(lambda: run_rollouts(scene, pol, lr, mask, dyn), 0.0)
    return {"onnx_rollout_8s_wall_seconds": sec, "onnx_end_to_end_steps_per_s": (scene.num_steps - 1 - scene.current_index) / sec,
            "onnx_controlled_agents": int(mask.sum()), "onnx_predictions_per_rollout": pol.num_predictions}


def _report(res: dict, path: Path | None) -> int:
    for k, v in res.items():
        print(f"{k:<48} {v:,.3f}" if isinstance(v, float) else f"{k:<48} {v}")
    if path:
        path.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
