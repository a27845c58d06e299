"""``drope-export ckpt=PATH out=model.onnx [key=value ...]``: ONNX export with built-in verification.

Keys (hydra overrides on configs/export/default.yaml): ``ckpt``, ``out``, ``opset`` (≥ 18),
``variants`` (list of ``fp16``, ``int8``; written next to ``out`` as ``model.fp16.onnx``,
``model.int8.onnx``), ``verify`` (compare ONNX Runtime with torch on generated scenes and,
when present, the shared WOMD sample; fails when fp32 differs by more than 1e-3 m, or fp16 by
more than 0.1 m or ±1 % minADE, or int8 changes minADE by more than ±3 %),
``verify_scenes``, ``womd`` (extra data to verify on: WOMD shards, Argoverse 2 scenario directories,
anything ``drope.data.sources.load_scenes`` reads; scenes with a shorter log than the model's
``features.history`` get unobserved steps in front, so an AV2 model verifies on generated scenes too),
``int8.raw_feature_layers_fp32`` (default true: the MatMuls fed directly by raw metres/velocities
stay fp32), ``int8.output_layers_fp32`` (default true: the last layers of the trajectory and
mode heads stay fp32; everything else is int8), ``int8.per_channel`` (default false),
``int8_sensitivity`` (default false; true adds a per-layer table to the report: each weight
MatMul quantised alone, its max trajectory error and minADE change, generated and WOMD).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from drope.configs.schema import ConfigError, compose, describe, register, to_object
from drope.export.onnx_export import Int8Config
from drope.samples import womd_sample

WOMD_SAMPLE = womd_sample()
SCHEMA = "export_schema"  # its name in hydra's ConfigStore (``defaults`` of configs/export/default.yaml)


@dataclass
class ExportConfig:
    ckpt: str | None = None  # checkpoint from drope-train (required)
    out: str = "model.onnx"
    opset: int = 23  # >= 23: ONNX Attention (ONNX Runtime's fused kernel); 18 works, slower
    variants: list[str] = field(default_factory=lambda: ["fp16", "int8"])  # fp16: weights + MLPs in fp16, pose math fp32; int8: dynamic quantisation
    verify: bool = True  # ONNX Runtime vs torch; fails above 1e-3 m (fp32), 0.1 m or ±1 % minADE (fp16), ±3 % minADE (int8)
    verify_scenes: int = 8  # generated scenes used for verification
    seed: int = 2000  # their seed
    womd: list[str] = field(default_factory=list)  # extra data to verify on, any format (default: the shared WOMD sample if present)
    int8_sensitivity: bool = False  # true: quantise each MatMul alone, report its minADE change (diagnostic, ~1 min)
    int8: Int8Config = field(default_factory=Int8Config)  # which MatMuls stay fp32 in the int8 variant


def load_config(overrides: list[str]) -> ExportConfig:
    """``configs/export/default.yaml`` with ``key=value`` overrides, typed; bad keys/values name the key."""
    register(SCHEMA, ExportConfig)
    return to_object(compose("export", "default", overrides), ExportConfig)


def run(cfg: ExportConfig) -> dict:
    import torch

    from drope.data.batch import collate_scenes, pad_history
    from drope.data.sources import generated_scenes, load_scenes
    from drope.model.checkpoint import load_model
    from drope.export.onnx_export import export_onnx, make_fp16, make_int8
    from drope.export.verify import check_variants, compare, int8_sensitivity

    if cfg.opset < 18:
        raise ValueError(f"opset must be ≥ 18, got {cfg.opset}")
    makers = {"fp16": make_fp16, "int8": lambda src, dst: make_int8(src, dst, cfg.int8)}
    unknown = [v for v in cfg.variants if v not in makers]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {sorted(makers)}")
    model, ckpt = load_model(cfg.ckpt)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    spec = model.cfg.features

    def real_scenes(paths):  # any format drope reads, fitted to the model's history
        return [pad_history(s, spec.history) for s in load_scenes(list(map(str, paths)), on_corrupt="raise")]

    scenes = [pad_history(s, spec.history) for s in generated_scenes(cfg.verify_scenes, cfg.seed)]
    example = collate_scenes(scenes[:2], spec)
    out = Path(cfg.out)
    export_onnx(model, example.model_inputs(), out, cfg.opset,
                extra_metadata={"train_config": ckpt.get("config", {}), "checkpoint_step": ckpt.get("step")})
    paths = {"fp32": out}
    for v in cfg.variants:
        paths[v] = makers[v](out, out.with_name(f"{out.stem}.{v}{out.suffix}"))
    report = {"files": {k: str(p) for k, p in paths.items()}}
    real = [Path(p) for p in (cfg.womd or [])] or ([WOMD_SAMPLE] if WOMD_SAMPLE.exists() else [])
    if cfg.verify:
        report["generated"] = compare(model, paths, scenes)
        check_variants(report["generated"])
        if real:
            report["womd"] = compare(model, paths, real_scenes(real), batch_size=1)
            check_variants(report["womd"])
    if cfg.int8_sensitivity:  # diagnostic: which layer's quantisation moves the predictions
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            report["int8_sensitivity"] = {"generated": int8_sensitivity(model, out, scenes, Path(tmp))}
            if real:
                report["int8_sensitivity"]["womd"] = int8_sensitivity(model, out, real_scenes(real),
                                                                      Path(tmp), batch_size=1)
    out.with_suffix(".verify.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drope-export", description=__doc__, add_help=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action="store_true", help="this text and every key with its default and comment")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. ckpt=runs/x/last.ckpt out=model.onnx")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from drope.export.verify import VerificationError

    try:
        cfg = load_config(args.overrides)
        if args.help:
            p.print_help()
            print("\nKeys (drope.export.cli.ExportConfig):\n")
            print(describe(cfg))
            return 0
        if not cfg.ckpt:
            raise ValueError("ckpt=PATH is required")
        report = run(cfg)
    except ConfigError as e:
        print(f"drope-export: bad config or override: {e}", file=sys.stderr)
        return 2
    except VerificationError as e:
        print(f"drope-export: VERIFICATION FAILED: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"drope-export: {e}", file=sys.stderr)
        return 2
    for where in ("generated", "womd"):
        for name, s in report.get(where, {}).items():
            extra = f"|onnx - torch| max {s['max_abs_err_m']:.2e} m, mean {s['mean_abs_err_m']:.1e} m, " \
                    f"minADE change {s['min_ade_change_pct']:+.2f} %" \
                if name != "torch" else ""
            print(f"{where:<10}{name:<6} minADE {s['min_ade']:.3f} m  {extra}")
    print(f"wrote {', '.join(report['files'].values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
