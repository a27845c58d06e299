"""Write generated scenes as an Argoverse 2 split (scenario directories: parquet + map JSON).

There is no AV2 file in this environment, so the AV2 end-to-end run (docs/experiments/av2.md) reads
generated scenes written in AV2's on-disk format by :func:`drope.data.av2.write_av2_scenario`. A
generated scene has 91 steps with the current step at index 10; AV2 has 110 with the current step at
49. :func:`av2_layout` puts 39 *unobserved* steps (invalid, never a made-up position) in front and
keeps 60 future steps, so the files carry AV2's shape and the model sees 11 real history steps of 50.

    python docs/make_av2_split.py /tmp/av2/train --num-scenes 200 --seed 0
    python docs/make_av2_split.py /tmp/av2/val --num-scenes 64 --seed 1000

``--keep-steps`` writes the scenes' own 91 steps (current index 10) instead: the same steps as
their WOMD copies (``drope-generate out=DIR num_scenes=N seed=S``), so that ``drope-sim`` on the
two copies can be compared number for number.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

AV2_STEPS, AV2_HISTORY = 110, 50


def av2_layout(scene):
    """``scene`` with AV2's 110 steps and current index 49 (unobserved steps in front, future cut)."""
    from drope.data.batch import pad_history
    from drope.data.scene import Scene

    padded = pad_history(scene, AV2_HISTORY)
    if padded.num_steps < AV2_STEPS:
        raise ValueError(f"scene {scene.scenario_id}: {padded.num_steps} steps after padding, AV2 needs {AV2_STEPS}")
    cut = {f.name: getattr(padded, f.name).narrow(f.metadata["shape"].index("T"), 0, AV2_STEPS)
           for f in Scene.tensor_fields() if "T" in f.metadata["shape"]}
    return dataclasses.replace(padded, **cut).validate()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="split root to write scenario directories under")
    p.add_argument("--num-scenes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-steps", action="store_true",
                   help="keep the generated 91 steps / current index 10 (compare with the WOMD copies)")
    args = p.parse_args(argv)
    from drope.data.av2 import write_av2_scenario
    from drope.data.sources import generated_scenes

    t0 = time.perf_counter()
    n = 0
    for s in generated_scenes(args.num_scenes, args.seed):
        write_av2_scenario(s if args.keep_steps else av2_layout(s), args.out)
        n += 1
    print(f"{n} AV2 scenario directories -> {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
