"""Learned-policy rollouts batched vs one at a time (``drope-bench sim``: ``learned_32_rollouts_s*``).

Batched: one engine of R worlds, all worlds collated once per replan, worlds with identical inputs
evaluated once, and the rest fed to the model ``rows_per_call`` at a time (``learned_model_rows_batched``
counts the rows; ``learned_rows_per_call_batched``: 1 on the CPU, where the per-world cost does
not fall with the batch, all on a GPU). Sequential: R engines of one world each
(``rollout_ids=[r]``), the same seeds, so the two runs produce the same rollouts
(``learned_batched_vs_sequential_max_abs_m``: 0.0 when each world runs in its own call).
Both on one CPU thread (plus the GPU for a checkpoint run with ``--device cuda``), all valid
agents controlled by the learned policy, sampled modes. The model is an ONNX file (ONNX Runtime,
CPU) or a ``drope-train`` checkpoint (torch on ``--device``).

Without a model file (``drope-bench sim`` without ``--model``) :func:`learned_keys` exports a
small *untrained* DRoPE transformer to a temporary ONNX file (a few seconds) so the keys are
always reported; ``learned_model`` then says ``untrained``: the timings are the runtime's and the
simulator's cost at that model size, the trajectories are meaningless.

``learned_batched_speedup_free_model`` (:func:`free_model_keys`): the same comparison with a model
that costs almost nothing: the engine's host work alone, the most batching can give where the
forward pass is nearly free.

Where a replan's time goes (:func:`call_keys`): one model call for one world of the scene
(``learned_call_ms``), the same call for all R worlds per world (``learned_call_ms_per_world_batched``),
and for ONNX files ONNX Runtime's kernel time per model module (``learned_call_profile``, from the exporter's
``name_scopes`` node metadata), of which ``learned_map_encoding_share`` is the map encoder's
(``DRoPETransformer.MAP_ENCODER``: the part that depends on the map alone).
"""
from __future__ import annotations

import ast
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path


def learned_rollout_timings(scene, model_path: str | Path, rollouts: int = 32, mode: str = "sample",
                            seed: int = 0, device: str = "cpu", batched_rows: int | None | str = "auto") -> dict:
    """Wall seconds of ``rollouts`` learned rollouts of ``scene`` (a Scene), batched and sequential,
    with ``model_path`` (ONNX on the CPU, or a checkpoint on ``device``). ``batched_rows``: worlds
    per model call in the batched run ("auto": 1 on the CPU, all on a GPU)."""
    import torch

    from drope.device import resolve_device
    from drope.sim.dynamics import build_dynamics
    from drope.sim.policies import LearnedPolicy, LogReplay, controlled_mask
    from drope.sim.policies.learned import LearnedConfig
    from drope.sim.policies.predictors import open_predictor
    from drope.sim.rollout import run_rollouts

    dev = resolve_device(device, "--device")
    if batched_rows == "auto":
        batched_rows = None if dev.type == "cuda" else 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dyn = build_dynamics("bicycle")
        # one predictor for both runs: a sequential engine holds one world, so its calls are one row whatever rows_per_call
        policy = LearnedPolicy(dyn, open_predictor(model_path, rows_per_call=batched_rows, device=str(dev), threads=1),
                               LearnedConfig(mode=mode))
        replay = LogReplay(dyn)
        mask = controlled_mask(scene, "all")

        def go(ids):
            return run_rollouts(scene, policy, replay, mask, dyn, len(ids), seed=seed, rollout_ids=ids)

        go([0])  # warm-up: ONNX Runtime's first call allocates its arenas (CUDA: context, kernels)
        pred = policy.predictor
        rows0 = pred.rows_run
        t0 = time.perf_counter()
        batched = go(list(range(rollouts)))
        batched_s = time.perf_counter() - t0
        predictions = policy.num_predictions
        rows1 = pred.rows_run
        t0 = time.perf_counter()
        alone = [go([r]) for r in range(rollouts)]
        sequential_s = time.perf_counter() - t0
        rows2 = pred.rows_run
    finally:
        torch.set_num_threads(threads)
    xy = torch.cat([ro.xy for ro in alone])
    ok = batched.valid & torch.cat([ro.valid for ro in alone])
    return {f"learned_{rollouts}_rollouts_s": batched_s, f"learned_{rollouts}_rollouts_s_sequential": sequential_s,
            "learned_batched_speedup": sequential_s / batched_s,
            "learned_batched_vs_sequential_max_abs_m": float((batched.xy - xy)[ok].abs().max()) if ok.any() else 0.0,
            "learned_controlled_agents": int(mask.sum()), "learned_predictions_per_rollout": predictions,
            "learned_model_rows_batched": rows1 - rows0, "learned_model_rows_sequential": rows2 - rows1,
            "learned_mode": mode, "learned_device": str(dev),
            "learned_rows_per_call_batched": "all" if batched_rows is None else batched_rows, "threads": 1}


