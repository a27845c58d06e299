"""Where the shared real WOMD scenario lives (used as a default by benchmarks and the demo).

``$DROPE_WOMD_SAMPLE`` wins; otherwise ``../shared/data/womd`` beside a source checkout. A regular
install has no checkout beside it, so callers treat a missing sample as "not available".
"""
from __future__ import annotations

import os
from pathlib import Path

_NAME = "motion_data_one_scenario.tfrecord"


def womd_sample() -> Path:
    env = os.environ.get("DROPE_WOMD_SAMPLE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "womd" / _NAME
