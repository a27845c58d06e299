"""``drope-bench inference``: torch eager vs ONNX Runtime (fp32, fp16, int8) latency and peak memory.

drope_small with random weights (latency does not depend on training), one scene with A agents
and ~1,000 map segments, 1 and 2 threads. Every runtime lives in its own process, so peak RSS
(``VmHWM``) is its own, and the processes are timed round-robin, one inference at a time in a
rotating order, so a busy machine slows all of them alike and the speed-ups (median of torch
over median of each runtime) come from one run. Latency = median and p90 over ``--repeats``
runs after a warm-up; CPU ms = the process's CPU time per inference (less inflated than wall
time when other jobs share the cores). Torch eager is the same model under ``torch.no_grad()``
in eval mode.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path("bench") / "results"  # relative to the working directory: an installed package has no repo


def _inputs(A: int, M: int, seed: int = 0) -> dict:
    """Random inputs shaped by the default (WOMD) feature spec, drope_small's."""
    import numpy as np

    from drope.data.features import FeatureSpec

    spec = FeatureSpec()
    H, S = spec.history, spec.segment_points
    r = np.random.default_rng(seed)
    pos = r.uniform(-100, 100, (1, A, 1, 2)) + np.cumsum(r.normal(0, 0.5, (1, A, H, 2)), axis=2)
    return {
        "agent_pos": pos.astype(np.float32), "agent_heading": r.uniform(-3.1, 3.1, (1, A, H)).astype(np.float32),
        "agent_vel": r.normal(0, 5, (1, A, H, 2)).astype(np.float32),
        "agent_size": np.tile(np.array([4.5, 2.0, 1.6], np.float32), (1, A, 1)),
        "agent_type": np.ones((1, A), np.int64), "agent_valid": np.ones((1, A, H), bool),
        "map_points": (r.uniform(-150, 150, (1, M, 1, 2)) + np.linspace(0, 15, S)[None, None, :, None]).astype(np.float32),
        "map_type": np.zeros((1, M), np.int64), "map_signal": np.zeros((1, M), np.int64),
        "map_mask": np.ones((1, M), bool),
    }


def _child(kind: str, model_path: str, A: int, M: int, threads: int) -> None:
    """One runtime in its own process: load, warm up, then time one inference per ``run`` line on stdin."""
    import time

    feed = _inputs(A, M)
    if kind == "torch":
        import torch

        from drope.model import ModelConfig, build_model
        from drope.export.onnx_export import ExportWrapper

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        w = ExportWrapper(build_model(ModelConfig())).eval()
        tens = {k: torch.from_numpy(v) for k, v in feed.items()}

        def run():
            with torch.no_grad():
                w(**tens)
    else:
        from drope.export.runtime import OnnxPredictor

        p = OnnxPredictor(model_path, threads=threads)

        def run():
            p.predict(feed)
    run()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        print(1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0), flush=True)
    print(json.dumps({"peak_mb": round(_vm_hwm_kb() / 1024, 1)}), flush=True)


