"""Learned-policy rollouts batched vs one at a time (``drope-bench sim``: ``learned_32_rollouts_s*``).

Batched: one engine of R worlds, so every replan is one ONNX Runtime call for all R rollouts.
Sequential: R engines of one world each (``rollout_ids=[r]``), the same seeds, so the two runs
produce the same rollouts (``learned_batched_vs_sequential_max_abs_m`` reports how close).
Both on one thread, all valid agents controlled by the learned policy, sampled modes.
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
