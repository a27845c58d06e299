"""``drope-bench attention``: peak memory and time of one attention layer per encoding.

One layer of width 512 (H = 8, D = 64), batch 1, self-attention over N tokens, forward under
``torch.no_grad`` on one thread. Every (encoding, N) point runs in its own process so peak RSS
(``ru_maxrss``) is not polluted by earlier points; the reported ``peak_mb`` is the growth of
the peak during the forward passes. Points whose estimated memory exceeds ``--max-gb`` are
skipped and listed as such.
"""
from __future__ import annotations

import argparse
import json
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


def _child(encoding: str, n: int, repeats: int) -> dict:
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
        print(json.dumps(_child(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    p = argparse.ArgumentParser(prog="drope-bench attention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384], help="token counts N")
    p.add_argument("--encodings", nargs="+", default=ENCODINGS, choices=ENCODINGS)
    p.add_argument("--repeats", type=int, default=3, help="timed forward passes per point (median)")
    p.add_argument("--max-gb", type=float, default=16.0, help="skip points estimated above this")
    p.add_argument("--json", action="store_true", help="print a JSON list of {encoding, n, peak_mb, ms}")
    p.add_argument("--invariance", action="store_true",
                   help="instead: relative output change under rigid scene transforms, per encoding "
                        "(saved as attention.invariance.{json,md})")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="where attention.{json,md,png} are saved; points measured now replace saved ones")
    args = p.parse_args(argv)
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
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
