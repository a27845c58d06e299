"""Shared fixtures. The WOMD sample lives in ../shared/data/womd beside the repository."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
WOMD_SAMPLE = REPO.parent / "shared" / "data" / "womd" / "motion_data_one_scenario.tfrecord"

# property tests draw the same examples on every run: CI failures reproduce, nothing is flaky
settings.register_profile("drope", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("drope")

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def womd_path() -> Path:
    """Path to the shared real WOMD scenario. Missing under CI=true is a failure, not a skip."""
    if not WOMD_SAMPLE.exists():
        msg = f"shared WOMD sample not found at {WOMD_SAMPLE} (expected ../shared/data/womd beside the repo)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return WOMD_SAMPLE


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def gen_scenes():
    """Six generated scenes (seed 11), shared by model, training and evaluation tests."""
    from drope.sim.generate.scenario import generate_scene

    return [generate_scene(11, i)[0] for i in range(6)]
