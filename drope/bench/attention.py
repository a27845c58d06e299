"""``drope-bench attention``: peak memory and time of one attention layer per encoding.

One layer of width 512 (H = 8, D = 64), batch 1, self-attention over N tokens, forward under
``torch.no_grad`` on one thread. Every (encoding, N) point runs in its own process so peak RSS
(``ru_maxrss``) is not polluted by earlier points; the reported ``peak_mb`` is the growth of
the peak during the forward passes. Points whose estimated memory exceeds ``--max-gb`` are
skipped and listed as such.

``--backends``: dense radius mask vs radius graph (``ModelConfig.attention_backend``) for the
model's agent–agent attention (width 256, 8 heads as drope_base, DRoPE-RoPE, the FeatureSpec
``a2a_radius``), N agents spread uniformly over ±``spread`` metres, forward and forward+backward;
the graph's time includes building its edges. Saved as ``attention.backends.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ENCODINGS = ["none", "absolute", "rpe", "rope2d", "drope", "drope_rope"]
DIM, HEADS = 512, 8
RESULTS = Path("bench") / "results"  # relative to the working directory: an installed package has no repo


NOTE = (
    "One attention layer (width 512, 8 heads of 64, batch 1, self-attention over N tokens spread over "
    "200 m), forward under `torch.no_grad`, CPU, 1 thread, one process per point: peak RSS growth (MB) / "
    "median time (ms). `drope-bench attention` (a run over some sizes replaces only those points). "
    "Points estimated above 16 GB are skipped. Times are noisy on a shared machine.\n\n"
)


def estimate_gb(encoding: str, n: int) -> float:
    """Rough upper estimate: rpe materialises several [N, N, 512] fp32 tensors; others O(N)."""
    if encoding == "rpe":
        return 6 * n * n * DIM * 4 / 1e9
    return 40 * n * DIM * 4 / 1e9 + 0.2


def measure_encoding(encoding: str, n: int, repeats: int) -> dict:
    import math
    import resource
    import statistics
    import time

    import torch

    from drope.nn import EncodingConfig, PoseAttention

    torch.set_num_threads(1)
    torch.manual_seed(0)
    att = PoseAttention(DIM, HEADS, EncodingConfig(name=encoding)).eval()
    x = torch.randn(1, n, DIM)
    pose = torch.cat([(torch.rand(1, n, 2) - 0.5) * 200, (torch.rand(1, n, 1) * 2 - 1) * math.pi], -1)
    mask = torch.ones(1, n, dtype=torch.bool)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            att(x, pose, key_mask=mask)
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"encoding": encoding, "n": n, "peak_mb": round((peak - before) / 1024, 1),
            "ms": round(1000 * statistics.median(times[1:]), 2)}


BACKEND_DIM, BACKEND_HEADS = 256, 8
BACKEND_NOTE = (
    "Agent–agent attention of the model (one PoseAttention, width 256, 8 heads, drope_rope, radius "
    "FeatureSpec.a2a_radius = {radius:g} m, batch 1), N agents uniform over ±spread m, CPU, 1 thread, one "
    "process per point: peak RSS growth (MB) / median time (ms); `graph` includes building the edges. "
    "`share` = edges / N². Dense work does not depend on the spread (one column). "
    "`drope-bench attention --backends`.\n\n"
)


def measure_backend(backend: str, n: int, spread: float, backward: bool, repeats: int) -> dict:
    import resource
    import statistics
    import time

    import torch
    import torch_geometric.utils  # noqa: F401  (imported before the peak is read: both backends alike)

    from drope.data.features import FeatureSpec
    from drope.data.graph import padded_radius_edges
    from drope.nn import EncodingConfig, PoseAttention

    torch.set_num_threads(1)
    torch.manual_seed(0)
    radius = FeatureSpec().a2a_radius
    att = PoseAttention(BACKEND_DIM, BACKEND_HEADS, EncodingConfig(name="drope_rope"))
    x = torch.randn(1, n, BACKEND_DIM, requires_grad=backward)
    g = torch.Generator().manual_seed(1)
    pose = torch.cat([(torch.rand(1, n, 2, generator=g) * 2 - 1) * spread,
                      (torch.rand(1, n, 1, generator=g) * 2 - 1) * math.pi], -1)
    mask = torch.ones(1, n, dtype=torch.bool)
    edges = padded_radius_edges(pose, pose, radius, mask)

    def step() -> None:
        if backend == "graph":
            y = att.forward_edges(x, pose, x, pose, padded_radius_edges(pose, pose, radius, mask))
        else:
            y = att(x, pose, key_mask=mask, radius=radius)
        if backward:
            y.sum().backward()

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.set_grad_enabled(backward):
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
            att.zero_grad(set_to_none=True)
            x.grad = None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"backend": backend, "n": n, "spread_m": spread, "backward": backward, "edges": int(edges.shape[1]),
            "share": edges.shape[1] / n / n, "peak_mb": round((peak - before) / 1024, 1),
            "ms": round(1000 * statistics.median(times[1:]), 2)}


def _model_child(backend: str, agents: int, segments: int, spread: float, repeats: int) -> dict:
    """One drope_small forward (no grad) on a synthetic scene: ``agents`` and 20 m map segments
    uniform over ±``spread`` m, with ``attention_backend=backend``."""
    import resource
    import statistics
    import time

    import torch
    import torch_geometric.utils  # noqa: F401  (before the peak is read: both backends alike)

    from drope.model import ModelConfig, build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ModelConfig(attention_backend=backend)).eval()
    spec = model.cfg.features
    g = torch.Generator().manual_seed(1)
    H, S = spec.history, spec.segment_points
    now = (torch.rand(1, agents, 2, generator=g) * 2 - 1) * spread
    heading = (torch.rand(1, agents, generator=g) * 2 - 1) * math.pi
    vel = torch.stack([heading.cos(), heading.sin()], -1) * 8.0
    t = (torch.arange(H, dtype=torch.float32) - (H - 1)) * spec.dt
    start = (torch.rand(1, segments, 2, generator=g) * 2 - 1) * spread
    direction = torch.rand(1, segments, 1, generator=g) * 2 * math.pi
    along = torch.linspace(0, spec.segment_len, S)[None, None, :, None]
    inputs = {"agent_pos": now[:, :, None] + t[None, None, :, None] * vel[:, :, None],
              "agent_heading": heading[:, :, None].expand(1, agents, H).contiguous(),
              "agent_vel": vel[:, :, None].expand(1, agents, H, 2).contiguous(),
              "agent_size": torch.tensor([4.5, 2.0, 1.5]).expand(1, agents, 3).contiguous(),
              "agent_type": torch.ones(1, agents, dtype=torch.long),
              "agent_valid": torch.ones(1, agents, H, dtype=torch.bool),
              "map_points": start[:, :, None] + along * torch.cat([direction.cos(), direction.sin()], -1)[:, :, None],
              "map_type": torch.ones(1, segments, dtype=torch.long),
              "map_signal": torch.zeros(1, segments, dtype=torch.long),
              "map_mask": torch.ones(1, segments, dtype=torch.bool)}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"backend": backend, "agents": agents, "segments": segments, "spread_m": spread,
            "peak_mb": round((peak - before) / 1024, 1), "ms": round(1000 * statistics.median(times[1:]), 2)}


def _run_child(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "drope.bench.attention", *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark point {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def backend_rows(sizes: list[int], spreads: list[float], repeats: int) -> list[dict]:
    from tqdm import tqdm

    points = [("dense", n, spreads[0], bw) for n in sizes for bw in (False, True)]
    points += [("graph", n, sp, bw) for n in sizes for sp in spreads for bw in (False, True)]
    return [_run_child(["--backend-child", b, str(n), str(sp), str(int(bw)), str(repeats)])
            for b, n, sp, bw in tqdm(points, desc="attention backends")]


def backend_table(rows: list[dict]) -> str:
    """One row per N; per mode (forward, forward+backward): dense, then graph per spread."""
    sizes = sorted({r["n"] for r in rows})
    spreads = sorted({r["spread_m"] for r in rows if r["backend"] == "graph"})
    by = {(r["backend"], r["n"], r["spread_m"] if r["backend"] == "graph" else None, r["backward"]): r for r in rows}
    head, lines = ["N"], []
    for bw in (False, True):
        mode = "fwd+bwd" if bw else "fwd"
        head.append(f"dense {mode}")
        head += [f"graph ±{sp:g} m {mode} (share)" for sp in spreads]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for n in sizes:
        cells = [str(n)]
        for bw in (False, True):
            d = by.get(("dense", n, None, bw))
            cells.append(f"{d['peak_mb']:.0f} MB / {d['ms']:.0f} ms" if d else "-")
            for sp in spreads:
                gr = by.get(("graph", n, sp, bw))
                if gr is None:
                    cells.append("-")
                    continue
                ratio = f", {d['ms'] / gr['ms']:.2g}× faster" if d and gr["ms"] < d["ms"] else (
                    f", {gr['ms'] / d['ms']:.2g}× slower" if d else "")
                cells.append(f"{gr['peak_mb']:.0f} MB / {gr['ms']:.0f} ms ({gr['share']:.2g}{ratio})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge_backend_rows(path: Path, rows: list[dict]) -> list[dict]:
    old = json.loads(path.read_text()) if path.exists() else []
    key = lambda r: (r["backend"], r["n"], r["spread_m"], r["backward"])  # noqa: E731
    new = {key(r) for r in rows}
    return sorted([r for r in old if key(r) not in new] + rows, key=lambda r: (r["n"], r["backend"], r["spread_m"], r["backward"]))


def run_point(encoding: str, n: int, repeats: int) -> dict:
    cmd = [sys.executable, "-m", "drope.bench.attention", "--child", encoding, str(n), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def merge_saved(path: Path, rows: list[dict]) -> list[dict]:
    """Saved points updated with this run's: a run over a few sizes keeps the other sizes' rows."""
    old = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise SystemExit(f"{path}: not valid JSON ({err}); move it away or pass --out") from None
    new = {(r["encoding"], r["n"]) for r in rows}
    kept = [r for r in old if (r.get("encoding"), r.get("n")) not in new]
    order = {e: i for i, e in enumerate(ENCODINGS)}
    return sorted(kept + rows, key=lambda r: (r["n"], order.get(r["encoding"], len(order))))


def table(rows: list[dict]) -> str:
    sizes = sorted({r["n"] for r in rows})
    by = {(r["encoding"], r["n"]): r for r in rows}
    head = "| encoding | " + " | ".join(f"N={n}: MB / ms" for n in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for enc in ENCODINGS:
        cells = []
        for n in sizes:
            r = by.get((enc, n))
            if r is None:
                cells.append("-")
            elif r.get("skipped"):
                cells.append(f"skipped (~{r['estimate_gb']:.0f} GB)")
            else:
                cells.append(f"{r['peak_mb']:.0f} / {r['ms']:.1f}")
        lines.append(f"| {enc} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for enc in ENCODINGS:
        pts = sorted((r["n"], r) for r in rows if r["encoding"] == enc and not r.get("skipped"))
        if not pts:
            continue
        ns = [p[0] for p in pts]
        axes[0].plot(ns, [max(p[1]["peak_mb"], 0.1) for p in pts], marker="o", label=enc)
        axes[1].plot(ns, [p[1]["ms"] for p in pts], marker="o", label=enc)
    for ax, lab in zip(axes, ["peak memory growth [MB]", "forward time [ms]"]):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens N")
        ax.set_ylabel(lab)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    skipped = [f"{r['encoding']}@{r['n']}" for r in rows if r.get("skipped")]
    if skipped:
        axes[0].text(0.98, 0.02, "skipped (est. > 16 GB): " + ", ".join(skipped), transform=axes[0].transAxes,
                     ha="right", va="bottom", fontsize=7)
    fig.suptitle("one attention layer, width 512, 8 heads, CPU, 1 thread")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def invariance_rows(n: int = 64, seed: int = 0) -> list[dict]:
    """Relative output change of one layer (width 64, 4 heads) per encoding and rigid transform."""
    import math

    import torch

    from drope.nn import EncodingConfig, PoseAttention
    from drope.nn.invariance import invariance_gaps

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, 64, generator=g)
    pose = torch.cat([(torch.rand(1, n, 2, generator=g) - 0.5) * 150,
                      (torch.rand(1, n, 1, generator=g) * 2 - 1) * math.pi], -1)
    rows = []
    for enc in ENCODINGS:
        torch.manual_seed(seed)
        gaps = invariance_gaps(PoseAttention(64, 4, EncodingConfig(name=enc)), x, pose)
        rows.append({"encoding": enc, **{k: float(f"{v:.2g}") for k, v in gaps.items()}})
    return rows


def invariance_table(rows: list[dict]) -> str:
    cols = [k for k in rows[0] if k != "encoding"]
    lines = ["| encoding | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['encoding']} | " + " | ".join(f"{r[c]:.1e}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        print(json.dumps(measure_encoding(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    if argv and argv[0] == "--model-child":
        print(json.dumps(_model_child(argv[1], int(argv[2]), int(argv[3]), float(argv[4]), int(argv[5]))))
        return 0
    if argv and argv[0] == "--backend-child":
        print(json.dumps(measure_backend(argv[1], int(argv[2]), float(argv[3]), bool(int(argv[4])), int(argv[5]))))
        return 0
    p = argparse.ArgumentParser(prog="drope-bench attention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="token counts N (default 256 1024 4096 16384; with --backends 128 512 2048 8192)")
    p.add_argument("--encodings", nargs="+", default=ENCODINGS, choices=ENCODINGS)
    p.add_argument("--repeats", type=int, default=3, help="timed forward passes per point (median)")
    p.add_argument("--max-gb", type=float, default=16.0, help="skip points estimated above this")
    p.add_argument("--json", action="store_true", help="print a JSON list of {encoding, n, peak_mb, ms}")
    p.add_argument("--invariance", action="store_true",
                   help="instead: relative output change under rigid scene transforms, per encoding "
                        "(saved as attention.invariance.{json,md})")
    p.add_argument("--backends", action="store_true",
                   help="instead: dense mask vs radius graph for the model's agent-agent attention over --sizes "
                        "(default 128 512 2048 8192) and --spreads, forward and forward+backward "
                        "(saved as attention.backends.{json,md})")
    p.add_argument("--model", nargs=3, type=float, metavar=("AGENTS", "SEGMENTS", "SPREAD"), default=None,
                   help="with --backends: instead, one whole drope_small forward (no grad) per backend (dense, "
                        "auto) on AGENTS agents and SEGMENTS map segments over ±SPREAD m (printed, not saved)")
    p.add_argument("--spreads", type=float, nargs="+", default=[150.0, 600.0, 2500.0],
                   help="with --backends: agents uniform over ±spread metres (150: WOMD-like; 2500: km-scale)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="where attention.{json,md,png} are saved; points measured now replace saved ones")
    args = p.parse_args(argv)
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    if args.backends and args.model:
        agents, segments, spread = int(args.model[0]), int(args.model[1]), args.model[2]
        rows = [_run_child(["--model-child", b, str(agents), str(segments), str(spread), str(args.repeats)])
                for b in ("dense", "auto")]
        print(json.dumps(rows))
        return 0
    if args.backends:
        from drope.data.features import FeatureSpec

        rows = backend_rows(args.sizes or [128, 512, 2048, 8192], args.spreads, args.repeats)
        saved = merge_backend_rows(args.out / "attention.backends.json", rows)
        (args.out / "attention.backends.json").write_text(json.dumps(saved, indent=1))
        text = backend_table(saved)
        (args.out / "attention.backends.md").write_text(BACKEND_NOTE.format(radius=FeatureSpec().a2a_radius) + text + "\n")
        print(json.dumps(rows) if args.json else text)
        return 0
    args.sizes = args.sizes or [256, 1024, 4096, 16384]
    if args.invariance:
        inv = invariance_rows()
        (args.out / "attention.invariance.json").write_text(json.dumps(inv, indent=1))
        text = invariance_table(inv)
        (args.out / "attention.invariance.md").write_text(
            "Relative output change max|y(T pose) - y(pose)| / max|y(pose)| of one layer (float64 copy, "
            "64 tokens over 150 m, random weights); `drope-bench attention --invariance`.\n\n" + text + "\n")
        print(json.dumps(inv) if args.json else text)
        return 0
    rows = []
    points = [(e, n) for n in args.sizes for e in args.encodings]
    for enc, n in tqdm(points, desc="attention bench", disable=args.json):
        est = estimate_gb(enc, n)
        if est > args.max_gb:
            rows.append({"encoding": enc, "n": n, "peak_mb": None, "ms": None, "skipped": True, "estimate_gb": est})
            continue
        rows.append(run_point(enc, n, args.repeats))
    saved = merge_saved(args.out / "attention.json", rows)
    (args.out / "attention.json").write_text(json.dumps(saved, indent=1))
    (args.out / "attention.md").write_text(NOTE + table(saved) + "\n")
    plot(saved, args.out / "attention.png")
    if args.json:
        print(json.dumps(rows))
    else:
        print(table(rows))
        skipped = [f"{r['encoding']}@{r['n']}" for r in rows if r.get("skipped")]
        if skipped:
            print(f"skipped (estimated > {args.max_gb} GB): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
