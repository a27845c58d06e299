"""``drope-bench SUBCOMMAND ...``: dispatches to benchmark modules.

Each subcommand lives in its own module exposing ``main(argv: list[str] | None) -> int``;
modules are imported lazily so one broken benchmark never blocks the others.
"""
from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "attention": ("drope.bench.attention", "peak memory and time of one attention layer per encoding"),
    "read": ("drope.bench.read", "WOMD read+convert throughput and cache bytes per scene"),
    "train-data": ("drope.bench.train_data", "streaming loader scenes/s, drope-train RSS/first step vs dataset size"),
    "generate": ("drope.bench.generate", "scenario generator throughput (scenes/s)"),
    "inference": ("drope.bench.inference", "torch eager vs ONNX Runtime fp32/fp16/int8 latency"),
    "sim": ("drope.bench.sim", "simulator engine and closed-loop throughput"),
    "score": ("drope.bench.score", "seconds per WOSAC / motion scenario"),
}


def _usage() -> str:
    lines = ["usage: drope-bench SUBCOMMAND [options]", "", "subcommands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run 'drope-bench SUBCOMMAND --help' for its options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"drope-bench: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