def interleaved(variants: dict[str, str], A: int, M: int, threads: int, repeats: int) -> list[dict]:
    """Time all variants round-robin (rotating the order) so machine load hits them alike."""
    import statistics

    procs = {}
    for kind, path in variants.items():
        cmd = [sys.executable, "-m", "drope.bench.inference", "--child", kind, path, str(A), str(M), str(threads)]
        procs[kind] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if procs[kind].stdout.readline().strip() != "ready":
            raise RuntimeError(f"benchmark child {kind} failed to start")
    times = {k: [] for k in procs}
    cpu = {k: [] for k in procs}
    order = list(procs)
    for r in range(repeats):
        for kind in order[r % len(order):] + order[: r % len(order)]:
            p = procs[kind]
            p.stdin.write("run\n")
            p.stdin.flush()
            wall, used = p.stdout.readline().split()
            times[kind].append(float(wall))
            cpu[kind].append(float(used))
    rows = []
    for kind, p in procs.items():
        out, _ = p.communicate("done\n", timeout=60)
        ts = sorted(times[kind])
        rows.append({"runtime": kind, "agents": A, "map": M, "threads": threads,
                     "median_ms": round(statistics.median(ts), 2), "p90_ms": round(ts[int(0.9 * (len(ts) - 1))], 2),
                     "cpu_median_ms": round(statistics.median(cpu[kind]), 2),
                     "peak_mb": json.loads(out.strip().splitlines()[-1])["peak_mb"]})
    base, base_cpu = rows[0]["median_ms"], rows[0]["cpu_median_ms"]
    load = round(os.getloadavg()[0], 2)  # a busy machine slows torch more than ONNX Runtime: record it
    for r in rows:
        r["speedup_vs_torch"] = round(base / r["median_ms"], 2)
        r["cpu_speedup_vs_torch"] = round(base_cpu / r["cpu_median_ms"], 2)
        r["load_avg_1min"] = load
    return rows


def _vm_hwm_kb() -> float:
    """Peak RSS of this process image (``VmHWM``; unlike ``ru_maxrss`` it is not inherited across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def plot(rows: list[dict], path: Path) -> None:
    """Median latency vs agents, one line per runtime and thread count (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in dict.fromkeys(r["runtime"] for r in rows):
        for th in sorted({r["threads"] for r in rows}):
            pts = sorted((r["agents"], r["median_ms"]) for r in rows if r["runtime"] == kind and r["threads"] == th)
            ax.plot(*zip(*pts), marker="o", label=f"{kind}, {th} thread{'s' if th > 1 else ''}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    agents = sorted({r["agents"] for r in rows})
    ax.set_xticks(agents, [str(a) for a in agents])
    ms = [r["median_ms"] for r in rows]
    yt = [t for t in (5, 10, 20, 50, 100, 200, 500, 1000, 2000) if min(ms) / 2 <= t <= max(ms) * 2]
    ax.set_yticks(yt, [str(t) for t in yt])
    ax.minorticks_off()
    ax.set_xlabel("agents A (~1,000 map segments)")
    ax.set_ylabel("median latency [ms]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("drope_small inference on CPU: torch eager vs ONNX Runtime")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        k, path, A, M, th = argv[1:]
        _child(k, path, int(A), int(M), int(th))
        return 0
    p = argparse.ArgumentParser(prog="drope-bench inference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--map", type=int, default=1000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import torch

    from drope.data.batch import collate_scenes  # noqa: F401  (keeps import errors early)
    from drope.model import ModelConfig, build_model
    from drope.export.onnx_export import export_onnx, make_fp16, make_int8

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = build_model(ModelConfig()).eval()
        ex = {k: torch.from_numpy(v) for k, v in _inputs(4, 8).items()}
        fp32 = export_onnx(model, ex, Path(tmp) / "m.onnx")
        variants = {"torch": "", "onnx_fp32": str(fp32),
                    "onnx_fp16": str(make_fp16(fp32, Path(tmp) / "m.fp16.onnx")),
                    "onnx_int8": str(make_int8(fp32, Path(tmp) / "m.int8.onnx"))}
        rows = [r for A in args.agents for th in args.threads
                for r in interleaved(variants, A, args.map, th, args.repeats)]
    lines = ["| agents | threads | runtime | median ms | p90 ms | CPU ms (median) | peak MB | speed-up vs torch "
             "(wall / CPU) | load avg |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['agents']} | {r['threads']} | {r['runtime']} | {r['median_ms']} | {r['p90_ms']} | {r['cpu_median_ms']} "
              f"| {r['peak_mb']} | {r['speedup_vs_torch']}× / {r['cpu_speedup_vs_torch']}× | {r['load_avg_1min']} |"
              for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(json.dumps(rows, indent=1))
    (args.out / "inference.md").write_text("\n".join(lines) + "\n")
    plot(rows, args.out / "inference.png")
    print(json.dumps(rows) if args.json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
