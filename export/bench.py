"""``drope-bench inference``: torch eager vs ONNX Runtime (fp32, int8) latency and peak memory.

drope_small with random weights (latency does not depend on training), one scene with A agents
and ~1,000 map segments, 1 and 2 threads. Every configuration runs in its own process so peak
RSS (``ru_maxrss``) is its own; latency = median and p90 over ``--repeats`` runs after warm-up.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def _inputs(A: int, M: int, seed: int = 0) -> dict:
    import numpy as np

    r = np.random.default_rng(seed)
    pos = r.uniform(-100, 100, (1, A, 1, 2)) + np.cumsum(r.normal(0, 0.5, (1, A, 11, 2)), axis=2)
    return {
        "agent_pos": pos.astype(np.float32), "agent_heading": r.uniform(-3.1, 3.1, (1, A, 11)).astype(np.float32),
        "agent_vel": r.normal(0, 5, (1, A, 11, 2)).astype(np.float32),
        "agent_size": np.tile(np.array([4.5, 2.0, 1.6], np.float32), (1, A, 1)),
        "agent_type": np.ones((1, A), np.int64), "agent_valid": np.ones((1, A, 11), bool),
        "map_points": (r.uniform(-150, 150, (1, M, 1, 2)) + np.linspace(0, 15, 8)[None, None, :, None]).astype(np.float32),
        "map_type": np.zeros((1, M), np.int64), "map_signal": np.zeros((1, M), np.int64),
        "map_mask": np.ones((1, M), bool),
    }


def _child(kind: str, model_path: str, A: int, M: int, threads: int, repeats: int) -> dict:
    import statistics
    import time

    feed = _inputs(A, M)
    if kind == "torch":
        import torch

        from drope.model import ModelConfig, build_model
        from export.onnx_export import ExportWrapper

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        w = ExportWrapper(build_model(ModelConfig())).eval()
        tens = {k: torch.from_numpy(v) for k, v in feed.items()}

        def run():
            with torch.no_grad():
                w(**tens)
    else:
        from export.runtime import OnnxPredictor

        p = OnnxPredictor(model_path, threads=threads)

        def run():
            p.predict(feed)
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(1000 * (time.perf_counter() - t0))
    times.sort()
    return {"runtime": kind, "agents": A, "map": M, "threads": threads, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2),
            "peak_mb": round(_vm_hwm_kb() / 1024, 1)}


def _vm_hwm_kb() -> float:
    """Peak RSS of this process image (``VmHWM``; unlike ``ru_maxrss`` it is not inherited across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        k, path, A, M, th, rep = argv[1:]
        print(json.dumps(_child(k, path, int(A), int(M), int(th), int(rep))))
        return 0
    p = argparse.ArgumentParser(prog="drope-bench inference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--map", type=int, default=1000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import torch

    from drope.data.batch import collate_scenes  # noqa: F401  (keeps import errors early)
    from drope.model import ModelConfig, build_model
    from export.onnx_export import export_onnx, make_int8

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = build_model(ModelConfig()).eval()
        ex = {k: torch.from_numpy(v) for k, v in _inputs(4, 8).items()}
        fp32 = export_onnx(model, ex, Path(tmp) / "m.onnx")
        int8 = make_int8(fp32, Path(tmp) / "m.int8.onnx")
        rows = []
        for A in args.agents:
            for th in args.threads:
                for kind, path in (("torch", ""), ("onnx_fp32", str(fp32)), ("onnx_int8", str(int8))):
                    cmd = [sys.executable, "-m", "export.bench", "--child", kind, path, str(A), str(args.map), str(th),
                           str(args.repeats)]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = ["| agents | threads | runtime | median ms | p90 ms | peak MB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['agents']} | {r['threads']} | {r['runtime']} | {r['median_ms']} | {r['p90_ms']} | {r['peak_mb']} |"
              for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(json.dumps(rows, indent=1))
    (args.out / "inference.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(rows) if args.json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
