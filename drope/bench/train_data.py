"""``drope-bench train-data``: the streaming training-data pipeline at two dataset sizes.

1. Loader throughput (scenes/s) of ``drope.data.stream`` at 0/1/2 DataLoader workers, from a
   ``drope-data cache`` directory and from raw TFRecord Scenario shards.
2. Per-scene CPU costs in this process: decode (cache, shard) and collate (padding + map
   splitting, what the trainer's workers do), and one model step on the CPU.
3. ``drope-train`` runs (subprocesses, ``data.num_workers`` workers) on cache directories of
   each ``--sizes`` entry: peak RSS summed over the process and its workers (and PSS, which
   counts copy-on-write pages shared with the workers once), time to the first step, wall time,
   and the ratios largest / smallest size.
4. A projection, labelled as such, of hours per epoch of the WOMD training split on 1 and 8
   GPUs from the measured per-scene CPU costs and an assumed GPU step rate.

Scenes are WOMD-sized: rigid copies of the shared WOMD scenario (drope.bench.womd_scenes), or
copies of generated scenes (``--scenes generated``). Datasets are written once under ``--work``
and reused by later runs. Timings are wall-clock on whatever else shares the machine: compare
ratios within one run, and repeat (``--repeats``).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path("bench") / "results"  # relative to the working directory: an installed package has no repo
WOMD_TRAIN_SCENES = 487_000


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


# ---- datasets ------------------------------------------------------------------------------------
def dataset_dir(work: Path, scenes: str, n: int, fmt: str, base_scenes: int, per_file: int, workers: int) -> Path:
    """A cache dir / shard dir of ``n`` scenes under ``work`` (built on first use, then reused)."""
    from drope.bench.womd_scenes import write_dataset

    base = None
    if scenes == "generated":
        base = work / f"generated-base-{base_scenes}.scenes.npz"
        if not base.exists():
            from drope.data.cache import save_scenes
            from drope.data.sources import generated_scenes

            save_scenes(base, generated_scenes(base_scenes, 0))
    out = work / f"{scenes}-{fmt}-{n}"
    write_dataset(out, n, fmt, per_file=per_file, base=base, workers=workers)
    return out


# ---- loader and per-scene costs ------------------------------------------------------------------
def loader_rate(source: Path, workers: int, batch_size: int, seconds: float) -> dict:
    """Scenes/s of ``make_loader`` over ``source`` after its first batch (which includes worker start)."""
    from drope.data.stream import EpochSampler, SceneStreamDataset, make_loader

    t0 = time.perf_counter()
    ds = SceneStreamDataset(str(source))
    loader = make_loader(ds, batch_size, EpochSampler(len(ds), seed=0), num_workers=workers)
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t0
    n, t1 = 0, time.perf_counter()
    for batch in it:
        n += len(batch)
        if time.perf_counter() - t1 >= seconds:
            break
    wall = time.perf_counter() - t1
    del it, loader  # shuts persistent workers down before the next measurement
    return {"workers": workers, "scenes": n, "scenes_per_s": round(n / max(wall, 1e-9), 2),
            "first_batch_s": round(first, 2)}


def _cpu_per_item(fn, items) -> float:
    c0 = time.process_time()
    for x in items:
        fn(x)
    return (time.process_time() - c0) / max(len(items), 1)


def scene_costs(cache: Path, shards: Path, model_names: list[str], batch_size: int, n: int) -> dict:
    """CPU seconds per scene to decode (cache / shard) and collate, in this process on one thread;
    and the median wall seconds of one training step per model on this CPU."""
    import torch
    from omegaconf import OmegaConf

    from drope.data.batch import collate_scenes, stack_batches
    from drope.data.stream import SceneStreamDataset
    from drope.model import ModelConfig, build_model
    from drope.train.cli import load_config
    from drope.train.loss import LossWeights
    from drope.train.trainer import compute_loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cds, sds = SceneStreamDataset(str(cache)), SceneStreamDataset(str(shards))
    k = min(n, len(cds), len(sds))
    cds[0], sds[0]  # warm-up: file handles, protobuf descriptors
    out = {"decode_cache_cpu_s": _cpu_per_item(cds.__getitem__, range(k)),
           "decode_shard_cpu_s": _cpu_per_item(sds.__getitem__, range(k))}
    scenes = [cds[i] for i in range(k)]
    torch.set_num_threads(threads)
    steps = {}
    for name in model_names:
        mcfg = ModelConfig.from_dict(OmegaConf.to_container(load_config([f"model={name}"]).model, resolve=True))
        coll = lambda s: collate_scenes([s], mcfg.history, mcfg.future, 64, 384, segment_points=mcfg.map_points)  # noqa: E731
        torch.set_num_threads(1)
        out[f"collate_cpu_s[{name}]"] = _cpu_per_item(coll, scenes)
        torch.set_num_threads(threads)
        batch = stack_batches([coll(scenes[i % k]) for i in range(batch_size)])
        model = build_model(mcfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times, cpu = [], []
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = compute_loss(model, batch, LossWeights())["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        steps[name] = (statistics.median(times[1:]), statistics.median(cpu[1:]))
    out = {k_: round(v, 5) for k_, v in out.items()}
    # wall time is what a run takes; CPU seconds (all threads) stay put when other work shares the cores
    out["step_s"] = {k_: round(v[0], 4) for k_, v in steps.items()}
    out["step_cpu_s"] = {k_: round(v[1], 4) for k_, v in steps.items()}
    out["torch_threads"] = threads
    return out


# ---- dataset open and per-process memory ---------------------------------------------------------
def probe_dataset(source: str, reads: int, seed: int = 0) -> dict:
    """In this (fresh) process: seconds to open ``source`` as a dataset (expand + index + ``len``) and
    to its first scene, then RSS growth over ``reads`` random reads (one DataLoader worker's share of
    a run): what a trainer and each of its workers pay for the dataset, apart from the model."""
    import numpy as np
    import psutil

    from drope.data.stream import SceneStreamDataset

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    ds = SceneStreamDataset(source)
    n = len(ds)
    index_s = time.perf_counter() - t0
    ds[0]
    first_s = time.perf_counter() - t0
    rss1 = proc.memory_info().rss
    for i in np.random.default_rng(seed).integers(0, n, reads):
        ds[int(i)]
    rss2 = proc.memory_info().rss
    return {"scenes": n, "files": len(ds.files), "index_s": round(index_s, 3), "first_scene_s": round(first_s, 3),
            "open_files": len(ds._fh), "index_rss_mb": round((rss1 - rss0) / 2**20, 1),
            "reads": reads, "reads_rss_growth_mb": round((rss2 - rss1) / 2**20, 1)}


def probe_subprocess(source: Path, reads: int) -> dict:
    """:func:`probe_dataset` in a new interpreter (its RSS is the dataset's alone)."""
    code = ("import json, sys; from drope.bench.train_data import probe_dataset; "
            f"print(json.dumps(probe_dataset({str(source)!r}, {int(reads)})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {**json.loads(out.splitlines()[-1]), "load_avg_1min": round(os.getloadavg()[0], 1)}


# ---- drope-train runs ------------------------------------------------------------------------------
def _tree_memory(proc, pss: bool) -> dict[str, float]:
    """RSS (and with ``pss`` PSS) in MB of ``proc`` (``main_*``) and summed over its children
    (``workers_*``). PSS reads smaps_rollup, which costs ~0.1 s of kernel time per process on a
    busy machine: callers sample it rarely, so the probe does not slow what it measures."""
    import psutil

    out: dict[str, float] = {}
    for role, procs in (("main", [proc]), ("workers", proc.children(recursive=True))):
        for p in procs:
            try:
                out[f"{role}_rss"] = out.get(f"{role}_rss", 0.0) + p.memory_info().rss / 2**20
                if pss:
                    out[f"{role}_pss"] = out.get(f"{role}_pss", 0.0) + p.memory_full_info().pss / 2**20
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    return out


def train_run(data: Path, out: Path, steps: int, workers: int, model: str, batch_size: int,
              poll_s: float = 0.1, pss_every_s: float = 2.0) -> dict:
    """One ``drope-train`` subprocess: peak RSS of its process tree (sum of simultaneous samples
    every ``poll_s``; also the main process and the workers apart, each its own peak), peak PSS
    (every ``pss_every_s``), time to the first step (the first metrics.csv row, written with
    ``log_every=1``), wall time and CPU seconds of the whole tree (steadier than wall time when
    other work shares the cores)."""
    import psutil

    cmd = [sys.executable, "-m", "drope.train.cli", f"out={out}", f"steps={steps}", f"model={model}",
           f"batch_size={batch_size}", f"data.train=[{data}]", "data.val=[]", "data.generate_val=0",
           f"data.num_workers={workers}", "log_every=1", f"val_every={steps + 1}", f"ckpt_every={steps + 1}",
           "progress=false"]
    metrics = out / "metrics.csv"
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak: dict[str, float] = {}
    first, last_pss = None, -math.inf
    while proc.poll() is None:
        now = time.perf_counter()
        m = _tree_memory(ps, pss=now - last_pss >= pss_every_s)
        if "main_pss" in m:
            last_pss = now
            m["pss"] = m["main_pss"] + m.get("workers_pss", 0.0)
        m["rss"] = m.get("main_rss", 0.0) + m.get("workers_rss", 0.0)
        peak = {k: max(v, peak.get(k, 0.0)) for k, v in (peak | m).items()}
        if first is None and metrics.exists() and len(metrics.read_text().splitlines()) > 1:
            first = time.perf_counter() - t0
        time.sleep(poll_s)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.communicate()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the workers drope-train waited for
    if proc.returncode != 0:
        raise RuntimeError(f"drope-train failed ({proc.returncode}): {' '.join(cmd)}\n{stderr[-2000:]}")
    result = json.loads(stdout[stdout.index("{"):])
    rows = [r for r in csv.DictReader(metrics.open()) if r["split"] == "train"]
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"peak_rss_mb": round(peak.get("rss", 0.0), 1), "peak_pss_mb": round(peak.get("pss", 0.0), 1),
            **{f"peak_{k}_mb": round(v, 1) for k, v in peak.items() if k not in ("rss", "pss")},
            "first_step_s": round(first if first is not None else wall, 2), "wall_s": round(wall, 2),
            "cpu_s": round(cpu_s, 1), "fit_s": round(result["seconds"], 2), "steps": len(rows),
            "final_loss": float(rows[-1]["loss"]), "load_avg_1min": round(os.getloadavg()[0], 1),
            "command": "drope-train " + " ".join(cmd[3:])}


def flatness(runs: dict[int, list[dict]]) -> dict:
    """Ratios (largest size / smallest) of the median peak RSS, PSS, first-step, wall and CPU time."""
    lo, hi = min(runs), max(runs)
    med = lambda n, k: statistics.median(r.get(k, 0.0) for r in runs[n])  # noqa: E731
    return {f"{k}_ratio": round(med(hi, k) / max(med(lo, k), 1e-9), 3)
            for k in ("peak_rss_mb", "peak_pss_mb", "first_step_s", "wall_s", "cpu_s")} | {"sizes": [lo, hi]}


# ---- projection ----------------------------------------------------------------------------------
def projection(costs: dict, model: str, gpu_scenes_per_s: float, workers_per_gpu: int,
               epoch_scenes: int = WOMD_TRAIN_SCENES, gpus: tuple[int, ...] = (1, 8)) -> dict:
    """PROJECTION (not a measurement): hours per epoch = scenes / (min(loader, model) rate x GPUs).

    Loader rate per GPU = ``workers_per_gpu`` / (decode-from-cache + collate CPU seconds per scene
    measured here), i.e. one core of this machine's speed per worker and linear scaling. Model rate
    per GPU = ``gpu_scenes_per_s``, an assumption until bench/gpu_check.sh measures it. DDP
    scaling is assumed linear."""
    cpu_s = costs["decode_cache_cpu_s"] + costs[f"collate_cpu_s[{model}]"]
    loader = workers_per_gpu / cpu_s
    rate = min(loader, gpu_scenes_per_s)
    return {
        "label": "projection from measured per-scene CPU costs and an assumed GPU step rate",
        "epoch_scenes": epoch_scenes, "model": model, "cpu_s_per_scene": round(cpu_s, 4),
        "workers_per_gpu": workers_per_gpu, "loader_scenes_per_s_per_gpu": round(loader, 1),
        "assumed_gpu_scenes_per_s": gpu_scenes_per_s, "bound": "loader" if loader < gpu_scenes_per_s else "model",
        "workers_needed_per_gpu": round(gpu_scenes_per_s * cpu_s, 1),
        "hours_per_epoch": {str(g): round(epoch_scenes / (rate * g) / 3600, 2) for g in gpus},
    }


def cpu_projection(costs: dict, model: str, batch_size: int, workers: int,
                   epoch_scenes: int = WOMD_TRAIN_SCENES) -> dict:
    """The same projection for this CPU machine: ``workers`` loader cores, and the model step's CPU
    seconds measured here (one core's worth; wall time under other load would overstate it)."""
    cpu_s = costs["decode_cache_cpu_s"] + costs[f"collate_cpu_s[{model}]"]
    step = costs.get("step_cpu_s", costs["step_s"])[model]
    rate = min(workers / cpu_s if workers else 1 / cpu_s, batch_size / step)
    return {"label": f"projection: {model} on this CPU", "scenes_per_s": round(rate, 1),
            "hours_per_epoch": round(epoch_scenes / rate / 3600, 1)}


# ---- report ---------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    a = res["args"]
    lines = [f"# Training data pipeline (`drope-bench train-data`, {a['scenes']} scenes, {os.cpu_count()} cores)", ""]
    if res.get("loader"):
        lines += [f"Loader throughput, `drope.data.stream.make_loader`, batch {a['batch_size']}, "
                  f"{a['loader_scenes']} scenes (after the first batch):", "",
                  "| source | workers | scenes/s | first batch (s) |", "|---|---|---|---|"]
        lines += [f"| {r['source']} | {r['workers']} | {r['scenes_per_s']} | {r['first_batch_s']} |" for r in res["loader"]]
        lines.append("")
    if res.get("costs"):
        c = res["costs"]
        cpu = {k.replace("_cpu_s", ""): v for k, v in c.items() if "_cpu_s" in k and not k.startswith("step")}
        lines += ["Per scene, CPU ms on one thread: " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in cpu.items())
                  + f"; one training step (batch {a['batch_size']}, {c['torch_threads']} threads), wall / CPU: "
                  + ", ".join(f"{m} {s:.2f} s / {c.get('step_cpu_s', {}).get(m, float('nan')):.2f} s"
                              for m, s in c["step_s"].items()) + ".", ""]
    if res.get("open"):
        lines += ["`drope.data.stream.SceneStreamDataset` over each cache directory (indexed, as `drope-data cache` "
                  "leaves it), in a fresh process: time to open it (list + index + `len`) and to its first scene, "
                  "RSS of the index, and RSS growth over random reads (one worker's share of the runs below):", "",
                  "| scenes | files | open (s) | first scene (s) | index RSS (MB) | random reads | RSS growth (MB) "
                  "| files open after | load avg |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {int(n):,} | {o['files']} | {o['index_s']} | {o['first_scene_s']} | {o['index_rss_mb']} | "
                  f"{o['reads']} | {o['reads_rss_growth_mb']} | {o['open_files']} | {o['load_avg_1min']} |"
                  for n, o in res["open"].items()]
        lines.append("")
    if res.get("train"):
        lines += [f"`drope-train` {a['steps']} steps, {a['model']}, batch {a['batch_size']}, "
                  f"`data.num_workers={a['train_workers']}`, cache directory (median of {a['repeats']}):", "",
                  "| scenes | peak RSS, process + workers (MB) | workers alone (MB) | peak PSS (MB) | first step (s) "
                  "| wall (s) | CPU (s) | load avg |", "|---|---|---|---|---|---|---|---|"]
        for n, runs in res["train"].items():
            m = {k: statistics.median(r.get(k, 0.0) for r in runs)
                 for k in ("peak_rss_mb", "peak_workers_rss_mb", "peak_pss_mb", "first_step_s", "wall_s", "cpu_s",
                           "load_avg_1min")}
            lines.append(f"| {int(n):,} | {m['peak_rss_mb']:.0f} | {m['peak_workers_rss_mb']:.0f} | {m['peak_pss_mb']:.0f} | "
                         f"{m['first_step_s']:.1f} | "
                         f"{m['wall_s']:.1f} | {m['cpu_s']:.0f} | {m['load_avg_1min']:.1f} |")
        f = res["flatness"]
        lines += ["", f"Ratio {f['sizes'][1]:,} / {f['sizes'][0]:,} scenes: peak RSS {f['peak_rss_mb_ratio']}×, "
                  f"PSS {f['peak_pss_mb_ratio']}×, first step {f['first_step_s_ratio']}×, wall {f['wall_s_ratio']}×, "
                  f"CPU {f['cpu_s_ratio']}×.", ""]
    if res.get("projection"):
        p = res["projection"]
        lines += [f"**Projection** (not measured): one epoch of the WOMD training split ({p['epoch_scenes']:,} scenes), "
                  f"{p['model']}: loader {p['workers_per_gpu']} workers/GPU at {p['cpu_s_per_scene'] * 1e3:.0f} CPU-ms "
                  f"per scene = {p['loader_scenes_per_s_per_gpu']} scenes/s/GPU; GPU step rate assumed "
                  f"{p['assumed_gpu_scenes_per_s']} scenes/s/GPU ({p['bound']}-bound; "
                  f"{p['workers_needed_per_gpu']} workers/GPU would keep up):", "",
                  "| GPUs | hours per epoch |", "|---|---|"]
        lines += [f"| {g} | {h} |" for g, h in p["hours_per_epoch"].items()]
        if res.get("cpu_projection"):
            c = res["cpu_projection"]
            lines += ["", f"{c['label']}: {c['scenes_per_s']} scenes/s, {c['hours_per_epoch']} h per epoch."]
        lines.append("")
    lines += [f"Command: `{res['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-bench train-data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_ints, default=[500, 20_000], help="dataset sizes of the drope-train runs (comma list)")
    p.add_argument("--scenes", choices=("womd", "generated"), default="womd", help="rigid copies of what")
    p.add_argument("--base-scenes", type=int, default=100, help="distinct generated scenes (--scenes generated)")
    p.add_argument("--loader-scenes", type=int, default=500, help="dataset size of the loader measurements")
    p.add_argument("--workers", type=_ints, default=[0, 1, 2], help="loader worker counts (comma list)")
    p.add_argument("--seconds", type=float, default=8.0, help="measuring time per loader point")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--model", default="drope_small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--train-workers", type=int, default=2, help="data.num_workers of the drope-train runs")
    p.add_argument("--repeats", type=int, default=1, help="drope-train runs per size (interleaved; medians reported)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the unmeasured short drope-train run before the measured ones")
    p.add_argument("--per-file", type=int, default=100, help="scenes per cache file / shard")
    p.add_argument("--write-workers", type=int, default=2, help="processes writing the datasets")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "drope-bench-train-data",
                   help="where datasets are written (reused by later runs)")
    p.add_argument("--gpu-scenes-per-s", type=float, default=500.0,
                   help="ASSUMED training scenes/s of one GPU for the projection (not measured here)")
    p.add_argument("--workers-per-gpu", type=int, default=8, help="loader workers per GPU in the projection")
    p.add_argument("--cost-models", default="drope_small,drope_base", help="models whose CPU step time is measured")
    p.add_argument("--skip-loader", action="store_true", help="no loader / per-scene measurements or projection")
    p.add_argument("--skip-train", action="store_true", help="no drope-train runs")
    p.add_argument("--quick", action="store_true", help="tiny sizes and short runs (tests)")
    p.add_argument("--json", type=Path, default=RESULTS / "train_data.json", help="JSON results file")
    p.add_argument("--md", type=Path, default=None, help="markdown table (default: the --json path with .md)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.loader_scenes, args.workers, args.seconds = [4, 8], 4, [0, 1], 0.5
        args.steps, args.batch_size, args.per_file, args.write_workers = 2, 2, 4, 1
        args.cost_models, args.train_workers = "drope_small", 1
    try:
        import psutil  # noqa: F401
    except ImportError:
        print("drope-bench train-data: needs psutil for process-tree memory", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    ds = lambda n, fmt: dataset_dir(args.work, args.scenes, n, fmt, args.base_scenes, args.per_file, args.write_workers)  # noqa: E731
    res: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                 "command": "drope-bench train-data " + " ".join(sys.argv[1:] if argv is None else argv)}
    if not args.skip_loader:
        cache, shards = ds(args.loader_scenes, "cache"), ds(args.loader_scenes, "tfrecord")
        res["loader"] = [{"source": name, **loader_rate(src, w, args.batch_size, args.seconds)}
                         for name, src in (("cache", cache), ("tfrecord", shards)) for w in args.workers]
        models = [m for m in args.cost_models.split(",") if m]
        res["costs"] = scene_costs(cache, shards, models, args.batch_size, n=min(args.loader_scenes, 20))
        res["projection"] = projection(res["costs"], models[-1], args.gpu_scenes_per_s, args.workers_per_gpu)
        res["cpu_projection"] = cpu_projection(res["costs"], models[0], args.batch_size, args.train_workers)
    if not args.skip_train:
        dirs = {n: ds(n, "cache") for n in args.sizes}
        reads = args.steps * args.batch_size // max(args.train_workers, 1)  # one worker's share of a run
        res["open"] = {str(n): probe_subprocess(dirs[n], reads) for n in args.sizes}
        runs: dict[int, list[dict]] = {n: [] for n in args.sizes}
        with tempfile.TemporaryDirectory() as tmp:
            if args.warmup:  # the first drope-train of a session pays cold caches (imports, files): not measured
                train_run(dirs[min(args.sizes)], Path(tmp) / "warmup", min(args.steps, 5), args.train_workers,
                          args.model, args.batch_size)
            for r in range(args.repeats):
                for n in args.sizes:
                    runs[n].append(train_run(dirs[n], Path(tmp) / f"run-{n}-{r}", args.steps, args.train_workers,
                                             args.model, args.batch_size))
                    print(f"train {n} scenes: {runs[n][-1]}", file=sys.stderr)
        res["train"] = {str(n): v for n, v in runs.items()}
        res["flatness"] = flatness(runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (args.md or args.json.with_suffix(".md")).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
