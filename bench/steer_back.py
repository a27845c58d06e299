"""Does a model steer back to its lane? Open-loop probe of closed-loop robustness.

Moves every moving vehicle's whole history (rigidly, about its current pose) on held-out
generated scenes — rotated by ``--rotate`` rad or shifted sideways by ``--shift`` m — and reports
the most likely plan's signed lateral offset from the log at 1 / 2 / 3 s (left positive). A model
that extrapolates the error grows the offset linearly (≈ speed × angle × t for a rotation); one
that uses the map to return to its lane shrinks it. The README's closed-loop section quotes it.

    python bench/steer_back.py model.onnx --rotate 0.06
    python bench/steer_back.py model.onnx --shift 1.0 --json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys

import numpy as np
import torch

HORIZONS = (10, 20, 30)  # steps after the current one: 1, 2, 3 s at 10 Hz


def perturb(scene, agents: list[int], rotate: float, shift: float):
    """Copy of ``scene`` with the histories (steps ≤ current) of ``agents`` moved rigidly."""
    t = scene.current_index
    pos, hd, vel = scene.agent_pos.clone(), scene.agent_heading.clone(), scene.agent_vel.clone()
    c, s = math.cos(rotate), math.sin(rotate)
    for a in agents:
        p0, h0 = pos[a, t].clone(), float(hd[a, t])
        d = pos[a, : t + 1] - p0
        pos[a, : t + 1] = torch.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], -1) + p0
        pos[a, : t + 1] += shift * torch.tensor([-math.sin(h0), math.cos(h0)])
        hd[a, : t + 1] += rotate
        v = vel[a, : t + 1].clone()
        vel[a, : t + 1] = torch.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], -1)
    return dataclasses.replace(scene, agent_pos=pos, agent_heading=hd, agent_vel=vel)


def lateral_offsets(predictor, scenes, rotate: float, shift: float, min_speed: float = 3.0) -> np.ndarray:
    """``[N, 3]`` signed lateral offsets of the most likely plan from the log at 1 / 2 / 3 s."""
    from drope.data.types import ObjectType

    rows = []
    for sc in scenes:
        t = sc.current_index
        if t + max(HORIZONS) >= sc.num_steps:
            continue
        speed = sc.agent_vel[:, t].norm(dim=-1)
        sel = ((sc.agent_type == int(ObjectType.TYPE_VEHICLE)) & sc.agent_valid[:, t] & (speed > min_speed)
               & sc.agent_valid[:, t + max(HORIZONS)])
        agents = torch.nonzero(sel).flatten().tolist()
        if not agents:
            continue
        traj, prob = predictor.predict([perturb(sc, agents, rotate, shift)])
        traj, prob = torch.as_tensor(np.asarray(traj))[0], torch.as_tensor(np.asarray(prob))[0]
        best = prob.argmax(-1)
        for a in agents:
            plan = traj[a, best[a], :, :2]
            row = []
            for f in HORIZONS:
                d = plan[f - 1] - sc.agent_pos[a, t + f]
                h = float(sc.agent_heading[a, t + f])
                row.append(float(-math.sin(h) * d[0] + math.cos(h) * d[1]))
            rows.append(row)
    return np.asarray(rows).reshape(-1, len(HORIZONS))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[-1])
    ap.add_argument("model", help="ONNX file from drope-export")
    ap.add_argument("--rotate", type=float, default=0.0, help="history rotation about the current pose, rad (default 0)")
    ap.add_argument("--shift", type=float, default=0.0, help="sideways history shift, m, left positive (default 0)")
    ap.add_argument("--num-scenes", type=int, default=24, help="held-out generated scenes (default 24)")
    ap.add_argument("--seed", type=int, default=4242, help="generator seed of the scenes (default 4242)")
    ap.add_argument("--step", type=int, default=30, help="current step the scenes are re-framed to (default 30 = 3 s in)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from drope.train.augment import at_step
    from drope.sim.generate.scenario import generate_scene
    from drope.sim.policies.predictors import OnnxScenePredictor

    predictor = OnnxScenePredictor(args.model, threads=1)
    scenes = [at_step(generate_scene(args.seed, i)[0], args.step) for i in range(args.num_scenes)]
    lat = lateral_offsets(predictor, scenes, args.rotate, args.shift)
    if len(lat) == 0:
        print("no moving vehicle valid 3 s ahead in these scenes", file=sys.stderr)
        return 1
    res = {"model": args.model, "rotate_rad": args.rotate, "shift_m": args.shift, "vehicles": int(len(lat)),
           "lateral_mean_m": dict(zip(("1s", "2s", "3s"), np.round(lat.mean(0), 3).tolist())),
           "lateral_abs_mean_m": dict(zip(("1s", "2s", "3s"), np.round(np.abs(lat).mean(0), 3).tolist()))}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{len(lat)} vehicles, history rotated {args.rotate} rad / shifted {args.shift} m")
        print("lateral offset from the log, mean  1/2/3 s: " + " / ".join(f"{v:+.2f}" for v in lat.mean(0)) + " m")
        print("                              |mean| 1/2/3 s: " + " / ".join(f"{v:.2f}" for v in np.abs(lat).mean(0)) + " m")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
