"""``drope-bench sim``: simulator throughput on one CPU thread.

1. engine: log replay of a 128-agent scene (the WOMD sample's agents tiled to 128), agent-steps/s
   (whole 80-step rollouts, including the copy of the result arrays);
2. the same with constant velocity through the bicycle model (dynamics + tracking in the loop);
3. the learned policy with the ONNX file (``--model``) on the WOMD sample, all valid agents
   controlled, replanning at 1 Hz: wall time of the 8 s rollout and end-to-end steps/s;
4. closed-loop metrics of one rollout of the WOMD sample.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from drope.samples import womd_sample

import torch

DEFAULT_WOMD = womd_sample()


def tile_agents(scene, num_agents: int, shift: float = 300.0):
    """The scene with its agents repeated (each copy shifted by ``shift`` m in x) to ``num_agents``."""
    A = scene.num_agents
    idx = torch.arange(num_agents) % A
    copy = (torch.arange(num_agents) // A).float()
    fields = {}
    for f in scene.tensor_fields():
        if f.name.startswith("agent_"):
            fields[f.name] = getattr(scene, f.name)[idx].clone()
    pos = fields["agent_pos"]
    pos[..., 0] += copy[:, None] * shift * fields["agent_valid"]
    fields["agent_id"] = torch.arange(num_agents)
    return dataclasses.replace(scene, **fields)


def _time(fn, min_seconds: float = 1.0) -> tuple[float, int]:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds or n < 2:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-bench sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--womd", type=Path, default=DEFAULT_WOMD, help="WOMD Scenario file (first record is used)")
    p.add_argument("--model", type=Path, default=None, help="ONNX file for the learned-policy timings")
    p.add_argument("--agents", type=int, default=128)
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timing duration per measurement")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not args.womd.is_file():
        print(f"drope-bench sim: no such WOMD file: {args.womd}", file=sys.stderr)
        return 2
    from drope.data.womd import read_scenarios
    from drope.sim.dynamics import build_dynamics
    from drope.sim.metrics import agent_metrics
    from drope.sim.policies import ConstantVelocity, LogReplay, controlled_mask
    from drope.sim.rollout import run_rollouts

    scene = next(read_scenarios(args.womd))
    big = tile_agents(scene, args.agents)
    dyn = build_dynamics("bicycle")
    steps = big.num_steps - 1 - big.current_index
    res: dict = {"agents": args.agents, "steps_per_rollout": steps, "threads": 1}
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
    if args.model is not None:
        from drope.sim.policies import LearnedPolicy
        from drope.sim.policies.predictors import OnnxScenePredictor

        pol = LearnedPolicy(dyn, OnnxScenePredictor(args.model, threads=1))
        mask = controlled_mask(scene, "all")
        sec, _ = _time(lambda: run_rollouts(scene, pol, lr, mask, dyn), 0.0)
        res["onnx_rollout_8s_wall_seconds"] = sec
        res["onnx_end_to_end_steps_per_s"] = (scene.num_steps - 1 - scene.current_index) / sec
        res["onnx_controlled_agents"] = int(mask.sum())
        res["onnx_predictions_per_rollout"] = pol.num_predictions
    else:
        res["onnx"] = "skipped (pass --model PATH.onnx)"
    for k, v in res.items():
        print(f"{k:<36} {v:,.3f}" if isinstance(v, float) else f"{k:<36} {v}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