def world_inputs(scene, predictor, worlds: int) -> dict:
    """The model inputs (numpy) of ``worlds`` copies of ``scene`` at its current step, in the frame
    the learned policy predicts in, built by the policy's own collation."""
    import torch

    from drope.sim.dynamics import build_dynamics
    from drope.sim.policies import LearnedPolicy
    from drope.sim.policies.predictors import collate_worlds
    from drope.sim.state import SimState

    state = SimState.from_scene(scene, scene.current_index, batch=worlds)
    policy = LearnedPolicy(build_dynamics("bicycle"), predictor)
    policy.reset(scene, state, torch.Generator())
    policy.observe(state)
    built = collate_worlds(scene, (policy.h_xy, policy.h_heading, policy.h_vel, policy.h_valid, state.size, state.step),
                           policy.frames(state), predictor.collate_kw, predictor.segments(scene))
    if built is None:
        raise ValueError(f"scenario {scene.scenario_id}: the batched collation does not apply at step {state.step}")
    return {k: v.numpy() for k, v in built[0].items()}


def module_of(scopes: str) -> str:
    """The model's top-level submodule a node belongs to, from the exporter's ``name_scopes`` node
    metadata (``"['', 'model', 'model.map_layers.0', ...]"``): ``map_layers``; ``model`` for the model's
    own ops (``forward``'s feature engineering), ``wrapper`` for the export wrapper's."""
    try:
        names = ast.literal_eval(scopes)
    except (ValueError, SyntaxError):
        return "wrapper"
    if len(names) < 2 or names[1] != "model":
        return "wrapper"
    if len(names) < 4:  # ['', 'model', 'op'] — an op in DRoPETransformer's own code
        return "model"
    return names[2].split(".")[1]


