"""Learned-policy rollouts batched vs one at a time (``drope-bench sim``: ``learned_32_rollouts_s*``).

Batched: one engine of R worlds, so every replan is one ONNX Runtime call for all R rollouts.
Sequential: R engines of one world each (``rollout_ids=[r]``), the same seeds, so the two runs
produce the same rollouts (``learned_batched_vs_sequential_max_abs_m`` reports how close).
Both on one thread, all valid agents controlled by the learned policy, sampled modes.

Without a model file (``drope-bench sim`` without ``--model``) :func:`learned_keys` exports a
small *untrained* DRoPE transformer to a temporary ONNX file (a few seconds) so the keys are
always reported; ``learned_model`` then says ``untrained``: the timings are the runtime's and the
simulator's cost at that model size, the trajectories are meaningless.
"""
from __future__ import annotations

import time
from pathlib import Path


def learned_rollout_timings(scene, onnx_path: str | Path, rollouts: int = 32, mode: str = "sample",
                            seed: int = 0) -> dict:
    """Wall seconds of ``rollouts`` learned rollouts of ``scene`` (a Scene), batched and sequential."""
    import torch

    from drope.sim.dynamics import build_dynamics
    from drope.sim.policies import LearnedPolicy, LogReplay, controlled_mask
    from drope.sim.policies.learned import LearnedConfig
    from drope.sim.policies.predictors import OnnxScenePredictor
    from drope.sim.rollout import run_rollouts

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dyn = build_dynamics("bicycle")
        policy = LearnedPolicy(dyn, OnnxScenePredictor(onnx_path, threads=1), LearnedConfig(mode=mode))
        replay = LogReplay(dyn)
        mask = controlled_mask(scene, "all")

        def go(ids):
            return run_rollouts(scene, policy, replay, mask, dyn, len(ids), seed=seed, rollout_ids=ids)

        go([0])  # warm-up: ONNX Runtime's first call allocates its arenas
        t0 = time.perf_counter()
        batched = go(list(range(rollouts)))
        batched_s = time.perf_counter() - t0
        predictions = policy.num_predictions
        t0 = time.perf_counter()
        alone = [go([r]) for r in range(rollouts)]
        sequential_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    xy = torch.cat([ro.xy for ro in alone])
    ok = batched.valid & torch.cat([ro.valid for ro in alone])
    return {f"learned_{rollouts}_rollouts_s": batched_s, f"learned_{rollouts}_rollouts_s_sequential": sequential_s,
            "learned_batched_speedup": sequential_s / batched_s,
            "learned_batched_vs_sequential_max_abs_m": float((batched.xy - xy)[ok].abs().max()) if ok.any() else 0.0,
            "learned_controlled_agents": int(mask.sum()), "learned_predictions_per_rollout": predictions,
            "learned_mode": mode, "threads": 1}


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


def learned_keys(scene, model: str | Path | None, rollouts: int = 32, seed: int = 0) -> dict:
    """``learned_{rollouts}_rollouts_s`` / ``..._sequential`` and their agreement on ``scene``
    with ``model`` (an ONNX file), or with an untrained export when ``model`` is None."""
    import tempfile

    if model is not None:
        if not Path(model).is_file():
            raise FileNotFoundError(f"--model: no such ONNX file: {model}")
        return {**learned_rollout_timings(scene, model, rollouts, seed=seed), "learned_model": str(model)}
    with tempfile.TemporaryDirectory() as tmp:
        path = untrained_onnx(Path(tmp) / "untrained.onnx", seed)
        res = learned_rollout_timings(scene, path, rollouts, seed=seed)
    return {**res, "learned_model": f"untrained (ModelConfig {UNTRAINED_CONFIG}, exported for this run: "
                                    "timings only, trajectories meaningless)"}