def call_profile(onnx_path: str | Path, inputs: dict, runs: int = 5) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time per model module (:func:`module_of`) over ``runs`` calls
    on ``inputs``, one thread, largest first."""
    import onnx
    import onnxruntime as ort

    scope = {n.name: p.value for n in onnx.load(str(onnx_path), load_external_data=False).graph.node
             for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"}
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        session.run(None, inputs)  # warm-up (arena allocation); its kernels are dropped below
        for _ in range(runs):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    kernels = kernels[len(kernels) // (runs + 1):]  # every call runs the same nodes: drop the warm-up's
    time_of: Counter = Counter()
    for e in kernels:
        time_of[module_of(scope.get(e["name"][: -len("_kernel_time")], ""))] += e["dur"]
    total = sum(time_of.values()) or 1
    return {k: v / total for k, v in time_of.most_common()}


def call_keys(scene, model_path: str | Path, worlds: int = 32, runs: int = 5, device: str = "cpu") -> dict:
    """Per-call timings of the learned policy's model on ``scene`` (module docstring); the per-module
    profile for ONNX files (ONNX Runtime's profiler)."""
    import numpy as np
    import torch

    from drope.model.transformer import DRoPETransformer
    from drope.sim.policies.predictors import is_onnx_model, open_predictor

    onnx = is_onnx_model(model_path)
    pred = open_predictor(model_path, rows_per_call=None, device=device, threads=1, device_key="--device")
    many = world_inputs(scene, pred, worlds)
    one = {k: v[:1] for k, v in many.items()}

    def median_s(feed, n):
        feed = {k: torch.from_numpy(v) for k, v in feed.items()}
        pred._run(feed)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            pred._run(feed)  # the outputs come back to host memory: a GPU call is complete when timed
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    res = {"learned_call_ms": 1e3 * median_s(one, runs),
           "learned_call_ms_per_world_batched": 1e3 * median_s(many, 2) / worlds}
    if onnx:
        profile = call_profile(model_path, one, runs)
        res["learned_map_encoding_share"] = float(np.sum([profile.get(m, 0.0) for m in DRoPETransformer.MAP_ENCODER]))
        res["learned_call_profile"] = {k: round(v, 4) for k, v in profile.items()}
    return res


UNTRAINED_CONFIG = {"dim": 64, "num_heads": 4, "num_blocks": 2, "num_modes": 6}  # ModelConfig's defaults, stated


def untrained_onnx(path: str | Path, seed: int = 0) -> Path:
    """Export an untrained DRoPE transformer (:data:`UNTRAINED_CONFIG`, weights seeded ``seed``) to
    ``path`` through the public model and export APIs."""
    import torch

    from drope.data.batch import collate_scenes, pad_history
    from drope.data.sources import generated_scenes
    from drope.export.onnx_export import export_onnx
    from drope.model import ModelConfig, build_model

    torch.manual_seed(seed)
    model = build_model(ModelConfig(**UNTRAINED_CONFIG)).eval()
    spec = model.cfg.features
    example = collate_scenes([pad_history(s, spec.history) for s in generated_scenes(2, seed)], spec)
    return export_onnx(model, example.model_inputs(), path, extra_metadata={"untrained": True})


def free_model_keys(scene, rollouts: int = 32, seed: int = 0, num_modes: int = 6) -> dict:
    """``learned_{R}_rollouts_s_free_model`` / ``..._sequential_free_model`` /
    ``learned_batched_speedup_free_model``: the same rollouts with :func:`~drope.bench.free_model.free_onnx_model`
    (a model that costs almost nothing), all worlds of a replan in one call: the engine's host work
    alone, the ceiling of batching where the forward pass is (nearly) free."""
    from drope.bench.free_model import free_onnx_model

    with tempfile.TemporaryDirectory() as tmp:
        path = free_onnx_model(Path(tmp) / "free.onnx", num_modes)
        r = learned_rollout_timings(scene, path, rollouts, seed=seed, batched_rows=None)
    return {f"learned_{rollouts}_rollouts_s_free_model": r[f"learned_{rollouts}_rollouts_s"],
            f"learned_{rollouts}_rollouts_s_sequential_free_model": r[f"learned_{rollouts}_rollouts_s_sequential"],
            "learned_batched_speedup_free_model": r["learned_batched_speedup"]}


def learned_keys(scene, model: str | Path | None, rollouts: int = 32, seed: int = 0, device: str = "cpu") -> dict:
    """``learned_{rollouts}_rollouts_s`` / ``..._sequential``, their agreement and the per-call
    timings on ``scene`` with ``model`` (an ONNX file, or a checkpoint run on ``device``), or with an
    untrained export when ``model`` is None."""
    free = free_model_keys(scene, rollouts, seed)
    if model is not None:
        if not Path(model).is_file():
            raise FileNotFoundError(f"--model: no such file: {model}")
        return {**learned_rollout_timings(scene, model, rollouts, seed=seed, device=device),
                **call_keys(scene, model, rollouts, device=device), **free, "learned_model": str(model)}
    with tempfile.TemporaryDirectory() as tmp:
        path = untrained_onnx(Path(tmp) / "untrained.onnx", seed)
        res = {**learned_rollout_timings(scene, path, rollouts, seed=seed), **call_keys(scene, path, rollouts), **free}
    return {**res, "learned_model": f"untrained (ModelConfig {UNTRAINED_CONFIG}, exported for this run: "
                                    "timings only, trajectories meaningless)"}
